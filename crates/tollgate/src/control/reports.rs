//! `/admin/v1/reports`: spend grouped any way finance asks, as JSON or CSV, and the
//! reconciliation of the rollups against the ledger. Money is a decimal USD string (`cost_usd`)
//! with the integer nano-USD beside it (`cost_nano_usd`); both are exact.

use http::StatusCode;
use serde_json::{Map, Value, json};

use tollgate_core::ApiError;
use tollgate_core::budget::Calendar;
use tollgate_store::{
    Dimension, Reconciliation, Report, ReportQuery, ReportRow, Store, Totals, parse_instant,
    rfc3339,
};

use super::page::percent_decode;
use super::reply::{Reply, store_error};
use crate::validate::FieldErrors;

const SPEND_PARAMS: [&str; 6] = ["from", "to", "group_by", "format", "tz", "team"];
const RECONCILE_PARAMS: [&str; 2] = ["from", "to"];

/// How a report is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// `GET /admin/v1/reports/spend?from&to&group_by&format&tz&team`. `allowed_team` is the team a
/// team admin is fenced into (`None`: every team); asking for another team is refused.
pub async fn spend(
    store: &Store,
    query: Option<&str>,
    allowed_team: Option<String>,
) -> Result<Reply, ApiError> {
    let mut params = Params::parse(query, &SPEND_PARAMS);
    let mut errors = std::mem::take(&mut params.errors);
    let calendar = match params.get("tz") {
        None => Calendar::default(),
        Some(zone) => Calendar::new(zone).unwrap_or_else(|| {
            errors.push(
                "tz",
                format!("'{zone}' is not an IANA time zone like Europe/Berlin"),
            );
            Calendar::default()
        }),
    };
    let (from_ms, to_ms) = range(&mut errors, &params, &calendar);
    let group_by = parse_group_by(params.get("group_by").unwrap_or("")).unwrap_or_else(|bad| {
        errors.push("group_by", bad);
        Vec::new()
    });
    let format = match params.get("format").unwrap_or("json") {
        "json" => Format::Json,
        "csv" => Format::Csv,
        other => {
            errors.push("format", format!("'{other}' is not json or csv"));
            Format::Json
        }
    };
    errors.into_result()?;

    let team_id = match params.get("team") {
        None => allowed_team,
        Some(asked) => {
            let team = store
                .team(asked)
                .await
                .map_err(store_error)?
                .ok_or_else(|| super::reply::not_found("team", asked))?;
            if allowed_team.as_ref().is_some_and(|t| *t != team.id) {
                return Err(ApiError::new(
                    403,
                    "permission_error",
                    "forbidden",
                    "This admin token may only read its own team's reports.",
                ));
            }
            Some(team.id)
        }
    };
    let query = ReportQuery {
        from_ms,
        to_ms,
        group_by,
        team_id,
        calendar,
    };
    let report = store.spend_report(&query).await.map_err(store_error)?;
    Ok(match format {
        Format::Json => Reply::Json(StatusCode::OK, report_json(&report, &query)),
        Format::Csv => Reply::Csv {
            filename: format!(
                "spend-{}-{}.csv",
                tollgate_store::local_day(&calendar, from_ms),
                tollgate_store::local_day(&calendar, to_ms)
            ),
            body: report_csv(&report),
            headers: Vec::new(),
        },
    })
}

/// `GET /admin/v1/reports/reconcile?from&to`: every `ledger_daily` key and session whose rollup
/// differs from the ledger over the whole UTC days the range touches.
pub async fn reconcile(store: &Store, query: Option<&str>) -> Result<Reply, ApiError> {
    let mut params = Params::parse(query, &RECONCILE_PARAMS);
    let mut errors = std::mem::take(&mut params.errors);
    let (from_ms, to_ms) = range(&mut errors, &params, &Calendar::default());
    errors.into_result()?;
    let found = store.reconcile(from_ms, to_ms).await.map_err(store_error)?;
    Ok(Reply::Json(StatusCode::OK, reconciliation_json(&found)))
}

/// `from` and `to`, both required, `from` before `to`.
fn range(errors: &mut FieldErrors, params: &Params, calendar: &Calendar) -> (i64, i64) {
    let mut instant = |field: &'static str| match params.get(field) {
        None => {
            errors.push(field, "is required (an RFC 3339 time or a YYYY-MM-DD date)");
            None
        }
        Some(text) => parse_instant(text, calendar).or_else(|| {
            errors.push(
                field,
                format!(
                    "'{text}' is not an RFC 3339 time (2026-11-01T00:00:00Z) or a date \
                     (2026-11-01, midnight in tz)"
                ),
            );
            None
        }),
    };
    let (from, to) = (instant("from"), instant("to"));
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        errors.push("to", "must be after from");
    }
    (from.unwrap_or(0), to.unwrap_or(0))
}

/// `team,model` → dimensions; an unknown name is an error that lists the known ones.
pub fn parse_group_by(text: &str) -> Result<Vec<Dimension>, String> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(dimension) = Dimension::parse(name) else {
            let known: Vec<&str> = Dimension::ALL.iter().map(|d| d.as_str()).collect();
            return Err(format!("'{name}' is not one of {}", known.join(", ")));
        };
        if !out.contains(&dimension) {
            out.push(dimension);
        }
    }
    Ok(out)
}

/// The group columns of one dimension, in report order (a team is its id and its name).
fn group_columns(dimension: Dimension) -> &'static [&'static str] {
    match dimension {
        Dimension::Team => &["team_id", "team_name"],
        Dimension::CostCentre => &["cost_centre"],
        Dimension::Key => &["key_id"],
        Dimension::Model => &["model"],
        Dimension::User => &["user"],
        Dimension::Session => &["session_id"],
        Dimension::Day => &["day"],
        Dimension::Month => &["month"],
    }
}

fn group_values(row: &ReportRow, dimension: Dimension) -> Vec<Option<&str>> {
    match dimension {
        Dimension::Team => vec![row.team_id.as_deref(), row.team_name.as_deref()],
        other => vec![row.value(other)],
    }
}

const METRICS: [&str; 8] = [
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "estimated_requests",
    "cost_nano_usd",
    "cost_usd",
];

fn metric_values(t: &Totals) -> [String; 8] {
    [
        t.requests.to_string(),
        t.input_tokens.to_string(),
        t.cached_input_tokens.to_string(),
        t.output_tokens.to_string(),
        t.reasoning_tokens.to_string(),
        t.estimated_requests.to_string(),
        t.cost.nanos().to_string(),
        t.cost.to_usd_string(),
    ]
}

/// Totals as JSON: integers, and the cost both as nano-USD and as exact decimal USD.
pub fn totals_json(t: &Totals) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("requests".into(), t.requests.into());
    out.insert("input_tokens".into(), t.input_tokens.into());
    out.insert("cached_input_tokens".into(), t.cached_input_tokens.into());
    out.insert("output_tokens".into(), t.output_tokens.into());
    out.insert("reasoning_tokens".into(), t.reasoning_tokens.into());
    out.insert("estimated_requests".into(), t.estimated_requests.into());
    out.insert("cost_nano_usd".into(), t.cost.nanos().into());
    out.insert("cost_usd".into(), t.cost.to_usd_string().into());
    out
}

/// `{"object": "spend_report", …, "data": [rows], "totals": {…}}`.
pub fn report_json(report: &Report, query: &ReportQuery) -> Value {
    let data: Vec<Value> = report
        .rows
        .iter()
        .map(|row| {
            let mut out = Map::new();
            for dimension in &report.group_by {
                for (column, value) in group_columns(*dimension)
                    .iter()
                    .zip(group_values(row, *dimension))
                {
                    out.insert((*column).into(), value.map_or(Value::Null, Value::from));
                }
            }
            out.extend(totals_json(&row.totals));
            Value::Object(out)
        })
        .collect();
    let group_by: Vec<&str> = report.group_by.iter().map(|d| d.as_str()).collect();
    json!({
        "object": "spend_report",
        "from": rfc3339(&query.calendar, query.from_ms),
        "to": rfc3339(&query.calendar, query.to_ms),
        "timezone": query.calendar.zone(),
        "group_by": group_by,
        "team_id": query.team_id,
        "source": report.source.as_str(),
        "data": data,
        "totals": totals_json(&report.totals),
    })
}

/// The report as a grid of plain cells: a header, one line per group, then `TOTAL` in the
/// first column with the sums. Without grouping there is one group (everything), so the grid
/// is the header (with a `scope` column to hold the label) and `TOTAL`.
pub fn report_cells(report: &Report) -> Vec<Vec<String>> {
    let mut header: Vec<String> = report
        .group_by
        .iter()
        .flat_map(|d| group_columns(*d).iter().map(|c| (*c).to_owned()))
        .collect();
    let label_columns = header.len().max(1);
    if header.is_empty() {
        header.push("scope".into());
    }
    header.extend(METRICS.iter().map(|m| (*m).to_owned()));
    let mut grid = vec![header];
    if !report.group_by.is_empty() {
        for row in &report.rows {
            let mut cells: Vec<String> = report
                .group_by
                .iter()
                .flat_map(|d| group_values(row, *d))
                .map(|v| v.unwrap_or("").to_owned())
                .collect();
            cells.extend(metric_values(&row.totals));
            grid.push(cells);
        }
    }
    let mut total = vec![String::new(); label_columns];
    total[0] = "TOTAL".into();
    total.extend(metric_values(&report.totals));
    grid.push(total);
    grid
}

/// [`report_cells`] as RFC 4180 CSV (CRLF line ends, quoted where needed, formulas defused).
pub fn report_csv(report: &Report) -> String {
    let mut out = String::new();
    for line in report_cells(report) {
        let cells: Vec<String> = line.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// An integer or a plain decimal, possibly negative: what a spreadsheet reads as a number.
pub fn is_number(cell: &str) -> bool {
    let digits = cell.strip_prefix('-').unwrap_or(cell);
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    !whole.is_empty()
        && !frac.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// One cell, quoted per RFC 4180 when it must be, and defused if a spreadsheet would run it as
/// a formula: text starting with `=`, `+`, `-`, `@`, tab or CR gets a leading `'` (OWASP's
/// advice). Numbers are left alone — a negative cost must stay a number.
pub fn csv_cell(cell: &str) -> String {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_number(cell);
    let cell = if risky {
        format!("'{cell}")
    } else {
        cell.to_owned()
    };
    if cell.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

fn reconciliation_json(r: &Reconciliation) -> Value {
    let side = |t: Option<&Totals>| t.map_or(Value::Null, |t| Value::Object(totals_json(t)));
    let daily: Vec<Value> = r
        .daily_differences
        .iter()
        .map(|d| {
            json!({
                "day": d.day, "team_id": d.team_id, "key_id": d.key_id, "model": d.model,
                "cost_centre": d.cost_centre,
                "ledger": side(d.ledger.as_ref()), "rollup": side(d.rollup.as_ref()),
            })
        })
        .collect();
    let sessions: Vec<Value> = r
        .session_differences
        .iter()
        .map(|s| {
            let side = |t: Option<&tollgate_store::SessionTotals>| {
                t.map_or(Value::Null, |t| {
                    json!({
                        "first_seen_ms": t.first_seen_ms, "last_seen_ms": t.last_seen_ms,
                        "requests": t.requests, "input_tokens": t.input_tokens,
                        "cached_input_tokens": t.cached_input_tokens,
                        "output_tokens": t.output_tokens, "reasoning_tokens": t.reasoning_tokens,
                        "cost_nano_usd": t.cost.nanos(), "cost_usd": t.cost.to_usd_string(),
                    })
                })
            };
            json!({"team_id": s.team_id, "session_id": s.session_id,
                   "ledger": side(s.ledger.as_ref()), "rollup": side(s.rollup.as_ref())})
        })
        .collect();
    let utc = Calendar::default();
    json!({
        "object": "reconciliation",
        "from": rfc3339(&utc, r.from_ms),
        "to": rfc3339(&utc, r.to_ms),
        "clean": r.is_clean(),
        "daily_keys_checked": r.daily_keys,
        "sessions_checked": r.sessions,
        "daily_differences": daily,
        "session_differences": sessions,
    })
}

/// A decoded query string, with the unknown or repeated parameters already counted as errors.
struct Params {
    pairs: Vec<(String, String)>,
    errors: FieldErrors,
}

impl Params {
    fn parse(query: Option<&str>, known: &[&'static str]) -> Params {
        let mut errors = FieldErrors::default();
        let mut pairs: Vec<(String, String)> = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(name), Some(value)) = (percent_decode(name), percent_decode(value)) else {
                errors.push("query", "is not valid percent-encoded UTF-8");
                continue;
            };
            match known.iter().find(|k| **k == name) {
                None => errors.push("query", format!("unknown parameter '{name}'")),
                Some(k) if pairs.iter().any(|(n, _)| n == k) => {
                    errors.push(k, "is given more than once")
                }
                Some(_) if value.is_empty() => {}
                Some(_) => pairs.push((name, value)),
            }
        }
        Params { pairs, errors }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1 555"), "'+1 555");
        assert_eq!(csv_cell("@user"), "'@user");
        assert_eq!(csv_cell("-rm"), "'-rm");
        assert_eq!(csv_cell("-0.005"), "-0.005");
        assert_eq!(csv_cell("-12"), "-12");
        assert_eq!(csv_cell("12.50"), "12.50");
        assert_eq!(csv_cell("-"), "'-");
        assert_eq!(csv_cell("-1."), "'-1.");
    }

    #[test]
    fn group_by_names_every_dimension_and_refuses_others() {
        assert_eq!(
            parse_group_by("team, model,team,"),
            Ok(vec![Dimension::Team, Dimension::Model])
        );
        assert_eq!(parse_group_by(""), Ok(vec![]));
        let err = parse_group_by("team,colour").unwrap_err();
        assert!(
            err.contains("'colour'") && err.contains("cost_centre"),
            "{err}"
        );
    }

    #[test]
    fn query_strings_are_decoded_and_checked() {
        let p = Params::parse(
            Some("from=2026-11-01T00:00:00%2B01:00&to=2026-12-01T00:00:00+01:00&bogus=1&to=x"),
            &SPEND_PARAMS,
        );
        assert_eq!(p.get("from"), Some("2026-11-01T00:00:00+01:00"));
        assert_eq!(p.get("to"), Some("2026-12-01T00:00:00+01:00"));
        let message = p.errors.into_result().unwrap_err().message;
        assert!(message.contains("unknown parameter 'bogus'"), "{message}");
        assert!(message.contains("to: is given more than once"), "{message}");
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
