//! Budgets and rate limits in the database: definitions (admin API, CLI), each window's settled
//! spend, the leases gateway processes admit against, and status.
//!
//! The invariant kept here: a lease is granted only under the window's row lock and only if
//! `spent + live leases ≤ limit` afterwards. Settled spend is added by the ledger writer in the
//! transaction that inserts the rows (see `ledger/budget_spend.rs`).

use std::future::Future;
use std::pin::Pin;

use rand::Rng;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use tollgate_core::Money;
use tollgate_core::budget::{BudgetDef, Calendar, ClaimReply, ClaimRequest, LeaseStore, Period};
use tollgate_core::ratelimit::RateLimitDef;
use tollgate_core::time::now_ms;

use crate::error::{Result, StoreError};
use crate::store::Store;

const BUDGET_COLUMNS: &str =
    "id, team_id, key_id, period, limit_nanos, soft_ppm, session_cap_nanos, reset_at_ms";

/// A new budget, or the full new state of one being updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSpec {
    pub team_id: String,
    pub key_id: Option<String>,
    pub period: Period,
    pub limit: Money,
    pub soft_ppm: u32,
    pub session_cap: Option<Money>,
}

/// A budget's current window as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetStatus {
    pub window_start_ms: i64,
    pub resets_at_ms: Option<i64>,
    /// Settled spend in the window (the ledger's rows summed).
    pub committed: Money,
    /// Held by gateway processes' live leases: reservations of calls in flight plus admission
    /// headroom. It returns to `remaining` as calls settle or when a lease lapses.
    pub reserved: Money,
    /// `limit - committed - reserved`, never below zero.
    pub remaining: Money,
    pub soft_limit: Money,
    pub soft_crossed: bool,
}

impl Store {
    pub async fn create_budget(&self, spec: &BudgetSpec, calendar: Calendar) -> Result<BudgetDef> {
        let now = now_ms();
        let id = new_id("bud_");
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO budgets (id, team_id, key_id, period, limit_nanos, soft_ppm, session_cap_nanos, reset_at_ms, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8)",
        )
        .bind(&id)
        .bind(&spec.team_id)
        .bind(spec.key_id.as_deref())
        .bind(spec.period.as_str())
        .bind(spec.limit.nanos())
        .bind(i64::from(spec.soft_ppm))
        .bind(spec.session_cap.map(Money::nanos))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // A budget created mid-period starts with the period's spend so far, from the ledger.
        let window = calendar.window(spec.period, 0, now);
        let spent: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM ledger WHERE team_id = $1 AND ($2 IS NULL OR key_id = $2) AND started_at_ms >= $3",
        )
        .bind(&spec.team_id)
        .bind(spec.key_id.as_deref())
        .bind(window.start_ms)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        sqlx::query(
            "INSERT INTO budget_windows (budget_id, window_start_ms, spent_nanos) VALUES ($1, $2, $3)",
        )
        .bind(&id)
        .bind(window.start_ms)
        .bind(spent)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.budget(&id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("budget {id} vanished")))
    }

    pub async fn budget(&self, id: &str) -> Result<Option<BudgetDef>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(budget_from_row).transpose()
    }

    /// Every budget, or a team's.
    pub async fn list_budgets(&self, team_id: Option<&str>) -> Result<Vec<BudgetDef>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets WHERE ($1 IS NULL OR team_id = $1) ORDER BY created_at_ms, id"
        )))
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(budget_from_row).collect()
    }

    /// Changes a budget's period, limit, soft threshold or session cap; `reset` starts a new
    /// window now (spend before it no longer counts this period).
    pub async fn update_budget(
        &self,
        id: &str,
        spec: &BudgetSpec,
        reset: bool,
    ) -> Result<Option<BudgetDef>> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE budgets SET period = $2, limit_nanos = $3, soft_ppm = $4, session_cap_nanos = $5, reset_at_ms = CASE WHEN $6 = 1 THEN $7 ELSE reset_at_ms END, updated_at_ms = $7 WHERE id = $1",
        )
        .bind(id)
        .bind(spec.period.as_str())
        .bind(spec.limit.nanos())
        .bind(i64::from(spec.soft_ppm))
        .bind(spec.session_cap.map(Money::nanos))
        .bind(i64::from(reset))
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.budget(id).await
    }

    pub async fn delete_budget(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Windows before leases: the order claims and the ledger writer lock them in, so a
        // deletion waits for them instead of deadlocking with them.
        for table in ["budget_windows", "budget_leases"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE budget_id = $1"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let done = sqlx::query("DELETE FROM budgets WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// The budget's current window: settled spend, live leases, what is left.
    pub async fn budget_status(
        &self,
        budget: &BudgetDef,
        calendar: Calendar,
        now: i64,
    ) -> Result<BudgetStatus> {
        let window = calendar.window(budget.period, budget.reset_at_ms, now);
        let committed = self.window_spent(&budget.id, window.start_ms).await?;
        let reserved: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN granted_nanos > consumed_nanos THEN granted_nanos - consumed_nanos ELSE 0 END), 0) AS BIGINT) FROM budget_leases WHERE budget_id = $1 AND window_start_ms = $2 AND expires_at_ms > $3",
        )
        .bind(&budget.id)
        .bind(window.start_ms)
        .bind(now)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        let soft_limit = budget.soft_limit();
        Ok(BudgetStatus {
            window_start_ms: window.start_ms,
            resets_at_ms: window.resets_at_ms,
            committed: Money(committed),
            reserved: Money(reserved),
            remaining: Money((budget.limit.nanos() - committed - reserved).max(0)),
            soft_limit,
            soft_crossed: committed >= soft_limit.nanos() && budget.soft_ppm > 0,
        })
    }

    pub async fn window_spent(&self, budget_id: &str, window_start_ms: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT spent_nanos FROM budget_windows WHERE budget_id = $1 AND window_start_ms = $2",
        )
        .bind(budget_id)
        .bind(window_start_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => row.try_get(0)?,
            None => 0,
        })
    }

    /// Settled spend of many windows at once (the sync loop's one query per tick).
    pub async fn windows_spent(&self, since_start_ms: i64) -> Result<Vec<(String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT budget_id, window_start_ms, spent_nanos FROM budget_windows WHERE window_start_ms >= $1",
        )
        .bind(since_start_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Marks a window's soft (or hard) event as fired; true for exactly one caller per window
    /// across all replicas.
    pub async fn fire_budget_event(
        &self,
        budget_id: &str,
        window_start_ms: i64,
        hard: bool,
    ) -> Result<bool> {
        let column = if hard {
            "hard_fired_ms"
        } else {
            "soft_fired_ms"
        };
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE budget_windows SET {column} = $3 WHERE budget_id = $1 AND window_start_ms = $2 AND {column} IS NULL"
        )))
        .bind(budget_id)
        .bind(window_start_ms)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Applies one lease claim atomically (see [`LeaseStore`]).
    pub async fn claim_lease(&self, request: &ClaimRequest) -> Result<ClaimReply> {
        let mut tx = self.pool.begin().await?;
        // Locks the window row (PostgreSQL) or the database (SQLite) for the transaction, so
        // claims on one window are serialised across processes.
        let spent: i64 = sqlx::query(
            "INSERT INTO budget_windows (budget_id, window_start_ms, spent_nanos) VALUES ($1, $2, 0) ON CONFLICT (budget_id, window_start_ms) DO UPDATE SET spent_nanos = budget_windows.spent_nanos RETURNING spent_nanos",
        )
        .bind(&request.budget_id)
        .bind(request.window_start_ms)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let others: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN granted_nanos > consumed_nanos THEN granted_nanos - consumed_nanos ELSE 0 END), 0) AS BIGINT) FROM budget_leases WHERE budget_id = $1 AND window_start_ms = $2 AND replica_id <> $3 AND expires_at_ms > $4",
        )
        .bind(&request.budget_id)
        .bind(request.window_start_ms)
        .bind(&request.replica_id)
        .bind(request.now_ms)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let mine = sqlx::query(
            "SELECT granted_nanos, consumed_nanos FROM budget_leases WHERE budget_id = $1 AND window_start_ms = $2 AND replica_id = $3",
        )
        .bind(&request.budget_id)
        .bind(request.window_start_ms)
        .bind(&request.replica_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (granted, consumed): (i64, i64) = match &mine {
            Some(row) => (row.try_get(0)?, row.try_get(1)?),
            None => (0, 0),
        };
        let held = (granted - consumed).max(0);
        let available = (request.limit - spent - others).max(0);
        let wanted = (held + request.delta).max(0);
        let new_hold = wanted.min(available);
        let applied = new_hold - held;
        sqlx::query(
            "INSERT INTO budget_leases (budget_id, window_start_ms, replica_id, granted_nanos, consumed_nanos, expires_at_ms) VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (budget_id, window_start_ms, replica_id) DO UPDATE SET granted_nanos = budget_leases.granted_nanos + $4, expires_at_ms = $5",
        )
        .bind(&request.budget_id)
        .bind(request.window_start_ms)
        .bind(&request.replica_id)
        .bind(applied)
        .bind(request.now_ms + request.ttl_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ClaimReply {
            applied,
            spent,
            others,
        })
    }

    /// Sets a team's (key `None`) or a key's rate limits; `None` rates remove that limit.
    pub async fn set_rate_limit(&self, def: &RateLimitDef) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM rate_limits WHERE team_id = $1 AND COALESCE(key_id, '') = $2")
            .bind(&def.team_id)
            .bind(def.key_id.as_deref().unwrap_or(""))
            .execute(&mut *tx)
            .await?;
        if def.requests_per_minute.is_some() || def.tokens_per_minute.is_some() {
            sqlx::query(
                "INSERT INTO rate_limits (id, team_id, key_id, requests_per_minute, tokens_per_minute, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(new_id("rl_"))
            .bind(&def.team_id)
            .bind(def.key_id.as_deref())
            .bind(def.requests_per_minute.map(i64::from))
            .bind(def.tokens_per_minute.map(i64::from))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_rate_limits(&self, team_id: Option<&str>) -> Result<Vec<RateLimitDef>> {
        let rows = sqlx::query(
            "SELECT team_id, key_id, requests_per_minute, tokens_per_minute FROM rate_limits WHERE ($1 IS NULL OR team_id = $1) ORDER BY team_id, key_id",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let rate = |i: usize| -> Result<Option<u32>> {
                    let v: Option<i64> = r.try_get(i)?;
                    Ok(v.map(|v| u32::try_from(v).unwrap_or(u32::MAX)))
                };
                Ok(RateLimitDef {
                    team_id: r.try_get(0)?,
                    key_id: r.try_get(1)?,
                    requests_per_minute: rate(2)?,
                    tokens_per_minute: rate(3)?,
                })
            })
            .collect()
    }

    /// Cost of the recent sessions of some teams (for session caps).
    pub async fn session_costs(
        &self,
        team_ids: &[String],
        since_ms: i64,
    ) -> Result<Vec<(String, String, i64, i64)>> {
        let mut out = Vec::new();
        for team in team_ids {
            let rows = sqlx::query(
                "SELECT team_id, session_id, cost_nanos, last_seen_ms FROM sessions WHERE team_id = $1 AND last_seen_ms >= $2",
            )
            .bind(team)
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                out.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
            }
        }
        Ok(out)
    }
}

/// Leases claimed through the store, for the engine in `tollgate_core::budget`.
pub struct StoreLeases(pub Store);

impl LeaseStore for StoreLeases {
    fn claim(
        &self,
        request: ClaimRequest,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<ClaimReply, String>> + Send>> {
        let store = self.0.clone();
        Box::pin(async move { store.claim_lease(&request).await.map_err(|e| e.to_string()) })
    }
}

fn budget_from_row(row: &AnyRow) -> Result<BudgetDef> {
    let period: String = row.try_get(3)?;
    let soft: i64 = row.try_get(5)?;
    let cap: Option<i64> = row.try_get(6)?;
    Ok(BudgetDef {
        id: row.try_get(0)?,
        team_id: row.try_get(1)?,
        key_id: row.try_get(2)?,
        period: Period::parse(&period)
            .ok_or_else(|| StoreError::Invalid(format!("unknown budget period '{period}'")))?,
        limit: Money(row.try_get(4)?),
        soft_ppm: u32::try_from(soft).unwrap_or(0),
        session_cap: cap.map(Money),
        reset_at_ms: row.try_get(7)?,
    })
}

/// A fresh id: `prefix` and 12 lowercase alphanumerics (teams `tm_`, budgets `bud_`, …).
pub(crate) fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..12)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{prefix}{suffix}")
}
