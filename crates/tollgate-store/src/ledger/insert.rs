//! Writing a batch of ledger events: one transaction that inserts the rows (skipping request ids
//! already present) and adds exactly the inserted rows to the daily, session and session-tool
//! rollups, with one multi-row upsert per rollup table rather than a statement per row.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::{AnyConnection, AssertSqlSafe, Row};
use tollgate_core::LedgerEvent;

use super::calendar::utc_day;
use super::codec::{clean_text, encode_tools, endpoint_code, small_count, small_ms};
use crate::error::Result;
use crate::store::{Backend, Store};

/// Bind parameters per statement: SQLite's limit (32,766), which is below PostgreSQL's (65,535).
const MAX_PARAMS: usize = 32_766;

const LEDGER_COLUMNS: [&str; 25] = [
    "started_at_ms",
    "finished_at_ms",
    "cost_nanos",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "latency_ms",
    "ttfb_ms",
    "model_requested_ref",
    "model_served_ref",
    "price_ref",
    "service_tier_ref",
    "user_ref",
    "cost_centre_ref",
    "status",
    "endpoint",
    "estimated",
    "unpriced",
    "request_id",
    "team_id",
    "key_id",
    "session_id",
    "turn_id",
    "tool_calls",
];

/// What a batch did: rows inserted, and events skipped because their request id was already in
/// the ledger (a replay) or earlier in the same batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub inserted: u64,
    pub duplicates: u64,
}

impl Store {
    /// Writes `events` in one transaction, idempotent on `request_id`: an event whose id is already
    /// stored (or repeats an earlier one in `events`) changes nothing, rollups included. On
    /// PostgreSQL the month partitions the rows need are created first.
    pub async fn insert_ledger_batch(&self, events: &[LedgerEvent]) -> Result<BatchOutcome> {
        let mut seen = HashSet::with_capacity(events.len());
        let rows: Vec<NewRow<'_>> = events
            .iter()
            .map(NewRow::from_event)
            .filter(|row| seen.insert(row.request_id.clone()))
            .collect();
        if rows.is_empty() {
            return Ok(BatchOutcome::default());
        }
        if self.backend() == Backend::Postgres {
            self.ensure_ledger_partitions(rows.iter().map(|r| r.event.started_at_ms))
                .await?;
        }

        let mut tx = self.pool.begin().await?;
        let (name_ids, new_names) = self.intern_names(&mut tx, &rows).await?;
        let mut inserted = HashSet::with_capacity(rows.len());
        for chunk in rows.chunks(MAX_PARAMS / LEDGER_COLUMNS.len()) {
            let sql = format!(
                "INSERT INTO ledger ({}) VALUES {} ON CONFLICT DO NOTHING RETURNING request_id",
                LEDGER_COLUMNS.join(", "),
                placeholders(chunk.len(), LEDGER_COLUMNS.len()),
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for row in chunk {
                let e = row.event;
                let name =
                    |n: &Option<Cow<'_, str>>| n.as_deref().and_then(|n| name_ids.get(n).copied());
                query = query
                    .bind(e.started_at_ms)
                    .bind(e.finished_at_ms)
                    .bind(e.cost.nanos())
                    .bind(row.input)
                    .bind(row.cached_input)
                    .bind(row.output)
                    .bind(row.reasoning)
                    .bind(small_ms(e.latency_ms))
                    .bind(e.ttfb_ms.map(small_ms))
                    .bind(name(&row.model_requested))
                    .bind(name(&row.model_served))
                    .bind(name(&row.price_id))
                    .bind(name(&row.service_tier))
                    .bind(name(&row.user))
                    .bind(name(&row.cost_centre))
                    .bind(i16::try_from(e.status).unwrap_or(i16::MAX))
                    .bind(endpoint_code(&e.endpoint))
                    .bind(i16::from(e.estimated))
                    .bind(i16::from(e.unpriced))
                    .bind(row.request_id.as_ref())
                    .bind(row.team_id.as_ref())
                    .bind(row.key_id.as_ref())
                    .bind(row.session_id.as_deref())
                    .bind(row.turn_id.as_deref())
                    .bind(row.tool_calls.as_deref());
            }
            let returned = query.fetch_all(&mut *tx).await?;
            for id in &returned {
                inserted.insert(id.try_get::<String, _>(0)?);
            }
        }
        let new_rows: Vec<&NewRow<'_>> = rows
            .iter()
            .filter(|row| inserted.contains(row.request_id.as_ref()))
            .collect();
        upsert_daily(&mut tx, &new_rows).await?;
        upsert_sessions(&mut tx, &new_rows).await?;
        upsert_session_tools(&mut tx, &new_rows).await?;
        tx.commit().await?;

        self.ledger_cache.remember_names(new_names);
        let inserted = new_rows.len() as u64;
        Ok(BatchOutcome {
            inserted,
            duplicates: events.len() as u64 - inserted,
        })
    }

    /// Ids for every name the rows use, inserting the ones not seen before. Runs inside the batch
    /// transaction; the new ids are returned separately so they are cached only once committed.
    async fn intern_names(
        &self,
        conn: &mut AnyConnection,
        rows: &[NewRow<'_>],
    ) -> Result<(HashMap<String, i32>, Vec<(String, i32)>)> {
        let wanted: BTreeSet<&str> = rows.iter().flat_map(NewRow::names).collect();
        let (mut ids, missing) = self.ledger_cache.lookup_names(wanted);
        let mut new_names = Vec::new();
        for chunk in missing.chunks(MAX_PARAMS) {
            let insert = format!(
                "INSERT INTO ledger_names (name) VALUES {} ON CONFLICT DO NOTHING",
                placeholders(chunk.len(), 1)
            );
            let select = format!(
                "SELECT id, name FROM ledger_names WHERE name IN ({})",
                (1..=chunk.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut insert = sqlx::query(AssertSqlSafe(insert));
            let mut select = sqlx::query(AssertSqlSafe(select));
            for name in chunk {
                insert = insert.bind(*name);
                select = select.bind(*name);
            }
            insert.execute(&mut *conn).await?;
            for row in select.fetch_all(&mut *conn).await? {
                let id: i32 = row.try_get(0)?;
                let name: String = row.try_get(1)?;
                ids.insert(name.clone(), id);
                new_names.push((name, id));
            }
        }
        Ok((ids, new_names))
    }
}

/// One event as it will be stored: cleaned text, clamped counts, tool calls encoded.
struct NewRow<'a> {
    event: &'a LedgerEvent,
    request_id: Cow<'a, str>,
    team_id: Cow<'a, str>,
    key_id: Cow<'a, str>,
    session_id: Option<Cow<'a, str>>,
    turn_id: Option<Cow<'a, str>>,
    cost_centre: Option<Cow<'a, str>>,
    user: Option<Cow<'a, str>>,
    model_requested: Option<Cow<'a, str>>,
    model_served: Option<Cow<'a, str>>,
    price_id: Option<Cow<'a, str>>,
    service_tier: Option<Cow<'a, str>>,
    input: i32,
    cached_input: i32,
    output: i32,
    reasoning: i32,
    tool_calls: Option<String>,
}

impl<'a> NewRow<'a> {
    fn from_event(event: &'a LedgerEvent) -> NewRow<'a> {
        let opt = |text: &'a Option<String>| text.as_deref().map(clean_text);
        NewRow {
            event,
            request_id: clean_text(&event.request_id),
            team_id: clean_text(&event.team_id),
            key_id: clean_text(&event.key_id),
            session_id: opt(&event.session_id),
            turn_id: opt(&event.turn_id),
            cost_centre: opt(&event.cost_centre),
            user: opt(&event.user),
            model_requested: opt(&event.model_requested),
            model_served: opt(&event.model_served),
            price_id: opt(&event.price_id),
            service_tier: opt(&event.service_tier),
            input: small_count(event.usage.input),
            cached_input: small_count(event.usage.cached_input),
            output: small_count(event.usage.output),
            reasoning: small_count(event.usage.reasoning),
            tool_calls: encode_tools(&event.tool_calls).map(|t| t.replace('\0', "")),
        }
    }

    /// The strings stored as `ledger_names` references.
    fn names(&self) -> impl Iterator<Item = &str> {
        [
            &self.cost_centre,
            &self.user,
            &self.model_requested,
            &self.model_served,
            &self.price_id,
            &self.service_tier,
        ]
        .into_iter()
        .filter_map(|name| name.as_deref())
    }

    /// The `ledger_daily` model: served, else requested, else ''.
    fn model(&self) -> &str {
        self.model_served
            .as_deref()
            .or(self.model_requested.as_deref())
            .unwrap_or("")
    }
}

/// Token and cost sums shared by the rollups.
#[derive(Default)]
struct Sums {
    requests: i64,
    input: i64,
    cached_input: i64,
    output: i64,
    reasoning: i64,
    cost_nanos: i64,
    estimated: i64,
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
    }
}

/// Rollup rows are upserted in key order (the maps are B-trees), so two writers touching the same
/// keys lock them in the same order and cannot deadlock each other.
async fn upsert_daily(conn: &mut AnyConnection, rows: &[&NewRow<'_>]) -> Result<()> {
    let mut daily: BTreeMap<(String, &str, &str, &str, &str), Sums> = BTreeMap::new();
    for row in rows {
        let key = (
            utc_day(row.event.started_at_ms),
            row.team_id.as_ref(),
            row.key_id.as_ref(),
            row.model(),
            row.cost_centre.as_deref().unwrap_or(""),
        );
        daily.entry(key).or_default().add(row);
    }
    let daily: Vec<_> = daily.into_iter().collect();
    for chunk in daily.chunks(MAX_PARAMS / 12) {
        let sql = format!(
            "INSERT INTO ledger_daily (day, team_id, key_id, model, cost_centre, requests, \
             input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos, \
             estimated_requests) VALUES {} \
             ON CONFLICT (day, team_id, key_id, model, cost_centre) DO UPDATE SET \
             requests = ledger_daily.requests + excluded.requests, \
             input_tokens = ledger_daily.input_tokens + excluded.input_tokens, \
             cached_input_tokens = ledger_daily.cached_input_tokens + excluded.cached_input_tokens, \
             output_tokens = ledger_daily.output_tokens + excluded.output_tokens, \
             reasoning_tokens = ledger_daily.reasoning_tokens + excluded.reasoning_tokens, \
             cost_nanos = ledger_daily.cost_nanos + excluded.cost_nanos, \
             estimated_requests = ledger_daily.estimated_requests + excluded.estimated_requests",
            placeholders(chunk.len(), 12)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for ((day, team, key, model, cost_centre), sums) in chunk {
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
                .bind(sums.estimated);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

struct SessionSums<'a> {
    team_id: &'a str,
    first_seen_ms: i64,
    last_seen_ms: i64,
    sums: Sums,
}

async fn upsert_sessions(conn: &mut AnyConnection, rows: &[&NewRow<'_>]) -> Result<()> {
    let mut sessions: BTreeMap<&str, SessionSums<'_>> = BTreeMap::new();
    for row in rows {
        let Some(session_id) = row.session_id.as_deref() else {
            continue;
        };
        let session = sessions.entry(session_id).or_insert_with(|| SessionSums {
            team_id: &row.team_id,
            first_seen_ms: row.event.started_at_ms,
            last_seen_ms: row.event.finished_at_ms,
            sums: Sums::default(),
        });
        if row.event.started_at_ms < session.first_seen_ms {
            session.first_seen_ms = row.event.started_at_ms;
            session.team_id = &row.team_id;
        }
        session.last_seen_ms = session.last_seen_ms.max(row.event.finished_at_ms);
        session.sums.add(row);
    }
    let sessions: Vec<_> = sessions.into_iter().collect();
    for chunk in sessions.chunks(MAX_PARAMS / 10) {
        // The team is whichever used the session first; first/last seen widen, never narrow.
        let sql = format!(
            "INSERT INTO sessions (session_id, team_id, first_seen_ms, last_seen_ms, requests, \
             input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos) \
             VALUES {} ON CONFLICT (session_id) DO UPDATE SET \
             team_id = CASE WHEN excluded.first_seen_ms < sessions.first_seen_ms \
                 THEN excluded.team_id ELSE sessions.team_id END, \
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
            placeholders(chunk.len(), 10)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (session_id, s) in chunk {
            query = query
                .bind(*session_id)
                .bind(s.team_id)
                .bind(s.first_seen_ms)
                .bind(s.last_seen_ms)
                .bind(s.sums.requests)
                .bind(s.sums.input)
                .bind(s.sums.cached_input)
                .bind(s.sums.output)
                .bind(s.sums.reasoning)
                .bind(s.sums.cost_nanos);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn upsert_session_tools(conn: &mut AnyConnection, rows: &[&NewRow<'_>]) -> Result<()> {
    let mut tools: BTreeMap<(&str, Cow<'_, str>), i64> = BTreeMap::new();
    for row in rows {
        let Some(session_id) = row.session_id.as_deref() else {
            continue;
        };
        for tool in &row.event.tool_calls {
            *tools
                .entry((session_id, clean_text(&tool.name)))
                .or_default() += i64::from(tool.count);
        }
    }
    let tools: Vec<_> = tools.into_iter().collect();
    for chunk in tools.chunks(MAX_PARAMS / 3) {
        let sql = format!(
            "INSERT INTO session_tools (session_id, tool, calls) VALUES {} \
             ON CONFLICT (session_id, tool) DO UPDATE SET calls = session_tools.calls + excluded.calls",
            placeholders(chunk.len(), 3)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for ((session_id, tool), calls) in chunk {
            query = query.bind(*session_id).bind(tool.as_ref()).bind(*calls);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` parameters.
fn placeholders(rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 6);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * columns + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 1), "($1)");
        assert!(MAX_PARAMS / LEDGER_COLUMNS.len() * LEDGER_COLUMNS.len() <= 32_766);
    }
}
