//! The spend ledger on both backends (suite functions instantiated by `both_backends!` at the
//! bottom), plus PostgreSQL's month partitions and row size. Outages are in `ledger_outage.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/events.rs"]
mod events;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use events::*;
use sqlx::Row;
use tollgate_core::{LedgerEvent, LedgerSink, Money};
use tollgate_store::ledger::utc_day;
use tollgate_store::testdb::TestDb;
use tollgate_store::{BatchOutcome, Ledger, LedgerOptions, Store, Totals};

async fn migrated(db: &TestDb) -> Store {
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn options(dir: &tempfile::TempDir) -> LedgerOptions {
    let mut options = LedgerOptions::new(dir.path().join("ledger.spool"));
    options.flush_interval = Duration::from_millis(10);
    options.retry_interval = Duration::from_millis(50);
    options
}

async fn all_totals(store: &Store) -> Totals {
    store.ledger_totals(i64::MIN, i64::MAX).await.unwrap()
}

async fn session_totals(store: &Store) -> Totals {
    let mut t = Totals::default();
    for (team, id) in TEAMS.iter().flat_map(|t| SESSIONS.map(|s| (*t, s))) {
        let Some(s) = store.session(team, id).await.unwrap() else {
            continue;
        };
        t.requests += s.requests;
        t.input_tokens += s.input_tokens;
        t.cached_input_tokens += s.cached_input_tokens;
        t.output_tokens += s.output_tokens;
        t.reasoning_tokens += s.reasoning_tokens;
        t.cost = Money(t.cost.nanos() + s.cost_nanos);
    }
    t
}

/// The ledger, the daily rollup and the sessions agree with each other and with `events`.
async fn assert_rollups_match(store: &Store, events: &[LedgerEvent]) {
    let expected = expected_totals(events);
    let ledger = all_totals(store).await;
    assert_eq!(ledger, expected, "ledger vs events");
    let days = events.iter().map(|e| utc_day(e.started_at_ms));
    let (first, last) = (days.clone().min().unwrap(), days.max().unwrap());
    assert_eq!(
        store.daily_totals(&first, &last).await.unwrap(),
        ledger,
        "daily vs ledger"
    );
    let in_sessions = session_totals(store).await;
    assert_eq!(
        in_sessions,
        Totals {
            estimated_requests: 0,
            failed_requests: 0,
            unpriced_requests: 0,
            unmetered_requests: 0,
            ..ledger
        },
        "sessions vs ledger"
    );
    for ((team, session), tools) in expected_tools(events) {
        assert_eq!(
            store.session(&team, &session).await.unwrap().unwrap().tools,
            tools,
            "{team} {session}"
        );
    }
}

async fn duplicates_and_replays_are_counted_once_and_rollups_equal_the_ledger(db: TestDb) {
    let store = migrated(&db).await;
    let events = fixture();

    // A batch with a request id twice (the second differs: the first one written wins).
    let mut first = events[..40].to_vec();
    let mut conflicting = events[5].clone();
    conflicting.cost = Money(999_999_999);
    first.push(conflicting);
    let outcome = store.insert_ledger_batch(&first).await.unwrap();
    assert_eq!(
        outcome,
        BatchOutcome {
            inserted: 40,
            duplicates: 1
        }
    );
    // Overlapping, then the whole lot replayed twice.
    let outcome = store.insert_ledger_batch(&events[30..]).await.unwrap();
    assert_eq!(
        outcome,
        BatchOutcome {
            inserted: 20,
            duplicates: 10
        }
    );
    for _ in 0..2 {
        let outcome = store.insert_ledger_batch(&events).await.unwrap();
        assert_eq!(
            outcome,
            BatchOutcome {
                inserted: 0,
                duplicates: 60
            }
        );
    }

    assert_rollups_match(&store, &events).await;
    // Per day, the rollup equals the ledger over that day's milliseconds.
    for day in 0..2 {
        let from = DAY1_NOON_MS - DAY_MS / 2 + day * DAY_MS;
        let ledger = store.ledger_totals(from, from + DAY_MS).await.unwrap();
        let name = utc_day(from);
        assert_eq!(store.daily_totals(&name, &name).await.unwrap(), ledger);
        assert_eq!(ledger.requests, 30);
    }
    let ledger = all_totals(&store).await;
    assert_eq!(ledger.requests, 60);
    assert_eq!(ledger.cost, Money(60 * 1_234_567 + 1_001 * (59 * 60 / 2)));

    // Every field round-trips; cost is also exact decimal USD.
    for e in &events {
        let row = store.ledger_row(&e.request_id).await.unwrap().unwrap();
        assert_eq!(&row.to_event(), e);
        assert_eq!(row.cost_usd, e.cost.to_usd_string());
    }
    let row = store
        .ledger_row(&events[0].request_id)
        .await
        .unwrap()
        .unwrap();
    let json = serde_json::to_value(&row).unwrap();
    assert_eq!(json["cost_nanos"], 1_234_567);
    assert_eq!(json["cost_usd"], "0.001234567");
    assert_eq!(store.ledger_row("req_missing").await.unwrap(), None);

    let session = store.session(TEAMS[0], SESSIONS[0]).await.unwrap().unwrap();
    let mine: Vec<_> = events
        .iter()
        .filter(|e| e.team_id == TEAMS[0] && e.session_id.as_deref() == Some(SESSIONS[0]))
        .collect();
    assert_eq!(
        session.first_seen_ms,
        mine.iter().map(|e| e.started_at_ms).min().unwrap()
    );
    assert_eq!(
        session.last_seen_ms,
        mine.iter().map(|e| e.finished_at_ms).max().unwrap()
    );
    assert_eq!(session.team_id, TEAMS[0]);
    // Other teams' calls under the same session id are their own sessions.
    assert_eq!(session.requests, mine.len() as i64);
    assert_eq!(
        session.cost_nanos,
        mine.iter().map(|e| e.cost.nanos()).sum::<i64>()
    );
    assert_eq!(store.session(TEAMS[0], "nope").await.unwrap(), None);

    // The daily rollup is keyed by day, team, key, model (served, else requested) and cost centre.
    let raw = raw_pool(&db).await;
    let keys: Vec<(String, String, String, String)> =
        sqlx::query("SELECT day, team_id, model, cost_centre FROM ledger_daily")
            .fetch_all(&raw)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
    let mut expected_keys: Vec<_> = events
        .iter()
        .map(|e| {
            (
                utc_day(e.started_at_ms),
                e.team_id.clone(),
                e.model_served
                    .clone()
                    .or(e.model_requested.clone())
                    .unwrap(),
                e.cost_centre.clone().unwrap_or_default(),
            )
        })
        .collect();
    expected_keys.sort();
    expected_keys.dedup();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, expected_keys);
}

async fn raw_pool(db: &TestDb) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&db.url).await.expect("raw connect")
}

async fn writer_batches_events_and_flush_waits_for_all_of_them(db: TestDb) {
    let store = migrated(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(&dir);
    options.batch_rows = 100;
    options.flush_interval = Duration::from_secs(3600); // only size and flush cut batches here
    let ledger = Ledger::spawn(store.clone(), options);
    let sink = ledger.sink();
    let events: Vec<_> = (0..1_050)
        .map(|i| event(&request_id("w", i), DAY1_NOON_MS + i as i64))
        .collect();
    for e in &events {
        sink.record(e.clone());
    }
    for e in &events[..25] {
        ledger.record(e.clone()); // the same calls again: ignored
    }
    ledger.flush().await;

    let stats = ledger.stats();
    assert_eq!(stats.rows_written, 1_050);
    assert_eq!(stats.duplicates, 25);
    assert_eq!(
        stats.batches, 11,
        "10 full batches of 100, then 75 at flush"
    );
    assert_eq!((stats.queued, stats.spooled, stats.write_errors), (0, 0, 0));
    assert!(stats.last_write_ms > 0);
    assert_eq!(all_totals(&store).await, expected_totals(&events));
    ledger.shutdown().await;
}

async fn full_channel_spools_and_the_spool_is_replayed_exactly_once(db: TestDb) {
    let store = migrated(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(&dir);
    options.capacity = 4;
    let spool = options.spool_path.clone();
    // The writer is not running yet: four events fit in the channel, the rest must spool.
    let (ledger, writer) = Ledger::new(store.clone(), options);
    let events: Vec<_> = fixture();
    let started = Instant::now();
    for e in &events {
        ledger.record(e.clone());
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "record never waits"
    );
    let stats = ledger.stats();
    assert_eq!((stats.queued, stats.spooled), (4, 56));
    assert!(stats.spool_bytes > 0);

    tokio::spawn(writer.run());
    ledger.flush().await;
    wait_until(
        "the spool to be replayed",
        Duration::from_secs(20),
        || async { ledger.stats().spool_bytes == 0 && all_totals(&store).await.requests == 60 },
    )
    .await;
    let stats = ledger.stats();
    assert_eq!(
        (stats.rows_written, stats.replayed, stats.duplicates),
        (60, 56, 0)
    );
    assert!(!spool.with_extension("spool.replaying").exists());
    assert_rollups_match(&store, &events).await;
    ledger.shutdown().await;
}

async fn a_spool_left_behind_is_replayed_once_at_start(db: TestDb) {
    let store = migrated(&db).await;
    let events = fixture();
    // A previous process wrote the first 20 and died mid-replay (the rotated file holds 0..30, so
    // 20 are already in) with 30..60 in its live spool, the last line cut off by the kill.
    store.insert_ledger_batch(&events[..20]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = options(&dir);
    let lines = |range: std::ops::Range<usize>| -> String {
        events[range]
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect()
    };
    let replaying = dir.path().join("ledger.spool.replaying");
    std::fs::write(&replaying, lines(0..30)).unwrap();
    let torn = serde_json::to_string(&event("req_torn", DAY1_NOON_MS)).unwrap();
    std::fs::write(&options.spool_path, lines(30..60) + &torn[..40]).unwrap();

    let ledger = Ledger::spawn(store.clone(), options.clone());
    wait_until(
        "the leftover spool to be replayed",
        Duration::from_secs(20),
        || async { ledger.stats().spool_bytes == 0 },
    )
    .await;
    let stats = ledger.stats();
    assert_eq!(
        (stats.rows_written, stats.duplicates, stats.rejected),
        (40, 20, 1)
    );
    assert!(!replaying.exists() && !options.spool_path.exists());
    let rejected = std::fs::read_to_string(dir.path().join("ledger.spool.rejected")).unwrap();
    assert_eq!(rejected, format!("{}\n", &torn[..40]));
    assert_rollups_match(&store, &events).await;
    ledger.shutdown().await;
}

async fn after_shutdown_records_go_to_the_spool_for_the_next_start(db: TestDb) {
    let store = migrated(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let options = options(&dir);
    let events = fixture();
    let ledger = Ledger::spawn(store.clone(), options.clone());
    let sink = ledger.sink();
    for e in &events[..50] {
        sink.record(e.clone());
    }
    ledger.shutdown().await;
    assert_eq!(
        all_totals(&store).await.requests,
        50,
        "shutdown wrote the queue"
    );
    for e in &events[50..] {
        sink.record(e.clone()); // the proxy still draining a stream
    }
    let spooled = std::fs::read_to_string(&options.spool_path).unwrap();
    assert_eq!(spooled.lines().count(), 10);

    let ledger = Ledger::spawn(store.clone(), options);
    wait_until(
        "the next start to replay",
        Duration::from_secs(20),
        || async { ledger.stats().spool_bytes == 0 },
    )
    .await;
    assert_rollups_match(&store, &events).await;
    ledger.shutdown().await;
}

/// Not a pass/fail benchmark: prints what the writer sustains for the report (debug build unless
/// run with `--release`), and checks nothing was lost or spooled along the way.
async fn writer_throughput_is_measured(db: TestDb) {
    const EVENTS: usize = 50_000;
    let store = migrated(&db).await;
    let backend = store.backend();
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(&dir);
    options.flush_interval = Duration::from_millis(50);
    let ledger = Ledger::spawn(store.clone(), options);
    let sink = ledger.sink();
    let events: Vec<_> = (0..EVENTS)
        .map(|i| {
            let mut e = event(&request_id("t", i), DAY1_NOON_MS + i as i64 * 10);
            e.session_id = Some(format!("019ab6a2-0000-7000-8000-{:012}", i % 500));
            e.team_id = TEAMS[i % 3].to_owned();
            e
        })
        .collect();
    let started = Instant::now();
    for e in events {
        sink.record(e);
    }
    let recorded = started.elapsed();
    ledger.flush().await;
    let elapsed = started.elapsed();
    let stats = ledger.stats();
    // Nothing spooled, and no batch failed along the way (on PostgreSQL two are in flight at
    // once over the same rollup rows: a deadlock would show here even though its retry succeeds).
    assert_eq!(
        (stats.rows_written, stats.spooled, stats.write_errors),
        (EVENTS as u64, 0, 0)
    );
    println!(
        "ledger writer on {backend:?}: {EVENTS} rows in {:.2} s = {:.0} rows/s ({} batches; \
         record() took {:.0} ns per event)",
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64(),
        stats.batches,
        recorded.as_nanos() as f64 / EVENTS as f64,
    );
    assert_eq!(all_totals(&store).await.requests, EVENTS as i64);
    ledger.shutdown().await;
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(TestDb::sqlite()).await } )*
        }
        mod postgres {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(TestDb::postgres().await).await } )*
        }
    };
}

both_backends!(
    duplicates_and_replays_are_counted_once_and_rollups_equal_the_ledger,
    writer_batches_events_and_flush_waits_for_all_of_them,
    full_channel_spools_and_the_spool_is_replayed_exactly_once,
    a_spool_left_behind_is_replayed_once_at_start,
    after_shutdown_records_go_to_the_spool_for_the_next_start,
    writer_throughput_is_measured,
);

/// Where each row physically is: `request_id` → partition name.
async fn partitions_of(raw: &sqlx::AnyPool) -> BTreeMap<String, String> {
    sqlx::query("SELECT request_id, CAST(tableoid::regclass AS TEXT) FROM ledger")
        .fetch_all(raw)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn postgres_rows_land_in_their_month_partition_and_far_ones_still_insert() {
    let db = TestDb::postgres().await;
    let store = migrated(&db).await;
    let at = |iso: &str| -> i64 {
        // Midday on the given date, UTC.
        let day = chrono::NaiveDate::parse_from_str(iso, "%Y-%m-%d").unwrap();
        day.and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    };
    let batch = vec![
        event("req_jan", at("2026-01-31")),
        event("req_feb", at("2026-02-01")),
        event("req_2031", at("2031-06-15")),
        event("req_2099", at("2099-12-31")),
        event("req_1999", at("1999-03-01")),
    ];
    assert_eq!(store.insert_ledger_batch(&batch).await.unwrap().inserted, 5);
    let raw = raw_pool(&db).await;
    let expected: BTreeMap<String, String> = [
        ("req_jan", "ledger_y2026m01"),
        ("req_feb", "ledger_y2026m02"),
        ("req_2031", "ledger_y2031m06"),
        // More than ten years from now: the DEFAULT partition, not a partition of its own.
        ("req_2099", "ledger_default"),
        ("req_1999", "ledger_default"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect();
    assert_eq!(partitions_of(&raw).await, expected);

    // Idempotent across partitions, the default one included; rows still found by request id.
    assert_eq!(
        store.insert_ledger_batch(&batch).await.unwrap().duplicates,
        5
    );
    assert_eq!(
        store
            .ledger_row("req_2099")
            .await
            .unwrap()
            .unwrap()
            .to_event(),
        batch[3]
    );
    assert_eq!(all_totals(&store).await.requests, 5);

    // This month and the next exist before any row needs them.
    let now = tollgate_core::time::now_ms();
    let this_month = utc_day(now)[..7].replace('-', "m");
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_inherits WHERE inhparent = 'ledger'::regclass")
            .fetch_one(&raw)
            .await
            .unwrap();
    let existing: Option<String> = sqlx::query_scalar("SELECT CAST(to_regclass($1) AS TEXT)")
        .bind(format!("ledger_y{this_month}"))
        .fetch_one(&raw)
        .await
        .unwrap();
    assert!(
        existing.is_some(),
        "ledger_y{this_month} created with the first batch"
    );
    assert_eq!(
        count, 6,
        "default, 2026-01, 2026-02, 2031-06, this month and next"
    );
}

#[tokio::test]
async fn postgres_ledger_rows_are_under_350_bytes() {
    const ROWS: usize = 2_000;
    let db = TestDb::postgres().await;
    let store = migrated(&db).await;
    // Realistic Codex calls: every optional field set, tools on half of them. The upstream's
    // response id (`resp_` and 48 hex digits, migration 0011) is 54 of the bytes.
    let events: Vec<_> = (0..ROWS)
        .map(|i| {
            let mut e = event(&request_id("b", i), DAY1_NOON_MS + i as i64 * 1_000);
            if i % 2 == 1 {
                e.tool_calls.clear();
            }
            e
        })
        .collect();
    for chunk in events.chunks(500) {
        store.insert_ledger_batch(chunk).await.unwrap();
    }
    let raw = raw_pool(&db).await;
    let row = sqlx::query(
        "SELECT CAST(AVG(pg_column_size(l.*)) AS BIGINT), MIN(pg_column_size(l.*)), \
         MAX(pg_column_size(l.*)) FROM ledger l",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    let (avg, min, max): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    sqlx::query("VACUUM ANALYZE ledger")
        .execute(&raw)
        .await
        .unwrap();
    let on_disk: i64 = sqlx::query_scalar(
        "SELECT CAST(SUM(pg_total_relation_size(inhrelid)) AS BIGINT) FROM pg_inherits \
         WHERE inhparent = 'ledger'::regclass",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    println!(
        "ledger row size on PostgreSQL (pg_column_size): avg {avg} B, min {min} B (no tools), \
         max {max} B (with tools); on disk with the primary key index: {} B/row over {ROWS} rows",
        on_disk / ROWS as i64
    );
    assert!(max < 350, "largest row is {max} bytes");
}
