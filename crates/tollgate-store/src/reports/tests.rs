//! Reports against SQLite: both sources agree, local buckets, restriction to a team, and
//! reconciliation finding a hand-edited rollup.

use chrono::DateTime;
use tollgate_core::budget::Calendar;
use tollgate_core::{LedgerEvent, Money, Usage};

use super::*;
use crate::testdb::TestDb;

fn ms(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

struct Spec {
    id: &'static str,
    at: &'static str,
    team: &'static str,
    model: Option<&'static str>,
    user: Option<&'static str>,
    session: Option<&'static str>,
    cost_nanos: i64,
}

fn event(s: &Spec) -> LedgerEvent {
    let started = ms(s.at);
    LedgerEvent {
        request_id: s.id.into(),
        started_at_ms: started,
        finished_at_ms: started + 1_000,
        team_id: s.team.into(),
        key_id: format!("k_{}", s.team),
        cost_centre: (s.team == "tm_a").then(|| "CC-A".into()),
        user: s.user.map(Into::into),
        session_id: s.session.map(Into::into),
        turn_id: None,
        endpoint: "responses".into(),
        // `tm_c` reports only the model it asked for, as an unanswered call does.
        model_requested: s.model.map(Into::into),
        model_served: s
            .model
            .filter(|_| s.team != "tm_c")
            .map(|m| format!("{m}-2026")),
        status: 200,
        usage: Usage {
            input: 100,
            cached_input: 10,
            output: 20,
            reasoning: 5,
        },
        cost: Money(s.cost_nanos),
        price_id: None,
        estimated: s.user.is_none(),
        unpriced: false,
        service_tier: None,
        ttfb_ms: None,
        latency_ms: 1_000,
        tool_calls: Vec::new(),
        outcome: Default::default(),
        unmetered: false,
        units: Default::default(),
        response_id: None,
    }
}

const SPECS: &[Spec] = &[
    // 23:30 UTC on 30 Nov is 1 Dec in Berlin.
    Spec {
        id: "r1",
        at: "2026-11-30T23:30:00Z",
        team: "tm_a",
        model: Some("gpt-5"),
        user: Some("ann"),
        session: Some("s1"),
        cost_nanos: 1_000_000_001,
    },
    Spec {
        id: "r2",
        at: "2026-11-30T12:00:00Z",
        team: "tm_a",
        model: Some("gpt-5"),
        user: Some("ann"),
        session: Some("s1"),
        cost_nanos: 7,
    },
    Spec {
        id: "r3",
        at: "2026-12-01T00:30:00Z",
        team: "tm_b",
        model: Some("gpt-5-mini"),
        user: None,
        session: Some("s2"),
        cost_nanos: 300,
    },
    Spec {
        id: "r4",
        at: "2026-12-02T10:00:00Z",
        team: "tm_c",
        model: Some("gpt-5-mini"),
        user: Some("bo"),
        session: None,
        cost_nanos: 40,
    },
    Spec {
        id: "r5",
        at: "2026-12-02T11:00:00Z",
        team: "tm_c",
        model: None,
        user: Some("bo"),
        session: None,
        cost_nanos: 5,
    },
];

async fn seeded() -> (TestDb, Store) {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let events: Vec<LedgerEvent> = SPECS.iter().map(event).collect();
    store.insert_ledger_batch(&events).await.unwrap();
    (db, store)
}

fn query(group_by: &[Dimension], calendar: Calendar) -> ReportQuery {
    ReportQuery {
        from_ms: ms("2026-11-01T00:00:00Z"),
        to_ms: ms("2027-01-01T00:00:00Z"),
        group_by: group_by.to_vec(),
        team_id: None,
        calendar,
    }
}

fn summary(report: &Report, dimension: Dimension) -> Vec<(Option<&str>, i64, i64)> {
    report
        .rows
        .iter()
        .map(|r| (r.value(dimension), r.totals.requests, r.totals.cost.nanos()))
        .collect()
}

#[tokio::test]
async fn rollups_and_ledger_give_the_same_sums() {
    let (_db, store) = seeded().await;
    for dims in [
        vec![Dimension::Team],
        vec![Dimension::Model],
        vec![Dimension::CostCentre, Dimension::Key],
        vec![Dimension::Day, Dimension::Team],
        vec![Dimension::Month],
        vec![],
    ] {
        let utc = query(&dims, Calendar::default());
        let from_rollups = store.spend_report(&utc).await.unwrap();
        assert_eq!(from_rollups.source, Source::Rollups, "{dims:?}");
        // One millisecond less makes the range ragged: only the ledger can answer it.
        let ragged = ReportQuery {
            to_ms: utc.to_ms - 1,
            ..utc.clone()
        };
        let from_ledger = store.spend_report(&ragged).await.unwrap();
        assert_eq!(from_ledger.source, Source::Ledger, "{dims:?}");
        assert_eq!(from_rollups.rows, from_ledger.rows, "{dims:?}");
        assert_eq!(from_rollups.totals.requests, 5);
        assert_eq!(from_rollups.totals.cost, Money(1_000_000_353));
        assert_eq!(from_rollups.totals.input_tokens, 500);
        assert_eq!(from_rollups.totals.estimated_requests, 1);
    }
}

#[tokio::test]
async fn groups_carry_names_and_models_fall_back_to_the_request() {
    let (_db, store) = seeded().await;
    sqlx::query("INSERT INTO teams (id, name, created_at_ms, updated_at_ms, rev) VALUES ('tm_a', 'alpha', 0, 0, 0)")
        .execute(&store.pool)
        .await
        .unwrap();
    let by_team = store
        .spend_report(&query(&[Dimension::Team], Calendar::default()))
        .await
        .unwrap();
    assert_eq!(by_team.rows[0].team_name.as_deref(), Some("alpha"));
    assert_eq!(by_team.rows[1].team_name, None);

    let by_model = store
        .spend_report(&query(&[Dimension::Model], Calendar::default()))
        .await
        .unwrap();
    assert_eq!(
        summary(&by_model, Dimension::Model),
        [
            (None, 1, 5),
            (Some("gpt-5-2026"), 2, 1_000_000_008),
            (Some("gpt-5-mini"), 1, 40),
            (Some("gpt-5-mini-2026"), 1, 300),
        ]
    );
}

#[tokio::test]
async fn days_and_months_are_local_to_the_zone_asked_for() {
    let (_db, store) = seeded().await;
    let berlin = Calendar::new("Europe/Berlin").unwrap();
    let report = store
        .spend_report(&query(&[Dimension::Day], berlin))
        .await
        .unwrap();
    assert_eq!(report.source, Source::Ledger);
    assert_eq!(
        summary(&report, Dimension::Day),
        [
            (Some("2026-11-30"), 1, 7),
            (Some("2026-12-01"), 2, 1_000_000_301),
            (Some("2026-12-02"), 2, 45),
        ]
    );
    let utc = store
        .spend_report(&query(&[Dimension::Month], Calendar::default()))
        .await
        .unwrap();
    assert_eq!(
        summary(&utc, Dimension::Month),
        [
            (Some("2026-11"), 2, 1_000_000_008),
            (Some("2026-12"), 3, 345)
        ]
    );
    let local = store
        .spend_report(&query(&[Dimension::Month], berlin))
        .await
        .unwrap();
    assert_eq!(
        summary(&local, Dimension::Month),
        [(Some("2026-11"), 1, 7), (Some("2026-12"), 4, 1_000_000_346)]
    );
}

#[tokio::test]
async fn users_and_sessions_come_from_the_ledger_and_teams_can_be_fenced() {
    let (_db, store) = seeded().await;
    let by_user = store
        .spend_report(&query(&[Dimension::User], Calendar::default()))
        .await
        .unwrap();
    assert_eq!(by_user.source, Source::Ledger);
    assert_eq!(
        summary(&by_user, Dimension::User),
        [
            (None, 1, 300),
            (Some("ann"), 2, 1_000_000_008),
            (Some("bo"), 2, 45)
        ]
    );
    let fenced = ReportQuery {
        team_id: Some("tm_c".into()),
        ..query(&[Dimension::Session, Dimension::Team], Calendar::default())
    };
    let report = store.spend_report(&fenced).await.unwrap();
    assert_eq!(report.rows.len(), 1);
    assert_eq!(report.rows[0].team_id.as_deref(), Some("tm_c"));
    assert_eq!(report.rows[0].session_id, None);
    assert_eq!(report.totals.cost, Money(45));
    let fenced_rollup = ReportQuery {
        team_id: Some("tm_b".into()),
        ..query(&[Dimension::Model], Calendar::default())
    };
    let report = store.spend_report(&fenced_rollup).await.unwrap();
    assert_eq!(report.source, Source::Rollups);
    assert_eq!(
        summary(&report, Dimension::Model),
        [(Some("gpt-5-mini-2026"), 1, 300)]
    );
}

#[tokio::test]
async fn empty_and_inverted_ranges_have_no_rows() {
    let (_db, store) = seeded().await;
    for (from, to) in [
        ("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z"),
        ("2027-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
    ] {
        let q = ReportQuery {
            from_ms: ms(from),
            to_ms: ms(to),
            ..query(&[], Calendar::default())
        };
        let report = store.spend_report(&q).await.unwrap();
        assert!(report.rows.is_empty(), "{from}..{to}: {report:?}");
        assert_eq!(report.totals, Totals::default());
    }
}

#[tokio::test]
async fn reconcile_is_clean_until_a_rollup_is_edited() {
    let (_db, store) = seeded().await;
    let (from, to) = (ms("2026-11-30T13:00:00Z"), ms("2026-12-02T10:30:00Z"));
    let clean = store.reconcile(from, to).await.unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!(
        (clean.from_ms, clean.to_ms),
        (ms("2026-11-30T00:00:00Z"), ms("2026-12-03T00:00:00Z"))
    );
    assert_eq!(clean.daily_keys, 4);
    assert_eq!(clean.sessions, 2);

    sqlx::query("UPDATE ledger_daily SET cost_nanos = cost_nanos + 1 WHERE team_id = 'tm_b'")
        .execute(&store.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM sessions WHERE session_id = 's1'")
        .execute(&store.pool)
        .await
        .unwrap();
    let dirty = store.reconcile(from, to).await.unwrap();
    assert_eq!(dirty.daily_differences.len(), 1, "{dirty:?}");
    let d = &dirty.daily_differences[0];
    assert_eq!(
        (
            d.day.as_str(),
            d.team_id.as_str(),
            d.model.as_str(),
            d.cost_centre.as_str()
        ),
        ("2026-12-01", "tm_b", "gpt-5-mini-2026", "")
    );
    assert_eq!(d.ledger.map(|t| t.cost), Some(Money(300)));
    assert_eq!(d.rollup.map(|t| t.cost), Some(Money(301)));
    assert_eq!(dirty.session_differences.len(), 1);
    let s = &dirty.session_differences[0];
    assert_eq!(s.session_id, "s1");
    assert_eq!(s.rollup, None);
    assert_eq!(
        s.ledger.map(|t| (t.requests, t.first_seen_ms)),
        Some((2, ms("2026-11-30T12:00:00Z")))
    );
}
