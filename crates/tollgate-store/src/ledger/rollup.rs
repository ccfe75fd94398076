//! The rollups a batch adds to, from exactly the rows it inserted: `ledger_daily` (per UTC day,
//! team, key, model and cost centre), `sessions` and `session_tools` (per team and session id: a
//! session id is the client's choice, so two teams that send the same one have two sessions).
//! Rows are summed here first, so each rollup key gets one upsert per batch, never one per row.
//!
//! On PostgreSQL each upsert is one fixed statement taking column arrays, run as many times as
//! [`MESSAGE_BYTES`] needs; SQLite runs them as multi-row `VALUES`. Either way a batch upserts its
//! keys in order, so that two batches in flight lock rows in the same order and wait for each
//! other rather than deadlock.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use sqlx::{AnyConnection, AssertSqlSafe};
use tollgate_core::{CallOutcome, LedgerEvent};

use super::calendar::utc_day;
use super::codec::clean_text;
use super::insert::{MAX_PARAMS, NewRow, placeholders, sqlite_chunks};
use super::params::{Arrays, Binds, MESSAGE_BYTES, Values, unnest};
use crate::error::Result;
use crate::store::Backend;

const TABLES: [Table; 3] = [Table::Daily, Table::Sessions, Table::Tools];

/// PostgreSQL's upsert per table, from one array per column.
static UPSERT_ARRAYS: LazyLock<[String; 3]> =
    LazyLock::new(|| TABLES.map(|table| upsert_sql(table, &unnest(1, table.columns()))));

/// Token and cost sums shared by the rollups (`sessions` keeps no per-kind call counts).
#[derive(Default)]
struct Sums {
    requests: i64,
    input: i64,
    cached_input: i64,
    output: i64,
    reasoning: i64,
    cost_nanos: i64,
    estimated: i64,
    failed: i64,
    unpriced: i64,
    unmetered: i64,
}

impl Sums {
    fn add(&mut self, row: &NewRow<'_>) {
        self.requests += 1;
        self.input += i64::from(row.input);
        self.cached_input += i64::from(row.cached_input);
        self.output += i64::from(row.output);
        self.reasoning += i64::from(row.reasoning);
        self.cost_nanos = self.cost_nanos.saturating_add(row.event.cost.nanos());
        self.estimated += i64::from(row.event.estimated);
        self.failed += i64::from(failed(row.event));
        self.unpriced += i64::from(row.event.unpriced);
        self.unmetered += i64::from(row.event.unmetered);
    }
}

/// Whether a call failed as reports count it: an error status sent to the client, or a call
/// that did not complete. `ledger_sums` applies the same rule to stored rows.
fn failed(event: &LedgerEvent) -> bool {
    event.status >= 400 || event.outcome != CallOutcome::Complete
}

/// (day, team, key, model, cost centre)
type DailyKey<'a> = (String, &'a str, &'a str, &'a str, &'a str);

/// (team, session id)
type SessionKey<'a> = (&'a str, &'a str);

struct SessionSums {
    first_seen_ms: i64,
    last_seen_ms: i64,
    sums: Sums,
}

/// One batch's contributions, in key order: two writers touching the same keys lock them in the
/// same order, so they wait for each other rather than deadlock.
pub(super) struct Rollups<'a> {
    daily: Vec<(DailyKey<'a>, Sums)>,
    sessions: Vec<(SessionKey<'a>, SessionSums)>,
    tools: Vec<((SessionKey<'a>, Cow<'a, str>), i64)>,
}

#[derive(Clone, Copy)]
enum Table {
    Daily,
    Sessions,
    Tools,
}

impl Table {
    /// Columns with their PostgreSQL types, in the order [`Rollups::write_row`] gives them.
    fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Table::Daily => &[
                ("day", "TEXT"),
                ("team_id", "TEXT"),
                ("key_id", "TEXT"),
                ("model", "TEXT"),
                ("cost_centre", "TEXT"),
                ("requests", "BIGINT"),
                ("input_tokens", "BIGINT"),
                ("cached_input_tokens", "BIGINT"),
                ("output_tokens", "BIGINT"),
                ("reasoning_tokens", "BIGINT"),
                ("cost_nanos", "BIGINT"),
                ("estimated_requests", "BIGINT"),
                ("failed_requests", "BIGINT"),
                ("unpriced_requests", "BIGINT"),
                ("unmetered_requests", "BIGINT"),
            ],
            Table::Sessions => &[
                ("team_id", "TEXT"),
                ("session_id", "TEXT"),
                ("first_seen_ms", "BIGINT"),
                ("last_seen_ms", "BIGINT"),
                ("requests", "BIGINT"),
                ("input_tokens", "BIGINT"),
                ("cached_input_tokens", "BIGINT"),
                ("output_tokens", "BIGINT"),
                ("reasoning_tokens", "BIGINT"),
                ("cost_nanos", "BIGINT"),
            ],
            Table::Tools => &[
                ("team_id", "TEXT"),
                ("session_id", "TEXT"),
                ("tool", "TEXT"),
                ("calls", "BIGINT"),
            ],
        }
    }
}

impl<'a> Rollups<'a> {
    pub(super) fn of(rows: &[&'a NewRow<'a>]) -> Rollups<'a> {
        let mut daily: BTreeMap<DailyKey<'a>, Sums> = BTreeMap::new();
        let mut sessions: BTreeMap<SessionKey<'a>, SessionSums> = BTreeMap::new();
        let mut tools: BTreeMap<(SessionKey<'a>, Cow<'a, str>), i64> = BTreeMap::new();
        for row in rows {
            let key = (
                utc_day(row.event.started_at_ms),
                row.team_id.as_ref(),
                row.key_id.as_ref(),
                row.model(),
                row.cost_centre.as_deref().unwrap_or(""),
            );
            daily.entry(key).or_default().add(row);
            let Some(session_id) = row.session_id.as_deref() else {
                continue;
            };
            let session_key = (row.team_id.as_ref(), session_id);
            let session = sessions.entry(session_key).or_insert_with(|| SessionSums {
                first_seen_ms: row.event.started_at_ms,
                last_seen_ms: row.event.finished_at_ms,
                sums: Sums::default(),
            });
            session.first_seen_ms = session.first_seen_ms.min(row.event.started_at_ms);
            session.last_seen_ms = session.last_seen_ms.max(row.event.finished_at_ms);
            session.sums.add(row);
            for tool in &row.event.tool_calls {
                *tools
                    .entry((session_key, clean_text(&tool.name)))
                    .or_default() += i64::from(tool.count);
            }
        }
        Rollups {
            daily: daily.into_iter().collect(),
            sessions: sessions.into_iter().collect(),
            tools: tools.into_iter().collect(),
        }
    }

    fn len(&self, table: Table) -> usize {
        match table {
            Table::Daily => self.daily.len(),
            Table::Sessions => self.sessions.len(),
            Table::Tools => self.tools.len(),
        }
    }

    pub(super) async fn write(&self, conn: &mut AnyConnection, backend: Backend) -> Result<()> {
        match backend {
            Backend::Postgres => self.write_arrays(conn).await,
            Backend::Sqlite => self.write_values(conn).await,
        }
    }

    /// PostgreSQL: daily, then session, then tool contributions, in key order, a statement per
    /// [`MESSAGE_BYTES`]. Tables are never mixed in one statement: PostgreSQL runs a statement's
    /// data-modifying CTEs after its main query, so a statement holding the end of one table and
    /// the start of the next would lock rows out of order, and two batches in flight deadlocked.
    async fn write_arrays(&self, conn: &mut AnyConnection) -> Result<()> {
        for (table, sql) in TABLES.iter().zip(UPSERT_ARRAYS.iter()) {
            let mut arrays = Arrays::new(table.columns().len());
            for i in 0..self.len(*table) {
                let write = |a: &mut Arrays| self.write_row(*table, i, a);
                if !arrays.push(MESSAGE_BYTES, write) {
                    upsert(conn, sql, &mut arrays).await?;
                    arrays.push(usize::MAX, write);
                }
            }
            if !arrays.is_empty() {
                upsert(conn, sql, &mut arrays).await?;
            }
        }
        Ok(())
    }

    /// SQLite: each table's upserts in [`sqlite_chunks`].
    async fn write_values(&self, conn: &mut AnyConnection) -> Result<()> {
        for table in TABLES {
            let columns = table.columns().len();
            for rows in sqlite_chunks(self.len(table), MAX_PARAMS / columns) {
                let values = placeholders(Backend::Sqlite, rows.len(), columns);
                let sql = upsert_sql(table, &format!("VALUES {values}"));
                let mut binds = Binds::new(sqlx::query(AssertSqlSafe(sql)));
                for i in rows {
                    self.write_row(table, i, &mut binds);
                }
                if let Some(query) = binds.into_query() {
                    query.execute(&mut *conn).await?;
                }
            }
        }
        Ok(())
    }

    /// Contribution `i` to `table`, in [`Table::columns`] order.
    fn write_row(&self, table: Table, i: usize, values: &mut impl Values) {
        match table {
            Table::Daily => {
                let ((day, team, key, model, cost_centre), sums) = &self.daily[i];
                values
                    .text(day)
                    .text(team)
                    .text(key)
                    .text(model)
                    .text(cost_centre)
                    .int(sums.requests)
                    .int(sums.input)
                    .int(sums.cached_input)
                    .int(sums.output)
                    .int(sums.reasoning)
                    .int(sums.cost_nanos)
                    .int(sums.estimated)
                    .int(sums.failed)
                    .int(sums.unpriced)
                    .int(sums.unmetered);
            }
            Table::Sessions => {
                let ((team_id, session_id), s) = &self.sessions[i];
                values
                    .text(team_id)
                    .text(session_id)
                    .int(s.first_seen_ms)
                    .int(s.last_seen_ms)
                    .int(s.sums.requests)
                    .int(s.sums.input)
                    .int(s.sums.cached_input)
                    .int(s.sums.output)
                    .int(s.sums.reasoning)
                    .int(s.sums.cost_nanos);
            }
            Table::Tools => {
                let (((team_id, session_id), tool), calls) = &self.tools[i];
                values.text(team_id).text(session_id).text(tool).int(*calls);
            }
        }
    }
}

/// Runs `sql` on what `arrays` hold and empties them.
async fn upsert(conn: &mut AnyConnection, sql: &str, arrays: &mut Arrays) -> Result<()> {
    arrays
        .bind(sqlx::query(AssertSqlSafe(sql)))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The upsert adding the rows `source` gives (`VALUES …` or `SELECT …`) to `table`.
fn upsert_sql(table: Table, source: &str) -> String {
    let columns: Vec<&str> = table.columns().iter().map(|(name, _)| *name).collect();
    let (name, conflict) = match table {
        Table::Daily => (
            "ledger_daily",
            "ON CONFLICT (day, team_id, key_id, model, cost_centre) DO UPDATE SET \
             requests = ledger_daily.requests + excluded.requests, \
             input_tokens = ledger_daily.input_tokens + excluded.input_tokens, \
             cached_input_tokens = ledger_daily.cached_input_tokens + excluded.cached_input_tokens, \
             output_tokens = ledger_daily.output_tokens + excluded.output_tokens, \
             reasoning_tokens = ledger_daily.reasoning_tokens + excluded.reasoning_tokens, \
             cost_nanos = ledger_daily.cost_nanos + excluded.cost_nanos, \
             estimated_requests = ledger_daily.estimated_requests + excluded.estimated_requests, \
             failed_requests = ledger_daily.failed_requests + excluded.failed_requests, \
             unpriced_requests = ledger_daily.unpriced_requests + excluded.unpriced_requests, \
             unmetered_requests = ledger_daily.unmetered_requests + excluded.unmetered_requests",
        ),
        // First/last seen widen, never narrow.
        Table::Sessions => (
            "sessions",
            "ON CONFLICT (team_id, session_id) DO UPDATE SET \
             first_seen_ms = CASE WHEN excluded.first_seen_ms < sessions.first_seen_ms \
                 THEN excluded.first_seen_ms ELSE sessions.first_seen_ms END, \
             last_seen_ms = CASE WHEN excluded.last_seen_ms > sessions.last_seen_ms \
                 THEN excluded.last_seen_ms ELSE sessions.last_seen_ms END, \
             requests = sessions.requests + excluded.requests, \
             input_tokens = sessions.input_tokens + excluded.input_tokens, \
             cached_input_tokens = sessions.cached_input_tokens + excluded.cached_input_tokens, \
             output_tokens = sessions.output_tokens + excluded.output_tokens, \
             reasoning_tokens = sessions.reasoning_tokens + excluded.reasoning_tokens, \
             cost_nanos = sessions.cost_nanos + excluded.cost_nanos",
        ),
        Table::Tools => (
            "session_tools",
            "ON CONFLICT (team_id, session_id, tool) DO UPDATE SET \
             calls = session_tools.calls + excluded.calls",
        ),
    };
    format!(
        "INSERT INTO {name} ({}) {source} {conflict}",
        columns.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_upserts_each_rollup_from_its_own_arrays() {
        let [daily, sessions, tools] = &*UPSERT_ARRAYS;
        assert!(daily.starts_with("INSERT INTO ledger_daily (day, team_id,"));
        assert!(daily.contains("CAST($15 AS BIGINT[])) WITH ORDINALITY"));
        assert!(sessions.starts_with("INSERT INTO sessions (team_id, session_id,"));
        assert!(sessions.contains("CAST($10 AS BIGINT[])) WITH ORDINALITY"));
        assert!(tools.starts_with("INSERT INTO session_tools (team_id, session_id, tool, calls)"));
        for sql in [daily, sessions, tools] {
            assert!(sql.contains("ORDER BY ordinal ON CONFLICT"), "{sql}");
        }
    }
}
