//! `tollgate team …` and `tollgate key …`: control-plane changes made directly in the database.
//! A running gateway (this host or any replica on the same database) picks them up within
//! `store.key_refresh_ms`.

use serde::Serialize;

use tollgate_core::config::Config;
use tollgate_store::{ApiKey, Store, Team};

use crate::cli::{KeyCommand, Output, TeamCommand};
use crate::validate::{
    FieldErrors, check_models, valid_cost_centre, valid_key_name, valid_team_name,
};

/// Opens the configured database, migrating an embedded SQLite file so first use just works.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.store.database_url).await?;
    if config.migrate_on_start() {
        store.migrate().await?;
    }
    Ok(store)
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

fn print_json<T: Serialize>(items: &[T]) {
    match serde_json::to_string(items) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("tollgate: cannot encode JSON: {e}"),
    }
}

/// A plain aligned table: what a human scans in a terminal.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
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
