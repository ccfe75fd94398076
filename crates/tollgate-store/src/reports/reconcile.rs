//! Reconciliation: recomputes `ledger_daily` and `sessions` from the ledger and lists every key
//! where they differ. The writer maintains both in the transaction that inserts the rows, so a
//! difference means a bug or a hand edit — exactly what finance wants to hear about before
//! trusting a report served from the rollups.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sqlx::Row;
use tollgate_core::Money;

use super::MS_PER_DAY;
use crate::error::Result;
use crate::ledger::{Totals, ledger_sums, totals_at, utc_day};
use crate::store::Store;

/// What reconciling a range found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    /// The range checked: the one asked for, widened to whole UTC days (the rollup's unit).
    pub from_ms: i64,
    pub to_ms: i64,
    /// `ledger_daily` keys (day, team, key, model, cost centre) compared.
    pub daily_keys: usize,
    /// Sessions (team, session id) compared: every one seen in the range, over its whole life.
    pub sessions: usize,
    pub daily_differences: Vec<DailyDifference>,
    pub session_differences: Vec<SessionDifference>,
}

impl Reconciliation {
    pub fn is_clean(&self) -> bool {
        self.daily_differences.is_empty() && self.session_differences.is_empty()
    }
}

/// One `ledger_daily` key whose sums differ from the ledger's (`None`: no such row on that side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyDifference {
    pub day: String,
    pub team_id: String,
    pub key_id: String,
    /// `''` for none, as the rollup stores it.
    pub model: String,
    pub cost_centre: String,
    pub ledger: Option<Totals>,
    pub rollup: Option<Totals>,
}

/// A session's totals as the `sessions` rollup keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SessionTotals {
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub requests: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    #[serde(rename = "cost_nanos")]
    pub cost: Money,
}

/// One team's session whose rollup differs from that team's ledger rows under its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionDifference {
    pub team_id: String,
    pub session_id: String,
    pub ledger: Option<SessionTotals>,
    pub rollup: Option<SessionTotals>,
}

type DailyKey = (String, String, String, String, String);
/// (team, session id): a session id is the client's choice, unique only within a team.
type SessionKey = (String, String);

/// The sessions to compare: those the rollup says overlap the range and those with ledger rows
/// in it (which catches a session missing from the rollup).
const SESSION_IDS: &str = "WITH ids AS (\
     SELECT team_id, session_id FROM sessions WHERE first_seen_ms < $2 AND last_seen_ms >= $1 \
     UNION SELECT team_id, session_id FROM ledger \
     WHERE started_at_ms >= $1 AND started_at_ms < $2 AND session_id IS NOT NULL) ";

impl Store {
    /// Compares the rollups with the ledger over the whole UTC days `[from_ms, to_ms)` touches.
    /// The session check reads each session's rows over its whole life, which on PostgreSQL is a
    /// scan of the ledger (there is no index on `session_id`; the hot path never needs one).
    pub async fn reconcile(&self, from_ms: i64, to_ms: i64) -> Result<Reconciliation> {
        let from_ms = from_ms.div_euclid(MS_PER_DAY) * MS_PER_DAY;
        let to_ms = to_ms
            .max(from_ms)
            .saturating_add(MS_PER_DAY - 1)
            .div_euclid(MS_PER_DAY)
            * MS_PER_DAY;

        let ledger = self.daily_from_ledger(from_ms, to_ms).await?;
        let rollup = self.daily_from_rollup(from_ms, to_ms).await?;
        let keys: BTreeSet<&DailyKey> = ledger.keys().chain(rollup.keys()).collect();
        let daily_differences = keys
            .iter()
            .filter(|k| ledger.get(**k) != rollup.get(**k))
            .map(|k| DailyDifference {
                day: k.0.clone(),
                team_id: k.1.clone(),
                key_id: k.2.clone(),
                model: k.3.clone(),
                cost_centre: k.4.clone(),
                ledger: ledger.get(*k).copied(),
                rollup: rollup.get(*k).copied(),
            })
            .collect();

        let ledger = self.sessions_from_ledger(from_ms, to_ms).await?;
        let rollup = self.sessions_from_rollup(from_ms, to_ms).await?;
        let ids: BTreeSet<&SessionKey> = ledger.keys().chain(rollup.keys()).collect();
        let session_differences = ids
            .iter()
            .filter(|id| ledger.get(**id) != rollup.get(**id))
            .map(|id| SessionDifference {
                team_id: id.0.clone(),
                session_id: id.1.clone(),
                ledger: ledger.get(*id).copied(),
                rollup: rollup.get(*id).copied(),
            })
            .collect();

        Ok(Reconciliation {
            from_ms,
            to_ms,
            daily_keys: keys.len(),
            sessions: ids.len(),
            daily_differences,
            session_differences,
        })
    }

    /// The ledger grouped as `ledger_daily` is: by UTC day (counted from `from_ms`, a UTC
    /// midnight, so integer division is the day), team, key, model and cost centre.
    async fn daily_from_ledger(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<BTreeMap<DailyKey, Totals>> {
        let [i, ci, o, r, c, e, f, u, m] = ledger_sums("");
        let sql = format!(
            "SELECT g.day_index, g.team_id, g.key_id, ms.name, mr.name, cc.name, \
             g.n, g.i, g.ci, g.o, g.r, g.c, g.e, g.f, g.u, g.m FROM (\
             SELECT (started_at_ms - $1) / {MS_PER_DAY} AS day_index, team_id, key_id, \
             model_served_ref, model_requested_ref, cost_centre_ref, COUNT(*) AS n, \
             {i} AS i, {ci} AS ci, {o} AS o, {r} AS r, {c} AS c, {e} AS e, {f} AS f, {u} AS u, \
             {m} AS m FROM ledger WHERE started_at_ms >= $1 AND started_at_ms < $2 \
             GROUP BY 1, 2, 3, 4, 5, 6) g \
             LEFT JOIN ledger_names ms ON ms.id = g.model_served_ref \
             LEFT JOIN ledger_names mr ON mr.id = g.model_requested_ref \
             LEFT JOIN ledger_names cc ON cc.id = g.cost_centre_ref"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&self.pool)
            .await?;
        let mut out: BTreeMap<DailyKey, Totals> = BTreeMap::new();
        for row in &rows {
            let day_index: i64 = row.try_get(0)?;
            let served: Option<String> = row.try_get(3)?;
            let requested: Option<String> = row.try_get(4)?;
            let cost_centre: Option<String> = row.try_get(5)?;
            let key = (
                utc_day(from_ms + day_index * MS_PER_DAY),
                row.try_get(1)?,
                row.try_get(2)?,
                served.or(requested).unwrap_or_default(),
                cost_centre.unwrap_or_default(),
            );
            // Two (served, requested) pairs can name the same rollup model: merge them.
            super::add(out.entry(key).or_default(), &totals_at(row, 6)?);
        }
        Ok(out)
    }

    async fn daily_from_rollup(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<BTreeMap<DailyKey, Totals>> {
        let rows = sqlx::query(
            "SELECT day, team_id, key_id, model, cost_centre, requests, input_tokens, \
             cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos, estimated_requests, \
             failed_requests, unpriced_requests, unmetered_requests \
             FROM ledger_daily WHERE day >= $1 AND day < $2",
        )
        .bind(utc_day(from_ms))
        .bind(utc_day(to_ms))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let key = (
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                    row.try_get(4)?,
                );
                Ok((key, totals_at(row, 5)?))
            })
            .collect()
    }

    async fn sessions_from_ledger(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<BTreeMap<SessionKey, SessionTotals>> {
        // The sessions rollup counts no estimated, failed, unpriced or unmetered calls.
        let [i, ci, o, r, c, ..] = ledger_sums("l.");
        let sql = format!(
            "{SESSION_IDS}SELECT l.team_id, l.session_id, MIN(l.started_at_ms), \
             MAX(l.finished_at_ms), COUNT(*), {i}, {ci}, {o}, {r}, {c} FROM ledger l \
             JOIN ids ON ids.team_id = l.team_id AND ids.session_id = l.session_id \
             GROUP BY l.team_id, l.session_id"
        );
        self.sessions_query(&sql, from_ms, to_ms).await
    }

    async fn sessions_from_rollup(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<BTreeMap<SessionKey, SessionTotals>> {
        let sql = format!(
            "{SESSION_IDS}SELECT s.team_id, s.session_id, s.first_seen_ms, s.last_seen_ms, \
             s.requests, s.input_tokens, s.cached_input_tokens, s.output_tokens, \
             s.reasoning_tokens, s.cost_nanos FROM sessions s \
             JOIN ids ON ids.team_id = s.team_id AND ids.session_id = s.session_id"
        );
        self.sessions_query(&sql, from_ms, to_ms).await
    }

    async fn sessions_query(
        &self,
        sql: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<BTreeMap<SessionKey, SessionTotals>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let totals = SessionTotals {
                    first_seen_ms: row.try_get(2)?,
                    last_seen_ms: row.try_get(3)?,
                    requests: row.try_get(4)?,
                    input_tokens: row.try_get(5)?,
                    cached_input_tokens: row.try_get(6)?,
                    output_tokens: row.try_get(7)?,
                    reasoning_tokens: row.try_get(8)?,
                    cost: Money(row.try_get(9)?),
                };
                Ok(((row.try_get(0)?, row.try_get(1)?), totals))
            })
            .collect()
    }
}
