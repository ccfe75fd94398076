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
    // Header values cannot carry control characters; the text is ours and plain.
    error.headers.push(("x-codex-promo-message", promo));
    error
}
