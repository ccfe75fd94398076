//! Large ledger batches on both backends: a 5,000-event batch lands whole, with every rollup and
//! budget window equal to a sum over the ledger and every odd text stored as sent; a replayed
//! batch counts once everywhere; and on PostgreSQL, batches written at once (as the writer does)
//! over the same rollup rows neither deadlock nor miscount.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/events.rs"]
mod events;

use std::collections::BTreeMap;

use events::*;
use sqlx::Row;
use tollgate_core::budget::{Calendar, ClaimRequest, Period};
use tollgate_core::{LedgerEvent, Money};
use tollgate_store::ledger::utc_day;
use tollgate_store::testdb::TestDb;
use tollgate_store::{BatchOutcome, BudgetSpec, Store};

const REPLICA: &str = "replica-a";

/// Teams, keys, budgets and this replica's leases on every window the events fall in.
struct World {
    store: Store,
    raw: sqlx::AnyPool,
    /// (team id, its key ids)
    teams: Vec<(String, Vec<String>)>,
    /// (budget id, team, key or the whole team, period)
    budgets: Vec<(String, String, Option<String>, Period)>,
}

impl World {
    async fn new(db: &TestDb) -> World {
        let store = Store::connect(&db.url).await.unwrap();
        store.migrate().await.unwrap();
        let raw = sqlx::AnyPool::connect(&db.url).await.unwrap();
        let mut teams = Vec::new();
        let mut budgets = Vec::new();
        for t in 0..3 {
            let team = store.create_team(&format!("team{t}"), None).await.unwrap();
            let mut keys = Vec::new();
            for k in 0..2 {
                let key = store
                    .create_key(&team.id, &format!("key{k}"), None)
                    .await
                    .unwrap();
                keys.push(key.key.id);
            }
            for (key_id, period) in [(None, Period::Month), (keys.first().cloned(), Period::Day)] {
                let spec = BudgetSpec {
                    team_id: team.id.clone(),
                    key_id: key_id.clone(),
                    period,
                    limit: Money(1_000_000_000_000_000),
                    soft_ppm: 0,
                    session_cap: None,
                };
                let budget = store
                    .create_budget(&spec, Calendar::default())
                    .await
                    .unwrap();
                budgets.push((budget.id, team.id.clone(), key_id, period));
            }
            teams.push((team.id, keys));
        }
        World {
            store,
            raw,
            teams,
            budgets,
        }
    }

    /// Claims this replica's lease on every budget window `events` fall in.
    async fn lease(&self, events: &[LedgerEvent]) {
        for (window, _) in self.expected_windows(events) {
            let (budget_id, window_start_ms) = window;
            self.store
                .claim_lease(&ClaimRequest {
                    budget_id,
                    window_start_ms,
                    replica_id: REPLICA.to_owned(),
                    delta: 1_000_000,
                    limit: 1_000_000_000_000_000,
                    now_ms: DAY1_NOON_MS,
                    ttl_ms: 365 * DAY_MS,
                })
                .await
                .unwrap();
        }
    }

    /// Cost per (budget, window start) of `events`.
    fn expected_windows(&self, events: &[LedgerEvent]) -> BTreeMap<(String, i64), i64> {
        let calendar = Calendar::default();
        let mut windows = BTreeMap::new();
        for e in events {
            for (id, team, key, period) in &self.budgets {
                if *team == e.team_id && key.as_ref().is_none_or(|k| *k == e.key_id) {
                    let start = calendar.period_start(*period, e.started_at_ms);
                    *windows.entry((id.clone(), start)).or_default() += e.cost.nanos();
                }
            }
        }
        windows
    }

    async fn windows(&self, column: &str) -> BTreeMap<(String, i64), i64> {
        let table = match column {
            "spent_nanos" => "budget_windows",
            _ => "budget_leases",
        };
        let sql = format!("SELECT budget_id, window_start_ms, {column} FROM {table}");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.raw)
            .await
            .unwrap()
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get::<i64, _>(2)))
            .filter(|(_, nanos)| *nanos != 0)
            .collect()
    }

    /// The ledger holds exactly `events`; the daily rollup, the sessions and their tools equal
    /// sums over it; every budget window spent what its rows cost and this replica's leases
    /// consumed what `live` cost.
    async fn assert_holds(&self, events: &[LedgerEvent], live: &[LedgerEvent]) {
        let store = &self.store;
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger")
            .fetch_one(&self.raw)
            .await
            .unwrap();
        assert_eq!(rows, events.len() as i64);
        let ledger = store.ledger_totals(i64::MIN, i64::MAX).await.unwrap();
        assert_eq!(ledger, expected_totals(events), "ledger vs events");
        let days = events.iter().map(|e| utc_day(e.started_at_ms));
        let (first, last) = (days.clone().min().unwrap(), days.max().unwrap());
        assert_eq!(
            store.daily_totals(&first, &last).await.unwrap(),
            ledger,
            "ledger_daily vs ledger"
        );
        let (from, to) = (
            events.iter().map(|e| e.started_at_ms).min().unwrap(),
            events.iter().map(|e| e.started_at_ms).max().unwrap() + 1,
        );
        let reconciliation = store.reconcile(from, to).await.unwrap();
        assert!(reconciliation.is_clean(), "{reconciliation:?}");
        for ((team, session), tools) in expected_tools(events) {
            let summary = store.session(&team, &session).await.unwrap().unwrap();
            assert_eq!(summary.tools, tools, "{team} {session:?}");
        }
        assert_eq!(
            self.windows("spent_nanos").await,
            self.expected_windows(events)
        );
        assert_eq!(
            self.windows("consumed_nanos").await,
            self.expected_windows(live)
        );
    }
}

/// Texts that need quoting or escaping somewhere between Rust and the database.
const ODD: [&str; 9] = [
    "say \"hi\"",
    r"back\slash\\",
    "comma, and {braces}",
    "NULL",
    "",
    " padded ",
    "séance ✓ 会话",
    "line\nbreak\ttab",
    "'single' quotes;--",
];

/// `n` calls over the world's teams and keys, two UTC days and `sessions` sessions; every
/// tenth carries odd text in each free-text field.
fn calls(world: &World, prefix: &str, n: usize, sessions: usize) -> Vec<LedgerEvent> {
    (0..n)
        .map(|i| {
            let started = DAY1_NOON_MS + (i % 2) as i64 * DAY_MS + i as i64 * 37;
            let mut e = event(&request_id(prefix, i), started);
            let (team, keys) = &world.teams[i % world.teams.len()];
            e.team_id = team.clone();
            e.key_id = keys[(i / 3) % keys.len()].clone();
            e.session_id = Some(format!("019ab6a2-0000-7000-8000-{:012}", i % sessions));
            e.user = Some(format!("user{}", i % 40));
            e.cost = Money(1_000_003 + i as i64 * 7);
            e.usage.input = 1_000 + i as u64;
            e.estimated = i % 13 == 0;
            e.unpriced = i % 17 == 0;
            e.status = if i % 19 == 0 { 500 } else { 200 };
            e.tool_calls = match i % 3 {
                0 => vec![],
                1 => vec![tool("exec_command", 2)],
                _ => vec![tool("exec_command", 1), tool("apply_patch", 1)],
            };
            if i % 10 == 0 {
                let odd = ODD[(i / 10) % ODD.len()];
                e.session_id = Some(format!("s-{odd}"));
                e.turn_id = Some(odd.to_owned());
                e.user = Some(odd.to_owned());
                e.cost_centre = Some(format!("cc {odd}"));
                e.model_served = Some(format!("gpt-5 {odd}"));
                e.service_tier = Some(odd.to_owned());
                e.response_id = Some(format!("resp_{odd}"));
                e.tool_calls = vec![tool(&format!("mcp {odd}"), 3), tool("a,b=c%", 1)];
            }
            e
        })
        .collect()
}

async fn a_5000_event_batch_lands_with_every_rollup_equal_to_a_sum_over_the_ledger(db: TestDb) {
    let world = World::new(&db).await;
    // Far more sessions than a statement holds on PostgreSQL, so every table takes several.
    let events = calls(&world, "bulk", 5_000, 1_500);
    world.lease(&events).await;

    let outcome = world
        .store
        .insert_ledger_batch_as(&events, Some(REPLICA))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        BatchOutcome {
            inserted: 5_000,
            duplicates: 0
        }
    );
    world.assert_holds(&events, &events).await;
    // Every field of every odd row reads back as it was sent.
    for e in events.iter().step_by(10) {
        let row = world
            .store
            .ledger_row(&e.request_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&row.to_event(), e);
    }
}

async fn a_replayed_batch_counts_once_in_the_ledger_rollups_and_budgets(db: TestDb) {
    let world = World::new(&db).await;
    let live = calls(&world, "live", 600, 50);
    let later = calls(&world, "late", 400, 50);
    let all: Vec<LedgerEvent> = live.iter().chain(&later).cloned().collect();
    world.lease(&all).await;

    // A live batch, with one request id twice (the first one wins).
    let mut first = live.clone();
    let mut again = live[7].clone();
    again.cost = Money(999_999_999);
    first.push(again);
    let outcome = world
        .store
        .insert_ledger_batch_as(&first, Some(REPLICA))
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (600, 1));
    // The spool replayed after a timeout: the live rows again, and the ones never written. A
    // replay consumes no lease (the process that reserved its cost is gone).
    let outcome = world.store.insert_ledger_batch(&all).await.unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (400, 600));
    // And the live batch once more, as if its commit had been lost.
    let outcome = world
        .store
        .insert_ledger_batch_as(&live, Some(REPLICA))
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (0, 600));

    world.assert_holds(&all, &live).await;
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
    a_5000_event_batch_lands_with_every_rollup_equal_to_a_sum_over_the_ledger,
    a_replayed_batch_counts_once_in_the_ledger_rollups_and_budgets,
);

/// The writer keeps two batches in flight on PostgreSQL. Batches written at once that add to the
/// same daily, session, tool and budget rows must wait for each other, not deadlock (which would
/// spool them until the next ping), and every one must count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_batches_written_at_once_over_the_same_rollup_rows_all_commit() {
    const WRITERS: usize = 8;
    const BATCHES: usize = 10;
    const ROWS: usize = 250;
    let db = TestDb::postgres().await;
    let world = World::new(&db).await;
    let all = calls(&world, "par", WRITERS * BATCHES * ROWS, 400);
    world.lease(&all).await;
    // The month partitions, once.
    world
        .store
        .ensure_ledger_partitions([DAY1_NOON_MS])
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = world.store.clone();
        // Interleaved, so that every batch touches every session.
        let mine: Vec<LedgerEvent> = all.iter().skip(w).step_by(WRITERS).cloned().collect();
        tasks.push(tokio::spawn(async move {
            for batch in mine.chunks(ROWS) {
                store
                    .insert_ledger_batch_as(batch, Some(REPLICA))
                    .await
                    .expect("a batch written beside others commits");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    world.assert_holds(&all, &all).await;
}
