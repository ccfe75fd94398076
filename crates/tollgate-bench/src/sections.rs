//! BENCHMARKS.md is written by several commands: the main suite rewrites its own sections and
//! keeps every other one (soak, pathological bodies, intake, console, WebSocket, ledger writer,
//! flame graphs) where it was.

/// The `## ` sections of a Markdown document, as (heading line, whole section text).
fn sections(doc: &str) -> Vec<(&str, &str)> {
    let mut starts: Vec<usize> = doc.match_indices("\n## ").map(|(at, _)| at + 1).collect();
    if doc.starts_with("## ") {
        starts.insert(0, 0);
    }
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let end = starts.get(i + 1).copied().unwrap_or(doc.len());
            let text = &doc[start..end];
            (text.lines().next().unwrap_or_default(), text)
        })
        .collect()
}

/// `doc` with its section under `heading` (to the next `## `) replaced by `section`, or with
/// `section` inserted before the microbenchmarks (else appended).
pub fn replace(doc: &str, heading: &str, section: &str) -> String {
    let section = format!("{}\n\n", section.trim_end());
    if let Some((start, end)) = find(doc, heading) {
        return format!("{}{section}{}", &doc[..start], &doc[end..]);
    }
    match doc.find("\n## Microbenchmarks") {
        Some(at) => format!("{}\n{section}{}", &doc[..at], &doc[at + 1..]),
        None if doc.is_empty() => section,
        None => format!("{}\n\n{section}", doc.trim_end()),
    }
}

fn find(doc: &str, heading: &str) -> Option<(usize, usize)> {
    let start = if doc.starts_with(heading) {
        0
    } else {
        doc.find(&format!("\n{heading}"))? + 1
    };
    let end = doc[start + heading.len()..]
        .find("\n## ")
        .map_or(doc.len(), |at| start + heading.len() + at + 1);
    Some((start, end))
}

/// `report` followed by every section of `previous` whose heading `report` does not have,
/// in their previous order, before `report`'s microbenchmarks and method sections.
pub fn carry_over(previous: &str, report: &str) -> String {
    let own: Vec<&str> = sections(report).iter().map(|(h, _)| *h).collect();
    let kept: String = sections(previous)
        .into_iter()
        .filter(|(heading, _)| !own.contains(heading))
        .map(|(_, text)| format!("{}\n\n", text.trim_end()))
        .collect();
    if kept.is_empty() {
        return report.to_owned();
    }
    match report.find("\n## Microbenchmarks") {
        Some(at) => format!("{}\n{kept}{}", &report[..at], &report[at + 1..]),
        None => format!("{}\n\n{kept}", report.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_replaces_its_previous_version_and_keeps_the_rest() {
        const HEADING: &str = "## Soak";
        let doc = "# B\n\n## Concurrency\n\nx\n\n## Microbenchmarks\n\ny\n";
        let once = replace(doc, HEADING, &format!("{HEADING}\n\nfirst\n"));
        assert_eq!(
            once,
            format!(
                "# B\n\n## Concurrency\n\nx\n\n{HEADING}\n\nfirst\n\n## Microbenchmarks\n\ny\n"
            )
        );
        let twice = replace(&once, HEADING, &format!("{HEADING}\n\nsecond\n"));
        assert_eq!(twice, once.replace("first", "second"));
        let appended = replace("# B\n", HEADING, &format!("{HEADING}\n\nz"));
        assert_eq!(appended, format!("# B\n\n{HEADING}\n\nz\n\n"));
    }

    #[test]
    fn sections_the_suite_does_not_write_are_kept_in_place() {
        let previous = "# t\n\n## This run\nold\n\n## Soak\nsoak\n\n## Flame graphs\nsvg\n\n## Microbenchmarks\nold micro\n";
        let report =
            "# t\n\n## This run\nnew\n\n## Microbenchmarks\nnew micro\n\n## How it measures\nm\n";
        assert_eq!(
            carry_over(previous, report),
            "# t\n\n## This run\nnew\n\n## Soak\nsoak\n\n## Flame graphs\nsvg\n\n## Microbenchmarks\nnew micro\n\n## How it measures\nm\n"
        );
        assert_eq!(carry_over("", report), report);
    }
}
