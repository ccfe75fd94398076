//! Reports: a period, a time zone and a grouping give the spend table, with CSV and JSON
//! downloads. A download is the admin API's own answer to the same query, headers included,
//! so the file is byte for byte what `GET /admin/v1/reports/spend` returns.

use http::Method;
use maud::{Markup, html};
use serde_json::Value;

use tollgate_store::Role;

use super::super::form::{Form, encode};
use super::super::html::{self, Section, count, int, usd};
use super::super::{Console, Ctx, Outcome};
use super::overview::rows;

/// The groupings offered, in the order the API takes them.
const GROUPS: [(&str, &str); 9] = [
    ("team", "Team"),
    ("cost_centre", "Cost centre"),
    ("key", "Key"),
    ("model", "Model"),
    ("user", "User"),
    ("session", "Session"),
    ("status", "Status"),
    ("day", "Day"),
    ("month", "Month"),
];

/// The API's query for the form's fields (only the fields given).
fn api_query(q: &Form) -> String {
    let mut parts: Vec<String> = Vec::new();
    for name in ["from", "to", "tz"] {
        if let Some(v) = q.filled(name) {
            parts.push(format!("{name}={}", encode(v)));
        }
    }
    let groups: Vec<&str> = q
        .all("group_by")
        .into_iter()
        .flat_map(|g| g.split(','))
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .collect();
    if !groups.is_empty() {
        parts.push(format!("group_by={}", encode(&groups.join(","))));
    }
    if let Some(team) = q.filled("team") {
        parts.push(format!("team={}", encode(team)));
    }
    parts.join("&")
}

pub async fn page(console: &Console, ctx: &Ctx, q: &Form) -> Outcome {
    let query = api_query(q);
    let report = console
        .get(ctx, "/admin/v1/reports/spend", Some(&query))
        .await;
    let body = match &report {
        Ok(report) => table(report),
        Err(error) => html! { p.problem role="alert" { "Not shown: " (error.message) } },
    };
    let chosen = q
        .all("group_by")
        .into_iter()
        .flat_map(|g| g.split(','))
        .map(str::trim)
        .map(str::to_string)
        .collect::<Vec<_>>();
    let (this_month, last_month) = months();
    let download = |format: &str| {
        let sep = if query.is_empty() { "" } else { "&" };
        format!("/console/reports/download?{query}{sep}format={format}")
    };
    let preset = |from: &str, to: &str, group: &str| {
        format!(
            "/console/reports?from={from}&to={to}&group_by={group}&tz={}",
            encode(q.filled("tz").unwrap_or("UTC"))
        )
    };
    let page = html! {
        p.muted {
            "Quick: "
            a href=(preset(&this_month.0, &this_month.1, "team")) { "this month by team" } " · "
            a #last-month-by-cost-centre href=(preset(&last_month.0, &last_month.1, "cost_centre")) { "last month by cost centre" } " · "
            a href=(preset(&last_month.0, &last_month.1, "model")) { "last month by model" }
        }
        form.row #report method="get" action="/console/reports" {
            label { "From (date or RFC 3339)" input name="from" value=(q.get("from").unwrap_or("")) placeholder=(this_month.0); }
            label { "To (not included)" input name="to" value=(q.get("to").unwrap_or("")) placeholder=(this_month.1); }
            label { "Time zone" input name="tz" value=(q.get("tz").unwrap_or("")) placeholder="UTC" list="zones"; }
            datalist #zones { @for z in ["UTC", "Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney"] { option value=(z) {} } }
            @if ctx.who.role != Role::TeamAdmin {
                label { "Team (optional)" input name="team" value=(q.get("team").unwrap_or("")) placeholder="all teams"; }
            }
            fieldset {
                legend { "Group by" }
                @for (value, label) in GROUPS {
                    label.check { input type="checkbox" name="group_by" value=(value) checked[chosen.iter().any(|c| c == value)]; (label) }
                }
            }
            button.primary type="submit" { "Show" }
        }
        @if report.is_ok() {
            p {
                a.button #download-csv href=(download("csv")) download { "Download CSV" } " "
                a.button #download-json href=(download("json")) download { "Download JSON" }
                span.muted { " The same as " code { (format!("GET /admin/v1/reports/spend?{query}")) } }
            }
        }
        (body)
    };
    Outcome::page("Reports", Section::Reports, page)
}

fn table(report: &Value) -> Markup {
    let groups: Vec<String> = report["group_by"]
        .as_array()
        .into_iter()
        .flatten()
        .map(html::text)
        .collect();
    let name_of = |row: &Value, group: &str| -> String {
        let key = match group {
            "team" => "team_name",
            "key" => "key_name",
            other => other,
        };
        match &row[key] {
            Value::Null => "(none)".to_string(),
            v => html::text(v),
        }
    };
    let totals = &report["totals"];
    html! {
        p.muted #period {
            (html::text(&report["from"])) " to " (html::text(&report["to"])) " (" (html::text(&report["timezone"])) "), "
            "in " (html::text(&report["currency"])) ", from " code { (html::text(&report["source"])) }
        }
        section.panel {
            table #report-table {
                thead { tr {
                    @for g in &groups { th { (g) } }
                    th.num { "Calls" } th.num.hide-phone { "Input tokens" } th.num.hide-phone { "Output tokens" } th.num { "Cost" }
                } }
                tbody {
                    @for row in rows(report) {
                        tr {
                            @for g in &groups { td { (name_of(row, g)) } }
                            td.num { (count(int(&row["requests"]))) }
                            td.num.hide-phone { (count(int(&row["input_tokens"]))) }
                            td.num.hide-phone { (count(int(&row["output_tokens"]))) }
                            td.num data-nanos=(int(&row["cost_nano_usd"])) { (usd(int(&row["cost_nano_usd"]))) }
                        }
                    }
                }
                tfoot { tr {
                    @if groups.is_empty() { } @else { th colspan=(groups.len()) { "Total" } }
                    th.num { (count(int(&totals["requests"]))) }
                    th.num.hide-phone { (count(int(&totals["input_tokens"]))) }
                    th.num.hide-phone { (count(int(&totals["output_tokens"]))) }
                    th.num #report-total data-nanos=(int(&totals["cost_nano_usd"])) { (usd(int(&totals["cost_nano_usd"]))) }
                } }
            }
            @if rows(report).next().is_none() { p.muted { "No calls in this period." } }
        }
    }
}

/// The admin API's answer itself, as a file.
pub async fn download(console: &Console, ctx: &Ctx, q: &Form) -> Outcome {
    let mut query = api_query(q);
    let format = match q.get("format") {
        Some("csv") => "csv",
        _ => "json",
    };
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str("format=");
    query.push_str(format);
    match console
        .reply(
            ctx,
            Method::GET,
            "/admin/v1/reports/spend",
            Some(&query),
            None,
        )
        .await
    {
        Ok(reply) => {
            let mut response = crate::admin_http::into_response(reply);
            // Spend is nobody else's: not kept by a browser or a proxy, never sniffed.
            super::super::security_headers(response.headers_mut());
            if format == "json" {
                let name = "attachment; filename=\"tollgate-spend.json\"";
                if let Ok(v) = http::HeaderValue::from_str(name) {
                    response
                        .headers_mut()
                        .insert(http::header::CONTENT_DISPOSITION, v);
                }
            }
            Outcome::Raw(response)
        }
        Err(error) => Outcome::problem(&error),
    }
}

/// (first day, first day of the next month) of this month and of the last, UTC.
fn months() -> ((String, String), (String, String)) {
    use chrono::{Datelike, NaiveDate, Utc};
    let today = Utc::now().date_naive();
    let first = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    let previous = first
        .checked_sub_months(chrono::Months::new(1))
        .unwrap_or(first);
    let f = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    ((f(first), f(next)), (f(previous), f(first)))
}
