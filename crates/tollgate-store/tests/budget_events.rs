//! Budget events across replicas, on SQLite and PostgreSQL: a window's soft and hard events
//! each fire once, whichever replica's sync sees the crossing first, and every replica throttles
//! a team past its soft threshold. The engine's own arithmetic is tested in tollgate-core.
// Clippy's allow-*-in-tests covers `#[test]` functions only, not the suite functions they call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/events.rs"]
mod events;

use std::sync::{Arc, Mutex};

use events::*;
use tollgate_core::budget::{BudgetEvent, Budgets, BudgetsOptions, Calendar, FailPolicy, Period};
use tollgate_core::ratelimit::RateLimits;
use tollgate_core::time::now_ms;
use tollgate_core::{LedgerEvent, Money};
use tollgate_store::testdb::TestDb;
use tollgate_store::{BudgetSpec, BudgetSync, Store, StoreLeases};

const USD: i64 = 1_000_000_000;

type Fired = Arc<Mutex<Vec<(&'static str, i64)>>>;

struct Replica {
    budgets: Arc<Budgets>,
    sync: BudgetSync,
}

fn replica(store: &Store, id: &str, fired: &Fired) -> Replica {
    let options = BudgetsOptions {
        calendar: Calendar::default(),
        replica_id: id.into(),
        lease_ttl_ms: 10_000,
        max_slice: Money(20 * USD),
        slice_divisor: 8,
        fail_policy: FailPolicy::Closed,
    };
    let budgets = Arc::new(Budgets::new(options, Arc::new(StoreLeases(store.clone()))));
    let fired = Arc::clone(fired);
    let sync = BudgetSync::new(
        store.clone(),
        Arc::clone(&budgets),
        Arc::new(RateLimits::new(None)),
        Arc::new(move |event: BudgetEvent| {
            fired
                .lock()
                .unwrap()
                .push((event.kind, event.spent.nanos()))
        }),
    );
    Replica { budgets, sync }
}

/// Each replica's sync loop runs twice, in turn.
async fn sync_all(replicas: &mut [Replica]) {
    for _ in 0..2 {
        for replica in replicas.iter_mut() {
            replica.sync.sync_once().await.unwrap();
        }
    }
}

async fn soft_and_hard_events_fire_once_per_window_across_replicas(db: TestDb) {
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let team = store.create_team("platform", None).await.unwrap();
    let spec = BudgetSpec {
        team_id: team.id.clone(),
        key_id: None,
        period: Period::Total,
        limit: Money(10 * USD),
        soft_ppm: 500_000,
        session_cap: None,
    };
    let budget = store
        .create_budget(&spec, Calendar::default())
        .await
        .unwrap();
    let fired = Fired::default();
    let mut replicas = [
        replica(&store, "replica-a", &fired),
        replica(&store, "replica-b", &fired),
    ];
    let call = |n: usize, usd: i64| -> LedgerEvent {
        let mut e = event(&request_id("ev", n), now_ms());
        e.team_id = team.id.clone();
        e.cost = Money(usd * USD);
        e
    };
    let throttled = |replicas: &[Replica]| {
        replicas
            .iter()
            .map(|r| r.budgets.soft_crossed(&team.id))
            .collect::<Vec<_>>()
    };

    store.insert_ledger_batch(&[call(1, 4)]).await.unwrap();
    sync_all(&mut replicas).await;
    assert!(
        fired.lock().unwrap().is_empty(),
        "$4 is below the $5 threshold"
    );
    assert_eq!(throttled(&replicas), [false, false]);

    store.insert_ledger_batch(&[call(2, 2)]).await.unwrap();
    sync_all(&mut replicas).await;
    assert_eq!(*fired.lock().unwrap(), [("soft", 6 * USD)]);
    assert_eq!(throttled(&replicas), [true, true]);

    store.insert_ledger_batch(&[call(3, 4)]).await.unwrap();
    sync_all(&mut replicas).await;
    assert_eq!(
        *fired.lock().unwrap(),
        [("soft", 6 * USD), ("hard", 10 * USD)]
    );

    // An admin's reset starts a new window: its events fire again, once.
    store
        .update_budget(&budget.id, &spec, true)
        .await
        .unwrap()
        .unwrap();
    sync_all(&mut replicas).await;
    assert_eq!(throttled(&replicas), [false, false]);
    store.insert_ledger_batch(&[call(4, 7)]).await.unwrap();
    sync_all(&mut replicas).await;
    assert_eq!(
        *fired.lock().unwrap(),
        [("soft", 6 * USD), ("hard", 10 * USD), ("soft", 7 * USD)]
    );
    assert_eq!(throttled(&replicas), [true, true]);
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

both_backends!(soft_and_hard_events_fire_once_per_window_across_replicas);
