//! Phase 6, settle: turn what the meter observed into one priced ledger event, exactly once —
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
use tollgate_core::{CallOutcome, LedgerEvent, LedgerSink, Money, ToolUse, Units, Usage};
use tollgate_telemetry::{RequestSpan, Telemetry, UpstreamErrorKind};

use crate::admission::Admitted;
use crate::attribution::Started;
use crate::auth::Authed;
use crate::bill::{self, Bill};
use crate::estimate;
use crate::inspect::media::MediaAsk;
use crate::meter::observe::{BuiltinCalls, Observed};
use crate::meter::{Reading, Settle};
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
    pub started: Started,
    pub who: Authed,
    pub model_requested: Option<String>,
    /// The request body, kept (by reference, not copied) only for a possible estimate.
    pub request_body: Option<Bytes>,
    pub settler: Arc<Settler>,
    /// The budget reservation and rate-limit charge to settle with the actual cost.
    pub admitted: Admitted,
    /// The call's trace span (empty when export is off).
    pub span: RequestSpan,
    /// What the request asked for that bills beyond tokens.
    pub asked: Asked,
}

/// What a request asked for that its price depends on beyond tokens.
#[derive(Debug, Default, Clone)]
pub struct Asked {
    /// Images and audio: sizes, characters, uploads.
    pub media: MediaAsk,
    /// Images: how many.
    pub n: Option<u64>,
    /// The web search tool the request offered (`web_search` or `web_search_preview`): its
    /// calls are priced as that tool.
    pub web_search_tool: Option<&'static str>,
    /// A chat request with `web_search_options` (search models): one search per call.
    pub chat_search: bool,
}

impl Settle for Pending {
    /// Settles a call that got a response.
    fn settle(self, reading: Reading) {
        let charged = (200..300).contains(&reading.status) && self.who.endpoint.is_priced();
        tracing::debug!(request_id = %self.started.request_id, status = reading.status, outcome = ?reading.outcome, "settling");
        if !charged {
            return self.record(Usage::default(), Units::default(), Charge::Nothing, reading);
        }
        if let Some(bill) = self.measure_media(&reading.seen) {
            let charge = if bill.estimated {
                Charge::Estimated
            } else {
                Charge::Reported
            };
            return self.record(bill.usage, bill.units, charge, reading);
        }
        // An image_generation tool call is priced per image at an estimated rate.
        let charge = match reading.seen.builtin.image_generation {
            0 => Charge::Reported,
            _ => Charge::Estimated,
        };
        match reading.seen.usage {
            None => self.estimate_then_record(reading),
            Some(usage) => {
                let units = reading.seen.units.clone();
                self.record(usage, units, charge, reading)
            }
        }
    }
}

impl Pending {
    /// Settles a call that got no response: the upstream was unreachable or too slow, or the
    /// client left before the response headers. When the upstream may have had the whole
    /// request it bills at least its input, so a priced call is charged an estimate of that
    /// (flagged); a call that never reached the upstream costs nothing.
    pub fn settle_unanswered(mut self, status: u16, outcome: CallOutcome, reached_upstream: bool) {
        let kind = match outcome {
            CallOutcome::UpstreamTimeout => Some(UpstreamErrorKind::Timeout),
            CallOutcome::UpstreamUnreachable | CallOutcome::UpstreamCut => {
                Some(UpstreamErrorKind::Connect)
            }
            _ => None,
        };
        if let Some(kind) = kind {
            self.span.set_upstream_error(kind);
        }
        let reading = Reading {
            status,
            seen: Observed::default(),
            ttfb: None,
            outcome,
        };
        if reached_upstream && self.who.endpoint.is_priced() {
            if let Some(bill) = self.measure_media(&reading.seen) {
                return self.record(bill.usage, bill.units, Charge::Estimated, reading);
            }
            return self.estimate_then_record(reading);
        }
        self.record(Usage::default(), Units::default(), Charge::Nothing, reading);
    }

    /// What an image or audio call bills (`None` for other endpoints): its units, from the
    /// answer where it says and from the request where the price entry bills by it.
    fn measure_media(&self, seen: &Observed) -> Option<Bill> {
        if !self.who.endpoint.is_media() {
            return None;
        }
        let model = self.model(seen);
        let entry = self.settler.prices.resolve(model, self.started.at_ms);
        let body = self.request_body.as_deref().unwrap_or_default();
        // The request's text, for an estimate; a large body is an upload, not text.
        let text_tokens = || match body.len() {
            len if len <= 64 * 1024 => estimate::count(model, body, 0),
            len => len as u64 / 4,
        };
        let asked = &self.asked;
        bill::measure(
            self.who.endpoint,
            entry,
            &asked.media,
            asked.n,
            seen,
            text_tokens,
        )
    }

    /// The model to price by: the one the upstream says it served, else the one requested.
    fn model<'a>(&'a self, seen: &'a Observed) -> &'a str {
        seen.model
            .as_deref()
            .or(self.model_requested.as_deref())
            .unwrap_or("")
    }

    /// Estimates usage with the tokenizer (milliseconds of CPU: on a blocking thread, which
    /// shutdown waits for) and records the call charged at that estimate.
    fn estimate_then_record(self, reading: Reading) {
        let tracker = self.settler.estimates.clone();
        let estimate = move || {
            let usage = self.estimate(&reading.seen);
            let units = reading.seen.units.clone();
            self.record(usage, units, Charge::Estimated, reading);
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tracker.spawn_blocking(estimate);
        } else {
            estimate();
        }
    }

    fn estimate(&self, seen: &Observed) -> Usage {
        let model = self.model(seen);
        let input_text = self.request_body.as_deref().unwrap_or_default();
        let input = estimate::count(model, input_text, 0).max(1);
        let output = if matches!(
            self.who.endpoint,
            Endpoint::Embeddings | Endpoint::ResponsesPrewarm
        ) {
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

    fn record(mut self, usage: Usage, mut units: Units, charge: Charge, reading: Reading) {
        let Reading {
            status,
            seen,
            ttfb,
            outcome,
        } = reading;
        let prices = &self.settler.prices;
        let tier = seen.service_tier.as_deref();
        let charged = charge != Charge::Nothing;
        let estimated = charge == Charge::Estimated;
        if charged {
            units.tool_calls = tool_uses(&seen.builtin, &self.asked);
        }
        // Price by the model the upstream says it served (a dated snapshot resolves to its
        // family), else by the one requested; by the price entry in force when the call began.
        let priced = if charged {
            [seen.model.as_deref(), self.model_requested.as_deref()]
                .into_iter()
                .flatten()
                .find_map(|model| {
                    prices.price_call(model, self.started.at_ms, &usage, &units, tier)
                })
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
            tracing::warn!(request_id = %self.started.request_id, model = ?seen.model.as_ref().or(self.model_requested.as_ref()), "call settled without a price entry");
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
            request_id: self.started.request_id,
            started_at_ms: self.started.at_ms,
            finished_at_ms: self.started.at_ms + millis(finished - self.started.at),
            team_id: self.who.key.team.id.clone(),
            key_id: self.who.key.id.clone(),
            cost_centre: self.who.key.team.cost_centre.clone(),
            user: self.who.attribution.user,
            session_id: self.who.attribution.session_id,
            turn_id: self.who.attribution.turn_id,
            endpoint: self.who.endpoint.label().to_string(),
            model_requested: self.model_requested,
            model_served: seen.model,
            status,
            usage,
            units,
            cost,
            price_id,
            estimated,
            unpriced,
            service_tier: seen.service_tier,
            ttfb_ms: ttfb.map(millis),
            latency_ms: millis(finished - self.started.at),
            tool_calls: seen.tools,
            outcome,
            // Forwarded under `proxy.unmetered`: recorded with its cost unknown, flagged.
            unmetered: self.who.endpoint == Endpoint::Other,
            response_id: seen.response_id,
        };
        if let Some(telemetry) = &self.settler.telemetry {
            let outcome = match outcome {
                CallOutcome::Complete
                | CallOutcome::UpstreamTimeout
                | CallOutcome::UpstreamUnreachable => tollgate_telemetry::Outcome::Complete,
                CallOutcome::UpstreamCut => tollgate_telemetry::Outcome::UpstreamBroke,
                CallOutcome::ClientGone | CallOutcome::ClientGoneBeforeHeaders => {
                    tollgate_telemetry::Outcome::ClientGone
                }
            };
            let prompt = self.request_body.as_deref();
            telemetry.finish(span, &event, &self.who.key.team.name, outcome, prompt);
        }
        self.settler.sink.record(event);
    }
}

/// The built-in tool calls an answer made, as the price table bills them: web searches as the
/// tool the request offered, file searches, code interpreter containers.
pub(crate) fn tool_uses(builtin: &BuiltinCalls, asked: &Asked) -> Vec<ToolUse> {
    let web_search = builtin.web_search + u64::from(asked.chat_search);
    let web_tool = match asked.chat_search {
        true => "web_search_preview",
        false => asked.web_search_tool.unwrap_or("web_search"),
    };
    [
        (web_tool, web_search),
        ("file_search", builtin.file_search),
        ("image_generation", builtin.image_generation),
        ("code_interpreter", builtin.container_count()),
    ]
    .into_iter()
    .filter(|&(_, calls)| calls > 0)
    .map(|(tool, calls)| ToolUse {
        tool: tool.to_string(),
        calls,
    })
    .collect()
}

/// Whether and how a settled call is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charge {
    /// Failed before anything billable happened, or an endpoint tollgate does not price.
    Nothing,
    /// Priced from the usage the upstream reported.
    Reported,
    /// Priced from a tokenizer estimate: the upstream never reported usage.
    Estimated,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::observe::response_json;

    #[test]
    fn built_in_calls_are_billed_by_item_type_never_by_name() {
        let mut seen = Observed::default();
        let body = br#"{"model":"gpt-5.5","output":[
            {"type":"function_call","name":"web_search","arguments":"{}"},
            {"type":"web_search_call","id":"ws_1"},
            {"type":"web_search_call","id":"ws_2"},
            {"type":"code_interpreter_call","container_id":"cntr_a"},
            {"type":"code_interpreter_call","container_id":"cntr_a"},
            {"type":"code_interpreter_call","container_id":"cntr_b"},
            {"type":"image_generation_call","id":"ig_1"}
        ],"usage":{"input_tokens":1,"output_tokens":1}}"#;
        assert!(response_json(body, &mut seen));
        let asked = Asked {
            web_search_tool: Some("web_search_preview"),
            ..Asked::default()
        };
        let uses: Vec<(String, u64)> = tool_uses(&seen.builtin, &asked)
            .into_iter()
            .map(|u| (u.tool, u.calls))
            .collect();
        assert_eq!(
            uses,
            [
                ("web_search_preview".to_string(), 2),
                ("image_generation".to_string(), 1),
                ("code_interpreter".to_string(), 2),
            ]
        );
        // Sessions still count every tool by name, the function and the built-in alike.
        let web: u32 = seen
            .tools
            .iter()
            .filter(|t| t.name == "web_search")
            .map(|t| t.count)
            .sum();
        assert_eq!(web, 3);
    }
}
