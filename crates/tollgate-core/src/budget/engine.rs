//! The in-memory side of budgets: what this process may still admit, per budget window.
//!
//! Per window it mirrors its lease row: `granted` (what the database granted it, changed only by
//! claims whose applied amount the database returns, so the two never disagree), `settled` (cost
//! of calls this process settled in the window) and `inflight` (reservations of calls still
//! running). Headroom is `granted - settled - inflight`. The database's hold for the lease is
//! `granted - consumed`, where `consumed` trails `settled` by the rows not yet flushed, so the
//! database always holds at least what this process may still spend.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use dashmap::DashMap;

use super::BudgetDef;
use super::calendar::{Calendar, Window};
use super::refusal::Refusal;
use crate::money::Money;

/// What to do when a lease is spent and the database cannot be reached to claim more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPolicy {
    /// Admit anyway (spend may exceed the limit by what is admitted during the outage).
    Open,
    /// Refuse with a retryable 429 until the database is back.
    Closed,
}

/// A change to one lease, applied atomically under the window's row lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub budget_id: String,
    pub window_start_ms: i64,
    pub replica_id: String,
    /// Money to add to the lease (negative: give back).
    pub delta: i64,
    pub limit: i64,
    pub now_ms: i64,
    pub ttl_ms: i64,
}

/// What the database did with a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClaimReply {
    /// Added to `granted` (may be less than asked, or negative when the limit no longer leaves
    /// room for the whole lease).
    pub applied: i64,
    /// The window's settled spend.
    pub spent: i64,
    /// What other replicas' live leases hold.
    pub others: i64,
}

type ClaimFuture = Pin<Box<dyn Future<Output = Result<ClaimReply, String>> + Send>>;

/// The database side of leases (implemented by the store).
pub trait LeaseStore: Send + Sync + 'static {
    fn claim(&self, request: ClaimRequest) -> ClaimFuture;
}

/// Tuning, from `[budgets]` in the config.
#[derive(Debug, Clone)]
pub struct BudgetsOptions {
    pub calendar: Calendar,
    /// This process's id in `budget_leases` (random per start).
    pub replica_id: String,
    pub lease_ttl_ms: i64,
    /// The largest slice one process claims at a time.
    pub max_slice: Money,
    /// A slice is at most the remaining money divided by this (slices shrink near the limit).
    pub slice_divisor: i64,
    pub fail_policy: FailPolicy,
}

/// A budget event for logs, metrics and the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetEvent {
    pub kind: &'static str,
    pub budget: BudgetDef,
    pub window: Window,
    pub spent: Money,
}

/// A budget's view of its window, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseView {
    pub window: Window,
    pub granted: i64,
    pub settled: i64,
    pub inflight: i64,
    pub spent_db: i64,
    /// This process refused a call for this budget in this window.
    pub refused: bool,
}

struct Local {
    def: BudgetDef,
    window: Window,
    granted: i64,
    settled: i64,
    inflight: i64,
    /// The lease may be used until then (a margin before the database lets it lapse).
    valid_until_ms: i64,
    spent_db: i64,
    others_db: i64,
    refused: bool,
}

impl Local {
    fn headroom(&self) -> i64 {
        self.granted - self.settled - self.inflight
    }

    /// Moves to the window containing `now`; a new window starts with no lease.
    fn roll(&mut self, calendar: &Calendar, now: i64) {
        // The common case, without calendar arithmetic: still inside the current window.
        if now >= self.window.start_ms
            && self.window.resets_at_ms.is_none_or(|end| now < end)
            && (self.def.reset_at_ms <= self.window.start_ms || self.def.reset_at_ms > now)
        {
            return;
        }
        self.recompute(calendar, now);
    }

    fn recompute(&mut self, calendar: &Calendar, now: i64) {
        let window = calendar.window(self.def.period, self.def.reset_at_ms, now);
        if window.start_ms != self.window.start_ms {
            self.window = window;
            self.granted = 0;
            self.settled = 0;
            self.inflight = 0;
            self.valid_until_ms = 0;
            self.spent_db = 0;
            self.others_db = 0;
            self.refused = false;
        } else {
            self.window.resets_at_ms = window.resets_at_ms;
        }
    }

    /// Reserves `amount` from a valid lease, or says it cannot.
    fn take(&mut self, amount: i64, now: i64) -> bool {
        if now < self.valid_until_ms && self.headroom() >= amount {
            self.inflight += amount;
            true
        } else {
            false
        }
    }
}

struct Tracked {
    state: Mutex<Local>,
    /// One claim at a time per budget in this process; others wait and re-check.
    claiming: tokio::sync::Mutex<()>,
}

impl Tracked {
    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Defs {
    by_team: HashMap<String, Vec<Arc<Tracked>>>,
    by_key: HashMap<String, Vec<Arc<Tracked>>>,
    by_id: HashMap<String, Arc<Tracked>>,
    /// The smallest session cap among a team's budgets.
    session_caps: HashMap<String, Money>,
}

/// Cost of one Codex session as this process knows it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionSpend {
    /// From the sessions rollup (every replica's flushed rows).
    pub db: i64,
    /// Settled by this process.
    pub settled: i64,
    pub inflight: i64,
    pub last_seen_ms: i64,
}

impl SessionSpend {
    fn committed(&self) -> i64 {
        self.db.max(self.settled)
    }
}

type SessionKey = (String, String);

/// Every budget this process enforces.
pub struct Budgets {
    options: BudgetsOptions,
    store: Arc<dyn LeaseStore>,
    defs: RwLock<Arc<Defs>>,
    sessions: DashMap<SessionKey, Arc<Mutex<SessionSpend>>>,
    /// Teams past a soft threshold (throttled).
    soft_crossed: DashMap<String, ()>,
    clock: Box<dyn Fn() -> i64 + Send + Sync>,
    /// Calls refused by a budget or session cap since start.
    refusals: std::sync::atomic::AtomicU64,
}

/// Money held for one admitted call until it settles.
pub struct Reservation {
    parts: Vec<(Arc<Tracked>, i64, i64)>,
    session: Option<(Arc<Mutex<SessionSpend>>, i64)>,
}

impl Reservation {
    /// Releases the reservation and charges the call's actual cost.
    pub fn settle(mut self, actual: Money) {
        self.finish(actual.nanos());
    }

    fn finish(&mut self, actual: i64) {
        for (tracked, window_start, amount) in self.parts.drain(..) {
            let mut local = tracked.lock();
            // A call that began in a window that has since ended charges that window (the
            // ledger writer does so too); this process's lease for it is gone.
            if local.window.start_ms == window_start {
                local.inflight -= amount;
                local.settled += actual;
            }
        }
        if let Some((session, amount)) = self.session.take() {
            let mut spend = session.lock().unwrap_or_else(|e| e.into_inner());
            spend.inflight -= amount;
            spend.settled += actual;
        }
    }

    /// The total reserved, per budget (for logs).
    pub fn amount(&self) -> i64 {
        self.parts.first().map_or(0, |p| p.2)
    }
}

impl Drop for Reservation {
    /// A call dropped without settling charged nothing (it never reached the upstream).
    fn drop(&mut self) {
        self.finish(0);
    }
}

impl Budgets {
    pub fn new(options: BudgetsOptions, store: Arc<dyn LeaseStore>) -> Budgets {
        Budgets::with_clock(options, store, Box::new(crate::time::now_ms))
    }

    /// For tests: windows follow `clock` instead of the wall clock.
    pub fn with_clock(
        options: BudgetsOptions,
        store: Arc<dyn LeaseStore>,
        clock: Box<dyn Fn() -> i64 + Send + Sync>,
    ) -> Budgets {
        Budgets {
            options,
            store,
            defs: RwLock::new(Arc::new(Defs::default())),
            sessions: DashMap::new(),
            soft_crossed: DashMap::new(),
            clock,
            refusals: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn options(&self) -> &BudgetsOptions {
        &self.options
    }

    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    fn defs(&self) -> Arc<Defs> {
        Arc::clone(&self.defs.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the set of budgets (from the database). Budgets that stay keep their lease
    /// state; a changed limit or reset applies at once.
    pub fn set_budgets(&self, budgets: Vec<BudgetDef>) {
        let old = self.defs();
        let now = self.now_ms();
        let mut defs = Defs::default();
        for def in budgets {
            let tracked = match old.by_id.get(&def.id) {
                Some(existing) => {
                    let mut local = existing.lock();
                    if local.def != def {
                        local.def = def.clone();
                        // A new period or reset may move the window even mid-window.
                        local.recompute(&self.options.calendar, now);
                    }
                    drop(local);
                    Arc::clone(existing)
                }
                None => {
                    let window = self
                        .options
                        .calendar
                        .window(def.period, def.reset_at_ms, now);
                    Arc::new(Tracked {
                        state: Mutex::new(Local {
                            def: def.clone(),
                            window,
                            granted: 0,
                            settled: 0,
                            inflight: 0,
                            valid_until_ms: 0,
                            spent_db: 0,
                            others_db: 0,
                            refused: false,
                        }),
                        claiming: tokio::sync::Mutex::new(()),
                    })
                }
            };
            if let Some(cap) = def.session_cap.filter(|_| def.key_id.is_none()) {
                let entry = defs.session_caps.entry(def.team_id.clone()).or_insert(cap);
                *entry = (*entry).min(cap);
            }
            match &def.key_id {
                Some(key) => defs.by_key.entry(key.clone()).or_default(),
                None => defs.by_team.entry(def.team_id.clone()).or_default(),
            }
            .push(Arc::clone(&tracked));
            defs.by_id.insert(def.id, tracked);
        }
        *self.defs.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(defs);
    }

    /// Whether any budget or session cap could apply to calls of this team or key (the hot
    /// path skips estimating when none does).
    pub fn applies(&self, team_id: &str, key_id: &str) -> bool {
        let defs = self.defs();
        defs.by_team.contains_key(team_id)
            || defs.by_key.contains_key(key_id)
            || defs.session_caps.contains_key(team_id)
    }

    /// The smallest headroom among the budgets of this team/key (to decide whether a tighter
    /// estimate is worth computing). `None`: no budget applies.
    pub fn headroom(&self, team_id: &str, key_id: &str) -> Option<i64> {
        let defs = self.defs();
        let now = self.now_ms();
        budgets_for(&defs, team_id, key_id)
            .map(|t| {
                let mut local = t.lock();
                local.roll(&self.options.calendar, now);
                let lease = if now < local.valid_until_ms {
                    local.headroom()
                } else {
                    0
                };
                lease.max(local.def.limit.nanos() - local.spent_db - local.others_db)
            })
            .min()
    }

    /// Admits a call estimated to cost at most `estimate` against every budget that applies,
    /// or refuses it. `Ok(None)`: no budget applies.
    pub async fn reserve(
        &self,
        team_id: &str,
        key_id: &str,
        session_id: Option<&str>,
        estimate: Money,
    ) -> Result<Option<Reservation>, Refusal> {
        let defs = self.defs();
        let cap = defs.session_caps.get(team_id).copied();
        let budgets: Vec<Arc<Tracked>> = budgets_for(&defs, team_id, key_id).cloned().collect();
        if budgets.is_empty() && cap.is_none() {
            return Ok(None);
        }
        let amount = estimate.nanos().max(0);
        let now = self.now_ms();
        let result = self
            .reserve_all(team_id, session_id, cap, budgets, amount, now)
            .await;
        if result.is_err() {
            self.refusals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result.map(Some)
    }

    /// Calls refused by a budget or session cap since this process started.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn reserve_all(
        &self,
        team_id: &str,
        session_id: Option<&str>,
        cap: Option<Money>,
        budgets: Vec<Arc<Tracked>>,
        amount: i64,
        now: i64,
    ) -> Result<Reservation, Refusal> {
        let mut reservation = Reservation {
            parts: Vec::with_capacity(budgets.len()),
            session: None,
        };
        if let (Some(cap), Some(session)) = (cap, session_id) {
            let spend = self
                .sessions
                .entry((team_id.to_string(), session.to_string()))
                .or_default()
                .clone();
            let mut s = spend.lock().unwrap_or_else(|e| e.into_inner());
            s.last_seen_ms = now;
            let committed = s.committed() + s.inflight;
            if committed + amount > cap.nanos() {
                return Err(Refusal::SessionCap {
                    team_id: team_id.to_string(),
                    session_id: session.to_string(),
                    cap,
                    spent: Money(s.committed()),
                    estimate: Money(amount),
                });
            }
            s.inflight += amount;
            drop(s);
            reservation.session = Some((spend, amount));
        }
        for tracked in budgets {
            // On refusal `reservation` is dropped, which releases what was taken so far.
            let window_start = self.reserve_one(&tracked, amount, now).await?;
            reservation.parts.push((tracked, window_start, amount));
        }
        Ok(reservation)
    }

    async fn reserve_one(&self, tracked: &Tracked, amount: i64, now: i64) -> Result<i64, Refusal> {
        {
            let mut local = tracked.lock();
            local.roll(&self.options.calendar, now);
            if local.take(amount, now) {
                return Ok(local.window.start_ms);
            }
            if amount > local.def.limit.nanos() - local.spent_db {
                return Err(self.refusal(&mut local, amount));
            }
        }
        let _claiming = tracked.claiming.lock().await;
        let request = {
            let mut local = tracked.lock();
            local.roll(&self.options.calendar, now);
            // Another call's claim may have brought enough while this one waited.
            if local.take(amount, now) {
                return Ok(local.window.start_ms);
            }
            let target = self.target_headroom(&local);
            self.claim_request(&local, amount + target - local.headroom(), now)
        };
        match self.store.claim(request.clone()).await {
            Ok(reply) => {
                let mut local = tracked.lock();
                if local.window.start_ms != request.window_start_ms {
                    // The window turned while claiming: the next call claims afresh.
                    return Err(self.refusal(&mut local, amount));
                }
                apply(&mut local, &reply, &request, &self.options);
                if local.take(amount, now) {
                    Ok(local.window.start_ms)
                } else {
                    Err(self.refusal(&mut local, amount))
                }
            }
            Err(error) => {
                let mut local = tracked.lock();
                match self.options.fail_policy {
                    FailPolicy::Open => {
                        warn_unavailable(&local.def.id, &error, "admitting (fail_open)", now);
                        local.inflight += amount;
                        Ok(local.window.start_ms)
                    }
                    FailPolicy::Closed => {
                        warn_unavailable(&local.def.id, &error, "refusing (fail_closed)", now);
                        Err(Refusal::Unavailable {
                            budget_id: local.def.id.clone(),
                        })
                    }
                }
            }
        }
    }

    /// Renews leases about to lapse and gives back slices larger than needed; run by the
    /// budget sync loop. Returns how many claims failed.
    pub async fn maintain(&self) -> usize {
        let defs = self.defs();
        let now = self.now_ms();
        let mut failures = 0;
        for tracked in defs.by_id.values() {
            let Ok(_claiming) = tracked.claiming.try_lock() else {
                continue;
            };
            let request = {
                let mut local = tracked.lock();
                local.roll(&self.options.calendar, now);
                if local.granted == 0 && local.inflight == 0 {
                    continue;
                }
                let target = self.target_headroom(&local);
                let headroom = local.headroom();
                let expiring = local.valid_until_ms - now < self.options.lease_ttl_ms / 2;
                if headroom > 2 * target + 1 {
                    self.claim_request(&local, target - headroom, now)
                } else if expiring {
                    self.claim_request(&local, (target - headroom).max(0), now)
                } else {
                    continue;
                }
            };
            match self.store.claim(request.clone()).await {
                Ok(reply) => {
                    let mut local = tracked.lock();
                    if local.window.start_ms == request.window_start_ms {
                        apply(&mut local, &reply, &request, &self.options);
                    }
                }
                Err(_) => failures += 1,
            }
        }
        failures
    }

    fn claim_request(&self, local: &Local, delta: i64, now: i64) -> ClaimRequest {
        ClaimRequest {
            budget_id: local.def.id.clone(),
            window_start_ms: local.window.start_ms,
            replica_id: self.options.replica_id.clone(),
            delta,
            limit: local.def.limit.nanos(),
            now_ms: now,
            ttl_ms: self.options.lease_ttl_ms,
        }
    }

    /// The headroom a process keeps: a share of what is left, never more than `max_slice`.
    fn target_headroom(&self, local: &Local) -> i64 {
        let remaining = (local.def.limit.nanos() - local.spent_db - local.others_db).max(0);
        (remaining / self.options.slice_divisor.max(1)).min(self.options.max_slice.nanos())
    }

    fn refusal(&self, local: &mut Local, amount: i64) -> Refusal {
        local.refused = true;
        Refusal::Budget {
            budget: local.def.clone(),
            window: local.window,
            spent: Money(local.spent_db.max(local.settled)),
            estimate: Money(amount),
            zone: self.options.calendar,
        }
    }

    /// Records what the database says a window has settled (for status and soft thresholds).
    pub fn observe_spent(&self, budget_id: &str, window_start_ms: i64, spent: i64) {
        if let Some(tracked) = self.defs().by_id.get(budget_id) {
            let mut local = tracked.lock();
            if local.window.start_ms == window_start_ms {
                local.spent_db = local.spent_db.max(spent);
            }
        }
    }

    /// Each budget's current window and lease, for the sync loop and metrics.
    pub fn views(&self) -> Vec<(BudgetDef, LeaseView)> {
        let now = self.now_ms();
        self.defs()
            .by_id
            .values()
            .map(|tracked| {
                let mut local = tracked.lock();
                local.roll(&self.options.calendar, now);
                (
                    local.def.clone(),
                    LeaseView {
                        window: local.window,
                        granted: local.granted,
                        settled: local.settled,
                        inflight: local.inflight,
                        spent_db: local.spent_db,
                        refused: local.refused,
                    },
                )
            })
            .collect()
    }

    /// Marks a team as past (or back under) a soft threshold.
    pub fn set_soft_crossed(&self, team_id: &str, crossed: bool) {
        if crossed {
            self.soft_crossed.insert(team_id.to_string(), ());
        } else {
            self.soft_crossed.remove(team_id);
        }
    }

    /// Whether the team is throttled for being past a soft threshold.
    pub fn soft_crossed(&self, team_id: &str) -> bool {
        self.soft_crossed.contains_key(team_id)
    }

    /// Teams with a session cap (their sessions' costs are loaded from the rollup).
    pub fn capped_teams(&self) -> Vec<String> {
        self.defs().session_caps.keys().cloned().collect()
    }

    /// Session costs from the sessions rollup; sessions idle longer than `idle_ms` are
    /// forgotten.
    pub fn observe_sessions(&self, costs: &[(String, String, i64, i64)], idle_ms: i64) {
        for (team, session, cost, last_seen_ms) in costs {
            let spend = self
                .sessions
                .entry((team.clone(), session.clone()))
                .or_default()
                .clone();
            let mut s = spend.lock().unwrap_or_else(|e| e.into_inner());
            s.db = s.db.max(*cost);
            s.last_seen_ms = s.last_seen_ms.max(*last_seen_ms);
        }
        let now = self.now_ms();
        self.sessions.retain(|_, spend| {
            let s = spend.lock().unwrap_or_else(|e| e.into_inner());
            s.inflight > 0 || now - s.last_seen_ms < idle_ms
        });
    }

    /// One session's known spend (tests and the admin API).
    pub fn session_spend(&self, team_id: &str, session_id: &str) -> Option<SessionSpend> {
        self.sessions
            .get(&(team_id.to_string(), session_id.to_string()))
            .map(|s| *s.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn budgets_for<'a>(
    defs: &'a Defs,
    team_id: &str,
    key_id: &str,
) -> impl Iterator<Item = &'a Arc<Tracked>> {
    defs.by_key
        .get(key_id)
        .into_iter()
        .chain(defs.by_team.get(team_id))
        .flatten()
}

fn apply(local: &mut Local, reply: &ClaimReply, request: &ClaimRequest, options: &BudgetsOptions) {
    local.granted += reply.applied;
    local.spent_db = reply.spent;
    local.others_db = reply.others;
    // Stop using the lease a quarter of its lifetime before the database lets it lapse, so a
    // slow clock or a slow renewal never lets two processes spend the same money.
    local.valid_until_ms = request.now_ms + options.lease_ttl_ms * 3 / 4;
}

/// Logs a database failure at most once a minute (it would otherwise repeat per request).
fn warn_unavailable(budget_id: &str, error: &str, action: &str, now: i64) {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let last = LAST.load(Ordering::Relaxed);
    if now - last >= 60_000
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::error!(
            budget = budget_id,
            %error,
            "cannot claim budget money from the database; {action} until it is back"
        );
    }
}

#[cfg(test)]
mod tests;
