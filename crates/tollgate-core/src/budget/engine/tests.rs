//! The engine on its own: an in-memory lease table with the store's arithmetic and a clock the
//! tests move by hand. The database side of leases is tested against PostgreSQL and SQLite in
//! the store crate; here the question is what the engine admits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::DateTime;

use super::*;
use crate::budget::Period;

const USD: i64 = 1_000_000_000;

fn usd(n: i64) -> Money {
    Money(n * USD)
}

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

/// `budget_windows` and `budget_leases` in memory, changed the way `Store::claim_lease` changes
/// them; one mutex stands in for the window's row lock.
#[derive(Default)]
struct Table {
    spent: HashMap<(String, i64), i64>,
    leases: HashMap<(String, i64, String), Lease>,
    claims: usize,
    down: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Lease {
    granted: i64,
    consumed: i64,
    expires_at_ms: i64,
}

impl Table {
    fn claim(&mut self, r: &ClaimRequest) -> Result<ClaimReply, String> {
        if self.down {
            return Err("connection refused".into());
        }
        self.claims += 1;
        let window = (r.budget_id.clone(), r.window_start_ms);
        let spent = *self.spent.entry(window).or_default();
        let others: i64 = self
            .leases
            .iter()
            .filter(|((budget, start, replica), lease)| {
                *budget == r.budget_id
                    && *start == r.window_start_ms
                    && *replica != r.replica_id
                    && lease.expires_at_ms > r.now_ms
            })
            .map(|(_, lease)| (lease.granted - lease.consumed).max(0))
            .sum();
        let key = (r.budget_id.clone(), r.window_start_ms, r.replica_id.clone());
        let mine = self.leases.entry(key).or_default();
        let held = (mine.granted - mine.consumed).max(0);
        let available = (r.limit - spent - others).max(0);
        let applied = (held + r.delta).max(0).min(available) - held;
        mine.granted += applied;
        mine.expires_at_ms = r.now_ms + r.ttl_ms;
        Ok(ClaimReply {
            applied,
            spent,
            others,
        })
    }
}

#[derive(Default)]
struct MemoryLeases(Arc<Mutex<Table>>);

impl MemoryLeases {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.lock().unwrap()
    }

    fn claims(&self) -> usize {
        self.table().claims
    }

    fn set_down(&self, down: bool) {
        self.table().down = down;
    }

    /// What the ledger writer does with a replica's settled rows: adds them to the window's
    /// spend and shrinks the replica's lease by as much.
    fn flush(&self, budget_id: &str, window_start_ms: i64, replica: &str, cost: Money) {
        let mut table = self.table();
        *table
            .spent
            .entry((budget_id.into(), window_start_ms))
            .or_default() += cost.nanos();
        let key = (budget_id.into(), window_start_ms, replica.into());
        table.leases.entry(key).or_default().consumed += cost.nanos();
    }
}

impl LeaseStore for MemoryLeases {
    fn claim(&self, request: ClaimRequest) -> ClaimFuture {
        let table = Arc::clone(&self.0);
        Box::pin(async move {
            // Let other reservations run between asking and answering, as a round trip would.
            tokio::task::yield_now().await;
            table.lock().unwrap().claim(&request)
        })
    }
}

/// A clock the test moves; every engine of a test reads the same one.
#[derive(Clone)]
struct Clock(Arc<AtomicI64>);

impl Clock {
    fn at(rfc3339: &str) -> Clock {
        Clock(Arc::new(AtomicI64::new(ms(rfc3339))))
    }

    fn set(&self, rfc3339: &str) {
        self.0.store(ms(rfc3339), Ordering::SeqCst);
    }

    fn advance_ms(&self, by: i64) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }

    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

const TTL_MS: i64 = 60_000;

fn options(replica: &str, zone: &str) -> BudgetsOptions {
    BudgetsOptions {
        calendar: Calendar::new(zone).unwrap(),
        replica_id: replica.into(),
        lease_ttl_ms: TTL_MS,
        max_slice: usd(5),
        slice_divisor: 4,
        fail_policy: FailPolicy::Closed,
    }
}

fn engine_with(options: BudgetsOptions, leases: &Arc<MemoryLeases>, clock: &Clock) -> Budgets {
    let clock = clock.clone();
    Budgets::with_clock(options, leases.clone(), Box::new(move || clock.now()))
}

fn engine(leases: &Arc<MemoryLeases>, clock: &Clock) -> Budgets {
    engine_with(options("replica-a", "UTC"), leases, clock)
}

fn team_budget(id: &str, team: &str, period: Period, limit: Money) -> BudgetDef {
    BudgetDef {
        id: id.into(),
        team_id: team.into(),
        key_id: None,
        period,
        limit,
        soft_ppm: 800_000,
        session_cap: None,
        reset_at_ms: 0,
    }
}

fn view(budgets: &Budgets, id: &str) -> LeaseView {
    budgets
        .views()
        .into_iter()
        .find(|(def, _)| def.id == id)
        .map(|(_, view)| view)
        .unwrap()
}

async fn admit(budgets: &Budgets, team: &str, estimate: Money) -> Reservation {
    budgets
        .reserve(team, "key-1", None, estimate)
        .await
        .unwrap()
        .unwrap()
}

async fn refuse(budgets: &Budgets, team: &str, estimate: Money) -> Refusal {
    match budgets.reserve(team, "key-1", None, estimate).await {
        Err(refusal) => refusal,
        Ok(_) => panic!("{team}: a call estimated at {estimate:?} was admitted"),
    }
}

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

fn capped(team: &str) -> BudgetDef {
    BudgetDef {
        session_cap: Some(usd(5)),
        ..team_budget(&format!("b_{team}"), team, Period::Month, usd(1_000))
    }
}

async fn session_call(
    budgets: &Budgets,
    team: &str,
    session: Option<&str>,
    estimate: Money,
) -> Result<Reservation, Refusal> {
    budgets
        .reserve(team, "key-1", session, estimate)
        .await
        .map(Option::unwrap)
}

#[tokio::test]
async fn a_session_past_its_cap_is_refused_and_other_sessions_are_not() {
    let (leases, clock) = (Arc::default(), Clock::at("2026-11-18T10:00:00Z"));
    let budgets = engine(&leases, &clock);
    budgets.set_budgets(vec![capped("platform"), capped("research")]);

    session_call(&budgets, "platform", Some("s1"), usd(4))
        .await
        .unwrap()
        .settle(usd(3));
    assert_eq!(
        session_call(&budgets, "platform", Some("s1"), usd(3))
            .await
            .err(),
        Some(Refusal::SessionCap {
            team_id: "platform".into(),
            session_id: "s1".into(),
            cap: usd(5),
            spent: usd(3),
            estimate: usd(3),
        })
    );
    // Up to the cap exactly is allowed.
    session_call(&budgets, "platform", Some("s1"), usd(2))
        .await
        .unwrap();
    session_call(&budgets, "platform", Some("s2"), usd(5))
        .await
        .unwrap();
    // The same session id sent by another team is another session.
    session_call(&budgets, "research", Some("s1"), usd(5))
        .await
        .unwrap();
    // Calls without a session id are held by the budget only.
    session_call(&budgets, "platform", None, usd(50))
        .await
        .unwrap();
}

#[tokio::test]
async fn what_other_replicas_spent_in_a_session_counts_against_its_cap() {
    let (leases, clock) = (Arc::default(), Clock::at("2026-11-18T10:00:00Z"));
    let budgets = engine(&leases, &clock);
    budgets.set_budgets(vec![capped("platform")]);

    budgets.observe_sessions(
        &[("platform".into(), "s1".into(), 4 * USD, clock.now())],
        3_600_000,
    );
    let refused = session_call(&budgets, "platform", Some("s1"), usd(2)).await;
    assert!(matches!(refused, Err(Refusal::SessionCap { spent, .. }) if spent == usd(4)));
    session_call(&budgets, "platform", Some("s1"), usd(1))
        .await
        .unwrap();
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
