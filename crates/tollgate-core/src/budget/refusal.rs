//! Why a call was refused for money, and the error Codex and the SDKs get for it.
//!
//! An exhausted budget answers 429 `usage_limit_reached` with `resets_at` and an
//! `x-codex-promo-message` header: the real Codex CLI stops after that one request and shows
//! the header's text (`reference/codex-wire.md`). 401/402/403 would make it retry six times.

use super::BudgetDef;
use super::calendar::{Calendar, Window};
use crate::api_error::ApiError;
use crate::money::Money;

/// A call refused by a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The call's estimate does not fit in what is left of a budget's window.
    Budget {
        budget: BudgetDef,
        window: Window,
        spent: Money,
        estimate: Money,
        zone: Calendar,
    },
    /// The call would take a Codex session past the team's session cap.
    SessionCap {
        team_id: String,
        session_id: String,
        cap: Money,
        spent: Money,
        estimate: Money,
    },
    /// The lease is spent and the database cannot be reached (fail_closed).
    Unavailable { budget_id: String },
}

impl Refusal {
    /// The metric/log label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Budget { .. } | Refusal::Unavailable { .. } => "budget",
            Refusal::SessionCap { .. } => "session_cap",
        }
    }

    /// The OpenAI-shaped error for this refusal; `team` is the team's name.
    pub fn to_api_error(&self, team: &str) -> ApiError {
        match self {
            Refusal::Budget {
                budget,
                window,
                spent,
                estimate,
                zone,
            } => {
                let which = match &budget.key_id {
                    Some(key) => format!("{} budget of key {key}", budget.period.as_str()),
                    None => format!("{} budget of team '{team}'", budget.period.as_str()),
                };
                let when = match window.resets_at_ms {
                    Some(at) => format!("It resets at {}.", zone.describe(at)),
                    None => "It does not reset; ask your team admin to raise it.".to_string(),
                };
                let message = format!(
                    "The {which} ({}) is used up: ${} spent of ${}, and this request could cost up to ${}. {when}",
                    budget.id,
                    spent.to_usd_string(),
                    budget.limit.to_usd_string(),
                    estimate.to_usd_string(),
                );
                let promo = format!(
                    "tollgate: team '{team}' reached its {} budget (${} of ${}). {when}",
                    budget.period.as_str(),
                    spent.to_usd_string(),
                    budget.limit.to_usd_string(),
                );
                usage_limit(message, promo, window.resets_at_ms)
            }
            Refusal::SessionCap {
                session_id,
                cap,
                spent,
                estimate,
                ..
            } => {
                let message = format!(
                    "This Codex session ({session_id}) has cost ${} and this request could cost up to ${}, past team '{team}''s cap of ${} per session. Start a new session.",
                    spent.to_usd_string(),
                    estimate.to_usd_string(),
                    cap.to_usd_string(),
                );
                let promo = format!(
                    "tollgate: this session reached team '{team}''s cap of ${} per session. Start a new session.",
                    cap.to_usd_string()
                );
                usage_limit(message, promo, None)
            }
            Refusal::Unavailable { budget_id } => {
                let mut error = ApiError::new(
                    429,
                    "rate_limit_exceeded",
                    "rate_limit_exceeded",
                    format!(
                        "tollgate cannot check budget {budget_id} right now (its database is unreachable). Please try again in 5s."
                    ),
                );
                error.headers.push(("retry-after", "5".to_string()));
                error
            }
        }
    }
}

fn usage_limit(message: String, promo: String, resets_at_ms: Option<i64>) -> ApiError {
    let mut error = ApiError::new(429, "usage_limit_reached", "usage_limit_reached", message);
    error.resets_at = resets_at_ms.map(|ms| ms.div_euclid(1000));
    // Header values cannot carry control characters; the text is ours and plain. Codex shows
    // it as "You've hit your usage limit. {promo}, or try again at {time}.": no final period.
    let promo = promo.trim_end_matches('.').to_string();
    error.headers.push(("x-codex-promo-message", promo));
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Period;

    const USD: i64 = 1_000_000_000;

    fn budget(key_id: Option<&str>, period: Period) -> BudgetDef {
        BudgetDef {
            id: "b_1".into(),
            team_id: "t_1".into(),
            key_id: key_id.map(Into::into),
            period,
            limit: Money(10 * USD),
            soft_ppm: 800_000,
            session_cap: None,
            reset_at_ms: 0,
        }
    }

    fn promo(error: &ApiError) -> &str {
        error
            .headers
            .iter()
            .find(|(name, _)| *name == "x-codex-promo-message")
            .map(|(_, value)| value.as_str())
            .unwrap()
    }

    #[test]
    fn an_exhausted_budget_stops_codex_and_says_when_it_resets_in_the_zone() {
        let zone = Calendar::new("Europe/Berlin").unwrap();
        // 2026-11-18 12:00 UTC: the Berlin month resets at 2026-12-01 00:00 local.
        let window = zone.window(Period::Month, 0, 1_795_003_200_000);
        let refusal = Refusal::Budget {
            budget: budget(None, Period::Month),
            window,
            spent: Money(9_500_000_000),
            estimate: Money(750_000_000),
            zone,
        };
        let error = refusal.to_api_error("platform");
        assert_eq!(refusal.reason(), "budget");
        assert_eq!((error.status, error.code), (429, "usage_limit_reached"));
        assert_eq!(error.resets_at, Some(1_796_079_600));
        assert_eq!(
            error.message,
            "The month budget of team 'platform' (b_1) is used up: $9.50 spent of $10.00, and this \
             request could cost up to $0.75. It resets at 2026-12-01 00:00 Europe/Berlin."
        );
        assert_eq!(
            promo(&error),
            "tollgate: team 'platform' reached its month budget ($9.50 of $10.00). It resets at \
             2026-12-01 00:00 Europe/Berlin"
        );
    }

    #[test]
    fn a_total_budget_of_a_key_says_it_does_not_reset() {
        let zone = Calendar::default();
        let refusal = Refusal::Budget {
            budget: budget(Some("k_ci"), Period::Total),
            window: zone.window(Period::Total, 0, 1_795_003_200_000),
            spent: Money(10 * USD),
            estimate: Money(1),
            zone,
        };
        let error = refusal.to_api_error("platform");
        assert_eq!(error.resets_at, None);
        assert!(
            error
                .message
                .starts_with("The total budget of key k_ci (b_1)"),
            "{}",
            error.message
        );
        assert!(
            error
                .message
                .ends_with("It does not reset; ask your team admin to raise it."),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_session_cap_names_the_session_and_asks_for_a_new_one() {
        let refusal = Refusal::SessionCap {
            team_id: "t_1".into(),
            session_id: "sess-42".into(),
            cap: Money(5 * USD),
            spent: Money(4 * USD),
            estimate: Money(2 * USD),
        };
        let error = refusal.to_api_error("platform");
        assert_eq!(refusal.reason(), "session_cap");
        assert_eq!((error.status, error.code), (429, "usage_limit_reached"));
        assert_eq!(error.resets_at, None);
        assert_eq!(
            error.message,
            "This Codex session (sess-42) has cost $4.00 and this request could cost up to $2.00, \
             past team 'platform''s cap of $5.00 per session. Start a new session."
        );
        assert_eq!(
            promo(&error),
            "tollgate: this session reached team 'platform''s cap of $5.00 per session. Start a \
             new session"
        );
    }

    #[test]
    fn an_unreachable_budget_database_asks_for_a_retry_in_five_seconds() {
        let refusal = Refusal::Unavailable {
            budget_id: "b_1".into(),
        };
        let error = refusal.to_api_error("platform");
        assert_eq!(refusal.reason(), "budget");
        assert_eq!((error.status, error.code), (429, "rate_limit_exceeded"));
        assert!(error.headers.contains(&("retry-after", "5".to_string())));
        assert!(error.message.contains("budget b_1"), "{}", error.message);
    }
}
