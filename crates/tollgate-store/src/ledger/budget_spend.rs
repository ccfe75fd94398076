//! Budget spend, added in the ledger batch's transaction from exactly the rows it inserted: each
//! budget window's `spent` grows by the cost of its rows, and the writing process's lease on
//! that window is marked `consumed` by as much (its hold shrinks as its spend lands in `spent`).
//!
//! Which window a row counts in depends on the budget's period and the deployment's time zone,
//! so the rows are grouped by (team, key, day/week/month start) in Rust and SQL picks each
//! matching budget's window: on SQLite one statement per group, on PostgreSQL one statement for
//! the batch, with the groups as column arrays (a round trip per group was most of a batch's
//! time). Rows replayed from a spool count in `spent` but consume no lease: the process that
//! reserved them is gone, and its lease has lapsed.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use sqlx::{AnyConnection, AssertSqlSafe, Row};
use tollgate_core::budget::{Calendar, Period};

use super::insert::NewRow;
use super::params::{Arrays, Values, unnest};
use crate::error::Result;
use crate::store::Backend;

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

const GROUP_COLUMNS: [(&str, &str); 7] = [
    ("team_id", "TEXT"),
    ("key_id", "TEXT"),
    ("day_ms", "BIGINT"),
    ("week_ms", "BIGINT"),
    ("month_ms", "BIGINT"),
    ("latest_ms", "BIGINT"),
    ("cost", "BIGINT"),
];

/// PostgreSQL: [`ADD_SPENT`] and [`CONSUME`] for every group at once. The groups' windows are
/// summed per window first (an upsert may touch a row only once per statement) and upserted in
/// key order; each lease is updated from the upsert's output, so only after its window is locked.
/// Writers and lease claims therefore lock windows in one order and a window before its lease,
/// and wait for each other rather than deadlock. `$8` is the replica, NULL for a replay.
static ADD_SPENT_ARRAYS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH g AS ({groups}), \
        w AS ( \
            SELECT b.id AS budget_id, \
                CASE WHEN b.reset_at_ms > p.start_ms AND b.reset_at_ms <= g.latest_ms \
                    THEN b.reset_at_ms ELSE p.start_ms END AS window_start_ms, \
                CAST(SUM(g.cost) AS BIGINT) AS cost \
            FROM g JOIN budgets b ON b.team_id = g.team_id AND (b.key_id IS NULL OR b.key_id = g.key_id) \
            CROSS JOIN LATERAL (SELECT CASE b.period WHEN 'day' THEN g.day_ms WHEN 'week' THEN g.week_ms \
                WHEN 'month' THEN g.month_ms ELSE 0 END AS start_ms) p \
            GROUP BY 1, 2 \
        ), \
        spent AS ( \
            INSERT INTO budget_windows (budget_id, window_start_ms, spent_nanos) \
            SELECT budget_id, window_start_ms, cost FROM w ORDER BY budget_id, window_start_ms \
            ON CONFLICT (budget_id, window_start_ms) DO UPDATE SET spent_nanos = budget_windows.spent_nanos + excluded.spent_nanos \
            RETURNING budget_id, window_start_ms \
        ) \
        UPDATE budget_leases l SET consumed_nanos = l.consumed_nanos + w.cost \
        FROM spent s JOIN w ON w.budget_id = s.budget_id AND w.window_start_ms = s.window_start_ms \
        WHERE l.budget_id = s.budget_id AND l.window_start_ms = s.window_start_ms AND l.replica_id = $8",
        groups = unnest(1, &GROUP_COLUMNS)
    )
});

/// (team, key, day start, week start, month start)
type Group<'a> = (&'a str, &'a str, i64, i64, i64);

pub(super) async fn add(
    conn: &mut AnyConnection,
    backend: Backend,
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
    if groups.is_empty() {
        return Ok(());
    }
    if backend == Backend::Postgres {
        // Never cut by size, so that every writer locks the windows in one order; there is a
        // group per (team, key, day) in the batch, a few dozen bytes each.
        let mut arrays = Arrays::new(GROUP_COLUMNS.len());
        for ((team, key, day, week, month), (cost, latest)) in &groups {
            arrays.push(usize::MAX, |a| {
                a.text(team)
                    .text(key)
                    .int(*day)
                    .int(*week)
                    .int(*month)
                    .int(*latest)
                    .int(*cost);
            });
        }
        arrays
            .bind(sqlx::query(AssertSqlSafe(ADD_SPENT_ARRAYS.as_str())))
            .bind(replica_id)
            .execute(&mut *conn)
            .await?;
        return Ok(());
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
