//! Batches a gateway follows, as the store keeps them across restarts and replicas: an intent
//! before the upstream sees the creation, a pending batch once it answers, settled exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tollgate_core::Money;
use tollgate_core::batch::{BatchRecord, BatchSettlement};
use tollgate_store::Store;
use tollgate_store::testdb::TestDb;

async fn migrated(db: &TestDb) -> Store {
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn intent(request_id: &str, created_at_ms: i64) -> BatchRecord {
    BatchRecord {
        request_id: request_id.into(),
        batch_id: None,
        team_id: "tm_1".into(),
        key_id: "key_1".into(),
        cost_centre: Some("CC-1".into()),
        user: Some("alice".into()),
        session_id: None,
        input_file_id: "file-in".into(),
        endpoint: "/v1/chat/completions".into(),
        reserved: Money(123_456),
        created_at_ms,
    }
}

async fn a_batch_goes_from_intent_to_pending_to_settled_once(db: TestDb) {
    let store = migrated(&db).await;
    store.record_batch(&intent("req_a", 1_000)).await.unwrap();
    // Writing the same intent again (a retried write) changes nothing.
    store.record_batch(&intent("req_a", 1_000)).await.unwrap();
    assert!(store.unsettled_batches().await.unwrap().is_empty());
    assert_eq!(store.batch_intents(2_000).await.unwrap().len(), 1);
    assert!(store.batch_intents(1_000).await.unwrap().is_empty());

    assert!(store.batch_created("req_a", "batch_1").await.unwrap());
    assert!(store.batch_intents(2_000).await.unwrap().is_empty());
    let unsettled = store.unsettled_batches().await.unwrap();
    assert_eq!(unsettled.len(), 1);
    let mut expected = intent("req_a", 1_000);
    expected.batch_id = Some("batch_1".into());
    assert_eq!(unsettled[0], expected);

    let settlement = BatchSettlement {
        lines: 3,
        cost: Money(42),
        settled_at_ms: 9_000,
    };
    assert!(store.settle_batch("batch_1", settlement).await.unwrap());
    // A second settlement (another replica, a retry) is refused and changes nothing.
    let again = BatchSettlement {
        lines: 9,
        cost: Money(99),
        settled_at_ms: 9_500,
    };
    assert!(!store.settle_batch("batch_1", again).await.unwrap());
    assert!(store.unsettled_batches().await.unwrap().is_empty());
    let stored = store.batch("batch_1").await.unwrap().unwrap();
    assert_eq!(stored.state, "settled");
    assert_eq!(stored.settlement, Some(settlement));
}

async fn a_batch_id_belongs_to_one_intent_and_abandoned_intents_can_come_back(db: TestDb) {
    let store = migrated(&db).await;
    store.record_batch(&intent("req_a", 1_000)).await.unwrap();
    store.record_batch(&intent("req_b", 1_100)).await.unwrap();
    assert!(store.batch_created("req_a", "batch_1").await.unwrap());
    // Two intents for the same input file: a batch already claimed is not claimed twice.
    assert!(!store.batch_created("req_b", "batch_1").await.unwrap());
    store.abandon_batch("req_b").await.unwrap();
    assert_eq!(
        store.batch_intents(i64::MAX).await.unwrap(),
        Vec::<BatchRecord>::new()
    );
    // The creation answered after all: the batch is followed.
    assert!(store.batch_created("req_b", "batch_2").await.unwrap());
    assert_eq!(store.unsettled_batches().await.unwrap().len(), 2);
    // A pending batch is never abandoned.
    store.abandon_batch("req_a").await.unwrap();
    assert_eq!(
        store.batch("batch_1").await.unwrap().unwrap().state,
        "pending"
    );
    assert!(store.batch("batch_404").await.unwrap().is_none());
}

async fn one_process_at_a_time_holds_a_batch_until_its_hold_lapses(db: TestDb) {
    let store = migrated(&db).await;
    store.record_batch(&intent("req_a", 1_000)).await.unwrap();
    // Not pending yet: nothing to hold.
    assert!(
        !store
            .hold_batch("batch_1", "r1", 2_000, 3_000)
            .await
            .unwrap()
    );
    assert!(store.batch_created("req_a", "batch_1").await.unwrap());
    assert!(
        store
            .hold_batch("batch_1", "r1", 2_000, 3_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .hold_batch("batch_1", "r2", 2_500, 3_500)
            .await
            .unwrap()
    );
    // The holder renews; once it stops, another takes over after the hold lapses.
    assert!(
        store
            .hold_batch("batch_1", "r1", 2_900, 4_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .hold_batch("batch_1", "r2", 3_999, 5_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .hold_batch("batch_1", "r2", 4_001, 5_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .hold_batch("batch_1", "r1", 4_100, 5_100)
            .await
            .unwrap()
    );
    let settled = BatchSettlement {
        lines: 0,
        cost: Money(0),
        settled_at_ms: 4_200,
    };
    assert!(store.settle_batch("batch_1", settled).await.unwrap());
    assert!(
        !store
            .hold_batch("batch_1", "r2", 4_300, 6_000)
            .await
            .unwrap()
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
    a_batch_goes_from_intent_to_pending_to_settled_once,
    a_batch_id_belongs_to_one_intent_and_abandoned_intents_can_come_back,
    one_process_at_a_time_holds_a_batch_until_its_hold_lapses,
);
