//! Keeps the budget engine and the rate limiters in step with the database: definitions, each
//! window's settled spend, lease renewals and returns, session costs for session caps, and the
//! once-per-window budget events (soft threshold crossed, limit reached).
//!
//! One pass every `[budgets] sync_ms` (250 ms by default), so a budget created, changed or reset
//! through any process reaches every process within that interval plus one query.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tollgate_core::Money;
use tollgate_core::budget::{BudgetEvent, Budgets};
use tollgate_core::ratelimit::RateLimits;
use tollgate_core::time::now_ms;

use crate::error::Result;
use crate::poll::{Poll, run_every};
use crate::store::Store;

/// Session costs are kept for sessions seen within this long.
const SESSION_MEMORY_MS: i64 = 24 * 3600 * 1000;

pub type EventHandler = Arc<dyn Fn(BudgetEvent) + Send + Sync>;

pub struct BudgetSync {
    store: Store,
    budgets: Arc<Budgets>,
    rates: Arc<RateLimits>,
    on_event: EventHandler,
    sessions_since: Option<i64>,
    /// Whether the last pass failed: `run` logs the first error of a streak, not every one.
    failing: bool,
}

impl BudgetSync {
    pub fn new(
        store: Store,
        budgets: Arc<Budgets>,
        rates: Arc<RateLimits>,
        on_event: EventHandler,
    ) -> BudgetSync {
        BudgetSync {
            store,
            budgets,
            rates,
            on_event,
            sessions_since: None,
            failing: false,
        }
    }

    /// One pass. Returns how many lease renewals failed.
    pub async fn sync_once(&mut self) -> Result<usize> {
        self.budgets
            .set_budgets(self.store.list_budgets(None).await?);
        self.rates
            .set_limits(&self.store.list_rate_limits(None).await?);
        self.observe_windows().await?;
        let failures = self.budgets.maintain().await;
        let capped = self.budgets.capped_teams();
        if !capped.is_empty() {
            let now = now_ms();
            let since = self.sessions_since.unwrap_or(now - SESSION_MEMORY_MS);
            let costs = self.store.session_costs(&capped, since).await?;
            self.budgets.observe_sessions(&costs, SESSION_MEMORY_MS);
            // Overlap passes a little: a batch may commit rows stamped slightly in the past.
            self.sessions_since = Some(now - 60_000);
        }
        Ok(failures)
    }

    async fn observe_windows(&self) -> Result<()> {
        let views = self.budgets.views();
        let Some(oldest) = views.iter().map(|(_, v)| v.window.start_ms).min() else {
            return Ok(());
        };
        let spent: HashMap<(String, i64), i64> = self
            .store
            .windows_spent(oldest)
            .await?
            .into_iter()
            .map(|(id, start, spent)| ((id, start), spent))
            .collect();
        let mut soft_teams = HashSet::new();
        let mut teams = HashSet::new();
        for (def, view) in views {
            let start = view.window.start_ms;
            let settled = spent.get(&(def.id.clone(), start)).copied().unwrap_or(0);
            self.budgets.observe_spent(&def.id, start, settled);
            let soft = def.soft_ppm > 0 && settled >= def.soft_limit().nanos();
            if def.key_id.is_none() {
                teams.insert(def.team_id.clone());
                if soft {
                    soft_teams.insert(def.team_id.clone());
                }
            }
            let hard = settled >= def.limit.nanos() || view.refused;
            for (kind, crossed) in [("soft", soft), ("hard", hard)] {
                if crossed
                    && self
                        .store
                        .fire_budget_event(&def.id, start, kind == "hard")
                        .await?
                {
                    (self.on_event)(BudgetEvent {
                        kind,
                        budget: def.clone(),
                        window: view.window,
                        spent: Money(settled),
                    });
                }
            }
        }
        for team in teams {
            self.budgets
                .set_soft_crossed(&team, soft_teams.contains(&team));
        }
        Ok(())
    }

    /// Runs a pass every `every` until `shutdown` resolves; errors are logged (once per
    /// failure streak) and the engine keeps what it last knew.
    pub async fn run(self, every: Duration, shutdown: impl Future<Output = ()>) {
        run_every(every, shutdown, self).await;
    }
}

impl Poll for BudgetSync {
    type Output = Result<usize>;

    fn pass(&mut self) -> impl Future<Output = Result<usize>> + Send {
        self.sync_once()
    }

    fn report(&mut self, result: Result<usize>) {
        match result {
            Ok(_) if self.failing => {
                self.failing = false;
                tracing::info!("budget sync reaches the database again");
            }
            Ok(_) => {}
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::error!(%error, "budget sync cannot reach the database; leases will lapse and [budgets] fail_policy applies");
            }
            Err(_) => {}
        }
    }
}
