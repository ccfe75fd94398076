//! The admin audit log: one row per change made through the admin API, with the actor, the
//! action, the target and the resource before and after, readable by `admin` tokens.

use serde::Serialize;
use sqlx::Row;
use tollgate_core::time::now_ms;

use crate::budgets::new_id;
use crate::error::Result;
use crate::store::Store;

/// One audited change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: String,
    pub at_ms: i64,
    pub actor_id: String,
    pub actor_name: String,
    pub actor_role: String,
    /// `POST /admin/v1/teams`, `PATCH /admin/v1/budgets/{id}`, …
    pub action: String,
    /// The id of the resource changed.
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Who made a change (from the admin token that authenticated it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub name: String,
    pub role: String,
}

impl Store {
    pub async fn write_audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        before: Option<&serde_json::Value>,
        after: Option<&serde_json::Value>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, at_ms, actor_id, actor_name, actor_role, action, target, before_json, after_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(new_id("aud_"))
        .bind(now_ms())
        .bind(&actor.id)
        .bind(&actor.name)
        .bind(&actor.role)
        .bind(action)
        .bind(target)
        .bind(before.map(ToString::to_string))
        .bind(after.map(ToString::to_string))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Audit entries, oldest first, after the entry `after` (`(at_ms, id)` cursor), at most
    /// `limit`.
    pub async fn list_audit(
        &self,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let (at, id) = after.unwrap_or((i64::MIN, String::new()));
        let rows = sqlx::query(
            "SELECT id, at_ms, actor_id, actor_name, actor_role, action, target, before_json, after_json \
             FROM audit_log WHERE at_ms > $1 OR (at_ms = $1 AND id > $2) ORDER BY at_ms, id LIMIT $3",
        )
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let json = |i: usize| -> Result<Option<serde_json::Value>> {
                    let text: Option<String> = r.try_get(i)?;
                    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
                };
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at_ms: r.try_get(1)?,
                    actor_id: r.try_get(2)?,
                    actor_name: r.try_get(3)?,
                    actor_role: r.try_get(4)?,
                    action: r.try_get(5)?,
                    target: r.try_get(6)?,
                    before: json(7)?,
                    after: json(8)?,
                })
            })
            .collect()
    }
}
