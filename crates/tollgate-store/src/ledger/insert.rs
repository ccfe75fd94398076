//! Writing a batch of ledger events: one transaction that inserts the rows (skipping request ids
//! already present) and adds exactly the inserted rows to the rollups (see `rollup.rs`).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};

use sqlx::{AnyConnection, AssertSqlSafe, Row};
use tollgate_core::LedgerEvent;

use super::codec::{clean_text, encode_tools, endpoint_code, small_count, small_ms};
use super::rollup::Rollups;
use crate::error::Result;
use crate::store::{Backend, Store};

/// Bind parameters per statement: SQLite's limit (32,766), which is below PostgreSQL's (65,535).
pub(super) const MAX_PARAMS: usize = 32_766;

const LEDGER_COLUMNS: [&str; 29] = [
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
    "outcome",
    "unmetered",
    "units",
    "response_id",
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
        self.insert_ledger_batch_as(events, None).await
    }

    /// [`insert_ledger_batch`](Self::insert_ledger_batch) by the process `replica_id`, whose
    /// budget leases the inserted rows' cost is consumed from.
    pub async fn insert_ledger_batch_as(
        &self,
        events: &[LedgerEvent],
        replica_id: Option<&str>,
    ) -> Result<BatchOutcome> {
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

        let backend = self.backend();
        let mut tx = self.pool.begin().await?;
        let (name_ids, new_names) = self.intern_names(&mut tx, &rows).await?;
        let mut inserted = HashSet::with_capacity(rows.len());
        for range in statement_chunks(backend, rows.len(), MAX_PARAMS / LEDGER_COLUMNS.len()) {
            let chunk = &rows[range];
            let sql = format!(
                "INSERT INTO ledger ({}) VALUES {} ON CONFLICT DO NOTHING RETURNING request_id",
                LEDGER_COLUMNS.join(", "),
                placeholders(backend, chunk.len(), LEDGER_COLUMNS.len()),
            );
            // Postgres: the SQL text varies with the batch size, and sqlx would cache a
            // prepared statement per text and connection for good; an unnamed statement costs
            // no extra round trip. SQLite reuses its few chunk shapes (`statement_chunks`).
            let persistent = backend == Backend::Sqlite;
            let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(persistent);
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
                    .bind(row.tool_calls.as_deref())
                    .bind(e.outcome.code())
                    .bind(i16::from(e.unmetered))
                    .bind(row.units.as_deref())
                    .bind(row.response_id.as_deref());
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
        Rollups::of(&new_rows).write(&mut tx, backend).await?;
        super::budget_spend::add(&mut tx, &new_rows, self.budget_calendar, replica_id).await?;
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
        let backend = self.backend();
        let mut new_names = Vec::new();
        for range in statement_chunks(backend, missing.len(), MAX_PARAMS) {
            let chunk = &missing[range];
            let insert = format!(
                "INSERT INTO ledger_names (name) VALUES {} ON CONFLICT DO NOTHING",
                placeholders(backend, chunk.len(), 1)
            );
            let select = format!(
                "SELECT id, name FROM ledger_names WHERE name IN {}",
                placeholders(backend, 1, chunk.len())
            );
            let persistent = backend == Backend::Sqlite;
            let mut insert = sqlx::query(AssertSqlSafe(insert)).persistent(persistent);
            let mut select = sqlx::query(AssertSqlSafe(select)).persistent(persistent);
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
pub(super) struct NewRow<'a> {
    pub(super) event: &'a LedgerEvent,
    pub(super) request_id: Cow<'a, str>,
    pub(super) team_id: Cow<'a, str>,
    pub(super) key_id: Cow<'a, str>,
    pub(super) session_id: Option<Cow<'a, str>>,
    turn_id: Option<Cow<'a, str>>,
    pub(super) cost_centre: Option<Cow<'a, str>>,
    user: Option<Cow<'a, str>>,
    model_requested: Option<Cow<'a, str>>,
    model_served: Option<Cow<'a, str>>,
    price_id: Option<Cow<'a, str>>,
    service_tier: Option<Cow<'a, str>>,
    pub(super) input: i32,
    pub(super) cached_input: i32,
    pub(super) output: i32,
    pub(super) reasoning: i32,
    tool_calls: Option<String>,
    /// The event's units as JSON; `None` when there are none.
    units: Option<String>,
    response_id: Option<Cow<'a, str>>,
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
            response_id: opt(&event.response_id),
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
            // JSON escapes a NUL, so the text is storable in PostgreSQL as it is.
            units: (!event.units.is_empty())
                .then(|| serde_json::to_string(&event.units).ok())
                .flatten(),
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
    pub(super) fn model(&self) -> &str {
        self.model_served
            .as_deref()
            .or(self.model_requested.as_deref())
            .unwrap_or("")
    }
}

/// How to split `rows` rows into statements of at most `max` rows each.
///
/// A multi-row statement's SQL text depends on its row count, and sqlx keeps every statement it
/// prepares in a per-connection cache keyed by that text (100 per connection). On SQLite each
/// cached entry is a compiled program that grows with its rows, and a gateway under load cuts
/// batches of every size from 1 to `batch_rows`: the cache filled with hundreds of near-identical
/// programs and the process's memory grew with every new size. So on
/// SQLite a batch is cut into full `max`-row chunks and then powers of two, largest first (500
/// rows: 256 + 128 + 64 + 32 + 16 + 4): at most ~12 statement shapes per table whatever the
/// traffic, each prepared once and reused, and running several statements costs nothing extra on
/// an in-process database. PostgreSQL keeps one statement per `max` rows: there every statement
/// is a network round trip, and its client-side cache holds only the text and column metadata.
pub(super) fn statement_chunks(
    backend: Backend,
    rows: usize,
    max: usize,
) -> Vec<std::ops::Range<usize>> {
    let max = max.max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    while rows - start >= max {
        chunks.push(start..start + max);
        start += max;
    }
    match backend {
        Backend::Postgres if start < rows => chunks.push(start..rows),
        Backend::Postgres => {}
        Backend::Sqlite => {
            while start < rows {
                let len = 1_usize << (usize::BITS - 1 - (rows - start).leading_zeros());
                chunks.push(start..start + len);
                start += len;
            }
        }
    }
    chunks
}

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` parameters (`(?, ?), (?, ?)` on SQLite).
pub(super) fn placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    placeholders_from(backend, 1, rows, columns)
}

/// [`placeholders`] numbered from `$first`, for statements that bind several lists.
pub(super) fn placeholders_from(
    backend: Backend,
    first: usize,
    rows: usize,
    columns: usize,
) -> String {
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
            match backend {
                // SQLite resolves `$N` names by a linear search per parameter when preparing, so
                // a 12,500-parameter batch took ~40x longer to prepare than to run; `?` is
                // positional and free.
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(first + row * columns + column).to_string());
                }
            }
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
        assert_eq!(
            placeholders(Backend::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders(Backend::Postgres, 1, 1), "($1)");
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert!(MAX_PARAMS / LEDGER_COLUMNS.len() * LEDGER_COLUMNS.len() <= 32_766);
    }

    #[test]
    fn statement_chunks_cover_every_row_once_in_few_shapes_on_sqlite() {
        let max = MAX_PARAMS / LEDGER_COLUMNS.len();
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let mut shapes = BTreeSet::new();
            for rows in 0..=5_000 {
                let chunks = statement_chunks(backend, rows, max);
                let mut next = 0;
                for chunk in &chunks {
                    assert_eq!(chunk.start, next, "{backend:?} {rows} rows: {chunks:?}");
                    assert!(!chunk.is_empty() && chunk.len() <= max);
                    next = chunk.end;
                    shapes.insert(chunk.len());
                }
                assert_eq!(next, rows, "{backend:?} {rows} rows: {chunks:?}");
            }
            match backend {
                // max and the powers of two below it
                Backend::Sqlite => assert!(shapes.len() <= 12, "{shapes:?}"),
                Backend::Postgres => assert_eq!(shapes.len(), max),
            }
        }
        assert_eq!(
            statement_chunks(Backend::Sqlite, 500, max),
            [0..256, 256..384, 384..448, 448..480, 480..496, 496..500]
        );
        assert_eq!(statement_chunks(Backend::Postgres, 500, max), vec![0..500]);
    }
}
