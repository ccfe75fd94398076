//! `tollgate team|key|budget|rate-limit|report|session …`: each command once, carried out by
//! whichever control plane the user chose ([`crate::plane`]): the database in `DATABASE_URL`
//! as the local operator, or a gateway's admin API with `--server` and `--token`. Either way
//! the control plane checks the role and writes the audit log.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};

use tollgate_core::budget::Calendar;

use crate::admin_client::encode;
use crate::cli::{
    BudgetCommand, KeyCommand, RateLimitCommand, ReportArgs, ReportFormat, Scope, SessionCommand,
    TeamCommand,
};
use crate::plane::ControlPlane;
use crate::print::{
    print_budgets, print_keys, print_secret, print_session, print_sessions, print_table,
    print_team, print_teams, text,
};

/// A report that takes longer than this gets a progress line on stderr.
const QUIET_FOR: Duration = Duration::from_secs(1);

pub async fn team(plane: &impl ControlPlane, command: TeamCommand) -> anyhow::Result<()> {
    match command {
        TeamCommand::Create {
            name,
            cost_centre,
            allow_models,
            output,
        } => {
            let mut body = json!({"name": name, "cost_centre": cost_centre});
            if !allow_models.is_empty() {
                body["allowed_models"] = json!(allow_models);
            }
            let team = plane
                .json(Method::POST, "/admin/v1/teams", Some(&body))
                .await?;
            print_teams(output, &[team]);
        }
        TeamCommand::List { output } => {
            print_teams(output, &plane.list_all("/admin/v1/teams").await?)
        }
        TeamCommand::Show { team, output } => {
            let team = plane
                .get(&format!("/admin/v1/teams/{}", encode(&team)))
                .await?;
            print_team(output, &team);
        }
        TeamCommand::Update {
            team,
            cost_centre,
            no_cost_centre,
            labels,
            clear_labels,
            disable,
            enable,
            output,
        } => {
            let mut body = json!({});
            if let Some(cc) = cost_centre {
                body["cost_centre"] = cc.into();
            }
            if no_cost_centre {
                body["cost_centre"] = Value::Null;
            }
            if !labels.is_empty() || clear_labels {
                body["labels"] = labels
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
            if disable || enable {
                body["disabled"] = disable.into();
            }
            let path = format!("/admin/v1/teams/{}", encode(&team));
            let team = plane.json(Method::PATCH, &path, Some(&body)).await?;
            print_team(output, &team);
        }
    }
    Ok(())
}

pub async fn key(plane: &impl ControlPlane, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create {
            team,
            name,
            expires_in_days,
            allow_models,
            output,
        } => {
            let mut body = json!({"name": name});
            if let Some(days) = expires_in_days {
                let now = tollgate_core::time::now_ms() / 1000;
                body["expires_at"] = (now + i64::from(days) * 86_400).into();
            }
            if !allow_models.is_empty() {
                body["allowed_models"] = json!(allow_models);
            }
            let path = format!("/admin/v1/teams/{}/keys", encode(&team));
            let issued = plane.json(Method::POST, &path, Some(&body)).await?;
            print_secret(output, &issued, "");
        }
        KeyCommand::List { team, output } => {
            let path = match team {
                Some(t) => format!("/admin/v1/teams/{}/keys", encode(&t)),
                None => "/admin/v1/keys".to_string(),
            };
            print_keys(output, &plane.list_all(&path).await?);
        }
        KeyCommand::Revoke { id, output } => {
            let path = format!("/admin/v1/keys/{}", encode(&id));
            let key = plane.json(Method::DELETE, &path, None).await?;
            print_keys(output, &[key]);
        }
        KeyCommand::Rotate {
            id,
            grace_seconds,
            output,
        } => {
            let path = format!("/admin/v1/keys/{}/rotate", encode(&id));
            let body = json!({"grace_seconds": grace_seconds});
            let rotated = plane.json(Method::POST, &path, Some(&body)).await?;
            let until = rotated["replaces"]["expires_at_ms"]
                .as_i64()
                .map_or("now".to_string(), |ms| Calendar::default().describe(ms));
            print_secret(
                output,
                &rotated,
                &format!(" The old key works until {until}."),
            );
        }
    }
    Ok(())
}

/// `budget set` creates the team's (or key's) budget for the period, or changes the one there
/// is; `budget show` lists them with what is committed, reserved and left.
pub async fn budget(plane: &impl ControlPlane, command: BudgetCommand) -> anyhow::Result<()> {
    match command {
        BudgetCommand::Set {
            scope: Scope { team, key },
            period,
            limit_usd,
            soft_ratio,
            session_cap_usd,
            output,
        } => {
            let mut body = json!({"limit_usd": limit_usd});
            if let Some(ratio) = soft_ratio {
                let ratio: serde_json::Number = ratio.parse().map_err(|_| {
                    anyhow::anyhow!("--soft-ratio '{ratio}' is not a number like 0.8")
                })?;
                body["soft_ratio"] = Value::Number(ratio);
            }
            if let Some(cap) = session_cap_usd {
                body["session_cap_usd"] = cap.into();
            }
            let listed = budgets_of(plane, &team).await?;
            let existing = listed.iter().find(|b| {
                b["key_id"].as_str() == key.as_deref() && b["period"].as_str() == Some(&period)
            });
            let view = match existing.and_then(|b| b["id"].as_str()) {
                Some(id) => {
                    let path = format!("/admin/v1/budgets/{}", encode(id));
                    plane.json(Method::PATCH, &path, Some(&body)).await?
                }
                None => {
                    body["team"] = team.clone().into();
                    body["period"] = period.into();
                    if let Some(k) = key {
                        body["key"] = k.into();
                    }
                    plane
                        .json(Method::POST, "/admin/v1/budgets", Some(&body))
                        .await?
                }
            };
            print_budgets(output, &team, &[view]);
        }
        BudgetCommand::Show { team, output } => {
            print_budgets(output, &team, &budgets_of(plane, &team).await?);
        }
    }
    Ok(())
}

async fn budgets_of(plane: &impl ControlPlane, team: &str) -> anyhow::Result<Vec<Value>> {
    Ok(plane
        .list_all(&format!("/admin/v1/budgets?team={}", encode(team)))
        .await?)
}

pub async fn rate_limit(
    plane: &impl ControlPlane,
    command: RateLimitCommand,
) -> anyhow::Result<()> {
    let RateLimitCommand::Set {
        scope: Scope { team, key },
        rpm,
        tpm,
    } = command;
    let body =
        json!({"team": team, "key": key, "requests_per_minute": rpm, "tokens_per_minute": tpm});
    let view = plane
        .json(Method::PUT, "/admin/v1/rate-limits", Some(&body))
        .await?;
    println!("{view}");
    Ok(())
}

pub async fn session(plane: &impl ControlPlane, command: SessionCommand) -> anyhow::Result<()> {
    match command {
        SessionCommand::List {
            team,
            from,
            to,
            limit,
            output,
        } => {
            let mut path = format!("/admin/v1/teams/{}/sessions?limit={limit}", encode(&team));
            for (name, value) in [("from", from), ("to", to)] {
                if let Some(v) = value {
                    path.push_str(&format!("&{name}={}", encode(&v)));
                }
            }
            let page = plane.get(&path).await?;
            let sessions = page["data"].as_array().cloned().unwrap_or_default();
            print_sessions(output, &sessions);
        }
        SessionCommand::Show { id, team, output } => {
            let path = match team {
                Some(team) => format!("/admin/v1/teams/{}/sessions/{}", encode(&team), encode(&id)),
                None => format!("/admin/v1/sessions/{}", encode(&id)),
            };
            print_session(output, &plane.get(&path).await?);
        }
    }
    Ok(())
}

/// `tollgate report`: `GET /admin/v1/reports/spend` for `--month` (or `--from`/`--to`), as
/// CSV, JSON or a table.
pub async fn report(plane: &impl ControlPlane, args: ReportArgs) -> anyhow::Result<()> {
    let format = match args.format {
        ReportFormat::Json | ReportFormat::Table => "json",
        ReportFormat::Csv => "csv",
    };
    let mut path = format!(
        "/admin/v1/reports/spend?group_by={}&tz={}&format={format}",
        encode(&args.group_by),
        encode(&args.tz)
    );
    if let Some(month) = &args.month {
        let (from, to) = month_dates(month)
            .ok_or_else(|| anyhow::anyhow!("--month '{month}' is not a month like 2026-11"))?;
        path.push_str(&format!("&from={from}&to={to}"));
    }
    for (name, value) in [("team", &args.team), ("from", &args.from), ("to", &args.to)] {
        if let Some(value) = value {
            path.push_str(&format!("&{name}={}", encode(value)));
        }
    }
    if args.total_row {
        path.push_str("&total_row=true");
    }
    let text = with_progress(plane.text(&path)).await?;
    match args.format {
        ReportFormat::Json => println!("{text}"),
        ReportFormat::Csv => print!("{text}"),
        ReportFormat::Table => print_report_table(&text)?,
    }
    Ok(())
}

/// The report's JSON as a table with a TOTAL line, values as they are (the CSV's formula
/// defusing is for spreadsheets). The integer cost column is for machines and is left out.
fn print_report_table(json_text: &str) -> anyhow::Result<()> {
    let report: Value = serde_json::from_str(json_text)?;
    let columns: Vec<&str> = report["columns"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let shown: Vec<&str> = columns
        .into_iter()
        .filter(|c| *c != "cost_nano_usd")
        .collect();
    let cells = |row: &Value| -> Vec<String> { shown.iter().map(|c| text(row, c)).collect() };
    let grouped = report["group_by"].as_array().is_some_and(|g| !g.is_empty());
    let rows: Vec<Vec<String>> = if grouped {
        let mut rows: Vec<Vec<String>> = report["data"]
            .as_array()
            .map(|data| data.iter().map(cells).collect())
            .unwrap_or_default();
        let mut total = cells(&report["totals"]);
        if let Some(first) = total.first_mut() {
            *first = "TOTAL".into();
        }
        rows.push(total);
        rows
    } else {
        vec![cells(&report["totals"])]
    };
    print_table(&shown, rows);
    eprintln!(
        "{} to {} ({}), in {}",
        text(&report, "first_day"),
        text(&report, "last_day"),
        text(&report, "timezone"),
        text(&report, "currency")
    );
    Ok(())
}

/// `2026-11` → (`2026-11-01`, `2026-12-01`).
fn month_dates(month: &str) -> Option<(String, String)> {
    let first = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").ok()?;
    if month.len() != 7 {
        return None;
    }
    let next = first.checked_add_months(chrono::Months::new(1))?;
    Some((first.to_string(), next.to_string()))
}

/// Awaits `work`, telling stderr how long it has been waiting once that passes a second (over
/// a terminal the line updates in place; in a log, one line every ten seconds).
async fn with_progress<T>(work: impl Future<Output = T>) -> T {
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + QUIET_FOR, QUIET_FOR);
    let mut shown = false;
    tokio::pin!(work);
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = ticks.tick() => {
                let secs = started.elapsed().as_secs();
                if terminal {
                    eprint!("\rbuilding the report… {secs} s");
                } else if secs == 1 || secs.is_multiple_of(10) {
                    eprintln!("building the report… {secs} s");
                }
                shown = true;
            }
        }
    };
    if shown && terminal {
        eprintln!(
            "\rbuilding the report… done in {} s",
            started.elapsed().as_secs()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_become_their_first_days() {
        assert_eq!(
            month_dates("2026-12"),
            Some(("2026-12-01".into(), "2027-01-01".into()))
        );
        assert_eq!(month_dates("2026-13"), None);
        assert_eq!(month_dates("26-1"), None);
        assert_eq!(month_dates("2026-1"), None);
    }
}
