//! Codex's turn costs read from the ledger, on both backends: one team's rows per turn, summed
//! exactly, every row listed (under its request id when the upstream sent no response id), no
//! other team's rows, and the query served by the turn-id index.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/events.rs"]
mod events;

use events::*;
use sqlx::{Connection, Executor, Row};
use tollgate_core::Money;
use tollgate_store::ledger::{MAX_TURN_IDS, ResponseCost};
use tollgate_store::testdb::TestDb;
use tollgate_store::{Backend, Store, StoreError};

const TEAM: &str = "tm_aaaaaaaaaaaa";
const OTHER: &str = "tm_bbbbbbbbbbbb";

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn a_teams_turns_are_summed_from_its_own_rows(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let call = |n: usize, turn: &str, team: &str, nanos: i64, model: &str| {
        let mut e = event(&request_id("tc", n), DAY1_NOON_MS + n as i64 * 1_000);
        e.turn_id = Some(turn.to_owned());
        e.team_id = team.to_owned();
        e.cost = Money(nanos);
        e.model_served = Some(model.to_owned());
        e.response_id = Some(format!("resp_{n}"));
        e
    };
    let mut no_id = call(2, "t1", TEAM, 3, "gpt-5.5");
    no_id.response_id = None;
    let events = vec![
        call(0, "t1", TEAM, 1_000_000_000, "gpt-5.5"),
        call(1, "t1", TEAM, 250_000_000, "gpt-5.5"),
        no_id,
        call(3, "t2", TEAM, 10, "gpt-5-mini"),
        call(4, "t2", TEAM, 20, "gpt-5.5"),
        // Another team's rows under the same turn ids are never this team's.
        call(5, "t1", OTHER, 7_000, "gpt-5.5"),
        call(6, "t3", OTHER, 7_000, "gpt-5.5"),
    ];
    store.insert_ledger_batch(&events).await.unwrap();

    let turns = store
        .turn_costs(TEAM, &ids(&["t1", "t2", "t3", "t1", "nope"]))
        .await
        .unwrap();
    assert_eq!(turns.len(), 2, "{turns:?}");
    let t1 = &turns["t1"];
    assert_eq!(t1.total, Money(1_250_000_003));
    assert_eq!(t1.total.to_usd_string(), "1.250000003");
    let row = |id: &str, nanos| ResponseCost {
        response_id: id.to_owned(),
        cost: Money(nanos),
    };
    assert_eq!(
        t1.responses,
        [
            row("resp_0", 1_000_000_000),
            row("resp_1", 250_000_000),
            row(&request_id("tc", 2), 3),
        ]
    );
    assert_eq!(t1.model.as_deref(), Some("gpt-5.5"));
    assert_eq!(t1.last_finished_at_ms, events[2].finished_at_ms);
    let t2 = &turns["t2"];
    assert_eq!((t2.total, t2.responses.len()), (Money(30), 2));
    assert_eq!(
        t2.model.as_deref(),
        Some("gpt-5.5"),
        "the priciest row's model"
    );

    let other = store.turn_costs(OTHER, &ids(&["t1"])).await.unwrap();
    assert_eq!(other["t1"].total, Money(7_000));
    assert!(store.turn_costs(TEAM, &[]).await.unwrap().is_empty());
    let many: Vec<String> = (0..=MAX_TURN_IDS).map(|i| i.to_string()).collect();
    assert!(matches!(
        store.turn_costs(TEAM, &many).await,
        Err(StoreError::Invalid(_))
    ));
    let full: Vec<String> = (0..MAX_TURN_IDS).map(|i| format!("t{i}")).collect();
    assert_eq!(store.turn_costs(TEAM, &full).await.unwrap().len(), 2);

    let plan = turn_lookup_plan(&db, store.backend()).await;
    println!("{plan}");
    assert!(plan.contains("turn_id_idx"), "no turn-id index in:\n{plan}");
}

/// The plan of the turn-cost query's lookup (sequential scans off on PostgreSQL, whose planner
/// would scan a table this small whatever its indexes).
async fn turn_lookup_plan(db: &TestDb, backend: Backend) -> String {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    let select = "SELECT request_id, cost_nanos FROM ledger \
                  WHERE team_id = 'tm_aaaaaaaaaaaa' AND turn_id IN ('t1', 't2')";
    let (explain, column) = match backend {
        Backend::Postgres => {
            conn.execute("SET enable_seqscan = off").await.unwrap();
            (format!("EXPLAIN {select}"), 0)
        }
        Backend::Sqlite => (format!("EXPLAIN QUERY PLAN {select}"), 3),
    };
    let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(explain))
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(column))
        .collect();
    plan.join("\n")
}

mod sqlite {
    #[tokio::test]
    async fn a_teams_turns_are_summed_from_its_own_rows() {
        super::a_teams_turns_are_summed_from_its_own_rows(super::TestDb::sqlite()).await
    }
}

mod postgres {
    #[tokio::test]
    async fn a_teams_turns_are_summed_from_its_own_rows() {
        super::a_teams_turns_are_summed_from_its_own_rows(super::TestDb::postgres().await).await
    }
}
