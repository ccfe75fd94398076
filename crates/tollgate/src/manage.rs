//! `tollgate team …`, `key …`, `budget …`, `rate-limit …` and `session …` without `--server`:
//! control-plane changes made directly in the database (no admin token, no audit log: whoever
//! holds `DATABASE_URL` is the operator). A running gateway (this host or any replica on the
//! same database) picks them up within `store.key_refresh_ms`. With `--server` the same
//! commands go through the admin API instead ([`crate::remote`]).

use std::collections::BTreeMap;

use serde::Serialize;

use tollgate_core::config::Config;
use tollgate_store::{ApiKey, Store, Team, TeamUpdate};

use crate::admin::budgets::{self as budget_api, CreateBudget, SetRateLimit, UpdateBudget};
use crate::cli::{
    BudgetCommand, KeyCommand, Output, RateLimitCommand, SessionCommand, TeamCommand,
};
use crate::remote::{print_secret, print_session, print_sessions};
use crate::validate::{
    FieldErrors, check_labels, check_models, valid_cost_centre, valid_key_name, valid_team_name,
};

/// Opens the configured database, migrating an embedded SQLite file so first use just works
/// (and saying what to run when a Postgres database has no schema yet).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Ok(crate::app::open_store(config).await?)
}

pub async fn team(config: &Config, command: TeamCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    match command {
        TeamCommand::Create {
            name,
            cost_centre,
            allow_models,
            output,
        } => {
            let mut errors = FieldErrors::default();
            errors.check("name", Some(&name), valid_team_name);
            if let Some(cc) = &cost_centre {
                errors.check("cost_centre", Some(cc), valid_cost_centre);
            }
            let models = check_models(&mut errors, Some(&allow_models));
            errors
                .into_result()
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let team = store
                .create_team_with(&name, cost_centre.as_deref(), models.as_deref())
                .await?;
            print_teams(output, &[team]);
        }
        TeamCommand::List { output } => print_teams(output, &store.list_teams().await?),
        TeamCommand::Show { team, output } => {
            let team = find_team(&store, &team).await?;
            crate::remote::print_team(output, &serde_json::to_value(&team)?);
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
            let team = find_team(&store, &team).await?;
            let mut errors = FieldErrors::default();
            if let Some(cc) = &cost_centre {
                errors.check("cost_centre", Some(cc), valid_cost_centre);
            }
            let labels: BTreeMap<String, String> = labels.into_iter().collect();
            check_labels(&mut errors, &labels);
            errors
                .into_result()
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let update = TeamUpdate {
                cost_centre: match (cost_centre, no_cost_centre) {
                    (Some(cc), _) => Some(Some(cc)),
                    (None, true) => Some(None),
                    (None, false) => None,
                },
                labels: (!labels.is_empty() || clear_labels).then_some(labels),
                disabled: (disable || enable).then_some(disable),
            };
            let team = store
                .update_team(&team.id, &update)
                .await?
                .ok_or_else(|| anyhow::anyhow!("team '{}' vanished", team.name))?;
            crate::remote::print_team(output, &serde_json::to_value(&team)?);
        }
    }
    store.close().await;
    Ok(())
}

pub async fn key(config: &Config, command: KeyCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    match command {
        KeyCommand::Create {
            team,
            name,
            expires_in_days,
            allow_models,
            output,
        } => {
            let mut errors = FieldErrors::default();
            errors.check("name", Some(&name), valid_key_name);
            let models = check_models(&mut errors, Some(&allow_models));
            errors
                .into_result()
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let team = store
                .team(&team)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no team '{team}' (see `tollgate team list`)"))?;
            let expires =
                expires_in_days.map(|d| tollgate_core::time::now_ms() + i64::from(d) * 86_400_000);
            let issued = store
                .create_key_with(&team.id, &name, expires, models.as_deref())
                .await?;
            if output.json {
                let mut value = serde_json::to_value(&issued.key)?;
                value["secret"] = serde_json::Value::String(issued.secret);
                println!("{value}");
            } else {
                println!("{}", issued.secret);
                eprintln!(
                    "Key {} for team {} — the secret above is shown once; store it now.",
                    issued.key.id, team.name
                );
            }
        }
        KeyCommand::List { team, output } => {
            let team_id = match team {
                Some(t) => Some(
                    store
                        .team(&t)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no team '{t}'"))?
                        .id,
                ),
                None => None,
            };
            print_keys(output, &store.list_keys(team_id.as_deref()).await?);
        }
        KeyCommand::Revoke { id, output } => {
            let key = store
                .revoke_key(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no key '{id}' (see `tollgate key list`)"))?;
            print_keys(output, &[key]);
        }
        KeyCommand::Rotate {
            id,
            grace_seconds,
            output,
        } => {
            let grace_ms = i64::try_from(grace_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
            let (old, issued) = store
                .rotate_key(&id, grace_ms)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no key '{id}' (see `tollgate key list`)"))?;
            let mut value = serde_json::to_value(&issued.key)?;
            value["secret"] = serde_json::Value::String(issued.secret);
            let until = old.expires_at_ms.map_or("now".to_string(), |ms| {
                tollgate_core::budget::Calendar::default().describe(ms)
            });
            value["replaces"] = serde_json::to_value(&old)?;
            print_secret(
                output,
                &value,
                &format!(" The old key works until {until}."),
            );
        }
    }
    store.close().await;
    Ok(())
}

pub async fn session(config: &Config, command: SessionCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let utc = tollgate_core::budget::Calendar::default();
    match command {
        SessionCommand::List {
            team,
            from,
            to,
            limit,
            output,
        } => {
            let team = find_team(&store, &team).await?;
            let instant = |flag: &str, text: Option<String>, unbounded: i64| match text {
                None => Ok(unbounded),
                Some(t) => tollgate_store::parse_instant(&t, &utc).ok_or_else(|| {
                    anyhow::anyhow!("--{flag} '{t}' is not an RFC 3339 time or a YYYY-MM-DD date")
                }),
            };
            let (from, to) = (
                instant("from", from, i64::MIN)?,
                instant("to", to, i64::MAX)?,
            );
            let sessions = store
                .top_sessions(&team.id, from, to, None, i64::from(limit))
                .await?;
            let values: Vec<serde_json::Value> = sessions
                .iter()
                .map(|s| crate::admin::session_view(s, false))
                .collect();
            print_sessions(output, &values);
        }
        SessionCommand::Show { id, team, output } => {
            let team = match team {
                Some(team) => Some(find_team(&store, &team).await?.id),
                None => None,
            };
            let session = store
                .find_session(team.as_deref(), &id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no session '{id}'"))?;
            print_session(output, &crate::admin::session_view(&session, true));
        }
    }
    store.close().await;
    Ok(())
}

fn print_teams(output: Output, teams: &[Team]) {
    if output.json {
        return print_json(teams);
    }
    let rows: Vec<Vec<String>> = teams
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.cost_centre.clone().unwrap_or_default(),
                if t.disabled { "disabled" } else { "active" }.into(),
            ]
        })
        .collect();
    print_table(&["ID", "NAME", "COST CENTRE", "STATUS"], &rows);
}

fn print_keys(output: Output, keys: &[ApiKey]) {
    if output.json {
        return print_json(keys);
    }
    let now = tollgate_core::time::now_ms();
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let status = if k.revoked_at_ms.is_some() {
                "revoked"
            } else if k.expires_at_ms.is_some_and(|at| at <= now) {
                "expired"
            } else {
                "active"
            };
            vec![
                k.id.clone(),
                k.team_name.clone(),
                k.name.clone(),
                status.into(),
            ]
        })
        .collect();
    print_table(&["ID", "TEAM", "NAME", "STATUS"], &rows);
}

pub(crate) fn print_json<T: Serialize>(items: &[T]) {
    match serde_json::to_string(items) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("tollgate: cannot encode JSON: {e}"),
    }
}

/// A plain aligned table: what a human scans in a terminal.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

async fn find_team(store: &Store, team: &str) -> anyhow::Result<Team> {
    store
        .team(team)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no team '{team}'"))
}

pub(crate) fn number(text: &str) -> anyhow::Result<serde_json::Number> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("soft_ratio: '{text}' is not a number like 0.8"))
}

pub async fn budget(config: &Config, command: BudgetCommand) -> anyhow::Result<()> {
    let store = open_store(config)
        .await?
        .with_budget_calendar(config.budgets.calendar());
    let calendar = config.budgets.calendar();
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
            let team = find_team(&store, &team).await?;
            if let Some(k) = &key
                && store
                    .key(k)
                    .await?
                    .is_none_or(|found| found.team_id != team.id)
            {
                anyhow::bail!("key '{k}' is not a key of team '{}'", team.name);
            }
            let soft_ratio = soft_ratio.as_deref().map(number).transpose()?;
            let existing = store
                .list_budgets(Some(&team.id))
                .await?
                .into_iter()
                .find(|b| b.key_id == key && b.period.as_str() == period);
            let budget = match existing {
                Some(current) => {
                    let body = UpdateBudget {
                        period: Some(period),
                        limit_usd: Some(limit_usd),
                        soft_ratio,
                        session_cap_usd: session_cap_usd.map(Some),
                        reset: false,
                    };
                    let spec = budget_api::update_spec(&current, &body)
                        .map_err(|e| anyhow::anyhow!(e.message))?;
                    store
                        .update_budget(&current.id, &spec, false)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("budget {} vanished", current.id))?
                }
                None => {
                    let body = CreateBudget {
                        team: Some(team.id.clone()),
                        key: key.clone(),
                        period: Some(period),
                        limit_usd: Some(limit_usd),
                        soft_ratio,
                        session_cap_usd,
                    };
                    let spec = budget_api::create_spec(&body, &team.id, key.as_deref())
                        .map_err(|e| anyhow::anyhow!(e.message))?;
                    store.create_budget(&spec, calendar).await?
                }
            };
            let view = budget_api::show(&store, &budget, calendar).await?;
            print_budgets(output, &team.name, &[view], calendar);
        }
        BudgetCommand::Show { team, output } => {
            let team = find_team(&store, &team).await?;
            let mut views = Vec::new();
            for budget in store.list_budgets(Some(&team.id)).await? {
                views.push(budget_api::show(&store, &budget, calendar).await?);
            }
            print_budgets(output, &team.name, &views, calendar);
        }
    }
    store.close().await;
    Ok(())
}

pub(crate) fn print_budgets(
    output: Output,
    team: &str,
    views: &[serde_json::Value],
    calendar: tollgate_core::budget::Calendar,
) {
    if output.json {
        return print_json(views);
    }
    if views.is_empty() {
        println!("team '{team}' has no budgets");
        return;
    }
    println!(
        "{:<18} {:<6} {:<6} {:>12} {:>12} {:>12} {:>12}  RESETS",
        "ID", "SCOPE", "PERIOD", "LIMIT", "COMMITTED", "RESERVED", "REMAINING"
    );
    let text = |v: &serde_json::Value, f: &str| v[f].as_str().unwrap_or("-").to_string();
    for v in views {
        let resets = v["resets_at_ms"]
            .as_i64()
            .map_or("never".to_string(), |ms| calendar.describe(ms));
        println!(
            "{:<18} {:<6} {:<6} {:>12} {:>12} {:>12} {:>12}  {resets}",
            text(v, "id"),
            text(v, "scope"),
            text(v, "period"),
            format!("${}", text(v, "limit_usd")),
            format!("${}", text(v, "committed_usd")),
            format!("${}", text(v, "reserved_usd")),
            format!("${}", text(v, "remaining_usd")),
        );
    }
}

pub async fn rate_limit(config: &Config, command: RateLimitCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    match command {
        RateLimitCommand::Set {
            team,
            key,
            rpm,
            tpm,
        } => {
            let team = find_team(&store, &team).await?;
            let body = SetRateLimit {
                team: Some(team.id.clone()),
                key: key.clone(),
                requests_per_minute: rpm,
                tokens_per_minute: tpm,
            };
            let def = budget_api::rate_limit_def(&body, &team.id, key.as_deref())
                .map_err(|e| anyhow::anyhow!(e.message))?;
            store.set_rate_limit(&def).await?;
            println!("{}", budget_api::rate_limit_view(&def));
        }
    }
    store.close().await;
    Ok(())
}
