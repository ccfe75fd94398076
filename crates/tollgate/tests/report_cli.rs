//! `tollgate report --month …` through the real binary: the month-end CSV finance imports sums
//! to exactly the ledger rows of that month, in UTC and in Berlin's calendar.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::BTreeMap;
use std::process::{Command, Output};

use tollgate_core::{LedgerEvent, Money, Usage};
use tollgate_store::Store;
use tollgate_store::testdb::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const HOUR: i64 = 3_600_000;
/// 2026-11-01T00:00:00Z and 2026-12-01T00:00:00Z.
const NOV_1: i64 = 1_793_491_200_000;
const DEC_1: i64 = 1_796_083_200_000;

fn tollgate(args: &[&str], database_url: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("DATABASE_URL", database_url)
        .output()
        .expect("tollgate runs")
}

fn event(i: usize, started_at_ms: i64, team: &str, model: &str, cost_nanos: i64) -> LedgerEvent {
    LedgerEvent {
        request_id: format!("req_{i}"),
        started_at_ms,
        finished_at_ms: started_at_ms + 500,
        team_id: team.into(),
        key_id: format!("key_{team}"),
        cost_centre: None,
        user: None,
        session_id: None,
        turn_id: None,
        endpoint: "responses".into(),
        model_requested: Some(model.into()),
        model_served: Some(model.into()),
        status: 200,
        usage: Usage {
            input: 1_000 + i as u64,
            cached_input: 10,
            output: 200,
            reasoning: 0,
        },
        cost: Money(cost_nanos),
        price_id: None,
        estimated: false,
        unpriced: false,
        service_tier: None,
        ttfb_ms: None,
        latency_ms: 500,
        tool_calls: Vec::new(),
        outcome: Default::default(),
        unmetered: false,
        units: Default::default(),
        response_id: None,
    }
}

/// (team, model) → (requests, cost nano-USD), from the CSV's data rows; checks the TOTAL row
/// when there is one (`--total-row`).
fn sums(csv: &str, total_row: bool) -> BTreeMap<(String, String), (i64, i64)> {
    let lines: Vec<Vec<&str>> = csv
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').collect())
        .collect();
    let header = &lines[0];
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (team, model, requests, cost, usd) = (
        at("team_id"),
        at("model"),
        at("requests"),
        at("cost_nano_usd"),
        at("cost_usd"),
    );
    let mut out = BTreeMap::new();
    let data = &lines[1..];
    let (body, total) = data.split_at(data.len() - usize::from(total_row));
    for row in body {
        let nanos: i64 = row[cost].parse().unwrap();
        assert_eq!(Money::parse_usd(row[usd]), Some(Money(nanos)));
        out.insert(
            (row[team].to_owned(), row[model].to_owned()),
            (row[requests].parse().unwrap(), nanos),
        );
    }
    if let Some(total) = total.first() {
        assert_eq!(total[0], "TOTAL");
        let summed: i64 = out.values().map(|(_, c)| c).sum();
        assert_eq!(total[cost].parse::<i64>().unwrap(), summed);
    }
    out
}

#[tokio::test]
async fn month_report_csv_sums_the_months_ledger_rows() {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let events = vec![
        event(0, NOV_1 - HOUR / 2, "tm_a", "gpt-5", 1), // Oct in UTC, Nov in Berlin
        event(1, NOV_1, "tm_a", "gpt-5", 1_000_000_000),
        event(2, NOV_1 + 3 * HOUR, "tm_a", "gpt-5", 2_500_000_001),
        event(3, NOV_1 + 48 * HOUR, "tm_a", "gpt-5-mini", 7),
        event(4, NOV_1 + 50 * HOUR, "tm_b", "gpt-5", 123_456_789),
        event(5, DEC_1 - HOUR / 2, "tm_b", "gpt-5", 40), // Nov in UTC, Dec in Berlin
        event(6, DEC_1, "tm_b", "gpt-5", 999),           // December everywhere
        event(7, NOV_1 - 48 * HOUR, "tm_c", "=cmd|' /C calc'!A0", 5), // October: a formula
    ];
    store.insert_ledger_batch(&events).await.unwrap();
    store.close().await;

    let out = tollgate(
        &[
            "report",
            "--month",
            "2026-11",
            "--format",
            "csv",
            "--total-row",
        ],
        &db.url,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let want: BTreeMap<(String, String), (i64, i64)> = [
        (("tm_a".into(), "gpt-5".into()), (2, 3_500_000_001)),
        (("tm_a".into(), "gpt-5-mini".into()), (1, 7)),
        (("tm_b".into(), "gpt-5".into()), (2, 123_456_829)),
    ]
    .into_iter()
    .collect();
    assert_eq!(sums(&csv, true), want, "{csv}");

    let berlin = tollgate(
        &[
            "report",
            "--month",
            "2026-11",
            "--format",
            "csv",
            "--tz",
            "Europe/Berlin",
        ],
        &db.url,
    );
    assert!(berlin.status.success());
    let csv = String::from_utf8(berlin.stdout).unwrap();
    let want: BTreeMap<(String, String), (i64, i64)> = [
        (("tm_a".into(), "gpt-5".into()), (3, 3_500_000_002)),
        (("tm_a".into(), "gpt-5-mini".into()), (1, 7)),
        (("tm_b".into(), "gpt-5".into()), (1, 123_456_789)),
    ]
    .into_iter()
    .collect();
    assert_eq!(sums(&csv, false), want, "{csv}");
    assert!(!csv.contains("TOTAL"), "{csv}");

    // The default is a table for people; bad input is named.
    let table = tollgate(&["report", "--month", "2026-11", "--team", "nope"], &db.url);
    assert!(!table.status.success());
    assert!(String::from_utf8_lossy(&table.stderr).contains("No team 'nope'"));
    let table = tollgate(&["report", "--month", "2026-11"], &db.url);
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("team_id"), "{text}");
    assert!(text.contains("3.623456837"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("TOTAL"), "{text}");
    // Formula defusing is for spreadsheets: the table shows the model as it was sent.
    let october = tollgate(&["report", "--month", "2026-10"], &db.url);
    let text = String::from_utf8(october.stdout).unwrap();
    assert!(text.contains("  =cmd|' /C calc'!A0  "), "{text}");
    let october = tollgate(
        &["report", "--month", "2026-10", "--format", "csv"],
        &db.url,
    );
    let csv = String::from_utf8(october.stdout).unwrap();
    assert!(csv.contains(",'=cmd|' /C calc'!A0,"), "{csv}");
    let bad = tollgate(&["report", "--month", "2026-13"], &db.url);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--month '2026-13'"));
}
