//! Budgets: hard limits on spend per team or key and period, enforced in the hot path without a
//! database round trip (DESIGN.md, "Budgets").
//!
//! Each gateway process admits against a *lease*: money it has claimed from a budget window in
//! the database. A request reserves an upper-bound estimate of its cost against the lease; at
//! settle the reservation is released and the actual cost charged. When a lease runs low the
//! process claims more (one atomic statement under the window's row lock); near the limit the
//! slices shrink until admission is one atomic check per request. The ledger writer adds settled
//! cost to the window's `spent` in the same transaction that inserts the rows, so counters never
//! drift from the ledger.

mod calendar;
mod engine;
mod refusal;

pub use calendar::{Calendar, Window};
pub use engine::{
    BudgetEvent, Budgets, BudgetsOptions, ClaimReply, ClaimRequest, FailPolicy, LeaseStore,
    LeaseView, Reservation, SessionSpend,
};
pub use refusal::Refusal;

use crate::money::Money;

/// How long a budget's window lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Day,
    Week,
    Month,
    Total,
}

impl Period {
    pub fn parse(text: &str) -> Option<Period> {
        match text {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            "total" => Some(Period::Total),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Total => "total",
        }
    }
}

/// A budget as the admin defined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetDef {
    pub id: String,
    pub team_id: String,
    /// `None`: the budget covers the whole team.
    pub key_id: Option<String>,
    pub period: Period,
    pub limit: Money,
    /// Soft threshold in parts per million of the limit.
    pub soft_ppm: u32,
    /// The most one Codex session of the team may cost (team budgets only).
    pub session_cap: Option<Money>,
    /// An admin's reset: the current window starts here if it is later than the period's start.
    pub reset_at_ms: i64,
}

impl BudgetDef {
    pub fn scope(&self) -> &'static str {
        if self.key_id.is_some() { "key" } else { "team" }
    }

    /// The soft threshold in money (rounded down).
    pub fn soft_limit(&self) -> Money {
        Money(
            i64::try_from(i128::from(self.limit.0) * i128::from(self.soft_ppm) / 1_000_000)
                .unwrap_or(i64::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_back_as_written() {
        for period in [Period::Day, Period::Week, Period::Month, Period::Total] {
            assert_eq!(Period::parse(period.as_str()), Some(period));
        }
        assert_eq!(Period::parse("fortnight"), None);
        assert_eq!(Period::parse("Day"), None);
    }

    #[test]
    fn the_soft_threshold_is_a_share_of_the_limit_rounded_down() {
        let mut def = BudgetDef {
            id: "b_1".into(),
            team_id: "t_1".into(),
            key_id: None,
            period: Period::Month,
            limit: Money(10_000_000_000),
            soft_ppm: 800_000,
            session_cap: None,
            reset_at_ms: 0,
        };
        assert_eq!(def.scope(), "team");
        assert_eq!(def.soft_limit(), Money(8_000_000_000));
        def.limit = Money(3);
        def.soft_ppm = 500_000;
        assert_eq!(def.soft_limit(), Money(1));
        def.limit = Money(i64::MAX);
        def.soft_ppm = 1_000_000;
        assert_eq!(def.soft_limit(), Money(i64::MAX));
        def.key_id = Some("k_1".into());
        assert_eq!(def.scope(), "key");
    }
}
