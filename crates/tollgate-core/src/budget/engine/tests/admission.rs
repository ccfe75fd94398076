//! Reserve, settle and release against one budget or several, and the soft threshold.

use super::*;

#[tokio::test]
async fn a_call_that_fits_is_admitted_and_one_past_the_hard_limit_is_refused() {
    let (leases, clock) = (Arc::default(), Clock::at("2026-11-18T10:00:00Z"));
    let budgets = engine(&leases, &clock);
    let daily = team_budget("b_daily", "platform", Period::Day, usd(10));
    budgets.set_budgets(vec![daily.clone()]);

    let first = admit(&budgets, "platform", usd(6)).await;
    assert_eq!(first.amount(), 6 * USD);
    let refusal = refuse(&budgets, "platform", usd(5)).await;
    assert_eq!(
        refusal,
        Refusal::Budget {
            budget: daily,
            window: Window {
                start_ms: ms("2026-11-18T00:00:00Z"),
                resets_at_ms: Some(ms("2026-11-19T00:00:00Z")),
            },
            spent: Money::ZERO,
            estimate: usd(5),
            zone: Calendar::default(),
        }
    );
    assert_eq!(budgets.refusals(), 1);
    assert!(view(&budgets, "b_daily").refused);
    // What is left still admits a call that fits in it.
    admit(&budgets, "platform", usd(4)).await;
    // A team without a budget is not budgeted at all.
    assert!(
        budgets
            .reserve("research", "key-2", None, usd(1_000))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_refusal_by_one_budget_gives_back_what_the_others_reserved() {
    let (leases, clock) = (Arc::default(), Clock::at("2026-11-18T10:00:00Z"));
    let budgets = engine(&leases, &clock);
    let team = team_budget("b_team", "platform", Period::Month, usd(5));
    let key = BudgetDef {
        key_id: Some("key-ci".into()),
        ..team_budget("b_key", "platform", Period::Month, usd(4))
    };
    budgets.set_budgets(vec![team.clone(), key.clone()]);
    let call = |key_id: &'static str, estimate: Money| {
        let budgets = &budgets;
        async move { budgets.reserve("platform", key_id, None, estimate).await }
    };

    let refused = call("key-ci", usd(5)).await;
    assert!(matches!(refused, Err(Refusal::Budget { budget, .. }) if budget == key));
    // The key budget holds only its key.
    let _other_key = call("key-dev", usd(3)).await.unwrap().unwrap();
    let refused = call("key-ci", usd(3)).await;
    assert!(matches!(refused, Err(Refusal::Budget { budget, .. }) if budget == team));
    assert_eq!(view(&budgets, "b_key").inflight, 0);
    call("key-ci", usd(2)).await.unwrap().unwrap();
}

#[tokio::test]
async fn settling_below_the_reservation_charges_the_actual_cost_and_frees_the_rest() {
    let (leases, clock) = (Arc::default(), Clock::at("2026-11-18T10:00:00Z"));
    let budgets = engine(&leases, &clock);
    budgets.set_budgets(vec![team_budget("b", "platform", Period::Day, usd(10))]);

    admit(&budgets, "platform", usd(8)).await.settle(usd(3));
    let after = view(&budgets, "b");
    assert_eq!((after.settled, after.inflight), (3 * USD, 0));
    admit(&budgets, "platform", usd(7)).await.settle(usd(7));
    refuse(&budgets, "platform", Money(1)).await;
}

#[tokio::test]
async fn settling_above_the_reservation_charges_the_actual_cost() {
    let (leases, clock) = (Arc::default(), Clock::at("2026-11-18T10:00:00Z"));
    let budgets = engine(&leases, &clock);
    budgets.set_budgets(vec![team_budget("b", "platform", Period::Day, usd(10))]);

    admit(&budgets, "platform", usd(2)).await.settle(usd(5));
    let after = view(&budgets, "b");
    assert_eq!((after.settled, after.inflight), (5 * USD, 0));
    refuse(&budgets, "platform", usd(6)).await;
    admit(&budgets, "platform", usd(5)).await;
}

#[tokio::test]
async fn a_failed_call_releases_its_reservation_and_charges_nothing() {
    let (leases, clock) = (Arc::default(), Clock::at("2026-11-18T10:00:00Z"));
    let budgets = engine(&leases, &clock);
    budgets.set_budgets(vec![team_budget("b", "platform", Period::Day, usd(5))]);

    let failed = admit(&budgets, "platform", usd(5)).await;
    refuse(&budgets, "platform", usd(1)).await;
    drop(failed);
    let after = view(&budgets, "b");
    assert_eq!((after.settled, after.inflight), (0, 0));
    admit(&budgets, "platform", usd(5)).await;
}

#[test]
fn a_soft_threshold_throttles_only_its_team_until_cleared() {
    let budgets = engine(&Arc::default(), &Clock::at("2026-11-18T10:00:00Z"));
    budgets.set_soft_crossed("platform", true);
    budgets.set_soft_crossed("platform", true);
    assert!(budgets.soft_crossed("platform"));
    assert!(!budgets.soft_crossed("research"));
    budgets.set_soft_crossed("platform", false);
    assert!(!budgets.soft_crossed("platform"));
}
