//! Phase 5, settle: turn what the meter observed into one priced ledger event, exactly once —
//! at the end of the stream, on an upstream error, or when the client goes away.
//!
//! Failed calls (the upstream answered an error status, or never answered) are recorded at
//! zero cost. A successful call whose usage never arrived is estimated with the tokenizer —
//! never charged $0 — and flagged; the tokenizer runs on a blocking thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::task::TaskTracker;

use tollgate_core::pricing::{PriceTable, UnpricedPolicy};
use tollgate_core::{KeyRecord, LedgerEvent, LedgerSink, Money, Usage};
use tollgate_telemetry::{RequestSpan, Telemetry, UpstreamErrorKind};

use crate::admission::Admitted;
use crate::attribution::Attribution;
use crate::estimate;
use crate::meter::observe::Observed;
use crate::route::Endpoint;

/// Prices and the ledger: what settling needs, shared by all requests.
pub struct Settler {
    pub prices: Arc<PriceTable>,
    pub sink: Arc<dyn LedgerSink>,
    /// Estimates in progress: shutdown waits for them before it flushes the ledger.
    pub estimates: TaskTracker,
    /// Metrics, spans and cost events for each settled call (when configured).
    pub telemetry: Option<Telemetry>,
}

impl Settler {
    pub fn new(prices: Arc<PriceTable>, sink: Arc<dyn LedgerSink>) -> Settler {
        Settler {
            prices,
            sink,
            estimates: TaskTracker::new(),
            telemetry: None,
        }
    }

    /// Settled calls also go to `telemetry`.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Settler {
        self.telemetry = Some(telemetry);
        self
    }

    /// Waits for every estimate started so far to reach the sink.
    pub async fn drain(&self) {
        self.estimates.close();
        self.estimates.wait().await;
    }
}

/// A call in flight: everything its ledger row needs besides what the response shows.
pub struct Pending {
    pub request_id: String,
    pub started_at_ms: i64,
    pub started: Instant,
    pub key: Arc<KeyRecord>,
    pub endpoint: Endpoint,
    pub model_requested: Option<String>,
    pub attribution: Attribution,
    /// The request body, kept (by reference, not copied) only for a possible estimate.
    pub request_body: Option<Bytes>,
    pub settler: Arc<Settler>,
    /// The budget reservation and rate-limit charge to settle with the actual cost.
    pub admitted: Admitted,
    /// The call's trace span (empty when export is off).
    pub span: RequestSpan,
}

/// How the response ended, as far as the client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The body reached its end.
    Complete,
    /// The upstream broke the body off (cut, reset, idle timeout).
    UpstreamBroke,
    /// The client went away before the end.
    ClientGone,
}

impl Pending {
    /// Settles a call that got a response with `status`.
    pub fn settle(self, status: u16, seen: Observed, ttfb: Option<Duration>, outcome: Outcome) {
        let needs_estimate =
            seen.usage.is_none() && self.endpoint.is_priced() && (200..300).contains(&status);
        tracing::debug!(request_id = %self.request_id, status, ?outcome, estimated = needs_estimate, "settling");
        if !needs_estimate {
            let usage = seen.usage.unwrap_or_default();
            return self.record(status, usage, false, seen, ttfb, outcome);
        }
        let tracker = self.settler.estimates.clone();
        let estimate = move || {
            let usage = self.estimate(&seen);
            self.record(status, usage, true, seen, ttfb, outcome);
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tracker.spawn_blocking(estimate);
        } else {
            estimate();
        }
    }

    /// Settles a call the upstream never answered (unreachable, timed out): no charge.
    pub fn settle_unanswered(mut self, status: u16) {
        let kind = if status == 504 {
            UpstreamErrorKind::Timeout
        } else {
            UpstreamErrorKind::Connect
        };
        self.span.set_upstream_error(kind);
        let none = Observed::default();
        self.record(
            status,
            Usage::default(),
            false,
            none,
            None,
            Outcome::Complete,
        );
    }

    fn estimate(&self, seen: &Observed) -> Usage {
        let model = seen
            .model
            .as_deref()
            .or(self.model_requested.as_deref())
            .unwrap_or("");
        let input_text = self.request_body.as_deref().unwrap_or_default();
        let input = estimate::count(model, input_text, 0).max(1);
        let output = if self.endpoint == Endpoint::Embeddings {
            0
        } else {
            estimate::count(model, seen.text.as_bytes(), seen.text_overflow)
        };
        Usage {
            input,
            cached_input: 0,
            output,
            reasoning: 0,
        }
    }

    fn record(
        mut self,
        status: u16,
        usage: Usage,
        estimated: bool,
        seen: Observed,
        ttfb: Option<Duration>,
        outcome: Outcome,
    ) {
        let prices = &self.settler.prices;
        let tier = seen.service_tier.as_deref();
        let charged = (200..300).contains(&status) && self.endpoint.is_priced();
        // Price by the model the upstream says it served (a dated snapshot resolves to its
        // family), else by the one requested; by the price entry in force when the call began.
        let priced = if charged {
            [seen.model.as_deref(), self.model_requested.as_deref()]
                .into_iter()
                .flatten()
                .find_map(|model| prices.price(model, self.started_at_ms, &usage, tier))
        } else {
            None
        };
        let (cost, price_id, unpriced) = match priced {
            Some(p) => (p.cost, Some(p.price_id), false),
            None if !charged => (Money::ZERO, None, false),
            None => match (
                prices.unpriced_policy(),
                prices.price_unpriced(&usage, tier),
            ) {
                (UnpricedPolicy::Fallback, Some(p)) => (p.cost, Some(p.price_id), true),
                // The model was priced at admission but the upstream served one that is not:
                // record it unpriced and visible rather than guess.
                _ => (Money::ZERO, None, true),
            },
        };
        if unpriced {
            tracing::warn!(request_id = %self.request_id, model = ?seen.model.as_ref().or(self.model_requested.as_ref()), "call settled without a price entry");
        }
        if let Some(reservation) = self.admitted.reservation.take() {
            reservation.settle(cost);
        }
        if let Some(rate) = self.admitted.rate.take() {
            rate.settle(usage.input + usage.output);
        }
        if let Some(id) = &seen.response_id {
            self.span.set_response_id(id);
        }
        let span = std::mem::take(&mut self.span);
        let finished = Instant::now();
        let event = LedgerEvent {
            request_id: self.request_id,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.started_at_ms + millis(finished - self.started),
            team_id: self.key.team.id.clone(),
            key_id: self.key.id.clone(),
            cost_centre: self.key.team.cost_centre.clone(),
            user: self.attribution.user,
            session_id: self.attribution.session_id,
            turn_id: self.attribution.turn_id,
            endpoint: self.endpoint.label().to_string(),
            model_requested: self.model_requested,
            model_served: seen.model,
            status,
            usage,
            cost,
            price_id,
            estimated,
            unpriced,
            service_tier: seen.service_tier,
            ttfb_ms: ttfb.map(millis),
            latency_ms: millis(finished - self.started),
            tool_calls: seen.tools,
        };
        if let Some(telemetry) = &self.settler.telemetry {
            let outcome = match outcome {
                Outcome::Complete => tollgate_telemetry::Outcome::Complete,
                Outcome::UpstreamBroke => tollgate_telemetry::Outcome::UpstreamBroke,
                Outcome::ClientGone => tollgate_telemetry::Outcome::ClientGone,
            };
            let prompt = self.request_body.as_deref();
            telemetry.finish(span, &event, &self.key.team.name, outcome, prompt);
        }
        self.settler.sink.record(event);
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
