//! Windows roll at the period's boundary in the configured zone; a total budget never does.

use super::*;

/// Spends a whole budget of `period` just before `boundary` and checks that it is refused
/// until the boundary and admits the full limit from then on, in a window of its own.
async fn rolls_at(period: Period, zone: &str, spend_at: &str, boundary: &str) {
    let (leases, clock) = (Arc::default(), Clock::at(spend_at));
    let budgets = engine_with(options("replica-a", zone), &leases, &clock);
    budgets.set_budgets(vec![team_budget("b", "platform", period, usd(10))]);

    admit(&budgets, "platform", usd(10)).await.settle(usd(10));
    clock.set(boundary);
    clock.advance_ms(-1);
    refuse(&budgets, "platform", Money(1)).await;
    assert_eq!(view(&budgets, "b").settled, 10 * USD);

    clock.advance_ms(1);
    let fresh = view(&budgets, "b");
    assert_eq!(fresh.window.start_ms, ms(boundary), "{period:?} in {zone}");
    assert_eq!((fresh.settled, fresh.granted, fresh.refused), (0, 0, false));
    admit(&budgets, "platform", usd(10)).await;
}

#[tokio::test]
async fn a_day_starts_at_midnight_in_the_configured_zone() {
    // Midnight in Berlin is 23:00 UTC, an hour before the UTC day turns.
    rolls_at(
        Period::Day,
        "Europe/Berlin",
        "2026-11-18T10:00:00Z",
        "2026-11-18T23:00:00Z",
    )
    .await;
}

#[tokio::test]
async fn a_week_starts_on_monday_and_not_at_each_midnight() {
    // Monday 2026-11-30 00:00 in New York; the budget is spent the Tuesday before.
    rolls_at(
        Period::Week,
        "America/New_York",
        "2026-11-24T15:00:00Z",
        "2026-11-30T05:00:00Z",
    )
    .await;
}

#[tokio::test]
async fn a_month_starts_on_the_first() {
    rolls_at(
        Period::Month,
        "Asia/Tokyo",
        "2026-11-02T00:00:00Z",
        "2026-11-30T15:00:00Z",
    )
    .await;
}

#[tokio::test]
async fn a_total_budget_never_rolls() {
    let (leases, clock) = (Arc::default(), Clock::at("2026-11-18T10:00:00Z"));
    let budgets = engine(&leases, &clock);
    budgets.set_budgets(vec![team_budget("b", "platform", Period::Total, usd(10))]);

    admit(&budgets, "platform", usd(10)).await.settle(usd(10));
    clock.set("2036-01-01T00:00:00Z");
    refuse(&budgets, "platform", Money(1)).await;
    let view = view(&budgets, "b");
    assert_eq!(view.window.resets_at_ms, None);
    assert_eq!(view.settled, 10 * USD);
}

#[tokio::test]
async fn a_call_still_running_at_the_roll_charges_the_window_it_began_in() {
    let (leases, clock) = (Arc::default(), Clock::at("2026-11-18T23:59:00Z"));
    let budgets = engine(&leases, &clock);
    budgets.set_budgets(vec![team_budget("b", "platform", Period::Day, usd(10))]);

    let late = admit(&budgets, "platform", usd(10)).await;
    clock.set("2026-11-19T00:01:00Z");
    // Another call (here: a status read) moves the engine to the new day first.
    assert_eq!(
        view(&budgets, "b").window.start_ms,
        ms("2026-11-19T00:00:00Z")
    );
    late.settle(usd(10));
    let today = view(&budgets, "b");
    assert_eq!((today.settled, today.inflight), (0, 0));
    admit(&budgets, "platform", usd(10)).await;
}
