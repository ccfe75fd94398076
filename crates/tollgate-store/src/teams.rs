//! Teams: the unit costs are attributed to, each with an optional cost centre for finance.

use sqlx::Row;
use sqlx::any::AnyRow;
use tollgate_core::time::now_ms;

use crate::error::{Result, StoreError, conflict_on_unique};
use crate::store::{Store, bump_revision};

/// Longest team, key or cost-centre name accepted.
const MAX_NAME_CHARS: usize = 128;

/// A team as the admin API and reports show it.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub cost_centre: Option<String>,
    pub disabled: bool,
    pub created_at_ms: i64,
    /// Models the team's keys may call (`gpt-5*` matches a prefix); `None`: all.
    pub allowed_models: Option<Vec<String>>,
    /// Free-form labels for finance's own grouping (`{"org": "payments"}`).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A change to a team: absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamUpdate {
    /// `Some(None)` removes the cost centre.
    pub cost_centre: Option<Option<String>>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    pub disabled: Option<bool>,
}

const TEAM_COLUMNS: &str = "id, name, cost_centre, disabled, created_at_ms, allowed_models, labels";

impl Store {
    /// Creates a team. Names are unique (exact match); a taken name is `Conflict`, decided by the
    /// unique index rather than a racy lookup first.
    pub async fn create_team(&self, name: &str, cost_centre: Option<&str>) -> Result<Team> {
        self.create_team_with(name, cost_centre, None).await
    }

    /// Creates a team whose keys may call only `allowed_models` (stored form), in one row.
    pub async fn create_team_with(
        &self,
        name: &str,
        cost_centre: Option<&str>,
        allowed_models: Option<&str>,
    ) -> Result<Team> {
        let name = clean_name("team name", name)?;
        if name.starts_with("tm_") {
            // `team()` accepts an id or a name; a name shaped like an id would be ambiguous.
            return Err(StoreError::Invalid(format!(
                "team name {name:?} must not start with \"tm_\" (reserved for team ids)"
            )));
        }
        let cost_centre = match cost_centre.map(str::trim).filter(|c| !c.is_empty()) {
            Some(c) => Some(clean_name("cost centre", c)?),
            None => None,
        };
        let team = Team {
            id: crate::budgets::new_id("tm_"),
            name,
            cost_centre,
            disabled: false,
            created_at_ms: now_ms(),
            allowed_models: models_list(allowed_models),
            labels: std::collections::BTreeMap::new(),
        };
        let mut tx = self.pool.begin().await?;
        // The revision is bumped first: a write takes SQLite's write lock at once, where a read
        // first would have to upgrade its lock and can fail as busy under a concurrent write.
        let rev = bump_revision(&mut tx).await?;
        // Names that differ only in case would look alike on every report: one team each.
        let look_alike: Option<String> = sqlx::query_scalar(
            "SELECT name FROM teams WHERE LOWER(name) = LOWER($1) AND name <> $1",
        )
        .bind(&team.name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = look_alike {
            return Err(StoreError::Conflict(format!(
                "a team named {existing:?} already exists; team names must differ by more than case"
            )));
        }
        sqlx::query(
            "INSERT INTO teams (id, name, cost_centre, disabled, created_at_ms, updated_at_ms, rev, allowed_models) \
             VALUES ($1, $2, $3, 0, $4, $4, $5, $6)",
        )
        .bind(&team.id)
        .bind(&team.name)
        .bind(team.cost_centre.as_deref())
        .bind(team.created_at_ms)
        .bind(rev)
        .bind(allowed_models)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("a team named {:?} already exists", team.name)))?;
        tx.commit().await?;
        Ok(team)
    }

    /// Every team, ordered by name.
    pub async fn list_teams(&self) -> Result<Vec<Team>> {
        let sql = format!("SELECT {TEAM_COLUMNS} FROM teams ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(team_from_row).collect()
    }

    /// Changes a team's cost centre, labels or disabled flag. A disabled team's keys are refused
    /// on every replica within `store.key_refresh_ms`. `None` if there is no such team.
    pub async fn update_team(&self, id: &str, update: &TeamUpdate) -> Result<Option<Team>> {
        let cost_centre = match &update.cost_centre {
            Some(Some(c)) if !c.trim().is_empty() => Some(Some(clean_name("cost centre", c)?)),
            Some(_) => Some(None),
            None => None,
        };
        let labels = update
            .labels
            .as_ref()
            .map(|l| serde_json::to_string(l).unwrap_or_else(|_| "{}".into()));
        let mut tx = self.pool.begin().await?;
        let rev = bump_revision(&mut tx).await?;
        let done = sqlx::query(
            "UPDATE teams SET \
             cost_centre = CASE WHEN $2 = 1 THEN $3 ELSE cost_centre END, \
             labels = CASE WHEN $4 = 1 THEN $5 ELSE labels END, \
             disabled = CASE WHEN $6 = 1 THEN $7 ELSE disabled END, \
             updated_at_ms = $8, rev = $9 WHERE id = $1",
        )
        .bind(id)
        .bind(i64::from(cost_centre.is_some()))
        .bind(cost_centre.clone().flatten())
        .bind(i64::from(labels.is_some()))
        .bind(labels)
        .bind(i64::from(update.disabled.is_some()))
        .bind(i64::from(update.disabled.unwrap_or(false)))
        .bind(now_ms())
        .bind(rev)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        tx.commit().await?;
        self.team(id).await
    }

    /// A team by id (`tm_…`) or by exact name.
    pub async fn team(&self, id_or_name: &str) -> Result<Option<Team>> {
        let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE id = $1 OR name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_or_name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(team_from_row).transpose()
    }
}

fn team_from_row(row: &AnyRow) -> Result<Team> {
    Ok(Team {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        cost_centre: row.try_get("cost_centre")?,
        disabled: flag(row.try_get("disabled")?),
        created_at_ms: row.try_get("created_at_ms")?,
        allowed_models: models_list(
            row.try_get::<Option<String>, _>("allowed_models")?
                .as_deref(),
        ),
        labels: row
            .try_get::<Option<String>, _>("labels")?
            .and_then(|l| serde_json::from_str(&l).ok())
            .unwrap_or_default(),
    })
}

/// The stored comma-separated allow-list as the API shows it.
pub(crate) fn models_list(stored: Option<&str>) -> Option<Vec<String>> {
    tollgate_core::ModelAllowList::parse(stored).map(|list| list.entries().to_vec())
}

/// Flags are stored as BIGINT 0/1: the Any driver decodes `bool` only from a native boolean,
/// which SQLite never produces.
pub(crate) fn flag(value: i64) -> bool {
    value != 0
}

/// Trims a human-chosen name and checks it is non-empty, not too long and free of control
/// characters (names end up in logs, CSV reports and terminal output).
pub(crate) fn clean_name(what: &str, raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(StoreError::Invalid(format!("{what} must not be empty")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(StoreError::Invalid(format!(
            "{what} is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} {name:?} contains control characters"
        )));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_ids_have_the_documented_shape() {
        let id = crate::budgets::new_id("tm_");
        let suffix = id.strip_prefix("tm_").unwrap();
        assert_eq!(suffix.len(), 12);
        assert!(
            suffix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(clean_name("team name", "  platform ").unwrap(), "platform");
        assert!(matches!(
            clean_name("team name", "   "),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            clean_name("team name", "a\nb"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            clean_name("team name", &"x".repeat(129)),
            Err(StoreError::Invalid(_))
        ));
    }
}
