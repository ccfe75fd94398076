//! Spend reports on both backends (suite functions instantiated by `both_backends!` at the
//! bottom): failed, estimated, unpriced and unmetered calls counted in every group, the same from
//! the daily rollup as from the ledger; grouping by HTTP status; sessions kept per team; and
//! migration 0008 counting the calls written before it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/events.rs"]
mod events;

use events::*;
use sqlx::Executor;
use tollgate_core::budget::Calendar;
use tollgate_core::{CallOutcome, LedgerEvent, Money};
use tollgate_store::ledger::utc_day;
use tollgate_store::testdb::TestDb;
use tollgate_store::{Dimension, Report, ReportQuery, Source, Store, Totals};

async fn migrated(db: &TestDb) -> Store {
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

async fn raw_pool(db: &TestDb) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&db.url).await.expect("raw connect")
}

/// The first fixture day, midnight UTC.
const DAY1_MS: i64 = DAY1_NOON_MS - DAY_MS / 2;

/// A report over the two fixture days: whole UTC days, so served from the rollup when it can be.
fn whole_days(group_by: &[Dimension]) -> ReportQuery {
    ReportQuery {
        from_ms: DAY1_MS,
        to_ms: DAY1_MS + 2 * DAY_MS,
        group_by: group_by.to_vec(),
        team_id: None,
        calendar: Calendar::default(),
    }
}

/// The same report from both sources: the rollup for whole days, the ledger for a range one
/// millisecond shorter (no call starts in that millisecond).
async fn both_ways(store: &Store, group_by: &[Dimension]) -> (Report, Report) {
    let query = whole_days(group_by);
    let rollups = store.spend_report(&query).await.unwrap();
    assert_eq!(rollups.source, Source::Rollups, "{group_by:?}");
    let ragged = ReportQuery {
        to_ms: query.to_ms - 1,
        ..query
    };
    let ledger = store.spend_report(&ragged).await.unwrap();
    assert_eq!(ledger.source, Source::Ledger, "{group_by:?}");
    (rollups, ledger)
}

/// (failed, estimated, unpriced, unmetered)
type Flags = (i64, i64, i64, i64);

fn flags(t: &Totals) -> Flags {
    (
        t.failed_requests,
        t.estimated_requests,
        t.unpriced_requests,
        t.unmetered_requests,
    )
}

/// One call of model `model` on the first fixture day, `n` seconds after noon.
fn call(n: usize, model: &str) -> LedgerEvent {
    let mut e = event(&request_id("cnt", n), DAY1_NOON_MS + n as i64 * 1_000);
    e.model_requested = Some(model.to_owned());
    e.model_served = Some(model.to_owned());
    e
}

async fn failed_unpriced_and_unmetered_calls_are_counted_the_same_from_rollups_and_ledger(
    db: TestDb,
) {
    let store = migrated(&db).await;
    let ok = call(0, "ok");
    let mut refused = call(1, "refused");
    refused.status = 429;
    refused.cost = Money(0);
    // The upstream cut the stream: the client saw 200, the call still failed.
    let mut cut = call(2, "cut");
    cut.outcome = CallOutcome::UpstreamCut;
    cut.estimated = true;
    let mut unpriced = call(3, "unpriced");
    unpriced.unpriced = true;
    let mut unmetered = call(4, "unmetered");
    unmetered.unmetered = true;
    unmetered.cost = Money(0);
    store
        .insert_ledger_batch(&[ok, refused, cut, unpriced, unmetered])
        .await
        .unwrap();

    let (rollups, ledger) = both_ways(&store, &[Dimension::Model]).await;
    assert_eq!(rollups.rows, ledger.rows);
    assert_eq!(rollups.totals, ledger.totals);
    let by_model: Vec<(Option<&str>, Flags)> = rollups
        .rows
        .iter()
        .map(|r| (r.value(Dimension::Model), flags(&r.totals)))
        .collect();
    assert_eq!(
        by_model,
        [
            (Some("cut"), (1, 1, 0, 0)),
            (Some("ok"), (0, 0, 0, 0)),
            (Some("refused"), (1, 0, 0, 0)),
            (Some("unmetered"), (0, 0, 0, 1)),
            (Some("unpriced"), (0, 0, 1, 0)),
        ]
    );
    assert_eq!(rollups.totals.requests, 5);
    assert_eq!(flags(&rollups.totals), (2, 1, 1, 1));

    // Reconcile compares the counts too: a rollup that lost a failed call is a difference.
    assert!(
        store
            .reconcile(DAY1_MS, DAY1_MS + DAY_MS)
            .await
            .unwrap()
            .is_clean()
    );
    let raw = raw_pool(&db).await;
    raw.execute("UPDATE ledger_daily SET failed_requests = 0 WHERE model = 'refused'")
        .await
        .unwrap();
    let dirty = store.reconcile(DAY1_MS, DAY1_MS + DAY_MS).await.unwrap();
    assert_eq!(dirty.daily_differences.len(), 1, "{dirty:?}");
    let d = &dirty.daily_differences[0];
    assert_eq!(d.model, "refused");
    assert_eq!(d.ledger.map(|t| t.failed_requests), Some(1));
    assert_eq!(d.rollup.map(|t| t.failed_requests), Some(0));
}

async fn grouping_by_status_splits_successes_from_refusals(db: TestDb) {
    let store = migrated(&db).await;
    let mut events = Vec::new();
    for n in 0..5 {
        let mut e = call(n, "gpt-5");
        e.team_id = ["tm_a", "tm_b"][n % 2].to_owned();
        if n >= 3 {
            e.status = 429;
            e.cost = Money(0);
        }
        events.push(e);
    }
    let mut gone = call(5, "gpt-5");
    gone.team_id = "tm_a".to_owned();
    gone.status = 499;
    gone.outcome = CallOutcome::ClientGoneBeforeHeaders;
    events.push(gone);
    store.insert_ledger_batch(&events).await.unwrap();

    assert_eq!(Dimension::parse("status"), Some(Dimension::Status));
    assert!(Dimension::ALL.contains(&Dimension::Status));
    let report = store
        .spend_report(&whole_days(&[Dimension::Status]))
        .await
        .unwrap();
    assert_eq!(report.source, Source::Ledger, "the rollup keeps no status");
    let rows: Vec<(Option<&str>, i64, i64, i64)> = report
        .rows
        .iter()
        .map(|r| {
            (
                r.value(Dimension::Status),
                r.totals.requests,
                r.totals.failed_requests,
                r.totals.cost.nanos(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (Some("200"), 3, 0, 3 * 12_345_678),
            (Some("429"), 2, 2, 0),
            (Some("499"), 1, 1, 12_345_678),
        ]
    );

    let by_team = store
        .spend_report(&whole_days(&[Dimension::Team, Dimension::Status]))
        .await
        .unwrap();
    let rows: Vec<(Option<&str>, Option<&str>, i64)> = by_team
        .rows
        .iter()
        .map(|r| {
            (
                r.value(Dimension::Team),
                r.value(Dimension::Status),
                r.totals.requests,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (Some("tm_a"), Some("200"), 2),
            (Some("tm_a"), Some("429"), 1),
            (Some("tm_a"), Some("499"), 1),
            (Some("tm_b"), Some("200"), 1),
            (Some("tm_b"), Some("429"), 1),
        ]
    );
}

async fn two_teams_sessions_of_one_id_are_two_rows(db: TestDb) {
    let store = migrated(&db).await;
    let mut events = Vec::new();
    for (n, (team, session)) in [
        ("tm_a", Some("shared")),
        ("tm_a", Some("shared")),
        ("tm_b", Some("shared")),
        ("tm_a", None),
        ("tm_b", None),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = call(n, "gpt-5");
        e.team_id = team.to_owned();
        e.session_id = session.map(str::to_owned);
        events.push(e);
    }
    store.insert_ledger_batch(&events).await.unwrap();

    let report = store
        .spend_report(&whole_days(&[Dimension::Session]))
        .await
        .unwrap();
    assert_eq!(report.group_by, [Dimension::Session]);
    let rows: Vec<(Option<&str>, Option<&str>, i64)> = report
        .rows
        .iter()
        .map(|r| {
            (
                r.value(Dimension::Session),
                r.team_id.as_deref(),
                r.totals.requests,
            )
        })
        .collect();
    // Calls without a session stay one group, whatever their team.
    assert_eq!(
        rows,
        [
            (None, None, 2),
            (Some("shared"), Some("tm_a"), 2),
            (Some("shared"), Some("tm_b"), 1),
        ]
    );
    assert_eq!(report.totals.requests, 5);

    // Asking for the team as well gives the same sessions, with the session-less calls per team.
    let with_team = store
        .spend_report(&whole_days(&[Dimension::Team, Dimension::Session]))
        .await
        .unwrap();
    assert_eq!(with_team.rows.len(), 4);
}

/// Calls written before 0008 (by a writer that kept no counts) are counted by the migration.
/// The state before it is made from real writes: the ledger is unchanged by 0008, and dropping
/// the three columns and forgetting the migration leaves `ledger_daily` as the old writer left it.
async fn migration_counts_calls_written_before_it(db: TestDb) {
    let store = migrated(&db).await;
    let mut events = fixture();
    // An hour before the epoch: its UTC day is 1969-12-31, not 1970-01-01.
    let mut early = event(&request_id("early", 0), -3_600_000);
    early.status = 502;
    early.outcome = CallOutcome::UpstreamUnreachable;
    early.unpriced = true;
    events.push(early);
    store.insert_ledger_batch(&events).await.unwrap();
    let expected = expected_totals(&events);
    assert!(
        expected.failed_requests > 1 && expected.unpriced_requests > 1,
        "{expected:?}"
    );
    assert!(expected.unmetered_requests > 1, "{expected:?}");

    let raw = raw_pool(&db).await;
    for sql in [
        "ALTER TABLE ledger_daily DROP COLUMN failed_requests",
        "ALTER TABLE ledger_daily DROP COLUMN unpriced_requests",
        "ALTER TABLE ledger_daily DROP COLUMN unmetered_requests",
        "DELETE FROM _sqlx_migrations WHERE version = 8",
    ] {
        raw.execute(sql).await.unwrap();
    }
    raw.close().await;

    store.migrate().await.expect("migrate 0008 again");
    let first = utc_day(-3_600_000);
    assert_eq!(first, "1969-12-31");
    let last = utc_day(DAY1_MS + DAY_MS);
    assert_eq!(store.daily_totals(&first, &last).await.unwrap(), expected);
    let reconciled = store
        .reconcile(-DAY_MS, DAY1_MS + 2 * DAY_MS)
        .await
        .unwrap();
    assert!(reconciled.is_clean(), "{reconciled:?}");

    let dims = [
        Dimension::Day,
        Dimension::Team,
        Dimension::Key,
        Dimension::Model,
        Dimension::CostCentre,
    ];
    let (rollups, ledger) = both_ways(&store, &dims).await;
    assert_eq!(rollups.rows, ledger.rows);
    assert!(rollups.rows.iter().any(|r| r.totals.failed_requests > 0));

    // The writer adds to the backfilled counts.
    let mut later = event(&request_id("later", 0), DAY1_NOON_MS + 500);
    later.status = 500;
    later.unmetered = true;
    store.insert_ledger_batch(&[later]).await.unwrap();
    let after = store.daily_totals(&first, &last).await.unwrap();
    assert_eq!(
        (after.failed_requests, after.unmetered_requests),
        (
            expected.failed_requests + 1,
            expected.unmetered_requests + 1
        )
    );
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
    failed_unpriced_and_unmetered_calls_are_counted_the_same_from_rollups_and_ledger,
    grouping_by_status_splits_successes_from_refusals,
    two_teams_sessions_of_one_id_are_two_rows,
    migration_counts_calls_written_before_it,
);
