//! The engine on its own: an in-memory lease table with the store's arithmetic and a clock the
//! tests move by hand. The database side of leases is tested against PostgreSQL and SQLite in
//! the store crate; here the question is what the engine admits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::DateTime;

use super::*;
use crate::budget::Period;

mod admission;
mod leases;
mod sessions;
mod windows;

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
