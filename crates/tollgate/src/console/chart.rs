//! Charts as SVG, drawn on the server: no script, no library, nothing fetched. Colours come
//! from the stylesheet's `.s0`…`.s7` classes, so the light and dark themes both apply. Every
//! bar carries a `<title>` with its exact amount, and each chart a text alternative.

use std::fmt::Write;

use super::html::usd;

/// Series beyond this many are summed into "other", so a legend stays readable.
pub const MAX_SERIES: usize = 7;

/// One stacked bar per day, a segment per series (e.g. team), amounts in nano-USD.
pub struct Stacked<'a> {
    pub days: &'a [String],
    /// (series name, amount per day, in `days` order).
    pub series: &'a [(String, Vec<i64>)],
    pub label: &'a str,
}

const WIDTH: i64 = 720;
const HEIGHT: i64 = 220;
const LEFT: i64 = 64;
const BOTTOM: i64 = 24;

pub fn stacked(chart: &Stacked<'_>) -> String {
    let days = chart.days.len().max(1) as i64;
    let totals: Vec<i64> = (0..chart.days.len())
        .map(|d| {
            chart
                .series
                .iter()
                .map(|(_, v)| v.get(d).copied().unwrap_or(0).max(0))
                .sum()
        })
        .collect();
    let top = totals.iter().copied().max().unwrap_or(0).max(1);
    let plot_w = WIDTH - LEFT - 8;
    let plot_h = HEIGHT - BOTTOM - 8;
    let slot = (plot_w / days).max(1);
    let bar = (slot * 3 / 4).max(1);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(chart.label)
    );
    // Axis: zero and the top amount.
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{y0}" x2="{x2}" y2="{y0}"/><text class="tick" x="{tx}" y="{y0}" text-anchor="end">$0</text><text class="tick" x="{tx}" y="16" text-anchor="end">{}</text>"#,
        escape(&usd_short(top)),
        y0 = HEIGHT - BOTTOM,
        x2 = WIDTH - 8,
        tx = LEFT - 6,
    );
    for (d, day) in chart.days.iter().enumerate() {
        let x = LEFT + d as i64 * slot + (slot - bar) / 2;
        let mut y = HEIGHT - BOTTOM;
        for (s, (name, values)) in chart.series.iter().enumerate() {
            let amount = values.get(d).copied().unwrap_or(0).max(0);
            if amount == 0 {
                continue;
            }
            let h = ((i128::from(amount) * i128::from(plot_h)) / i128::from(top)).max(1) as i64;
            y -= h;
            let _ = write!(
                svg,
                r#"<rect class="s{}" x="{x}" y="{y}" width="{bar}" height="{h}"><title>{} · {}: {}</title></rect>"#,
                s % (MAX_SERIES + 1),
                escape(day),
                escape(name),
                escape(&usd(amount))
            );
        }
        // Label every day when there are few, else about every fifth.
        let every = (days / 8).max(1) as usize;
        if d.is_multiple_of(every) {
            let _ = write!(
                svg,
                r#"<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>"#,
                x + bar / 2,
                HEIGHT - 6,
                escape(day.get(5..).unwrap_or(day))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The legend for [`stacked`]: one swatch per series with its total.
pub fn legend(series: &[(String, Vec<i64>)]) -> String {
    let mut out = String::from(r#"<ul class="legend">"#);
    for (s, (name, values)) in series.iter().enumerate() {
        let total: i64 = values.iter().sum();
        let _ = write!(
            out,
            r#"<li><svg width="12" height="12" aria-hidden="true"><rect class="s{}" width="12" height="12"/></svg> {} <span class="muted">{}</span></li>"#,
            s % (MAX_SERIES + 1),
            escape(name),
            escape(&usd(total))
        );
    }
    out.push_str("</ul>");
    out
}

/// Horizontal bars, largest first as given: (name, amount in nano-USD).
pub fn bars(items: &[(String, i64)], label: &str) -> String {
    let top = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let row = 26;
    let height = (items.len() as i64 * row).max(row);
    let name_w = 180;
    let amount_w = 110;
    let bar_max = WIDTH - name_w - amount_w;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(label)
    );
    for (i, (name, amount)) in items.iter().enumerate() {
        let y = i as i64 * row;
        let w =
            ((i128::from((*amount).max(0)) * i128::from(bar_max)) / i128::from(top)).max(1) as i64;
        let _ = write!(
            svg,
            r#"<text class="name" x="0" y="{ty}">{}</text><rect class="s0" x="{name_w}" y="{ry}" width="{w}" height="16"><title>{}: {}</title></rect><text class="amount" x="{WIDTH}" y="{ty}" text-anchor="end">{}</text>"#,
            escape(&truncate(name, 24)),
            escape(name),
            escape(&usd(*amount)),
            escape(&usd(*amount)),
            ty = y + 17,
            ry = y + 4,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Keeps the `MAX_SERIES` largest series and sums the rest into "other".
pub fn top_series(mut series: Vec<(String, Vec<i64>)>, days: usize) -> Vec<(String, Vec<i64>)> {
    series.sort_by_key(|(name, v)| (std::cmp::Reverse(v.iter().sum::<i64>()), name.clone()));
    if series.len() <= MAX_SERIES {
        return series;
    }
    let rest = series.split_off(MAX_SERIES - 1);
    let mut other = vec![0i64; days];
    for (_, values) in rest {
        for (d, v) in values.into_iter().enumerate() {
            if let Some(slot) = other.get_mut(d) {
                *slot = slot.saturating_add(v);
            }
        }
    }
    series.push(("other".to_string(), other));
    series
}

/// `$1.2k`-style for the axis only (every bar's title has the exact amount).
fn usd_short(nanos: i64) -> String {
    let cents = nanos / 10_000_000;
    match cents {
        ..100 => usd(nanos),
        100..100_000 => format!("${}", cents / 100),
        100_000..100_000_000 => format!("${}k", cents / 100_000),
        _ => format!("${}M", cents / 100_000_000),
    }
}

fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(chars - 1).collect();
    out.push('…');
    out
}

/// Escapes text for SVG/HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_carry_exact_amounts_and_escape_names() {
        let svg = bars(
            &[("<team>".to_string(), 1_500_000_000), ("b".to_string(), 1)],
            "Spend by team",
        );
        assert!(svg.contains("&lt;team&gt;: $1.50"));
        assert!(svg.contains("b: $0.000000001"));
        assert!(!svg.contains("<team>"));
    }

    #[test]
    fn stacked_bars_stay_inside_the_plot_and_small_series_fold_into_other() {
        let days: Vec<String> = (1..=3).map(|d| format!("2026-12-0{d}")).collect();
        let series: Vec<(String, Vec<i64>)> = (0..10)
            .map(|i| (format!("t{i}"), vec![i64::from(i) * 1_000; 3]))
            .collect();
        let series = top_series(series, 3);
        assert_eq!(series.len(), MAX_SERIES);
        assert_eq!(series[0].0, "t9");
        assert_eq!(series[MAX_SERIES - 1].0, "other");
        assert_eq!(series[MAX_SERIES - 1].1[0], (0..=3).sum::<i64>() * 1_000);
        let svg = stacked(&Stacked {
            days: &days,
            series: &series,
            label: "Spend per day",
        });
        assert!(!svg.contains("y=\"-"), "no bar leaves the plot: {svg}");
        assert!(svg.contains("2026-12-01 · t9: $0.000009"));
    }
}
