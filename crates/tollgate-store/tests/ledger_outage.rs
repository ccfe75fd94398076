//! The ledger writer across a real PostgreSQL outage: a throwaway cluster (initdb into a temporary
//! directory, on a free port) is stopped and started under a running writer, and a writer is
//! killed with events in its spool. Waits are on conditions, each with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/events.rs"]
mod events;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use events::*;
use tollgate_core::{LedgerEvent, LedgerSink};
use tollgate_store::testdb::Cluster;
use tollgate_store::{Ledger, LedgerOptions, Store, Totals};

fn options(spool: &Path) -> LedgerOptions {
    let mut options = LedgerOptions::new(spool);
    options.flush_interval = Duration::from_millis(10);
    options.retry_interval = Duration::from_millis(100);
    options.write_timeout = Duration::from_secs(3);
    options
}

fn calls(prefix: &str, n: usize) -> Vec<LedgerEvent> {
    (0..n)
        .map(|i| {
            let mut e = event(&request_id(prefix, i), DAY1_NOON_MS + i as i64 * 1_000);
            e.team_id = TEAMS[i % 3].to_owned();
            e.session_id = Some(SESSIONS[i % 2].to_owned());
            e
        })
        .collect()
}

async fn totals(store: &Store) -> Totals {
    store.ledger_totals(i64::MIN, i64::MAX).await.unwrap()
}

/// Exactly `events`, once each, in the ledger and in every rollup.
async fn assert_exactly(store: &Store, events: &[LedgerEvent]) {
    let expected = expected_totals(events);
    assert_eq!(totals(store).await, expected);
    assert_eq!(
        store
            .daily_totals("2000-01-01", "2100-01-01")
            .await
            .unwrap(),
        expected
    );
    let mut sessions = 0;
    for team in TEAMS {
        for id in SESSIONS {
            sessions += store
                .session(team, id)
                .await
                .unwrap()
                .map_or(0, |s| s.requests);
        }
    }
    assert_eq!(sessions, expected.requests);
}

#[tokio::test]
async fn events_recorded_during_an_outage_are_spooled_and_written_once_it_ends() {
    const N: usize = 300;
    const M: usize = 200;
    let cluster = Cluster::start();
    let store = Store::connect(&cluster.url()).await.unwrap();
    store.migrate().await.unwrap();
    let spool_dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::spawn(
        store.clone(),
        options(&spool_dir.path().join("ledger.spool")),
    );
    let sink = ledger.sink();
    let events = calls("outage", N + M);

    for e in &events[..N] {
        sink.record(e.clone());
    }
    ledger.flush().await;
    assert_eq!(totals(&store).await.requests, N as i64);

    cluster.stop();
    let started = Instant::now();
    for e in &events[N..] {
        sink.record(e.clone());
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "record never waits on the database"
    );
    ledger.flush().await; // the batch fails, so flush returns once it is in the spool
    let stats = ledger.stats();
    assert_eq!(stats.spooled, M as u64, "{stats:?}");
    assert!(
        stats.spool_bytes > 0 && stats.write_errors >= 1,
        "{stats:?}"
    );
    assert!(store.ping().await.is_err(), "the database is really down");

    cluster.start_again();
    wait_until(
        "the spool to be replayed after the outage",
        Duration::from_secs(30),
        || async {
            ledger.stats().spool_bytes == 0
                && store
                    .ledger_totals(i64::MIN, i64::MAX)
                    .await
                    .is_ok_and(|t| t.requests == (N + M) as i64)
        },
    )
    .await;
    assert_exactly(&store, &events).await;
    let stats = ledger.stats();
    assert_eq!(
        (stats.rows_written, stats.duplicates, stats.replayed),
        ((N + M) as u64, 0, M as u64)
    );
    ledger.shutdown().await;
    store.close().await;
}

#[tokio::test]
async fn a_killed_writer_leaves_a_spool_the_next_one_replays_exactly_once() {
    const N: usize = 100;
    const M: usize = 150;
    let cluster = Cluster::start();
    let store = Store::connect(&cluster.url()).await.unwrap();
    store.migrate().await.unwrap();
    let spool_dir = tempfile::tempdir().unwrap();
    let spool: PathBuf = spool_dir.path().join("ledger.spool");
    let events = calls("kill", N + M);

    let (ledger, writer) = Ledger::new(store.clone(), options(&spool));
    let task = tokio::spawn(writer.run());
    for e in &events[..N] {
        ledger.record(e.clone());
    }
    ledger.flush().await;
    cluster.stop();
    for e in &events[N..] {
        ledger.record(e.clone());
    }
    // No flush: wait until the writer has spooled (and fsynced) them, then kill it.
    wait_until(
        "the writer to spool the events",
        Duration::from_secs(30),
        || async { ledger.stats().spooled == M as u64 },
    )
    .await;
    task.abort();
    let _ = task.await;
    drop(ledger);
    // It had also been replaying an older spool when it died: those rows are already in.
    let replaying: String = events[..N]
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(spool_dir.path().join("ledger.spool.replaying"), replaying).unwrap();

    cluster.start_again();
    let store = Store::connect(&cluster.url()).await.unwrap();
    let ledger = Ledger::spawn(store.clone(), options(&spool));
    wait_until(
        "the next writer to replay the spool",
        Duration::from_secs(30),
        || async { ledger.stats().spool_bytes == 0 },
    )
    .await;
    let stats = ledger.stats();
    assert_eq!(
        (stats.rows_written, stats.duplicates),
        (M as u64, N as u64),
        "{stats:?}"
    );
    assert_exactly(&store, &events).await;
    assert!(
        std::fs::read_dir(spool_dir.path())
            .unwrap()
            .next()
            .is_none(),
        "spool files removed"
    );
    ledger.shutdown().await;
    store.close().await;
}
