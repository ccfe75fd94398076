//! Budget spend, added in the ledger batch's transaction from exactly the rows it inserted: each
//! budget window's `spent` grows by the cost of its rows, and the writing process's lease on
//! that window is marked `consumed` by as much (its hold shrinks as its spend lands in `spent`).
//!
//! Which window a row counts in depends on the budget's period and the deployment's time zone,
//! so the rows are grouped by (team, key, day/week/month start) in Rust and one statement per
//! group picks each matching budget's window in SQL. Rows replayed from a spool count in `spent`
//! but consume no lease: the process that reserved them is gone, and its lease has lapsed.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};
use tollgate_core::budget::{Calendar, Period};

use super::insert::NewRow;
use crate::error::Result;

const ADD_SPENT: &str = "INSERT INTO budget_windows (budget_id, window_start_ms, spent_nanos) \
    SELECT b.id, \
        CASE WHEN b.reset_at_ms > (CASE b.period WHEN 'day' THEN CAST($3 AS BIGINT) WHEN 'week' THEN CAST($4 AS BIGINT) WHEN 'month' THEN CAST($5 AS BIGINT) ELSE 0 END) AND b.reset_at_ms <= CAST($6 AS BIGINT) \
            THEN b.reset_at_ms \
            ELSE (CASE b.period WHEN 'day' THEN CAST($3 AS BIGINT) WHEN 'week' THEN CAST($4 AS BIGINT) WHEN 'month' THEN CAST($5 AS BIGINT) ELSE 0 END) END, \
        CAST($7 AS BIGINT) \
    FROM budgets b WHERE b.team_id = $1 AND (b.key_id IS NULL OR b.key_id = $2) \
    ON CONFLICT (budget_id, window_start_ms) DO UPDATE SET spent_nanos = budget_windows.spent_nanos + excluded.spent_nanos \
    RETURNING budget_id, window_start_ms";

const CONSUME: &str = "UPDATE budget_leases SET consumed_nanos = consumed_nanos + $4 \
    WHERE budget_id = $1 AND window_start_ms = $2 AND replica_id = $3";

/// (team, key, day start, week start, month start)
type Group<'a> = (&'a str, &'a str, i64, i64, i64);

pub(super) async fn add(
    conn: &mut AnyConnection,
    rows: &[&NewRow<'_>],
    calendar: Calendar,
    replica_id: Option<&str>,
) -> Result<()> {
    // (cost, latest start) per group; a reset inside a batch counts the batch after it.
    let mut groups: BTreeMap<Group<'_>, (i64, i64)> = BTreeMap::new();
    for row in rows {
        let cost = row.event.cost.nanos();
        if cost <= 0 {
            continue;
        }
        let at = row.event.started_at_ms;
        let key = (
            row.team_id.as_ref(),
            row.key_id.as_ref(),
            calendar.period_start(Period::Day, at),
            calendar.period_start(Period::Week, at),
            calendar.period_start(Period::Month, at),
        );
        let entry = groups.entry(key).or_insert((0, at));
        entry.0 = entry.0.saturating_add(cost);
        entry.1 = entry.1.max(at);
    }
    for ((team, key, day, week, month), (cost, latest)) in groups {
        let windows = sqlx::query(ADD_SPENT)
            .bind(team)
            .bind(key)
            .bind(day)
            .bind(week)
            .bind(month)
            .bind(latest)
            .bind(cost)
            .fetch_all(&mut *conn)
            .await?;
        let Some(replica) = replica_id else { continue };
        for window in windows {
            let budget: String = window.try_get(0)?;
            let start: i64 = window.try_get(1)?;
            sqlx::query(CONSUME)
                .bind(budget)
                .bind(start)
                .bind(replica)
                .bind(cost)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}
