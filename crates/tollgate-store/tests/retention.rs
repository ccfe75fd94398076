//! Ledger retention: rows older than the period go, whole months at a time on Postgres; the
//! daily rollups stay, so long-range reports keep working.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/events.rs"]
mod events;

use events::event;
use tollgate_store::Store;
use tollgate_store::testdb::TestDb;

const DAY: i64 = 86_400_000;
/// 2026-01-15, 2026-02-15, 2026-03-15 (UTC noon).
const JAN: i64 = 1_768_478_400_000;
const FEB: i64 = JAN + 31 * DAY;
const MAR: i64 = FEB + 28 * DAY;
/// 2026-03-01 00:00 UTC.
const MAR_1: i64 = 1_772_323_200_000;

async fn expired_months_go_and_rollups_stay(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let events: Vec<_> = [("jan", JAN), ("feb", FEB), ("mar", MAR)]
        .iter()
        .map(|(id, at)| event(&format!("req_{id}"), *at))
        .collect();
    store.insert_ledger_batch(&events).await.unwrap();
    let before = store
        .daily_totals("2026-01-01", "2026-12-31")
        .await
        .unwrap();
    assert_eq!(store.ledger_totals(0, i64::MAX).await.unwrap().requests, 3);

    // A cutoff inside February: on Postgres February's partition is not wholly expired and stays;
    // on SQLite rows go one by one. January goes on both.
    store.apply_ledger_retention(FEB + DAY).await.unwrap();
    assert!(
        store.ledger_row("req_jan").await.unwrap().is_none(),
        "January must be gone"
    );
    assert!(store.ledger_row("req_mar").await.unwrap().is_some());
    // At the start of March, February is wholly past the cutoff everywhere.
    store.apply_ledger_retention(MAR_1).await.unwrap();
    assert!(
        store.ledger_row("req_feb").await.unwrap().is_none(),
        "February must be gone"
    );
    assert_eq!(store.ledger_totals(0, i64::MAX).await.unwrap().requests, 1);
    assert_eq!(
        store
            .daily_totals("2026-01-01", "2026-12-31")
            .await
            .unwrap(),
        before,
        "rollups must survive retention"
    );
    // Running it again changes nothing, and rows for a dropped month can still be written.
    store.apply_ledger_retention(MAR_1).await.unwrap();
    store
        .insert_ledger_batch(&[event("req_late_jan", JAN + DAY)])
        .await
        .unwrap();
    assert!(store.ledger_row("req_late_jan").await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_expired_months_go_and_rollups_stay() {
    expired_months_go_and_rollups_stay(TestDb::sqlite()).await;
}

#[tokio::test]
async fn postgres_expired_months_go_and_rollups_stay() {
    expired_months_go_and_rollups_stay(TestDb::postgres().await).await;
}
