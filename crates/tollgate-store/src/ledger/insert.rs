//! Writing a batch of ledger events: one transaction that inserts the rows (skipping request ids
//! already present) and adds exactly the inserted rows to the rollups (see `rollup.rs`) and the
//! budget windows (`budget_spend.rs`). On PostgreSQL the rows travel as column arrays through one
//! fixed, prepared statement, a few dozen rows per round trip (see `params.rs`); on SQLite as
//! multi-row `VALUES` in a few fixed shapes (see [`sqlite_chunks`]).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use sqlx::{AnyConnection, AssertSqlSafe, Row};
use tollgate_core::LedgerEvent;

use super::codec::{clean_text, encode_tools, endpoint_code, small_count, small_ms};
use super::params::{Arrays, Binds, MESSAGE_BYTES, Values, unnest};
use super::rollup::Rollups;
use crate::error::Result;
use crate::store::{Backend, Store};

/// Bind parameters per SQLite statement (its limit is 32,766).
pub(super) const MAX_PARAMS: usize = 32_766;

/// The stored columns, with their PostgreSQL types, in the order [`NewRow::write`] gives them.
const LEDGER_COLUMNS: [(&str, &str); 29] = [
    ("started_at_ms", "BIGINT"),
    ("finished_at_ms", "BIGINT"),
    ("cost_nanos", "BIGINT"),
    ("input_tokens", "INTEGER"),
    ("cached_input_tokens", "INTEGER"),
    ("output_tokens", "INTEGER"),
    ("reasoning_tokens", "INTEGER"),
    ("latency_ms", "INTEGER"),
    ("ttfb_ms", "INTEGER"),
    ("model_requested_ref", "INTEGER"),
    ("model_served_ref", "INTEGER"),
    ("price_ref", "INTEGER"),
    ("service_tier_ref", "INTEGER"),
    ("user_ref", "INTEGER"),
    ("cost_centre_ref", "INTEGER"),
    ("status", "SMALLINT"),
    ("endpoint", "SMALLINT"),
    ("estimated", "SMALLINT"),
    ("unpriced", "SMALLINT"),
    ("request_id", "TEXT"),
    ("team_id", "TEXT"),
    ("key_id", "TEXT"),
    ("session_id", "TEXT"),
    ("turn_id", "TEXT"),
    ("tool_calls", "TEXT"),
    ("outcome", "SMALLINT"),
    ("unmetered", "SMALLINT"),
    ("units", "TEXT"),
    ("response_id", "TEXT"),
];

fn insert_ledger(source: &str) -> String {
    let columns: Vec<&str> = LEDGER_COLUMNS.iter().map(|(name, _)| *name).collect();
    format!(
        "INSERT INTO ledger ({}) {source} ON CONFLICT DO NOTHING RETURNING request_id",
        columns.join(", ")
    )
}

/// PostgreSQL's one ledger insert, whatever the batch size.
static INSERT_ARRAYS: LazyLock<String> =
    LazyLock::new(|| insert_ledger(&unnest(1, &LEDGER_COLUMNS)));

const INSERT_NAMES: &str =
    "INSERT INTO ledger_names (name) SELECT unnest(CAST($1 AS TEXT[])) ON CONFLICT DO NOTHING";
const SELECT_NAMES: &str = "SELECT id, name FROM ledger_names WHERE name = ANY(CAST($1 AS TEXT[]))";

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
        let mut rows: Vec<NewRow<'_>> = events
            .iter()
            .map(NewRow::from_event)
            .filter(|row| seen.insert(row.request_id.clone()))
            .collect();
        // In request id order, so that two transactions inserting some of the same ids (a call
        // recorded twice, a replay beside the write it repeats) wait for each other rather than
        // deadlock.
        rows.sort_unstable_by(|a, b| a.request_id.cmp(&b.request_id));
        if rows.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let backend = self.backend();
        if backend == Backend::Postgres {
            self.ensure_ledger_partitions(rows.iter().map(|r| r.event.started_at_ms))
                .await?;
        }

        let mut tx = self.pool.begin().await?;
        let (name_ids, new_names) = self.intern_names(&mut tx, &rows).await?;
        let inserted = match backend {
            Backend::Postgres => insert_arrays(&mut tx, &rows, &name_ids).await?,
            Backend::Sqlite => insert_values(&mut tx, &rows, &name_ids).await?,
        };
        let new_rows: Vec<&NewRow<'_>> = rows
            .iter()
            .filter(|row| inserted.contains(row.request_id.as_ref()))
            .collect();
        Rollups::of(&new_rows).write(&mut tx, backend).await?;
        super::budget_spend::add(
            &mut tx,
            backend,
            &new_rows,
            self.budget_calendar,
            replica_id,
        )
        .await?;
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
    /// The insert and the select are separate statements so that the select sees a name another
    /// writer committed while the insert waited for it.
    async fn intern_names(
        &self,
        conn: &mut AnyConnection,
        rows: &[NewRow<'_>],
    ) -> Result<(HashMap<String, i32>, Vec<(String, i32)>)> {
        let wanted: BTreeSet<&str> = rows.iter().flat_map(NewRow::names).collect();
        let (mut ids, missing) = self.ledger_cache.lookup_names(wanted);
        let mut found = Vec::new();
        match self.backend() {
            Backend::Postgres => {
                let mut names = Arrays::new(1);
                for name in &missing {
                    let write = |a: &mut Arrays| {
                        a.text(name);
                    };
                    if !names.push(MESSAGE_BYTES, write) {
                        intern_arrays(conn, &mut names, &mut found).await?;
                        names.push(usize::MAX, write);
                    }
                }
                if !names.is_empty() {
                    intern_arrays(conn, &mut names, &mut found).await?;
                }
            }
            Backend::Sqlite => {
                for range in sqlite_chunks(missing.len(), MAX_PARAMS) {
                    let chunk = &missing[range];
                    let insert = format!(
                        "INSERT INTO ledger_names (name) VALUES {} ON CONFLICT DO NOTHING",
                        placeholders(Backend::Sqlite, chunk.len(), 1)
                    );
                    let select = format!(
                        "SELECT id, name FROM ledger_names WHERE name IN {}",
                        placeholders(Backend::Sqlite, 1, chunk.len())
                    );
                    let mut insert = sqlx::query(AssertSqlSafe(insert));
                    let mut select = sqlx::query(AssertSqlSafe(select));
                    for name in chunk {
                        insert = insert.bind(*name);
                        select = select.bind(*name);
                    }
                    insert.execute(&mut *conn).await?;
                    for row in select.fetch_all(&mut *conn).await? {
                        found.push((row.try_get(1)?, row.try_get(0)?));
                    }
                }
            }
        }
        for (name, id) in &found {
            ids.insert(name.clone(), *id);
        }
        Ok((ids, found))
    }
}

/// Interns the names in `names` (one array) and adds them with their ids to `found`.
async fn intern_arrays(
    conn: &mut AnyConnection,
    names: &mut Arrays,
    found: &mut Vec<(String, i32)>,
) -> Result<()> {
    let literals = names.take();
    let names = literals.first().map_or("{}", String::as_str);
    sqlx::query(INSERT_NAMES)
        .bind(names)
        .execute(&mut *conn)
        .await?;
    for row in sqlx::query(SELECT_NAMES)
        .bind(names)
        .fetch_all(&mut *conn)
        .await?
    {
        found.push((row.try_get(1)?, row.try_get(0)?));
    }
    Ok(())
}

/// PostgreSQL: the rows as column arrays, a statement per [`MESSAGE_BYTES`]; returns the request
/// ids actually inserted.
async fn insert_arrays(
    conn: &mut AnyConnection,
    rows: &[NewRow<'_>],
    names: &HashMap<String, i32>,
) -> Result<HashSet<String>> {
    let mut inserted = HashSet::with_capacity(rows.len());
    let mut arrays = Arrays::new(LEDGER_COLUMNS.len());
    for row in rows {
        let write = |a: &mut Arrays| row.write(a, names);
        if !arrays.push(MESSAGE_BYTES, write) {
            insert_statement(conn, &mut arrays, &mut inserted).await?;
            arrays.push(usize::MAX, write);
        }
    }
    if !arrays.is_empty() {
        insert_statement(conn, &mut arrays, &mut inserted).await?;
    }
    Ok(inserted)
}

async fn insert_statement(
    conn: &mut AnyConnection,
    arrays: &mut Arrays,
    inserted: &mut HashSet<String>,
) -> Result<()> {
    let query = arrays.bind(sqlx::query(AssertSqlSafe(INSERT_ARRAYS.as_str())));
    for id in query.fetch_all(&mut *conn).await? {
        inserted.insert(id.try_get::<String, _>(0)?);
    }
    Ok(())
}

/// SQLite: the rows as multi-row `VALUES` in [`sqlite_chunks`]; returns the request ids actually
/// inserted.
async fn insert_values(
    conn: &mut AnyConnection,
    rows: &[NewRow<'_>],
    names: &HashMap<String, i32>,
) -> Result<HashSet<String>> {
    let mut inserted = HashSet::with_capacity(rows.len());
    for range in sqlite_chunks(rows.len(), MAX_PARAMS / LEDGER_COLUMNS.len()) {
        let chunk = &rows[range];
        let values = placeholders(Backend::Sqlite, chunk.len(), LEDGER_COLUMNS.len());
        let sql = insert_ledger(&format!("VALUES {values}"));
        let mut binds = Binds::new(sqlx::query(AssertSqlSafe(sql)));
        for row in chunk {
            row.write(&mut binds, names);
        }
        let Some(query) = binds.into_query() else {
            continue;
        };
        for id in query.fetch_all(&mut *conn).await? {
            inserted.insert(id.try_get::<String, _>(0)?);
        }
    }
    Ok(inserted)
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

    /// The row's values in [`LEDGER_COLUMNS`] order, names as their `ledger_names` ids.
    fn write(&self, values: &mut impl Values, names: &HashMap<String, i32>) {
        let e = self.event;
        let name = |n: &Option<Cow<'_, str>>| n.as_deref().and_then(|n| names.get(n).copied());
        values
            .int(e.started_at_ms)
            .int(e.finished_at_ms)
            .int(e.cost.nanos())
            .int(self.input)
            .int(self.cached_input)
            .int(self.output)
            .int(self.reasoning)
            .int(small_ms(e.latency_ms))
            .opt_int(e.ttfb_ms.map(small_ms))
            .opt_int(name(&self.model_requested))
            .opt_int(name(&self.model_served))
            .opt_int(name(&self.price_id))
            .opt_int(name(&self.service_tier))
            .opt_int(name(&self.user))
            .opt_int(name(&self.cost_centre))
            .int(i16::try_from(e.status).unwrap_or(i16::MAX))
            .int(endpoint_code(&e.endpoint))
            .int(i16::from(e.estimated))
            .int(i16::from(e.unpriced))
            .text(&self.request_id)
            .text(&self.team_id)
            .text(&self.key_id)
            .opt_text(self.session_id.as_deref())
            .opt_text(self.turn_id.as_deref())
            .opt_text(self.tool_calls.as_deref())
            .int(e.outcome.code())
            .int(i16::from(e.unmetered))
            .opt_text(self.units.as_deref())
            .opt_text(self.response_id.as_deref());
    }
}

/// How SQLite cuts `rows` rows into statements of at most `max` rows each.
///
/// A multi-row statement's SQL text depends on its row count, and sqlx keeps every statement it
/// prepares in a per-connection cache keyed by that text (100 per connection). On SQLite each
/// cached entry is a compiled program that grows with its rows, and a gateway under load cuts
/// batches of every size from 1 to `batch_rows`: the cache filled with hundreds of near-identical
/// programs and the process's memory grew with every new size. So a batch is cut into full
/// `max`-row chunks and then powers of two, largest first (500 rows: 256 + 128 + 64 + 32 + 16 +
/// 4): at most ~12 statement shapes per table whatever the traffic, each prepared once and
/// reused, and running several statements costs nothing extra on an in-process database.
/// (PostgreSQL sends column arrays through one statement text instead: `params.rs`.)
pub(super) fn sqlite_chunks(rows: usize, max: usize) -> Vec<std::ops::Range<usize>> {
    let max = max.max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    while rows - start >= max {
        chunks.push(start..start + max);
        start += max;
    }
    while start < rows {
        let len = 1_usize << (usize::BITS - 1 - (rows - start).leading_zeros());
        chunks.push(start..start + len);
        start += len;
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
    fn sqlite_chunks_cover_every_row_once_in_few_shapes() {
        let max = MAX_PARAMS / LEDGER_COLUMNS.len();
        let mut shapes = BTreeSet::new();
        for rows in 0..=5_000 {
            let chunks = sqlite_chunks(rows, max);
            let mut next = 0;
            for chunk in &chunks {
                assert_eq!(chunk.start, next, "{rows} rows: {chunks:?}");
                assert!(!chunk.is_empty() && chunk.len() <= max);
                next = chunk.end;
                shapes.insert(chunk.len());
            }
            assert_eq!(next, rows, "{rows} rows: {chunks:?}");
        }
        // max and the powers of two below it
        assert!(shapes.len() <= 12, "{shapes:?}");
        assert_eq!(
            sqlite_chunks(500, max),
            [0..256, 256..384, 384..448, 448..480, 480..496, 496..500]
        );
    }

    #[test]
    fn postgres_inserts_every_column_from_its_typed_array() {
        let sql = INSERT_ARRAYS.as_str();
        assert!(sql.starts_with("INSERT INTO ledger (started_at_ms, finished_at_ms, cost_nanos,"));
        assert!(sql.contains("unnest(CAST($1 AS BIGINT[]), CAST($2 AS BIGINT[]),"));
        assert!(sql.contains("CAST($29 AS TEXT[])) WITH ORDINALITY"));
        assert!(sql.ends_with("ON CONFLICT DO NOTHING RETURNING request_id"));
    }
}
