//! PostgreSQL month partitions of `ledger`. `INSERT … ON CONFLICT` cannot create a partition, so
//! the writer makes sure the ones a batch needs exist before inserting it, remembering the ones it
//! has seen so the check costs nothing after the first batch of a month.

use std::collections::BTreeSet;

use sqlx::{AssertSqlSafe, Executor};
use tollgate_core::time::now_ms;

use super::calendar::Month;
use crate::error::{Result, StoreError};
use crate::store::Store;

/// Partitions are made for months at most this far from now; rows outside (a broken clock, a
/// forged start time) go to `ledger_default` instead of creating a partition each.
const PARTITION_WINDOW_MONTHS: i64 = 120;
/// Serialises partition creation across replicas (`pg_advisory_xact_lock` key; "tollgate" in hex).
const PARTITION_LOCK_KEY: i64 = 0x746f_6c6c_6761_7465;
/// Creating a partition takes a lock on `ledger` that waits behind long reports. Give up after
/// this rather than queue every writer behind it: the batch fails, is spooled, and is retried.
const PARTITION_LOCK_TIMEOUT: &str = "3s";

impl Store {
    /// Creates the month partitions of `ledger` that rows starting at these instants need, plus
    /// the current and next month. A no-op on SQLite and for months already known.
    pub async fn ensure_ledger_partitions(
        &self,
        started_at_ms: impl IntoIterator<Item = i64>,
    ) -> Result<()> {
        if self.backend() != crate::Backend::Postgres {
            return Ok(());
        }
        let now = Month::of_ms(now_ms());
        let wanted: BTreeSet<Month> = started_at_ms
            .into_iter()
            .map(Month::of_ms)
            .chain([now, now.next()])
            .filter(|month| (month.index() - now.index()).abs() <= PARTITION_WINDOW_MONTHS)
            .filter(|month| !self.ledger_cache.knows_partition(*month))
            .collect();
        for month in wanted {
            self.create_partition(month).await?;
            self.ledger_cache.remember_partition(month);
        }
        Ok(())
    }

    async fn create_partition(&self, month: Month) -> Result<()> {
        let name = month.partition_name();
        let mut tx = self.pool.begin().await?;
        let lock = format!("SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'");
        tx.execute(AssertSqlSafe(lock)).await?;
        // COUNT(*) because the Any driver cannot decode the `void` the lock function returns.
        sqlx::query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
            .bind(PARTITION_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        let existing: Option<String> = sqlx::query_scalar("SELECT CAST(to_regclass($1) AS TEXT)")
            .bind(&name)
            .fetch_one(&mut *tx)
            .await?;
        if existing.is_some() {
            return Ok(());
        }
        // The name and bounds are generated here from integers: nothing to quote.
        let create = format!(
            "CREATE TABLE {name} PARTITION OF ledger FOR VALUES FROM ({}) TO ({})",
            month.start_ms(),
            month.next().start_ms()
        );
        match tx.execute(AssertSqlSafe(create)).await {
            Ok(_) => {
                tx.commit().await?;
                tracing::info!(partition = %name, "created ledger partition");
                Ok(())
            }
            // 23514: `ledger_default` already holds rows of this month (written while the
            // partition could not be created). They stay there, still counted; new rows join them.
            Err(e) if sql_state(&e).as_deref() == Some("23514") => {
                tracing::warn!(
                    partition = %name,
                    "ledger_default holds rows for this month, so its partition cannot be created; \
                     rows keep going to ledger_default (move them and create the partition by hand)"
                );
                Ok(())
            }
            Err(e) => Err(StoreError::Db(e)),
        }
    }
}

fn sql_state(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|db| db.code())
        .map(|code| code.into_owned())
}
