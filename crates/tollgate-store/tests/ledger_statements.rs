//! The SQL the ledger writer sends stays a small, fixed set of statements whatever sizes its
//! batches come in. sqlx caches every statement it prepares, keyed by its text, per connection;
//! on SQLite each cached entry is a compiled program as large as its rows, so batches of every
//! size from 1 to `batch_rows` once filled the cache with hundreds of programs and the gateway's
//! memory grew with every call. This binary records the statements sqlx runs (its `sqlx::query`
//! events, through a process-wide tracing layer, since SQLite runs them on its own threads), so
//! it holds only this test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/events.rs"]
mod events;

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use events::*;
use tollgate_core::LedgerEvent;
use tollgate_store::Store;
use tollgate_store::testdb::TestDb;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

/// Distinct statement texts sqlx has run in this process.
static STATEMENTS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

struct RecordStatements;

impl<S: tracing::Subscriber> Layer<S> for RecordStatements {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let mut text = StatementText::default();
        event.record(&mut text);
        // A long statement's summary is cut short and its full text is in `db.statement`.
        let sql = if text.statement.trim().is_empty() {
            text.summary
        } else {
            text.statement
        };
        STATEMENTS.lock().unwrap().insert(sql.trim().to_owned());
    }
}

#[derive(Default)]
struct StatementText {
    summary: String,
    statement: String,
}

impl Visit for StatementText {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_owned(),
            "db.statement" => self.statement = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

fn record_statements() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(Registry::default().with(RecordStatements))
            .expect("no other subscriber in this test binary");
    });
}

/// Distinct recorded statements starting with `prefix` and containing `marker` (`VALUES (?` for
/// SQLite's, `unnest(` for PostgreSQL's: both tests record into one set).
fn statements(prefix: &str, marker: &str) -> usize {
    STATEMENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|sql| sql.starts_with(prefix) && sql.contains(marker))
        .count()
}

/// `n` calls, each in its own session and from a user never seen before, so that every batch
/// has `n` ledger rows, `n` session rollup rows and `n` names to intern.
fn batch(n: usize, first: usize) -> Vec<LedgerEvent> {
    (first..first + n)
        .map(|i| {
            let mut e = event(&request_id("stmt", i), DAY1_NOON_MS + i as i64);
            e.session_id = Some(format!("session-{i}"));
            e.user = Some(format!("user-{i}"));
            e
        })
        .collect()
}

#[tokio::test]
async fn sqlite_ledger_batches_of_every_size_reuse_a_few_prepared_statements() {
    record_statements();
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();

    let mut written = Vec::new();
    for n in 1..=150 {
        let events = batch(n, written.len());
        let outcome = store.insert_ledger_batch(&events).await.unwrap();
        assert_eq!(outcome.inserted, n as u64);
        written.extend(events);
    }

    // 150 batch sizes, each cut into powers of two: 1, 2, 4, …, 128 rows per statement.
    for (prefix, marker) in [
        ("INSERT INTO ledger (", "VALUES (?"),
        ("INSERT INTO ledger_names", "VALUES (?"),
        ("SELECT id, name FROM ledger_names", "IN (?"),
        ("INSERT INTO sessions", "VALUES (?"),
    ] {
        let shapes = statements(prefix, marker);
        assert!(
            (1..=8).contains(&shapes),
            "{shapes} distinct `{prefix}…` statements prepared for 150 batch sizes; the \
             statement cache grows with every new size"
        );
    }
    // Cutting batches into several statements writes the same rows and rollups.
    assert_eq!(
        store.ledger_totals(i64::MIN, i64::MAX).await.unwrap(),
        expected_totals(&written)
    );
    let last = written.last().unwrap();
    let session = store
        .session(&last.team_id, last.session_id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.requests, 1);
    assert_eq!(session.cost_nanos, last.cost.nanos());
}

/// On PostgreSQL every batch size runs the same few statements: the rows travel as array
/// parameters, so each statement is prepared once per connection and reused, and none is left
/// unnamed to be parsed and planned again per batch.
#[tokio::test]
async fn postgres_ledger_batches_of_every_size_run_one_statement_per_table() {
    record_statements();
    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();

    let mut written = Vec::new();
    for n in (1..=150).chain([700]) {
        let events = batch(n, written.len());
        let outcome = store.insert_ledger_batch(&events).await.unwrap();
        assert_eq!(outcome.inserted, n as u64);
        written.extend(events);
    }

    for prefix in [
        "INSERT INTO ledger (",
        "INSERT INTO ledger_names",
        "SELECT id, name FROM ledger_names",
        "INSERT INTO ledger_daily",
        "INSERT INTO sessions",
        "INSERT INTO session_tools",
    ] {
        let texts = STATEMENTS
            .lock()
            .unwrap()
            .iter()
            .filter(|sql| {
                sql.starts_with(prefix) && !sql.contains("VALUES (?") && !sql.contains("IN (?")
            })
            .count();
        assert_eq!(texts, 1, "distinct `{prefix}…` statements on PostgreSQL");
    }
    assert_eq!(
        store.ledger_totals(i64::MIN, i64::MAX).await.unwrap(),
        expected_totals(&written)
    );
}
