//! Batch API jobs tollgate follows: the intent written before a creation reaches the upstream,
//! the batch id filled in when it answers, and the settlement once the batch's lines are in the
//! ledger. Every state change is conditional on the state before it, so two replicas (or a
//! replay after a crash) doing the same step change the row once.

use sqlx::Row;
use sqlx::any::AnyRow;
use tollgate_core::Money;
use tollgate_core::batch::{BatchRecord, BatchSettlement};

use crate::error::Result;
use crate::store::Store;

/// `batches.state`: see migration 0010.
const INTENT: i64 = 0;
const PENDING: i64 = 1;
const SETTLED: i64 = 2;
const ABANDONED: i64 = 3;

const BATCH_COLUMNS: &str = "request_id, batch_id, team_id, key_id, cost_centre, user_name, \
     session_id, input_file_id, endpoint, reserved_nanos, created_at_ms";

/// A batch as stored, with its settlement once it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub record: BatchRecord,
    /// `intent`, `pending`, `settled` or `abandoned`.
    pub state: &'static str,
    pub settlement: Option<BatchSettlement>,
}

impl Store {
    /// Records a batch creation about to be forwarded (its `batch_id` unset), or one already
    /// created (set). Recording the same request id twice changes nothing.
    pub async fn record_batch(&self, record: &BatchRecord) -> Result<()> {
        let state = if record.batch_id.is_some() {
            PENDING
        } else {
            INTENT
        };
        sqlx::query(
            "INSERT INTO batches (request_id, batch_id, state, team_id, key_id, cost_centre, \
             user_name, session_id, input_file_id, endpoint, reserved_nanos, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(&record.request_id)
        .bind(record.batch_id.as_deref())
        .bind(state)
        .bind(&record.team_id)
        .bind(&record.key_id)
        .bind(record.cost_centre.as_deref())
        .bind(record.user.as_deref())
        .bind(record.session_id.as_deref())
        .bind(&record.input_file_id)
        .bind(&record.endpoint)
        .bind(record.reserved.nanos())
        .bind(record.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives the intent `request_id` the upstream's `batch_id`, making it pending (an intent
    /// marked abandoned comes back: the batch exists after all). `false`: nothing changed,
    /// because the intent is gone or settled, or `batch_id` already belongs to a batch.
    pub async fn batch_created(&self, request_id: &str, batch_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE batches SET batch_id = $2, state = $3 \
             WHERE request_id = $1 AND state IN ($4, $5) \
             AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.batch_id = $2)",
        )
        .bind(request_id)
        .bind(batch_id)
        .bind(PENDING)
        .bind(INTENT)
        .bind(ABANDONED)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Claims or renews `holder`'s hold on a pending batch's reservation until `until_ms`.
    /// `false`: another process holds it and its hold has not lapsed at `now_ms` (or the batch
    /// is not pending).
    pub async fn hold_batch(
        &self,
        batch_id: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE batches SET holder = $2, held_until_ms = $4 \
             WHERE batch_id = $1 AND state = $5 \
             AND (holder IS NULL OR holder = $2 OR held_until_ms < $3)",
        )
        .bind(batch_id)
        .bind(holder)
        .bind(now_ms)
        .bind(until_ms)
        .bind(PENDING)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks an intent whose creation never produced a batch (the upstream refused it, or no
    /// batch of its input file turned up) as abandoned.
    pub async fn abandon_batch(&self, request_id: &str) -> Result<()> {
        sqlx::query("UPDATE batches SET state = $2 WHERE request_id = $1 AND state = $3")
            .bind(request_id)
            .bind(ABANDONED)
            .bind(INTENT)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Intents written before `before_ms` that never got a batch id, oldest first.
    pub async fn batch_intents(&self, before_ms: i64) -> Result<Vec<BatchRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE state = $1 AND created_at_ms < $2 \
             ORDER BY created_at_ms, request_id"
        )))
        .bind(INTENT)
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from).collect()
    }

    /// Batches running upstream that have not been settled, oldest first.
    pub async fn unsettled_batches(&self) -> Result<Vec<BatchRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE state = $1 \
             ORDER BY created_at_ms, request_id"
        )))
        .bind(PENDING)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from).collect()
    }

    /// Marks a pending batch settled. `false`: it was not pending (another replica, or an
    /// earlier attempt, settled it first).
    pub async fn settle_batch(&self, batch_id: &str, settled: BatchSettlement) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE batches SET state = $2, lines = $3, cost_nanos = $4, settled_at_ms = $5 \
             WHERE batch_id = $1 AND state = $6",
        )
        .bind(batch_id)
        .bind(SETTLED)
        .bind(i64::try_from(settled.lines).unwrap_or(i64::MAX))
        .bind(settled.cost.nanos())
        .bind(settled.settled_at_ms)
        .bind(PENDING)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A batch by its upstream id.
    pub async fn batch(&self, batch_id: &str) -> Result<Option<StoredBatch>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS}, state, lines, cost_nanos, settled_at_ms FROM batches \
             WHERE batch_id = $1"
        )))
        .bind(batch_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let state: i64 = row.try_get::<i64, _>("state")?;
        let settlement = match (
            row.try_get::<Option<i64>, _>("lines")?,
            row.try_get::<Option<i64>, _>("cost_nanos")?,
            row.try_get::<Option<i64>, _>("settled_at_ms")?,
        ) {
            (Some(lines), Some(cost), Some(at)) => Some(BatchSettlement {
                lines: u64::try_from(lines).unwrap_or(0),
                cost: Money(cost),
                settled_at_ms: at,
            }),
            _ => None,
        };
        Ok(Some(StoredBatch {
            record: record_from(&row)?,
            state: match state {
                INTENT => "intent",
                PENDING => "pending",
                SETTLED => "settled",
                _ => "abandoned",
            },
            settlement,
        }))
    }
}

fn record_from(row: &AnyRow) -> Result<BatchRecord> {
    Ok(BatchRecord {
        request_id: row.try_get("request_id")?,
        batch_id: row.try_get("batch_id")?,
        team_id: row.try_get("team_id")?,
        key_id: row.try_get("key_id")?,
        cost_centre: row.try_get("cost_centre")?,
        user: row.try_get("user_name")?,
        session_id: row.try_get("session_id")?,
        input_file_id: row.try_get("input_file_id")?,
        endpoint: row.try_get("endpoint")?,
        reserved: Money(row.try_get("reserved_nanos")?),
        created_at_ms: row.try_get("created_at_ms")?,
    })
}
