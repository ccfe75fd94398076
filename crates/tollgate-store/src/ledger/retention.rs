//! Retention: ledger rows older than the configured period are removed; the daily and session
//! rollups stay, as the long-term record reports can still use. On PostgreSQL a month goes
//! when all of it is past the cutoff, by dropping its partition — no row-by-row delete, no
//! bloat. On SQLite old rows are deleted in batches.

use sqlx::{AssertSqlSafe, Executor};

use super::calendar::Month;
use crate::error::Result;
use crate::store::{Backend, Store};

/// Rows deleted per statement on SQLite, so one retention pass never holds the write lock long.
const SQLITE_DELETE_BATCH: i64 = 10_000;

impl Store {
    /// Removes ledger rows that started before `cutoff_ms`. Returns what went: whole month
    /// partitions dropped (PostgreSQL) or rows deleted (SQLite).
    pub async fn apply_ledger_retention(&self, cutoff_ms: i64) -> Result<u64> {
        match self.backend() {
            Backend::Postgres => self.drop_expired_partitions(cutoff_ms).await,
            Backend::Sqlite => self.delete_expired_rows(cutoff_ms).await,
        }
    }

    async fn drop_expired_partitions(&self, cutoff_ms: i64) -> Result<u64> {
        let partitions: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(c.relname AS TEXT) FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = 'ledger'",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut dropped = 0;
        for name in partitions {
            let Some(month) = Month::from_partition_name(&name) else {
                continue;
            };
            if month.next().start_ms() > cutoff_ms {
                continue;
            }
            // The name was read from the catalogue and parsed back into a month: nothing to quote.
            self.pool
                .execute(AssertSqlSafe(format!(
                    "DROP TABLE IF EXISTS {}",
                    month.partition_name()
                )))
                .await?;
            self.ledger_cache.forget_partition(month);
            tracing::info!(partition = %name, "dropped expired ledger partition");
            dropped += 1;
        }
        Ok(dropped)
    }

    async fn delete_expired_rows(&self, cutoff_ms: i64) -> Result<u64> {
        let mut deleted = 0;
        loop {
            let done = sqlx::query("DELETE FROM ledger WHERE rowid IN (SELECT rowid FROM ledger WHERE started_at_ms < ? LIMIT ?)")
                .bind(cutoff_ms)
                .bind(SQLITE_DELETE_BATCH)
                .execute(&self.pool)
                .await?
                .rows_affected();
            deleted += done;
            if done < SQLITE_DELETE_BATCH as u64 {
                return Ok(deleted);
            }
        }
    }
}
