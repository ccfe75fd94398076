//! Overview (admin, finance): this month's spend and where it is heading, spend per day by
//! team, by cost centre and by model, the budgets nearest their limit, and the calls that did
//! not succeed. Every amount comes from the spend report (the daily rollups), so this page
//! costs a few indexed reads however large the ledger is.

use std::collections::BTreeMap;

use maud::{Markup, html};
use serde_json::Value;

use tollgate_store::Role;

use super::super::chart::{self, Stacked};
use super::super::html::{self, Section, count, int, team_href, trusted, usd};
use super::super::{Console, Ctx, Outcome};
use super::team::{budget_meter, setup_snippets};

pub async fn page(console: &Console, ctx: &Ctx) -> Outcome {
    if ctx.who.role == Role::TeamAdmin {
        return Outcome::Redirect {
            location: super::super::home(&ctx.who),
            flash: None,
        };
    }
    match build(console, ctx).await {
        Ok(body) => Outcome::page("Overview", Section::Overview, body),
        Err(error) => Outcome::problem(&error),
    }
}

async fn build(console: &Console, ctx: &Ctx) -> Result<Markup, tollgate_core::ApiError> {
    let report = |group: &str| {
        let query = format!("group_by={group}");
        async move {
            console
                .get(ctx, "/admin/v1/reports/spend", Some(&query))
                .await
        }
    };
    let by_team_day = report("team,day").await?;
    let teams = console
        .get(ctx, "/admin/v1/teams", Some("limit=1000"))
        .await?;
    if teams["data"].as_array().is_none_or(Vec::is_empty) {
        return Ok(no_teams(ctx));
    }
    let by_centre = report("cost_centre").await?;
    let by_model = report("model").await?;
    let refusals = console.get(ctx, "/admin/v1/reports/refusals", None).await?;
    let budgets = console
        .get(ctx, "/admin/v1/budgets", Some("limit=1000"))
        .await?;

    let now = tollgate_core::time::now_ms();
    let from = parse_ms(&by_team_day["from"]).unwrap_or(now);
    let to = parse_ms(&by_team_day["to"]).unwrap_or(now);
    let month_to_date = int(&by_team_day["totals"]["cost_nano_usd"]);
    let forecast = forecast(month_to_date, from, to, now);

    // Spend per day, one series per team.
    let days = month_days(&by_team_day);
    let mut per_team: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for row in rows(&by_team_day) {
        let Some(d) = days.iter().position(|day| row["day"] == day.as_str()) else {
            continue;
        };
        let values = per_team
            .entry(html::text(&row["team_name"]))
            .or_insert_with(|| vec![0; days.len()]);
        if let Some(slot) = values.get_mut(d) {
            *slot += int(&row["cost_nano_usd"]);
        }
    }
    let series = chart::top_series(per_team.into_iter().collect(), days.len());
    let named = |report: &Value, key: &str| -> Vec<(String, i64)> {
        let mut items: Vec<(String, i64)> = rows(report)
            .map(|r| {
                let name = match &r[key] {
                    Value::Null => "(none)".to_string(),
                    v => html::text(v),
                };
                (name, int(&r["cost_nano_usd"]))
            })
            .collect();
        items.sort_by_key(|(name, amount)| (std::cmp::Reverse(*amount), name.clone()));
        items.truncate(10);
        items
    };
    let centres = named(&by_centre, "cost_centre");
    let models = named(&by_model, "model");
    // Refusals by reason (summed over teams), most first.
    let mut failed: Vec<(String, i64)> = Vec::new();
    for r in rows(&refusals) {
        let reason = html::text(&r["reason"]);
        match failed.iter_mut().find(|(name, _)| *name == reason) {
            Some(slot) => slot.1 += int(&r["requests"]),
            None => failed.push((reason, int(&r["requests"]))),
        }
    }
    failed.sort_by_key(|(name, n)| (std::cmp::Reverse(*n), name.clone()));

    let team_names = super::team_names(&teams);
    let mut budget_rows: Vec<&Value> = budgets["data"].as_array().into_iter().flatten().collect();
    // Nearest their limit first: (committed + reserved) / limit, compared without division.
    budget_rows.sort_by(|a, b| {
        let used =
            |x: &Value| i128::from(int(&x["committed_nano_usd"]) + int(&x["reserved_nano_usd"]));
        let limit = |x: &Value| i128::from(int(&x["limit_nano_usd"]).max(1));
        (used(b) * limit(a)).cmp(&(used(a) * limit(b)))
    });
    budget_rows.truncate(5);

    let total_requests = int(&by_team_day["totals"]["requests"]);
    Ok(html! {
        div.grid {
            div.card #month-to-date {
                div.muted { "Spend this month (" (html::text(&by_team_day["first_day"])) " to today, " (html::text(&by_team_day["timezone"])) ")" }
                div.big data-nanos=(month_to_date) { (usd(month_to_date)) }
                div.muted { (html::calls(total_requests)) }
            }
            div.card #forecast {
                div.muted { "Forecast to month end (linear)" }
                div.big data-nanos=(forecast) { (usd(forecast)) }
                div.muted { "this month's pace, carried to " (html::text(&by_team_day["last_day"])) }
            }
        }
        @if total_requests == 0 {
            (setup_snippets(&ctx.base_url, None))
        }
        section.panel {
            h2 { "Spend per day, by team" }
            (trusted(chart::stacked(&Stacked { days: &days, series: &series, label: "Spend per day this month, stacked by team" })))
            (trusted(chart::legend(&series)))
        }
        div.grid {
            section.panel {
                h2 { "By cost centre" }
                @if centres.is_empty() { p.muted { "No spend this month." } }
                @else { (trusted(chart::bars(&centres, "Spend this month by cost centre"))) }
            }
            section.panel {
                h2 { "By model" }
                @if models.is_empty() { p.muted { "No spend this month." } }
                @else { (trusted(chart::bars(&models, "Spend this month by model"))) }
            }
        }
        section.panel #budgets {
            h2 { "Budgets nearest their limit" }
            @if budget_rows.is_empty() {
                p.muted { "No budgets yet. Open a team to set one: a hard limit refuses calls before they overspend." }
            } @else {
                table {
                    thead { tr { th { "Team" } th { "Scope" } th { "Period" } th.num { "Used" } th.num { "Limit" } th { "" } } }
                    tbody {
                        @for b in &budget_rows {
                            @let team_id = html::text(&b["team_id"]);
                            tr {
                                td { a href=(team_href(&team_id)) { (team_names.get(&team_id).cloned().unwrap_or(team_id.clone())) } }
                                td { (html::text(&b["scope"])) @if !b["key_id"].is_null() { " " code { (html::text(&b["key_id"])) } } }
                                td { (html::text(&b["period"])) }
                                td.num { (usd(int(&b["committed_nano_usd"]) + int(&b["reserved_nano_usd"]))) }
                                td.num { (usd(int(&b["limit_nano_usd"]))) }
                                td { (budget_meter(b)) }
                            }
                        }
                    }
                }
            }
        }
        section.panel #refused {
            h2 { "Requests refused, by reason" }
            @if failed.is_empty() {
                p.muted { "None this month." }
            } @else {
                table {
                    thead { tr { th { "Reason" } th { "Meaning" } th.num { "Requests" } } }
                    tbody {
                        @for (reason, n) in &failed {
                            tr { td { code { (reason) } } td { (reason_meaning(reason)) } td.num { (count(*n)) } }
                        }
                    }
                }
            }
        }
    })
}

fn no_teams(ctx: &Ctx) -> Markup {
    html::empty_state(
        "No teams yet",
        html! {
            p { "tollgate attributes every call to a team. Create the first one on the "
                a href="/console/teams" { "Teams" } " page"
                @if ctx.who.role != Role::Admin { " (an admin can)" }
                ", or from a shell:" }
            pre { "tollgate team create search --cost-centre CC-1234\ntollgate key issue search --name ci" }
            p { "Then point Codex or an OpenAI SDK at this gateway with the team's key (the team page shows how)." }
        },
    )
}

/// Month-to-date spend carried linearly to the end of the period: spend × (period / elapsed),
/// in integer nano-USD.
pub fn forecast(spent: i64, from_ms: i64, to_ms: i64, now_ms: i64) -> i64 {
    let elapsed = (now_ms - from_ms).max(1);
    let whole = (to_ms - from_ms).max(1);
    if now_ms >= to_ms {
        return spent;
    }
    i64::try_from(i128::from(spent) * i128::from(whole) / i128::from(elapsed)).unwrap_or(i64::MAX)
}

fn parse_ms(value: &Value) -> Option<i64> {
    value
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
}

/// Every day of the report's period, `YYYY-MM-DD`.
fn month_days(report: &Value) -> Vec<String> {
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    let (Some(first), Some(last)) = (parse(&report["first_day"]), parse(&report["last_day"]))
    else {
        return Vec::new();
    };
    first
        .iter_days()
        .take_while(|d| *d <= last)
        .take(62)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .collect()
}

pub fn rows(report: &Value) -> impl Iterator<Item = &Value> {
    report["data"].as_array().into_iter().flatten()
}

fn reason_meaning(reason: &str) -> &'static str {
    match reason {
        "budget" => "over a hard budget limit",
        "session_cap" => "over a session's spending cap",
        "rate_limit" => "over a rate limit",
        "model_not_allowed" => "a model the team or key may not use",
        "model_not_priced" => "a model without a price (never billed blind)",
        "session_loop" => "a session flagged as looping",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecast_carries_the_pace_to_the_end_of_the_period() {
        let day = 86_400_000;
        // $10 after 10 of 30 days → $30.
        assert_eq!(
            forecast(10_000_000_000, 0, 30 * day, 10 * day),
            30_000_000_000
        );
        // After the period: what was spent.
        assert_eq!(forecast(5, 0, day, 2 * day), 5);
        // At its very start: no division by zero.
        assert!(forecast(1, 0, day, 0) > 0);
    }
}
