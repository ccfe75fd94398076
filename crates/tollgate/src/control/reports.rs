//! `/admin/v1/reports`: spend grouped any way finance asks, as JSON or CSV, and the
//! reconciliation of the rollups against the ledger. Money is in USD: exact decimal strings
//! with all nine decimals (`cost_usd`, the same width in every row) and the integer nano-USD
//! beside them (`cost_nano_usd`). Every report says the period it covers, its time zone and
//! its currency, in the body and in the response headers.

use serde_json::{Map, Value, json};

use tollgate_core::ApiError;
use tollgate_core::budget::Calendar;
use tollgate_store::{
    Dimension, Reconciliation, Report, ReportQuery, ReportRow, Store, Totals, local_day,
    local_month, month_bounds, parse_instant, rfc3339,
};

use super::page::Query;
use super::reply::{Reply, ReportBody, not_found, store_error};
use super::routes::forbidden;
use crate::validate::FieldErrors;

const SPEND_PARAMS: [&str; 7] = [
    "from",
    "to",
    "group_by",
    "format",
    "tz",
    "team",
    "total_row",
];
const RECONCILE_PARAMS: [&str; 2] = ["from", "to"];
/// Every amount tollgate reports is in US dollars, the currency OpenAI bills in.
const CURRENCY: &str = "USD";

/// `GET /admin/v1/reports/spend?from&to&group_by&format&tz&team&total_row`. `allowed_team` is
/// the team a team admin is fenced into (`None`: every team); asking for another is refused.
pub async fn spend(
    store: &Store,
    query: Option<&str>,
    allowed_team: Option<String>,
) -> Result<Reply, ApiError> {
    let mut errors = FieldErrors::default();
    let params = Query::parse_into(query, &SPEND_PARAMS, &mut errors);
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
    let (from_ms, to_ms) = period(&mut errors, &params, &calendar);
    let group_by = parse_group_by(params.get("group_by").unwrap_or("")).unwrap_or_else(|bad| {
        errors.push("group_by", bad);
        Vec::new()
    });
    let csv = match params.get("format").unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => {
            errors.push("format", format!("'{other}' is not json or csv"));
            false
        }
    };
    let total_row = match params.get("total_row").unwrap_or("false") {
        "true" => true,
        "false" => false,
        other => {
            errors.push("total_row", format!("'{other}' is not true or false"));
            false
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
                .ok_or_else(|| not_found("team", asked))?;
            if allowed_team.as_ref().is_some_and(|t| *t != team.id) {
                return Err(forbidden(
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
    let covers = Covers::of(&query);
    let body = if csv {
        ReportBody::Csv {
            filename: format!("spend-{}-to-{}.csv", covers.first_day, covers.last_day),
            text: report_csv(&report, total_row),
        }
    } else {
        ReportBody::Json(report_json(&report, &query, &covers))
    };
    Ok(Reply::Report {
        body,
        headers: covers.headers(),
    })
}

/// What a report covers, as people read it: the first and the last day (inclusive), the exact
/// instants, the zone and the currency.
struct Covers {
    from: String,
    to: String,
    first_day: String,
    last_day: String,
    timezone: String,
}

impl Covers {
    fn of(query: &ReportQuery) -> Covers {
        let calendar = &query.calendar;
        Covers {
            from: rfc3339(calendar, query.from_ms),
            to: rfc3339(calendar, query.to_ms),
            first_day: local_day(calendar, query.from_ms),
            // `to` is exclusive: the last day is the one its instant before belongs to.
            last_day: local_day(calendar, query.to_ms.saturating_sub(1)),
            timezone: calendar.zone().to_string(),
        }
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("x-tollgate-period-from", self.from.clone()),
            ("x-tollgate-period-to", self.to.clone()),
            ("x-tollgate-period-last-day", self.last_day.clone()),
            ("x-tollgate-timezone", self.timezone.clone()),
            ("x-tollgate-currency", CURRENCY.to_string()),
        ]
    }
}

/// `GET /admin/v1/reports/reconcile?from&to`: every `ledger_daily` key and session whose rollup
/// differs from the ledger over the whole UTC days the range touches.
pub async fn reconcile(store: &Store, query: Option<&str>) -> Result<Reply, ApiError> {
    let mut errors = FieldErrors::default();
    let params = Query::parse_into(query, &RECONCILE_PARAMS, &mut errors);
    let (from_ms, to_ms) = period(&mut errors, &params, &Calendar::default());
    errors.into_result()?;
    let found = store.reconcile(from_ms, to_ms).await.map_err(store_error)?;
    Ok(Reply::Json(
        http::StatusCode::OK,
        reconciliation_json(&found),
    ))
}

/// `GET /admin/v1/reports/refusals?from&to`: requests tollgate refused, by team and reason,
/// over the whole UTC days of the period (default: this month). Refused requests cost nothing
/// and have no ledger row; every gateway adds its counts to a daily rollup within seconds.
pub async fn refusals(store: &Store, query: Option<&str>) -> Result<Reply, ApiError> {
    let mut errors = FieldErrors::default();
    let params = Query::parse_into(query, &RECONCILE_PARAMS, &mut errors);
    let calendar = Calendar::default();
    let (from_ms, to_ms) = period(&mut errors, &params, &calendar);
    errors.into_result()?;
    let first_day = local_day(&calendar, from_ms);
    let last_day = local_day(&calendar, to_ms - 1);
    let rows = store
        .refusals(&first_day, &last_day)
        .await
        .map_err(store_error)?;
    let total: i64 = rows.iter().map(|r| r.requests).sum();
    let data: Vec<Value> = rows
        .iter()
        .map(|r| json!({"team": r.team, "reason": r.reason, "requests": r.requests}))
        .collect();
    Ok(Reply::Json(
        http::StatusCode::OK,
        json!({
            "object": "refusal_report",
            "first_day": first_day,
            "last_day": last_day,
            "timezone": "UTC",
            "data": data,
            "total": total,
        }),
    ))
}

/// `from` and `to` (`to` exclusive, `from` before `to`). Either left out means the current
/// month's bound in the calendar's zone, so a bare report is this month so far.
fn period(errors: &mut FieldErrors, params: &Query, calendar: &Calendar) -> (i64, i64) {
    let now = tollgate_core::time::now_ms();
    let this_month = month_bounds(&local_month(calendar, now), calendar).unwrap_or((0, now));
    let mut instant = |field: &'static str, default: i64| match params.get(field) {
        None => Some(default),
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
    let (from, to) = (instant("from", this_month.0), instant("to", this_month.1));
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        // A bound left out is this month's: say so, or `?to=2026-10-01` alone reads as a
        // contradiction of something the caller never wrote.
        let defaulted = |field: &str, at: i64| {
            if params.get(field).is_some() {
                String::new()
            } else {
                format!(
                    " ({field} was left out, so it is this month's bound {}; give both)",
                    rfc3339(calendar, at)
                )
            }
        };
        let why = format!(
            "must be after from{}{}",
            defaulted("from", from),
            defaulted("to", to)
        );
        errors.push("to", why);
    }
    (from.unwrap_or(0), to.unwrap_or(0))
}

/// `team,model` → dimensions; an unknown name is an error that lists the known ones.
/// `cost_center` is read as `cost_centre`.
pub fn parse_group_by(text: &str) -> Result<Vec<Dimension>, String> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let name = if name == "cost_center" {
            "cost_centre"
        } else {
            name
        };
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

/// The group columns of one dimension with a row's values, in report order. A team is its id
/// and name; a session is its team and its id (two teams may send the same session id).
fn group_cells(row: &ReportRow, dimension: Dimension) -> Vec<(&'static str, Option<&str>)> {
    match dimension {
        Dimension::Team => vec![
            ("team_id", row.team_id.as_deref()),
            ("team_name", row.team_name.as_deref()),
        ],
        Dimension::Session => vec![
            ("team_id", row.team_id.as_deref()),
            ("team_name", row.team_name.as_deref()),
            ("session_id", row.value(dimension)),
        ],
        Dimension::CostCentre => vec![("cost_centre", row.value(dimension))],
        Dimension::Key => vec![("key_id", row.value(dimension))],
        Dimension::Model => vec![("model", row.value(dimension))],
        Dimension::User => vec![("user", row.value(dimension))],
        Dimension::Day => vec![("day", row.value(dimension))],
        Dimension::Month => vec![("month", row.value(dimension))],
        Dimension::Status => vec![("status", row.value(dimension))],
    }
}

/// A row's group columns, each column once (a session's team is the team's `team_id`).
fn groups<'r>(row: &'r ReportRow, group_by: &[Dimension]) -> Vec<(&'static str, Option<&'r str>)> {
    let mut out: Vec<(&'static str, Option<&str>)> = Vec::new();
    for dimension in group_by {
        for (column, value) in group_cells(row, *dimension) {
            if !out.iter().any(|(c, _)| *c == column) {
                out.push((column, value));
            }
        }
    }
    out
}

/// The metric columns, in order: what happened to the requests, then tokens, then money.
const METRICS: [&str; 11] = [
    "requests",
    "failed_requests",
    "estimated_requests",
    "unpriced_requests",
    "unmetered_requests",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nano_usd",
    "cost_usd",
];

fn metric_values(t: &Totals) -> [Value; 11] {
    [
        t.requests.into(),
        t.failed_requests.into(),
        t.estimated_requests.into(),
        t.unpriced_requests.into(),
        t.unmetered_requests.into(),
        t.input_tokens.into(),
        t.cached_input_tokens.into(),
        t.output_tokens.into(),
        t.reasoning_tokens.into(),
        t.cost.nanos().into(),
        t.cost.to_usd_fixed().into(),
    ]
}

/// Totals as JSON: integers, and the cost both as nano-USD and as exact decimal USD.
pub fn totals_json(t: &Totals) -> Map<String, Value> {
    METRICS
        .iter()
        .map(|m| (*m).to_string())
        .zip(metric_values(t))
        .collect()
}

/// The columns of every data row, in order.
fn columns(report: &Report) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for dimension in &report.group_by {
        for (column, _) in group_cells(&ReportRow::default(), *dimension) {
            if !out.contains(&column) {
                out.push(column);
            }
        }
    }
    out.extend(METRICS);
    out
}

/// `{"object": "spend_report", "currency": "USD", "from", "to", "last_day", "timezone", …,
/// "columns": [...], "data": [rows], "totals": {…}}`.
fn report_json(report: &Report, query: &ReportQuery, covers: &Covers) -> Value {
    let data: Vec<Value> = report
        .rows
        .iter()
        .map(|row| {
            let mut out: Map<String, Value> = groups(row, &report.group_by)
                .into_iter()
                .map(|(c, v)| (c.to_string(), v.map_or(Value::Null, Value::from)))
                .collect();
            out.extend(totals_json(&row.totals));
            Value::Object(out)
        })
        .collect();
    let group_by: Vec<&str> = report.group_by.iter().map(|d| d.as_str()).collect();
    json!({
        "object": "spend_report",
        "currency": CURRENCY,
        "from": covers.from,
        "to": covers.to,
        "first_day": covers.first_day,
        "last_day": covers.last_day,
        "timezone": covers.timezone,
        "group_by": group_by,
        "team_id": query.team_id,
        "source": report.source.as_str(),
        "columns": columns(report),
        "data": data,
        "totals": totals_json(&report.totals),
    })
}

/// The report as RFC 4180 CSV (CRLF line ends, quoted where needed, formulas defused): a
/// header, one line per group (one line for everything when nothing is grouped), then a
/// `TOTAL` line only if asked for, since a SUM or pivot over a column would count it twice.
fn report_csv(report: &Report, total_row: bool) -> String {
    let mut header: Vec<String> = columns(report).iter().map(|c| c.to_string()).collect();
    let labels = header.len() - METRICS.len();
    let mut lines: Vec<Vec<String>> = Vec::new();
    if report.group_by.is_empty() {
        header.insert(0, "scope".into());
        lines.push(line(vec!["all".into()], &report.totals));
    } else {
        for row in &report.rows {
            let cells = groups(row, &report.group_by)
                .into_iter()
                .map(|(_, v)| v.unwrap_or("").to_string())
                .collect();
            lines.push(line(cells, &row.totals));
        }
    }
    if total_row {
        let mut label = vec![String::new(); labels.max(1)];
        label[0] = "TOTAL".into();
        lines.push(line(label, &report.totals));
    }
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    for cells in std::iter::once(header).chain(lines) {
        // Writing to memory cannot fail.
        let _ = writer.write_record(cells.iter().map(|c| defuse(c).into_owned()));
    }
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// Labels then the metrics as text.
fn line(mut cells: Vec<String>, totals: &Totals) -> Vec<String> {
    cells.extend(metric_values(totals).iter().map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }));
    cells
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

/// A CSV cell a spreadsheet would run as a formula gets a leading `'` (OWASP's advice): text
/// starting with `=`, `+`, `-`, `@`, tab or CR. Numbers are left alone (a negative cost must
/// stay a number). Only the CSV is defused: JSON and the CLI's table show values as they are.
pub fn defuse(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_number(cell) {
        format!("'{cell}").into()
    } else {
        cell.into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_numbers_left_alone() {
        assert_eq!(defuse("plain"), "plain");
        assert_eq!(defuse("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse("+1 555"), "'+1 555");
        assert_eq!(defuse("@user"), "'@user");
        assert_eq!(defuse("-rm"), "'-rm");
        assert_eq!(defuse("-0.005"), "-0.005");
        assert_eq!(defuse("-12"), "-12");
        assert_eq!(defuse("12.50"), "12.50");
        assert_eq!(defuse("-"), "'-");
        assert_eq!(defuse("-1."), "'-1.");
    }

    #[test]
    fn group_by_names_every_dimension_and_refuses_others() {
        assert_eq!(
            parse_group_by("team, model,team,"),
            Ok(vec![Dimension::Team, Dimension::Model])
        );
        assert_eq!(
            parse_group_by("cost_center,status"),
            Ok(vec![Dimension::CostCentre, Dimension::Status])
        );
        assert_eq!(parse_group_by(""), Ok(vec![]));
        let err = parse_group_by("team,colour").unwrap_err();
        assert!(
            err.contains("'colour'") && err.contains("cost_centre"),
            "{err}"
        );
    }
}
