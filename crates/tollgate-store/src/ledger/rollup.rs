//! The rollups a batch adds to, from exactly the rows it inserted: `ledger_daily` (per UTC day,
//! team, key, model and cost centre), `sessions` and `session_tools` (per team and session id: a
//! session id is the client's choice, so two teams that send the same one have two sessions).
//! Rows are summed here first, so each rollup key gets one upsert per batch, never one per row.
//!
//! On PostgreSQL the three upserts travel as one statement (two of them as data-modifying CTEs):
//! every statement is a round trip, and sqlx 0.9.0 does not set TCP_NODELAY, so a large message
//! can wait ~40 ms on Nagle's algorithm per round trip. SQLite runs them one after another.

use std::borrow::Cow;
use std::collections::BTreeMap;

use sqlx::any::AnyArguments;
use sqlx::{Any, AnyConnection, AssertSqlSafe};
use tollgate_core::{CallOutcome, LedgerEvent};

use super::calendar::utc_day;
use super::codec::clean_text;
use super::insert::{MAX_PARAMS, NewRow, placeholders_from, statement_chunks};
use crate::error::Result;
use crate::store::Backend;

type Query<'q> = sqlx::query::Query<'q, Any, AnyArguments>;

/// PostgreSQL's bind-parameter limit, for the combined statement.
const POSTGRES_MAX_PARAMS: usize = 65_535;

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
    fn columns(self) -> usize {
        match self {
            Table::Daily => 15,
            Table::Sessions => 10,
            Table::Tools => 4,
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
        let tables: Vec<Table> = [Table::Daily, Table::Sessions, Table::Tools]
            .into_iter()
            .filter(|t| self.len(*t) > 0)
            .collect();
        let params: usize = tables.iter().map(|t| self.len(*t) * t.columns()).sum();
        if backend == Backend::Postgres && params <= POSTGRES_MAX_PARAMS {
            return self.write_as_one_statement(conn, &tables).await;
        }
        for table in tables {
            let per_statement = MAX_PARAMS / table.columns();
            for rows in statement_chunks(backend, self.len(table), per_statement) {
                let sql = upsert_sql(table, backend, 1, rows.len());
                let query = sqlx::query(AssertSqlSafe(sql)).persistent(backend == Backend::Sqlite);
                let query = self.bind(table, query, rows);
                query.execute(&mut *conn).await?;
            }
        }
        Ok(())
    }

    /// `WITH r0 AS (upsert), r1 AS (upsert) upsert`, numbering parameters across all three.
    async fn write_as_one_statement(
        &self,
        conn: &mut AnyConnection,
        tables: &[Table],
    ) -> Result<()> {
        let Some((last, ctes)) = tables.split_last() else {
            return Ok(());
        };
        let mut sql = String::new();
        let mut first = 1;
        for (i, table) in ctes.iter().enumerate() {
            sql.push_str(if i == 0 { "WITH " } else { ", " });
            let upsert = upsert_sql(*table, Backend::Postgres, first, self.len(*table));
            sql.push_str(&format!("r{i} AS ({upsert})"));
            first += self.len(*table) * table.columns();
        }
        sql.push(' ');
        sql.push_str(&upsert_sql(
            *last,
            Backend::Postgres,
            first,
            self.len(*last),
        ));
        // One text per mix of batch sizes: never cached as a prepared statement (see insert.rs).
        let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(false);
        for table in tables {
            query = self.bind(*table, query, 0..self.len(*table));
        }
        query.execute(&mut *conn).await?;
        Ok(())
    }

    fn bind<'q>(
        &self,
        table: Table,
        mut query: Query<'q>,
        rows: std::ops::Range<usize>,
    ) -> Query<'q> {
        match table {
            Table::Daily => {
                for ((day, team, key, model, cost_centre), sums) in &self.daily[rows] {
                    query = query
                        .bind(day.as_str())
                        .bind(*team)
                        .bind(*key)
                        .bind(*model)
                        .bind(*cost_centre)
                        .bind(sums.requests)
                        .bind(sums.input)
                        .bind(sums.cached_input)
                        .bind(sums.output)
                        .bind(sums.reasoning)
                        .bind(sums.cost_nanos)
                        .bind(sums.estimated)
                        .bind(sums.failed)
                        .bind(sums.unpriced)
                        .bind(sums.unmetered);
                }
            }
            Table::Sessions => {
                for ((team_id, session_id), s) in &self.sessions[rows] {
                    query = query
                        .bind(*team_id)
                        .bind(*session_id)
                        .bind(s.first_seen_ms)
                        .bind(s.last_seen_ms)
                        .bind(s.sums.requests)
                        .bind(s.sums.input)
                        .bind(s.sums.cached_input)
                        .bind(s.sums.output)
                        .bind(s.sums.reasoning)
                        .bind(s.sums.cost_nanos);
                }
            }
            Table::Tools => {
                for (((team_id, session_id), tool), calls) in &self.tools[rows] {
                    query = query
                        .bind(*team_id)
                        .bind(*session_id)
                        .bind(tool.as_ref())
                        .bind(*calls);
                }
            }
        }
        query
    }
}

/// The upsert adding `rows` rows of contributions to `table`, parameters numbered from `first`.
fn upsert_sql(table: Table, backend: Backend, first: usize, rows: usize) -> String {
    let values = placeholders_from(backend, first, rows, table.columns());
    match table {
        Table::Daily => format!(
            "INSERT INTO ledger_daily (day, team_id, key_id, model, cost_centre, requests, \
             input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos, \
             estimated_requests, failed_requests, unpriced_requests, unmetered_requests) \
             VALUES {values} \
             ON CONFLICT (day, team_id, key_id, model, cost_centre) DO UPDATE SET \
             requests = ledger_daily.requests + excluded.requests, \
             input_tokens = ledger_daily.input_tokens + excluded.input_tokens, \
             cached_input_tokens = ledger_daily.cached_input_tokens + excluded.cached_input_tokens, \
             output_tokens = ledger_daily.output_tokens + excluded.output_tokens, \
             reasoning_tokens = ledger_daily.reasoning_tokens + excluded.reasoning_tokens, \
             cost_nanos = ledger_daily.cost_nanos + excluded.cost_nanos, \
             estimated_requests = ledger_daily.estimated_requests + excluded.estimated_requests, \
             failed_requests = ledger_daily.failed_requests + excluded.failed_requests, \
             unpriced_requests = ledger_daily.unpriced_requests + excluded.unpriced_requests, \
             unmetered_requests = ledger_daily.unmetered_requests + excluded.unmetered_requests"
        ),
        // First/last seen widen, never narrow.
        Table::Sessions => format!(
            "INSERT INTO sessions (team_id, session_id, first_seen_ms, last_seen_ms, requests, \
             input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos) \
             VALUES {values} ON CONFLICT (team_id, session_id) DO UPDATE SET \
             first_seen_ms = CASE WHEN excluded.first_seen_ms < sessions.first_seen_ms \
                 THEN excluded.first_seen_ms ELSE sessions.first_seen_ms END, \
             last_seen_ms = CASE WHEN excluded.last_seen_ms > sessions.last_seen_ms \
                 THEN excluded.last_seen_ms ELSE sessions.last_seen_ms END, \
             requests = sessions.requests + excluded.requests, \
             input_tokens = sessions.input_tokens + excluded.input_tokens, \
             cached_input_tokens = sessions.cached_input_tokens + excluded.cached_input_tokens, \
             output_tokens = sessions.output_tokens + excluded.output_tokens, \
             reasoning_tokens = sessions.reasoning_tokens + excluded.reasoning_tokens, \
             cost_nanos = sessions.cost_nanos + excluded.cost_nanos"
        ),
        Table::Tools => format!(
            "INSERT INTO session_tools (team_id, session_id, tool, calls) VALUES {values} \
             ON CONFLICT (team_id, session_id, tool) DO UPDATE SET calls = session_tools.calls + excluded.calls"
        ),
    }
}
