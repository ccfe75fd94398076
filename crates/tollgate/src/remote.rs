//! `tollgate team|key|budget|rate-limit|report|session … --server URL --token tga-…`: the same
//! commands as [`crate::manage`], made through the admin API instead of in the database, so
//! they work from any machine and with any role's token (the API decides what a role may do,
//! and audits every change). Output is the same: tables for people, `--json` for scripts.

use http::Method;
use serde_json::{Value, json};

use tollgate_core::budget::Calendar;

use crate::admin_client::{AdminClient, encode};
use crate::cli::{
    BudgetCommand, KeyCommand, Output, RateLimitCommand, SessionCommand, TeamCommand,
};
use crate::manage::{print_budgets, print_json, print_table};
use crate::report_cli::{ReportArgs, ReportFormat};

/// The client for `--server`, which needs a token.
pub fn connect(server: &str, token: Option<&str>) -> anyhow::Result<AdminClient> {
    let token = token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        anyhow::anyhow!("--server needs an admin token: --token tga-… or TOLLGATE_ADMIN_TOKEN")
    })?;
    Ok(AdminClient::new(server, token)?)
}

pub async fn team(api: &AdminClient, command: TeamCommand) -> anyhow::Result<()> {
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
            let team = api
                .json(Method::POST, "/admin/v1/teams", Some(&body))
                .await?;
            print_teams(output, &[team]);
        }
        TeamCommand::List { output } => {
            print_teams(output, &api.list_all("/admin/v1/teams").await?)
        }
        TeamCommand::Show { team, output } => {
            let team = api
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
            let team = api.json(Method::PATCH, &path, Some(&body)).await?;
            print_team(output, &team);
        }
    }
    Ok(())
}

pub async fn key(api: &AdminClient, command: KeyCommand) -> anyhow::Result<()> {
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
            let issued = api.json(Method::POST, &path, Some(&body)).await?;
            print_secret(output, &issued, "");
        }
        KeyCommand::List { team, output } => {
            let path = match team {
                Some(t) => format!("/admin/v1/teams/{}/keys", encode(&t)),
                None => "/admin/v1/keys".to_string(),
            };
            print_keys(output, &api.list_all(&path).await?);
        }
        KeyCommand::Revoke { id, output } => {
            let path = format!("/admin/v1/keys/{}", encode(&id));
            let key = api.json(Method::DELETE, &path, None).await?;
            print_keys(output, &[key]);
        }
        KeyCommand::Rotate {
            id,
            grace_seconds,
            output,
        } => {
            let path = format!("/admin/v1/keys/{}/rotate", encode(&id));
            let body = json!({"grace_seconds": grace_seconds});
            let rotated = api.json(Method::POST, &path, Some(&body)).await?;
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

pub async fn budget(api: &AdminClient, command: BudgetCommand) -> anyhow::Result<()> {
    match command {
        BudgetCommand::Set {
            team,
            key,
            period,
            limit_usd,
            soft_ratio,
            session_cap_usd,
            output,
        } => {
            let soft_ratio = soft_ratio
                .as_deref()
                .map(crate::manage::number)
                .transpose()?;
            let listed = budgets_of(api, &team).await?;
            let existing = listed.iter().find(|b| {
                b["key_id"].as_str() == key.as_deref() && b["period"].as_str() == Some(&period)
            });
            let mut body = json!({"limit_usd": limit_usd});
            if let Some(ratio) = soft_ratio {
                body["soft_ratio"] = Value::Number(ratio);
            }
            if let Some(cap) = session_cap_usd {
                body["session_cap_usd"] = cap.into();
            }
            let view = match existing.and_then(|b| b["id"].as_str()) {
                Some(id) => {
                    let path = format!("/admin/v1/budgets/{}", encode(id));
                    api.json(Method::PATCH, &path, Some(&body)).await?
                }
                None => {
                    body["team"] = team.clone().into();
                    body["period"] = period.into();
                    if let Some(k) = key {
                        body["key"] = k.into();
                    }
                    api.json(Method::POST, "/admin/v1/budgets", Some(&body))
                        .await?
                }
            };
            let calendar = calendar_of(&view);
            print_budgets(output, &team, &[view], calendar);
        }
        BudgetCommand::Show { team, output } => {
            let views = budgets_of(api, &team).await?;
            let calendar = views.first().map_or_else(Calendar::default, calendar_of);
            print_budgets(output, &team, &views, calendar);
        }
    }
    Ok(())
}

async fn budgets_of(api: &AdminClient, team: &str) -> anyhow::Result<Vec<Value>> {
    Ok(api
        .list_all(&format!("/admin/v1/budgets?team={}", encode(team)))
        .await?)
}

/// The zone a budget's windows are in, to describe its reset time the way the server would.
fn calendar_of(view: &Value) -> Calendar {
    view["timezone"]
        .as_str()
        .and_then(Calendar::new)
        .unwrap_or_default()
}

pub async fn rate_limit(api: &AdminClient, command: RateLimitCommand) -> anyhow::Result<()> {
    let RateLimitCommand::Set {
        team,
        key,
        rpm,
        tpm,
    } = command;
    let body =
        json!({"team": team, "key": key, "requests_per_minute": rpm, "tokens_per_minute": tpm});
    let view = api
        .json(Method::PUT, "/admin/v1/rate-limits", Some(&body))
        .await?;
    println!("{view}");
    Ok(())
}

/// `tollgate report --month …` through `GET /admin/v1/reports/spend`: the month's first day
/// and the next month's, local to `--tz` (the server reads dates in `tz`).
pub async fn report(api: &AdminClient, args: ReportArgs) -> anyhow::Result<()> {
    let (from, to) = month_dates(&args.month)
        .ok_or_else(|| anyhow::anyhow!("--month '{}' is not a month like 2026-11", args.month))?;
    let format = match args.format {
        ReportFormat::Json => "json",
        ReportFormat::Csv | ReportFormat::Table => "csv",
    };
    let mut path = format!(
        "/admin/v1/reports/spend?from={from}&to={to}&group_by={}&tz={}&format={format}",
        encode(&args.group_by),
        encode(&args.tz)
    );
    if let Some(team) = &args.team {
        path.push_str(&format!("&team={}", encode(team)));
    }
    match args.format {
        ReportFormat::Json => println!("{}", api.get(&path).await?),
        ReportFormat::Csv => print!("{}", api.text(&path).await?),
        ReportFormat::Table => {
            let csv = api.text(&path).await?;
            let grid = parse_csv(&csv);
            // The integer cost is for machines; the table keeps the dollars, like `report_cli`.
            let hide = grid
                .first()
                .and_then(|header| header.iter().position(|h| h == "cost_nano_usd"));
            let shown: Vec<Vec<String>> = grid
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .enumerate()
                        .filter(|(i, _)| Some(*i) != hide)
                        .map(|(_, cell)| cell)
                        .collect()
                })
                .collect();
            if let Some((header, rows)) = shown.split_first() {
                let header: Vec<&str> = header.iter().map(String::as_str).collect();
                print_table(&header, rows);
            }
        }
    }
    Ok(())
}

/// `2026-11` → (`2026-11-01`, `2026-12-01`).
fn month_dates(month: &str) -> Option<(String, String)> {
    let (year, m) = month.split_once('-')?;
    if year.len() != 4 || m.len() != 2 {
        return None;
    }
    let (year, m): (u32, u32) = (year.parse().ok()?, m.parse().ok()?);
    if !(1..=12).contains(&m) {
        return None;
    }
    let (next_year, next) = if m == 12 {
        (year + 1, 1)
    } else {
        (year, m + 1)
    };
    Some((
        format!("{year:04}-{m:02}-01"),
        format!("{next_year:04}-{next:02}-01"),
    ))
}

/// RFC 4180 cells (the report's CSV: quoted where needed, CRLF line ends). A leading `'` that
/// defused a formula for spreadsheets is kept: a terminal shows it as sent.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    rows
}

pub async fn session(api: &AdminClient, command: SessionCommand) -> anyhow::Result<()> {
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
            let page = api.get(&path).await?;
            let sessions = page["data"].as_array().cloned().unwrap_or_default();
            print_sessions(output, &sessions);
        }
        SessionCommand::Show { id, team, output } => {
            let path = match team {
                Some(team) => format!("/admin/v1/teams/{}/sessions/{}", encode(&team), encode(&id)),
                None => format!("/admin/v1/sessions/{}", encode(&id)),
            };
            let session = api.get(&path).await?;
            print_session(output, &session);
        }
    }
    Ok(())
}

fn text(v: &Value, field: &str) -> String {
    match &v[field] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Teams as JSON values (from the API, or a store `Team` serialised) as a table.
pub fn print_teams(output: Output, teams: &[Value]) {
    if output.json {
        return print_json(teams);
    }
    let rows: Vec<Vec<String>> = teams
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
    print_table(&["ID", "NAME", "COST CENTRE", "STATUS"], &rows);
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
    let rows: Vec<Vec<String>> = keys
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
    print_table(&["ID", "TEAM", "NAME", "STATUS"], &rows);
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

pub fn print_sessions(output: Output, sessions: &[Value]) {
    if output.json {
        return print_json(sessions);
    }
    let calendar = Calendar::default();
    let rows: Vec<Vec<String>> = sessions
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
    print_table(&["SESSION", "REQUESTS", "COST", "LAST SEEN"], &rows);
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
    if let Some(tools) = session["tool_calls"].as_object().filter(|t| !t.is_empty()) {
        let rows: Vec<Vec<String>> = tools
            .iter()
            .map(|(name, calls)| vec![name.clone(), calls.to_string()])
            .collect();
        print_table(&["TOOL", "CALLS"], &rows);
    }
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
    }

    #[test]
    fn csv_cells_come_back_whole() {
        let grid = parse_csv("a,\"b,c\",\"say \"\"hi\"\"\"\r\n1,,'=x\r\n");
        assert_eq!(
            grid,
            vec![vec!["a", "b,c", "say \"hi\""], vec!["1", "", "'=x"]]
        );
    }
}
