//! Phase 3, admit: every refusal of an authenticated call is decided here, in the order a
//! client meets them — an endpoint the operator did not allow, a session stopped for looping,
//! a model not allowed or not priced, a request tollgate could not meter, rate limits, budgets
//! — and recorded as a rejection (a metric and a span, never a ledger row).
//!
//! Budgets reserve an upper-bound estimate of the call's cost against every budget that
//! applies: input tokens bounded by the body's byte length (a token is at least one byte of
//! the JSON it came from) — plus `stored_input_tokens` when the call names input the upstream
//! holds (a previous response, a conversation) — × the input rate, plus the request's
//! `max_output_tokens` / `max_completion_tokens` / `max_tokens` — or the configured cap for
//! the model when it sets none, as Codex does — × the output rate, at the requested service
//! tier. Only when that bound does not fit in the budget's headroom is the body tokenized for a
//! tighter bound (milliseconds for a large Codex request, so never on the common path).

use std::sync::Arc;

use bytes::Bytes;
use http::Request;

use tollgate_core::budget::{Budgets, Refusal as BudgetRefusal, Reservation};
use tollgate_core::config::{BudgetsConfig, ProxyConfig};
use tollgate_core::pricing::{PriceTable, UnpricedPolicy};
use tollgate_core::ratelimit::{RateCharge, RateLimits};
use tollgate_core::{ApiError, CallOutcome, KeyRecord, LedgerEvent, Money, ToolUse, Units, Usage};
use tollgate_telemetry::{RequestSpan, Telemetry};

use crate::attribution::Started;
use crate::auth::Authed;
use crate::bill;
use crate::estimate;
use crate::inspect::media::MediaAsk;
use crate::inspect::{Inspected, Peek};
use crate::route::{self, Endpoint};

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

/// A refused call: the client's error, and the reason metrics and logs name.
#[derive(Debug)]
pub struct Refused {
    pub error: Box<ApiError>,
    /// `endpoint_not_allowed`, `session_loop`, `model_not_allowed`, `rate_limit`, `budget`, …
    pub reason: &'static str,
}

/// A `response.create` message on the Responses WebSocket, as admission reads it.
pub struct Message<'a> {
    pub peek: &'a Peek,
    pub body: &'a Bytes,
    /// Tokens of the earlier response on the same socket that it continues, when metered.
    pub held_input: Option<u64>,
}

/// What admission needs to know about the request to reserve its cost.
pub struct Call<'a> {
    pub key: &'a KeyRecord,
    pub endpoint: Endpoint,
    pub peek: &'a Peek,
    /// What an image or audio request bills by (empty for the others).
    pub media: &'a MediaAsk,
    pub body: &'a Bytes,
    pub session_id: Option<&'a str>,
    pub now_ms: i64,
    /// Tokens of the input the upstream holds for this call, when tollgate knows them (a
    /// WebSocket call continuing a response it metered on the same socket); otherwise input
    /// the body only names is bounded by `stored_input_tokens`.
    pub held_input: Option<u64>,
}

impl Admission {
    /// The refusals that need no body, decided before it is read. `sessions` knows which
    /// sessions are stopped for looping.
    pub fn gate<B>(
        &self,
        who: &Authed,
        request: &Request<B>,
        proxy: &ProxyConfig,
        sessions: Option<&Telemetry>,
    ) -> Result<(), Refused> {
        // Default deny: an endpoint tollgate cannot price is forwarded only where the operator
        // allowed it, and then flagged on its ledger row.
        let path = request.uri().path();
        if who.endpoint == Endpoint::Other && !proxy.allows_unmetered(path) {
            let error = route::not_allowed(request.method(), path);
            return Err(Refused::new(error, "endpoint_not_allowed"));
        }
        session_running(who, sessions)
    }

    /// One `response.create` on the Responses WebSocket, `body` its message: refused as an HTTP
    /// Responses call with the same body would be (the transport's handshake already passed
    /// [`Admission::gate`], but a session can be stopped between two messages).
    pub async fn admit_message(
        &self,
        who: &Authed,
        message: Message<'_>,
        prices: &PriceTable,
        sessions: Option<&Telemetry>,
        now_ms: i64,
    ) -> Result<Admitted, Refused> {
        let Message {
            peek,
            body,
            held_input,
        } = message;
        session_running(who, sessions)?;
        if let Some(model) = peek.model.as_deref() {
            model_allowed(&who.key, model)?;
            model_priced(prices, model, now_ms)?;
        }
        refuse_background(peek)?;
        let call = Call {
            key: &who.key,
            endpoint: who.endpoint,
            peek,
            media: &MediaAsk::default(),
            body,
            session_id: who.attribution.session_id.as_deref(),
            now_ms,
            held_input,
        };
        self.reserve(call, prices).await
    }

    /// The rest, once the body is read: the model, the request's shape, rate limits, budgets.
    pub async fn admit(
        &self,
        who: &Authed,
        what: &Inspected,
        prices: &PriceTable,
        now_ms: i64,
    ) -> Result<Admitted, Refused> {
        let key = &who.key;
        let session_id = who.attribution.session_id.as_deref();
        // A batch's own call is free; its lines are bounded and reserved from its input file
        // ([`Admission::batch_line`], [`Admission::reserve_batch`]). First, like an unmetered
        // call, it must find no budget that applies used up, before the file is even fetched.
        if who.endpoint == Endpoint::Batches {
            return self.unmetered(key, session_id).await;
        }
        let Some(body) = what.read_body() else {
            return match who.endpoint {
                Endpoint::Other => self.unmetered(key, session_id).await,
                _ => self.requests_only(key),
            };
        };
        let peek = &what.peek;
        let endpoint = who.endpoint;
        named_model(endpoint, peek)?;
        unnamed_model_past_allow_list(&who.key, peek)?;
        if let Some(model) = peek.model.as_deref() {
            model_allowed(key, model)?;
            model_priced(prices, model, now_ms)?;
            media_priced(prices, endpoint, model, now_ms, what)?;
        }
        refuse_background(peek)?;
        let call = Call {
            key,
            endpoint,
            peek,
            media: &what.media,
            body,
            session_id,
            now_ms,
            held_input: None,
        };
        self.reserve(call, prices).await
    }

    /// Rate limits, then the call's upper-bound cost reserved against its budgets.
    pub async fn reserve(&self, call: Call<'_>, prices: &PriceTable) -> Result<Admitted, Refused> {
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
        // Input the upstream holds is not in the body: bound it by the configured context.
        let stored = match (call.held_input, call.endpoint) {
            (Some(tokens), _) => tokens,
            (None, endpoint)
                if endpoint.is_responses() && call.peek.names_stored_input(call.body) =>
            {
                self.config.stored_input_tokens
            }
            _ => 0,
        };
        let mut estimate = self.bound(&call, prices, model, input_bound.saturating_add(stored));
        let headroom = self.budgets.headroom(&team.id, &call.key.id);
        // A tighter bound tokenizes the body: text, never an upload's bytes.
        if headroom.is_some_and(|h| h < estimate.nanos()) && !call.endpoint.is_multipart() {
            let tokens = estimate::count_off_thread(model, call.body.clone()).await;
            let input = tokens.min(input_bound).saturating_add(stored);
            estimate = self.bound(&call, prices, model, input);
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

    /// One request line of a batch's input file, `line` bytes long, for `endpoint` with body
    /// `peek`: its model allowed for the key and priced, and the most it can cost at the batch
    /// tier — the line's length bounds its input, as a body's does for a direct call (the
    /// tokenizer is never run here: a batch file can hold 50,000 lines).
    pub fn batch_line(
        &self,
        key: &KeyRecord,
        endpoint: Endpoint,
        peek: &Peek,
        line: &Bytes,
        prices: &PriceTable,
        now_ms: i64,
    ) -> Result<Money, Refused> {
        let model = peek.model.as_deref().unwrap_or("");
        model_allowed(key, model)?;
        model_priced(prices, model, now_ms)?;
        refuse_background(peek)?;
        let no_media = MediaAsk::default();
        let call = Call {
            key,
            endpoint,
            peek,
            media: &no_media,
            body: line,
            session_id: None,
            now_ms,
            held_input: None,
        };
        let stored = match endpoint {
            Endpoint::Responses if peek.names_stored_input(line) => self.config.stored_input_tokens,
            _ => 0,
        };
        let input = (line.len() as u64).saturating_add(stored);
        Ok(self.bound_at(&call, prices, model, input, Some(BATCH_TIER)))
    }

    /// Reserves the upper bound of a whole batch against the key's and team's budgets until the
    /// batch settles. `Ok(None)`: no budget applies.
    pub async fn reserve_batch(
        &self,
        key: &KeyRecord,
        session_id: Option<&str>,
        total: Money,
        rate: Option<&RateCharge>,
    ) -> Result<Option<Reservation>, Refused> {
        let team = &key.team;
        self.budgets
            .reserve(&team.id, &key.id, session_id, total)
            .await
            .map_err(|refusal| budget_refused(refusal, &team.name, rate))
    }

    /// The most the call can cost with `input` input tokens and its output bound.
    fn bound(&self, call: &Call<'_>, prices: &PriceTable, model: &str, input: u64) -> Money {
        self.bound_at(
            call,
            prices,
            model,
            input,
            call.peek.service_tier.as_deref(),
        )
    }

    /// [`Admission::bound`] at service tier `tier`.
    fn bound_at(
        &self,
        call: &Call<'_>,
        prices: &PriceTable,
        model: &str,
        input: u64,
        tier: Option<&str>,
    ) -> Money {
        let peek = call.peek;
        let entry = prices.resolve(model, call.now_ms);
        if let Some((usage, units)) = bill::bound(call.endpoint, entry, call.media, peek.n, input) {
            return prices
                .price_call(model, call.now_ms, &usage, &units, tier)
                .or_else(|| prices.price_unpriced(&usage, tier))
                .map_or(Money::ZERO, |p| p.cost);
        }
        let output = if matches!(
            call.endpoint,
            Endpoint::Embeddings | Endpoint::Moderations | Endpoint::ResponsesPrewarm
        ) {
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
        // An audio model's tokens may all be audio, billed dearer than text: bound them so.
        let audio_in = entry.is_some_and(|e| e.audio_input.is_some());
        let audio_out = entry.is_some_and(|e| e.audio_output.is_some());
        let units = Units {
            tool_calls: builtin_bound(peek),
            input_audio_tokens: if audio_in { usage.input } else { 0 },
            output_audio_tokens: if audio_out { usage.output } else { 0 },
            ..Units::default()
        };
        prices
            .price_call(model, call.now_ms, &usage, &units, tier)
            .or_else(|| prices.price(model, call.now_ms, &usage, tier))
            .or_else(|| prices.price_unpriced(&usage, tier))
            .map_or(Money::ZERO, |p| p.cost)
    }
}

/// Built-in tool calls a request that offers them is bounded by: its `max_tool_calls`, else
/// this many of each tool. A call past the bound is still charged when it settles.
const BUILTIN_CALLS_BOUND: u64 = 16;

/// The per-call tools a request offers, each at its bound.
fn builtin_bound(peek: &Peek) -> Vec<ToolUse> {
    let calls = peek.max_tool_calls.unwrap_or(BUILTIN_CALLS_BOUND);
    let offered = peek.tools.unwrap_or_default();
    let web = peek.web_search_tool().or(peek
        .web_search_options
        .is_some()
        .then_some("web_search_preview"));
    let searches = if peek.web_search_options.is_some() {
        1
    } else {
        calls
    };
    [
        (web, searches),
        (offered.file_search.then_some("file_search"), calls),
        (
            offered.code_interpreter.then_some("code_interpreter"),
            calls,
        ),
        (
            offered.image_generation.then_some("image_generation"),
            calls,
        ),
    ]
    .into_iter()
    .filter_map(|(tool, calls)| {
        tool.map(|tool| ToolUse {
            tool: tool.to_string(),
            calls,
        })
    })
    .collect()
}

/// A call that names no model (a Responses call with a stored `prompt` may leave it to the
/// prompt) cannot be held to an allow-list: with one, it must name its model.
fn unnamed_model_past_allow_list(key: &KeyRecord, peek: &Peek) -> Result<(), Refused> {
    if peek.model.as_deref().is_some_and(|m| !m.trim().is_empty()) {
        return Ok(());
    }
    let Err(list) = key.model_allowed("") else {
        return Ok(());
    };
    let message = format!(
        "This {list} (team '{}') may use only some models, so the request must name its model in 'model'.",
        key.team.name
    );
    let error = ApiError::new(400, "invalid_request_error", "model_required", message);
    Err(Refused::new(error.with_param("model"), "model_required"))
}

/// The session is not stopped for looping.
fn session_running(who: &Authed, sessions: Option<&Telemetry>) -> Result<(), Refused> {
    if let Some(session) = who.attribution.session_id.as_deref()
        && let Some(message) = sessions.and_then(|t| t.session_refused(&who.key.team.id, session))
    {
        let error = ApiError::session_stopped(message);
        return Err(Refused::new(error, "session_loop"));
    }
    Ok(())
}

/// An image request for a size and quality the price table has no per-image price for is
/// refused before it is forwarded, as an unpriced model is.
fn media_priced(
    prices: &PriceTable,
    endpoint: Endpoint,
    model: &str,
    now_ms: i64,
    what: &Inspected,
) -> Result<(), Refused> {
    if !endpoint.is_media() {
        return Ok(());
    }
    let entry = prices.resolve(model, now_ms);
    let Some((_, units)) = bill::bound(endpoint, entry, &what.media, what.peek.n, 0) else {
        return Ok(());
    };
    if entry.is_none() || prices.can_price(model, now_ms, &units) {
        return Ok(());
    }
    let what_for = match &units.images {
        Some(images) => format!(
            "{} images of size '{}' at quality '{}'",
            model, images.size, images.quality
        ),
        None => format!("this use of model '{model}'"),
    };
    let message = format!(
        "tollgate has no price for {what_for}, so it cannot meter this call. Use a size and quality the price table lists, or ask your platform team to add it."
    );
    let error = ApiError::new(400, "invalid_request_error", "model_not_priced", message);
    Err(Refused::new(error.with_param("size"), "model_not_priced"))
}

/// The key and its team may use the model. Refusals are 400s: Codex stops on them instead of
/// retrying.
fn model_allowed(key: &KeyRecord, model: &str) -> Result<(), Refused> {
    let Err(list) = key.model_allowed(model) else {
        return Ok(());
    };
    let message = format!(
        "Model '{model}' is not allowed for this {list} (team '{}'). Ask your team admin to add it to the {list}'s allowed models.",
        key.team.name
    );
    let error = ApiError::new(400, "invalid_request_error", "model_not_allowed", message);
    Err(Refused::new(error.with_param("model"), "model_not_allowed"))
}

/// Speech, transcriptions and translations have no default model: a request must name one, or
/// it would pass the team's allow-list and the price check unasked, and an upstream that
/// picked a model anyway would bill a call tollgate recorded as unpriced.
fn named_model(endpoint: Endpoint, peek: &Peek) -> Result<(), Refused> {
    let audio = matches!(
        endpoint,
        Endpoint::AudioSpeech | Endpoint::AudioTranscriptions | Endpoint::AudioTranslations
    );
    if !audio || peek.model.as_deref().is_some_and(|m| !m.trim().is_empty()) {
        return Ok(());
    }
    let message = format!(
        "'model' is required for {}: name the model to use, e.g. \"whisper-1\" or \"tts-1\".",
        endpoint.label()
    );
    let error = ApiError::new(400, "invalid_request_error", "model_required", message);
    Err(Refused::new(error.with_param("model"), "model_required"))
}

/// The model can be priced, unless the operator lets unpriced calls through.
fn model_priced(prices: &PriceTable, model: &str, now_ms: i64) -> Result<(), Refused> {
    if prices.resolve(model, now_ms).is_some() || prices.unpriced_policy() != UnpricedPolicy::Reject
    {
        return Ok(());
    }
    let message = format!(
        "tollgate has no price for model '{model}', so it cannot meter this call. Ask your platform team to add it to the price table."
    );
    let error = ApiError::new(400, "invalid_request_error", "model_not_priced", message);
    Err(Refused::new(error.with_param("model"), "model_not_priced"))
}

/// A background Responses call bills while it runs, after its POST has returned with no usage;
/// tollgate has nowhere to meter that, so it refuses the call rather than let it run unmetered.
fn refuse_background(peek: &Peek) -> Result<(), Refused> {
    if peek.background != Some(true) {
        return Ok(());
    }
    let error = ApiError::new(
        400,
        "invalid_request_error",
        "background_not_supported",
        "tollgate cannot meter background responses (they bill after the call returns), so it does not forward them. Send the request without \"background\": true (stream it instead for long tasks).",
    );
    Err(Refused::new(
        error.with_param("background"),
        "background_not_supported",
    ))
}

fn budget_refused(refusal: BudgetRefusal, team: &str, rate: Option<&RateCharge>) -> Refused {
    tracing::info!(team, reason = refusal.reason(), "refused by budget");
    let mut error = refusal.to_api_error(team);
    if let Some(rate) = rate {
        error.headers.extend(rate.headers.iter().cloned());
    }
    Refused::new(error, refusal.reason())
}

fn rate_limited(error: ApiError) -> Refused {
    Refused::new(error, "rate_limit")
}

/// The service tier batch requests bill at (half the default rates unless the price table says
/// otherwise).
pub const BATCH_TIER: &str = "batch";

impl Refused {
    pub(crate) fn new(error: ApiError, reason: &'static str) -> Refused {
        Refused {
            error: Box::new(error),
            reason,
        }
    }

    /// Records the refusal of a call that asked for `model`: a rejection metric and (with
    /// export on) a span, never a ledger row: nothing was spent. Hands back the client's error.
    pub fn record(
        self,
        telemetry: Option<&Telemetry>,
        started: &Started,
        who: &Authed,
        model: Option<&str>,
        span: RequestSpan,
    ) -> ApiError {
        let Some(telemetry) = telemetry else {
            return *self.error;
        };
        let team = &who.key.team;
        let cost_centre = team.cost_centre.as_deref().unwrap_or("");
        telemetry.rejection(&team.name, cost_centre, self.reason);
        let now = tollgate_core::time::now_ms();
        let event = LedgerEvent {
            request_id: started.request_id.clone(),
            started_at_ms: started.at_ms,
            finished_at_ms: now,
            team_id: team.id.clone(),
            key_id: who.key.id.clone(),
            cost_centre: team.cost_centre.clone(),
            user: who.attribution.user.clone(),
            session_id: who.attribution.session_id.clone(),
            turn_id: who.attribution.turn_id.clone(),
            endpoint: who.endpoint.label().to_string(),
            model_requested: model.map(str::to_string),
            model_served: None,
            status: self.error.status,
            usage: Usage::default(),
            cost: Money::ZERO,
            price_id: None,
            estimated: false,
            unpriced: false,
            service_tier: None,
            ttfb_ms: None,
            latency_ms: now - started.at_ms,
            tool_calls: Vec::new(),
            outcome: CallOutcome::Complete,
            unmetered: false,
            units: Units::default(),
            response_id: None,
        };
        let rejected = tollgate_telemetry::Outcome::Rejected;
        telemetry.finish(span, &event, &team.name, rejected, None);
        *self.error
    }
}
