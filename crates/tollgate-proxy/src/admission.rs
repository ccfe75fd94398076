//! Phase 4, admit (money and rate): rate limits first (cheap, in memory), then budgets — an
//! upper-bound estimate of the call's cost is reserved against every budget that applies.
//!
//! The estimate: input tokens bounded by the body's byte length (a token is at least one byte
//! of the JSON it came from) × the input rate, plus the request's `max_output_tokens` /
//! `max_completion_tokens` / `max_tokens` — or the configured cap for the model when it sets
//! none, as Codex does — × the output rate, at the requested service tier. Only when that bound
//! does not fit in the budget's headroom is the body tokenized for a tighter bound (milliseconds
//! for a large Codex request, so never on the common path).

use std::sync::Arc;

use bytes::Bytes;

use tollgate_core::budget::{Budgets, Refusal as BudgetRefusal, Reservation};
use tollgate_core::config::BudgetsConfig;
use tollgate_core::pricing::PriceTable;
use tollgate_core::ratelimit::{RateCharge, RateLimits};
use tollgate_core::{ApiError, KeyRecord, Money, Usage};

use crate::estimate;
use crate::inspect::Peek;
use crate::route::Endpoint;

/// Budgets and rate limits, shared by all requests.
pub struct Admission {
    pub budgets: Arc<Budgets>,
    pub rates: Arc<RateLimits>,
    pub config: BudgetsConfig,
}

/// What an admitted call holds until it settles.
#[derive(Default)]
pub struct Admitted {
    pub reservation: Option<Reservation>,
    pub rate: Option<RateCharge>,
}

/// A call refused by admission, with the reason metrics and logs name.
#[derive(Debug)]
pub struct Refused {
    pub error: Box<ApiError>,
    /// `rate_limit`, `budget` or `session_cap`.
    pub reason: &'static str,
}

/// What admission needs to know about the request.
pub struct Call<'a> {
    pub key: &'a KeyRecord,
    pub endpoint: Endpoint,
    pub peek: &'a Peek,
    pub body: &'a Bytes,
    pub session_id: Option<&'a str>,
    pub now_ms: i64,
}

impl Admission {
    pub async fn admit(&self, call: Call<'_>, prices: &PriceTable) -> Result<Admitted, Refused> {
        let team = &call.key.team;
        let input_bound = call.body.len() as u64;
        let rate = self
            .rates
            .check(
                &team.id,
                &call.key.id,
                self.budgets.soft_crossed(&team.id),
                u32::try_from(input_bound / 4).unwrap_or(u32::MAX),
            )
            .map_err(rate_limited)?;
        if !call.endpoint.is_priced() || !self.budgets.applies(&team.id, &call.key.id) {
            return Ok(Admitted {
                reservation: None,
                rate,
            });
        }
        let model = call.peek.model.as_deref().unwrap_or("");
        let mut estimate = self.bound(&call, prices, model, input_bound);
        let headroom = self.budgets.headroom(&team.id, &call.key.id);
        if headroom.is_some_and(|h| h < estimate.nanos()) {
            let tokens = estimate::count_off_thread(model, call.body.clone()).await;
            estimate = self.bound(&call, prices, model, tokens.min(input_bound));
        }
        let reservation = self
            .budgets
            .reserve(&team.id, &call.key.id, call.session_id, estimate)
            .await
            .map_err(|refusal| budget_refused(refusal, &team.name, rate.as_ref()))?;
        Ok(Admitted { reservation, rate })
    }

    /// Rate limits for a free call tollgate does not read (models, stored responses):
    /// requests only.
    pub fn requests_only(&self, key: &KeyRecord) -> Result<Admitted, Refused> {
        let team = &key.team.id;
        let rate = self
            .rates
            .check(team, &key.id, self.budgets.soft_crossed(team), 0)
            .map_err(rate_limited)?;
        Ok(Admitted {
            reservation: None,
            rate,
        })
    }

    /// A call to an endpoint the operator allowed unmetered: rate limits as for any call, and
    /// refused like a priced call once a budget that applies is used up. Its cost is unknown,
    /// so it reserves the least amount there is: enough to find an exhausted budget, nothing
    /// that would hold back other calls.
    pub async fn unmetered(
        &self,
        key: &KeyRecord,
        session_id: Option<&str>,
    ) -> Result<Admitted, Refused> {
        let mut admitted = self.requests_only(key)?;
        let team = &key.team;
        admitted.reservation = self
            .budgets
            .reserve(&team.id, &key.id, session_id, Money(1))
            .await
            .map_err(|refusal| budget_refused(refusal, &team.name, admitted.rate.as_ref()))?;
        Ok(admitted)
    }

    /// The most the call can cost with `input` input tokens and its output bound.
    fn bound(&self, call: &Call<'_>, prices: &PriceTable, model: &str, input: u64) -> Money {
        let peek = call.peek;
        let output = if call.endpoint == Endpoint::Embeddings {
            0
        } else {
            let per_choice = peek
                .max_output_tokens
                .or(peek.max_completion_tokens)
                .or(peek.max_tokens)
                .unwrap_or_else(|| self.config.output_cap(model));
            // `n` choices (and legacy `best_of` candidates) each bill up to the per-choice
            // limit: the bound must cover all of them, or `n: 128` would reserve 1/128th.
            let choices = peek.n.max(peek.best_of).unwrap_or(1).max(1);
            per_choice.saturating_mul(choices)
        };
        let usage = Usage {
            input: input.max(1),
            cached_input: 0,
            output,
            reasoning: 0,
        };
        let tier = peek.service_tier.as_deref();
        prices
            .price(model, call.now_ms, &usage, tier)
            .or_else(|| prices.price_unpriced(&usage, tier))
            .map_or(Money::ZERO, |p| p.cost)
    }
}

fn budget_refused(refusal: BudgetRefusal, team: &str, rate: Option<&RateCharge>) -> Refused {
    tracing::info!(team, reason = refusal.reason(), "refused by budget");
    let mut error = refusal.to_api_error(team);
    if let Some(rate) = rate {
        error.headers.extend(rate.headers.iter().cloned());
    }
    Refused {
        error: Box::new(error),
        reason: refusal.reason(),
    }
}

fn rate_limited(error: ApiError) -> Refused {
    Refused {
        error: Box::new(error),
        reason: "rate_limit",
    }
}
