//! Leases: topped up when spent, renewed before they age out, shared between replicas through
//! the lease table, and the overspend invariant under concurrent calls.

use super::*;

#[tokio::test]
async fn a_spent_lease_is_topped_up_by_the_next_reservation() {
    let (leases, clock) = (
        Arc::<MemoryLeases>::default(),
        Clock::at("2026-11-18T10:00:00Z"),
    );
    let budgets = engine(&leases, &clock);
    budgets.set_budgets(vec![team_budget("b", "platform", Period::Month, usd(100))]);

    // The first call claims its estimate plus a slice: min(100 / 4, max_slice 5) = 5.
    let mut held = vec![admit(&budgets, "platform", usd(1)).await];
    assert_eq!((leases.claims(), view(&budgets, "b").granted), (1, 6 * USD));
    for _ in 1..6 {
        held.push(admit(&budgets, "platform", usd(1)).await);
    }
    assert_eq!(leases.claims(), 1, "six calls fit in the first lease");
    held.push(admit(&budgets, "platform", usd(1)).await);
    assert_eq!(leases.claims(), 2, "the seventh asks for more");
    assert_eq!(view(&budgets, "b").granted, 12 * USD);
}

#[tokio::test]
async fn a_lease_is_not_used_past_three_quarters_of_its_lifetime_unless_renewed() {
    let (leases, clock) = (
        Arc::<MemoryLeases>::default(),
        Clock::at("2026-11-18T10:00:00Z"),
    );
    let budgets = engine(&leases, &clock);
    budgets.set_budgets(vec![team_budget("b", "platform", Period::Month, usd(100))]);

    admit(&budgets, "platform", usd(1)).await.settle(usd(1));
    clock.advance_ms(TTL_MS * 3 / 4 - 1);
    admit(&budgets, "platform", usd(1)).await.settle(usd(1));
    assert_eq!(leases.claims(), 1);
    clock.advance_ms(1);
    admit(&budgets, "platform", usd(1)).await.settle(usd(1));
    assert_eq!(
        leases.claims(),
        2,
        "an aged lease is claimed again before use"
    );

    // The sync loop renews a lease in its second half, so calls do not wait for a claim.
    clock.advance_ms(TTL_MS * 3 / 4 - TTL_MS / 2 + 1);
    assert_eq!(budgets.maintain().await, 0);
    assert_eq!(leases.claims(), 3);
    clock.advance_ms(TTL_MS / 2);
    admit(&budgets, "platform", usd(1)).await;
    assert_eq!(leases.claims(), 3);
}

#[tokio::test]
async fn money_a_replica_holds_reaches_another_only_when_its_lease_expires() {
    let (leases, clock) = (
        Arc::<MemoryLeases>::default(),
        Clock::at("2026-11-18T10:00:00Z"),
    );
    let whole = BudgetsOptions {
        max_slice: usd(100),
        slice_divisor: 1,
        ..options("replica-a", "UTC")
    };
    let a = engine_with(whole.clone(), &leases, &clock);
    let b = engine_with(
        BudgetsOptions {
            replica_id: "replica-b".into(),
            ..whole
        },
        &leases,
        &clock,
    );
    let def = team_budget("b", "platform", Period::Month, usd(10));
    a.set_budgets(vec![def.clone()]);
    b.set_budgets(vec![def]);

    let first = admit(&a, "platform", usd(1)).await;
    assert_eq!(view(&a, "b").granted, 10 * USD, "a holds the whole budget");
    refuse(&b, "platform", usd(1)).await;
    drop(first);

    // a stops using its lease before the table lets it lapse, then b may claim the money.
    clock.advance_ms(TTL_MS);
    let b_calls = admit(&b, "platform", usd(10)).await;
    refuse(&a, "platform", usd(1)).await;
    assert_eq!(view(&a, "b").granted, 0, "a's stale lease was given back");
    b_calls.settle(usd(10));
}

#[tokio::test]
async fn spend_another_replica_flushed_limits_what_this_one_may_claim() {
    let (leases, clock) = (
        Arc::<MemoryLeases>::default(),
        Clock::at("2026-11-18T10:00:00Z"),
    );
    let a = engine(&leases, &clock);
    let b = engine_with(options("replica-b", "UTC"), &leases, &clock);
    let def = team_budget("b", "platform", Period::Month, usd(12));
    a.set_budgets(vec![def.clone()]);
    b.set_budgets(vec![def]);

    admit(&a, "platform", usd(6)).await.settle(usd(6));
    let window = view(&a, "b").window.start_ms;
    leases.flush("b", window, "replica-a", usd(6));
    // a claimed $6 plus a slice of 12 / 4 = $3; with $6 spent and a's $3 held, b may have $3.
    let refused = refuse(&b, "platform", usd(4)).await;
    assert!(matches!(refused, Refusal::Budget { spent, .. } if spent == usd(6)));
    let _b_call = admit(&b, "platform", usd(3)).await;
    let _a_call = admit(&a, "platform", usd(3)).await;
    refuse(&a, "platform", Money(1)).await;
}

#[tokio::test]
async fn when_the_lease_table_is_unreachable_the_fail_policy_decides() {
    let (leases, clock) = (
        Arc::<MemoryLeases>::default(),
        Clock::at("2026-11-18T10:00:00Z"),
    );
    let closed = engine(&leases, &clock);
    let open = engine_with(
        BudgetsOptions {
            fail_policy: FailPolicy::Open,
            ..options("replica-b", "UTC")
        },
        &leases,
        &clock,
    );
    for budgets in [&closed, &open] {
        budgets.set_budgets(vec![team_budget("b", "platform", Period::Month, usd(10))]);
    }
    leases.set_down(true);

    assert_eq!(
        refuse(&closed, "platform", usd(1)).await,
        Refusal::Unavailable {
            budget_id: "b".into()
        }
    );
    let _admitted = admit(&open, "platform", usd(1)).await;
    assert_eq!(view(&open, "b").inflight, USD);
}

/// Every task reserves at once and keeps its reservation; returns how many were admitted.
async fn admitted_at_once(engines: &[Arc<Budgets>], tasks: usize, estimate: Money) -> usize {
    let start = Arc::new(tokio::sync::Barrier::new(tasks));
    let mut running = tokio::task::JoinSet::new();
    for i in 0..tasks {
        let budgets = Arc::clone(&engines[i % engines.len()]);
        let start = Arc::clone(&start);
        running.spawn(async move {
            start.wait().await;
            budgets.reserve("platform", "key-1", None, estimate).await
        });
    }
    let mut held = Vec::new();
    while let Some(result) = running.join_next().await {
        if let Ok(reservation) = result.unwrap() {
            held.push(reservation);
        }
    }
    held.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_under_concurrent_calls_admits_exactly_the_limit() {
    let (leases, clock) = (
        Arc::<MemoryLeases>::default(),
        Clock::at("2026-11-18T10:00:00Z"),
    );
    let budgets = Arc::new(engine(&leases, &clock));
    budgets.set_budgets(vec![team_budget("b", "platform", Period::Month, usd(10))]);
    assert_eq!(admitted_at_once(&[budgets], 64, usd(1)).await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_sharing_a_lease_table_never_admit_past_the_limit_together() {
    let (leases, clock) = (
        Arc::<MemoryLeases>::default(),
        Clock::at("2026-11-18T10:00:00Z"),
    );
    let def = team_budget("b", "platform", Period::Month, usd(10));
    let engines: Vec<Arc<Budgets>> = ["replica-a", "replica-b", "replica-c"]
        .into_iter()
        .map(|replica| {
            let budgets = engine_with(options(replica, "UTC"), &leases, &clock);
            budgets.set_budgets(vec![def.clone()]);
            Arc::new(budgets)
        })
        .collect();
    for round in 0..20 {
        let admitted = admitted_at_once(&engines, 48, usd(1)).await;
        assert!(
            (1..=10).contains(&admitted),
            "round {round}: {admitted} calls of $1 admitted"
        );
        // The next round starts in a later window with fresh leases.
        clock.advance_ms(31 * 24 * 3_600_000);
    }
}
