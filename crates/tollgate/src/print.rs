//! How the CLI shows what the control plane answered: aligned tables for people (numbers to the
//! right), or the answer's own JSON with `--json` for scripts. Every printer reads the admin
//! API's JSON shape, whichever control plane answered.

use comfy_table::{CellAlignment, Table, presets};
use serde_json::Value;

use tollgate_core::budget::Calendar;

use crate::cli::Output;

/// A value's field as table text (`""` for null or absent).
pub fn text(v: &Value, field: &str) -> String {
    match &v[field] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn print_json(items: &[Value]) {
    println!("{}", Value::Array(items.to_vec()));
}

/// Prints a table: columns padded by two spaces, a column whose every cell is a number (or an
/// amount like `$1.50`) aligned right, header included.
pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    println!("{}", table(header, rows));
}

pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let numeric: Vec<bool> = (0..header.len())
        .map(|i| {
            !rows.is_empty()
                && rows
                    .iter()
                    .all(|row| row.get(i).is_none_or(|c| c.is_empty() || is_amount(c)))
        })
        .collect();
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(header.to_vec());
    table.add_rows(rows);
    for (column, right) in table.column_iter_mut().zip(numeric) {
        column.set_padding((0, 2));
        if right {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let lines: Vec<String> = table.lines().map(|l| l.trim_end().to_string()).collect();
    lines.join("\n")
}

/// `12`, `-0.50`, `$3.25`: what a person reads as a number.
fn is_amount(cell: &str) -> bool {
    let digits = cell.trim_start_matches('$').trim_start_matches('-');
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next().unwrap_or("0");
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && !fraction.is_empty()
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

pub fn print_teams(output: Output, teams: &[Value]) {
    if output.json {
        return print_json(teams);
    }
    let rows = teams
        .iter()
        .map(|t| {
            let status = if t["disabled"] == true {
                "disabled"
            } else {
                "active"
            };
            vec![
                text(t, "id"),
                text(t, "name"),
                text(t, "cost_centre"),
                status.into(),
            ]
        })
        .collect();
    print_table(&["ID", "NAME", "COST CENTRE", "STATUS"], rows);
}

/// One team, with its labels and allow-list.
pub fn print_team(output: Output, team: &Value) {
    if output.json {
        return println!("{team}");
    }
    print_teams(output, std::slice::from_ref(team));
    if let Some(labels) = team["labels"].as_object().filter(|l| !l.is_empty()) {
        let pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        println!("labels: {}", pairs.join(", "));
    }
    if let Some(models) = team["allowed_models"].as_array() {
        let models: Vec<&str> = models.iter().filter_map(Value::as_str).collect();
        println!("allowed models: {}", models.join(", "));
    }
}

pub fn print_keys(output: Output, keys: &[Value]) {
    if output.json {
        return print_json(keys);
    }
    let now = tollgate_core::time::now_ms();
    let rows = keys
        .iter()
        .map(|k| {
            let status = if k["revoked_at_ms"].is_i64() {
                "revoked"
            } else if k["expires_at_ms"].as_i64().is_some_and(|at| at <= now) {
                "expired"
            } else {
                "active"
            };
            vec![
                text(k, "id"),
                text(k, "team_name"),
                text(k, "name"),
                status.into(),
            ]
        })
        .collect();
    print_table(&["ID", "TEAM", "NAME", "STATUS"], rows);
}

/// A freshly issued key: the secret alone on stdout (for `$(…)`), the rest on stderr.
pub fn print_secret(output: Output, issued: &Value, note: &str) {
    if output.json {
        return println!("{issued}");
    }
    println!("{}", text(issued, "secret"));
    eprintln!(
        "Key {} for team {} — the secret above is shown once; store it now.{note}",
        text(issued, "id"),
        text(issued, "team_name")
    );
}

pub fn print_budgets(output: Output, team: &str, views: &[Value]) {
    if output.json {
        return print_json(views);
    }
    if views.is_empty() {
        println!("team '{team}' has no budgets");
        return;
    }
    let rows = views
        .iter()
        .map(|v| {
            // Reset times are described in the zone the budget's windows are in.
            let calendar = v["timezone"]
                .as_str()
                .and_then(Calendar::new)
                .unwrap_or_default();
            let resets = v["resets_at_ms"]
                .as_i64()
                .map_or("never".to_string(), |ms| calendar.describe(ms));
            let usd = |field: &str| format!("${}", text(v, field));
            vec![
                text(v, "id"),
                text(v, "scope"),
                text(v, "period"),
                usd("limit_usd"),
                usd("committed_usd"),
                usd("reserved_usd"),
                usd("remaining_usd"),
                resets,
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "SCOPE",
            "PERIOD",
            "LIMIT",
            "COMMITTED",
            "RESERVED",
            "REMAINING",
            "RESETS",
        ],
        rows,
    );
}

pub fn print_sessions(output: Output, sessions: &[Value]) {
    if output.json {
        return print_json(sessions);
    }
    let calendar = Calendar::default();
    let rows = sessions
        .iter()
        .map(|s| {
            let last = s["last_seen_ms"]
                .as_i64()
                .map_or_else(String::new, |ms| calendar.describe(ms));
            vec![
                text(s, "id"),
                text(s, "requests"),
                format!("${}", text(s, "cost_usd")),
                last,
            ]
        })
        .collect();
    print_table(&["SESSION", "REQUESTS", "COST", "LAST SEEN"], rows);
}

pub fn print_session(output: Output, session: &Value) {
    if output.json {
        return println!("{session}");
    }
    print_sessions(output, std::slice::from_ref(session));
    println!(
        "tokens: input {} (cached {}), output {} (reasoning {})",
        text(session, "input_tokens"),
        text(session, "cached_input_tokens"),
        text(session, "output_tokens"),
        text(session, "reasoning_tokens"),
    );
    // What Codex's hooks (`tollgate hook`) reported, when they did.
    if session["hook_events"].as_i64().is_some_and(|n| n > 0) {
        let gate = match session["gate"]["passed"].as_bool() {
            Some(passed) => format!(
                "{} in {} ms",
                if passed { "passed" } else { "failed" },
                text(&session["gate"], "duration_ms")
            ),
            None => "none".to_string(),
        };
        let or_dash = |field: &str| session[field].as_str().unwrap_or("-").to_string();
        println!(
            "outcome: {}, gate: {gate}, task type: {}, duration: {} ms, hook events: {}",
            or_dash("outcome"),
            or_dash("task_type"),
            text(session, "duration_ms"),
            text(session, "hook_events"),
        );
    }
    // What Codex's own telemetry (the OTLP intake) said, when it sent any.
    let codex = &session["codex"];
    if codex.is_object() {
        let resolved = codex["duration_ms"]
            .as_i64()
            .map_or_else(|| "still running".to_string(), |ms| format!("{ms} ms"));
        println!(
            "codex: time to resolution {resolved}, turns {} ({} ms), its tokens: input {} \
             (cached {}), output {} (reasoning {}), API errors {}",
            text(codex, "turns"),
            text(codex, "turn_duration_ms"),
            text(&codex["tokens"], "input"),
            text(&codex["tokens"], "cached_input"),
            text(&codex["tokens"], "output"),
            text(&codex["tokens"], "reasoning"),
            text(codex, "api_errors"),
        );
        if let Some(tools) = codex["tool_decisions"]
            .as_object()
            .filter(|t| !t.is_empty())
        {
            let rows = tools
                .iter()
                .flat_map(|(tool, decisions)| {
                    decisions
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(move |(decision, n)| {
                            vec![tool.clone(), decision.clone(), n.to_string()]
                        })
                })
                .collect();
            print_table(&["TOOL", "DECISION", "COUNT"], rows);
        }
    }
    if let Some(tools) = session["tool_calls"].as_object().filter(|t| !t.is_empty()) {
        let rows = tools
            .iter()
            .map(|(name, calls)| vec![name.clone(), calls.to_string()])
            .collect();
        print_table(&["TOOL", "CALLS"], rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_numbers_right_and_text_left() {
        let shown = table(
            &["NAME", "COST"],
            vec![
                vec!["alpha".into(), "$1.50".into()],
                vec!["b".into(), "$12.00".into()],
            ],
        );
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines[0].trim_end(), "NAME     COST");
        assert_eq!(lines[1].trim_end(), "alpha   $1.50");
        assert_eq!(lines[2].trim_end(), "b      $12.00");
    }
}
