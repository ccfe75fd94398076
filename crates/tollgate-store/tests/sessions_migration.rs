//! Migration 0006 (sessions keyed by team and session id) carries sessions written by earlier
//! versions over: each team's share of a reused session id rebuilt from the ledger, and what
//! the ledger no longer holds (retention) kept with the team that first used the id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};
use tollgate_core::{LedgerEvent, Money, ToolCount, Usage};
use tollgate_store::testdb::TestDb;
use tollgate_store::{SessionSummary, Store};

const DAY: i64 = 86_400_000;
/// The day the reused session's calls were made: whole UTC days, as reconcile checks them, and
/// over ten years ago, so the writer never adds a PostgreSQL partition for rows already in the
/// default one.
const SHARED_DAY: i64 = 5_000 * DAY;

/// A database migrated only as far as 0005, as a gateway before sessions were per team left it.
async fn before_0006(db: &TestDb, backend: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../migrations/{backend}"));
    let mut migrator = Migrator::new(dir).await.expect("read migrations");
    let old: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= 5)
        .cloned()
        .collect();
    assert_eq!(old.len(), 5, "migrations 0001–0005");
    migrator.migrations = Cow::Owned(old);
    let pool = AnyPool::connect(&db.url).await.expect("connect");
    migrator.run(&pool).await.expect("migrate to 0005");
    pool
}

/// One ledger row as the writer stored it: (request, team, session, start, end, cost, tools).
fn ledger_insert(row: (&str, &str, &str, i64, i64, i64, Option<&str>)) -> String {
    let (request, team, session, start, end, cost, tools) = row;
    let tools = tools.map_or("NULL".to_string(), |t| format!("'{t}'"));
    format!(
        "INSERT INTO ledger (started_at_ms, finished_at_ms, cost_nanos, input_tokens, \
         cached_input_tokens, output_tokens, reasoning_tokens, latency_ms, status, endpoint, \
         estimated, unpriced, request_id, team_id, key_id, session_id, tool_calls) VALUES \
         ({start}, {end}, {cost}, 10, 0, 5, 0, {}, 200, 1, 0, 0, '{request}', '{team}', \
         'key_{team}', '{session}', {tools})",
        end - start
    )
}

async fn old_gateway_state(pool: &AnyPool) {
    let t = SHARED_DAY;
    // Team B started session `shared`; team A's client later sent the same id.
    let ledger = [
        (
            "r1",
            "tm_b",
            "shared",
            t + 1_000,
            t + 1_500,
            100,
            Some("exec_command=2"),
        ),
        (
            "r2",
            "tm_b",
            "shared",
            t + 2_000,
            t + 2_500,
            100,
            Some("apply_patch=1"),
        ),
        (
            "r3",
            "tm_a",
            "shared",
            t + 3_000,
            t + 3_500,
            50,
            Some("exec_command=1"),
        ),
        ("r4", "tm_a", "shared", t + 4_000, t + 4_500, 50, None),
        (
            "r5",
            "tm_a",
            "shared",
            t + 5_000,
            t + 5_500,
            50,
            Some("exec_command=2,a%2Cb%3Dc=4"),
        ),
        // Session `partial`: retention removed its first three calls.
        ("r6", "tm_b", "partial", 4_000, 5_000, 100, Some("shell=1")),
    ];
    for row in ledger {
        pool.execute(sqlx::AssertSqlSafe(ledger_insert(row)))
            .await
            .unwrap();
    }
    // The rollups as 0002–0005 kept them: one row per session id, every team's calls in it.
    for sql in [
        "INSERT INTO ledger_daily (day, team_id, key_id, model, cost_centre, requests, \
         input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos, \
         estimated_requests) VALUES \
         ('1983-09-10', 'tm_b', 'key_tm_b', '', '', 2, 20, 0, 10, 0, 200, 0), \
         ('1983-09-10', 'tm_a', 'key_tm_a', '', '', 3, 30, 0, 15, 0, 150, 0)",
        "INSERT INTO sessions (session_id, team_id, first_seen_ms, last_seen_ms, requests, \
         input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos) VALUES \
         ('shared', 'tm_b', 432000001000, 432000005500, 5, 50, 0, 25, 0, 350), \
         ('old', 'tm_a', 10, 20, 7, 70, 0, 35, 0, 700), \
         ('partial', 'tm_b', 100, 5000, 4, 40, 0, 20, 0, 400)",
        "INSERT INTO session_tools (session_id, tool, calls) VALUES \
         ('shared', 'exec_command', 5), ('shared', 'apply_patch', 1), ('shared', 'a,b=c', 4), \
         ('old', 'shell', 9), ('partial', 'shell', 3)",
    ] {
        pool.execute(sql).await.unwrap();
    }
}

fn tools(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

/// (requests, cost, first seen, last seen, tools)
fn summary(s: &SessionSummary) -> (i64, i64, i64, i64, BTreeMap<String, i64>) {
    (
        s.requests,
        s.cost_nanos,
        s.first_seen_ms,
        s.last_seen_ms,
        s.tools.clone(),
    )
}

async fn existing_sessions_are_split_by_team(db: TestDb, backend: &str) {
    let pool = before_0006(&db, backend).await;
    old_gateway_state(&pool).await;
    pool.close().await;

    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate 0006 and later");
    let t = SHARED_DAY;
    let session = |team: &'static str, id: &'static str| {
        let store = store.clone();
        async move { store.session(team, id).await.unwrap() }
    };
    let b = session("tm_b", "shared").await.expect("B's session");
    assert_eq!(
        summary(&b),
        (
            2,
            200,
            t + 1_000,
            t + 2_500,
            tools(&[("exec_command", 2), ("apply_patch", 1)])
        ),
        "B keeps only B's calls"
    );
    assert_eq!(b.input_tokens, 20);
    let a = session("tm_a", "shared").await.expect("A's session");
    assert_eq!(
        summary(&a),
        (
            3,
            150,
            t + 3_000,
            t + 5_500,
            tools(&[("exec_command", 3), ("a,b=c", 4)])
        ),
        "A's calls under B's id are A's own session"
    );
    // No ledger rows left: the old row is carried over whole, with the team that used it.
    let old = session("tm_a", "old").await.expect("old session");
    assert_eq!(summary(&old), (7, 700, 10, 20, tools(&[("shell", 9)])));
    assert_eq!(old.input_tokens, 70);
    assert_eq!(session("tm_b", "old").await, None);
    // Part in the ledger, part only in the old rollup: the totals are unchanged.
    let partial = session("tm_b", "partial").await.expect("partial session");
    assert_eq!(
        summary(&partial),
        (4, 400, 100, 5_000, tools(&[("shell", 3)]))
    );

    // The reused id is in two teams now: a lookup without a team does not guess.
    let ambiguous = store.find_session(None, "shared").await.unwrap_err();
    assert!(
        matches!(&ambiguous, tollgate_store::StoreError::Conflict(m) if m.contains("tm_a") && m.contains("tm_b")),
        "{ambiguous:?}"
    );
    assert_eq!(
        store
            .find_session(None, "old")
            .await
            .unwrap()
            .unwrap()
            .team_id,
        "tm_a"
    );

    // The rebuilt rollup agrees with the ledger, per team and session.
    let reconciled = store.reconcile(t, t + DAY).await.unwrap();
    assert!(reconciled.is_clean(), "{reconciled:?}");
    assert_eq!(reconciled.sessions, 2);

    // New calls add to their own team's session only.
    store
        .insert_ledger_batch(&[call("r7", "tm_a", "shared", t + 6_000, 25)])
        .await
        .unwrap();
    assert_eq!(session("tm_a", "shared").await.unwrap().requests, 4);
    assert_eq!(session("tm_a", "shared").await.unwrap().cost_nanos, 175);
    assert_eq!(session("tm_b", "shared").await.unwrap().requests, 2);
    assert!(store.reconcile(t, t + DAY).await.unwrap().is_clean());
}

fn call(request: &str, team: &str, session: &str, at_ms: i64, cost: i64) -> LedgerEvent {
    LedgerEvent {
        request_id: request.into(),
        started_at_ms: at_ms,
        finished_at_ms: at_ms + 500,
        team_id: team.into(),
        key_id: format!("key_{team}"),
        cost_centre: None,
        user: None,
        session_id: Some(session.into()),
        turn_id: None,
        endpoint: "responses".into(),
        model_requested: Some("gpt-5".into()),
        model_served: Some("gpt-5".into()),
        status: 200,
        usage: Usage {
            input: 10,
            cached_input: 0,
            output: 5,
            reasoning: 0,
        },
        cost: Money(cost),
        price_id: None,
        estimated: false,
        unpriced: false,
        service_tier: None,
        ttfb_ms: Some(100),
        latency_ms: 500,
        tool_calls: vec![ToolCount {
            name: "exec_command".into(),
            count: 1,
        }],
        outcome: Default::default(),
        unmetered: false,
        units: Default::default(),
        response_id: None,
    }
}

#[tokio::test]
async fn sqlite_existing_sessions_are_split_by_team() {
    existing_sessions_are_split_by_team(TestDb::sqlite(), "sqlite").await;
}

#[tokio::test]
async fn postgres_existing_sessions_are_split_by_team() {
    existing_sessions_are_split_by_team(TestDb::postgres().await, "postgres").await;
}
