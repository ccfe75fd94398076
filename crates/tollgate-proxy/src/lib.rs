//! tollgate's hot path: every proxied OpenAI call goes through [`Gateway::handle`].
//!
//! ```text
//! client ─► server (hyper: HTTP/1.1 + h2, optional TLS)
//!        ─► route    /v1/* only, canonical paths only; WebSocket upgrade → 426 so Codex falls
//!                    back to HTTP; an endpoint tollgate cannot price is refused unless the
//!                    operator allowed it unmetered                                  (route.rs)
//!        ─► auth     Bearer team key → SHA-256 → in-memory KeyCache            (auth.rs)
//!        ─► inspect  read + decode the JSON body once, peek model/stream       (inspect.rs)
//!        ─► admit    allow-list, price, rate limits, budget reservation     (admission.rs)
//!        ─► forward  swap in the upstream key, stream the response back        (forward.rs)
//!        ─► meter    read usage and tool calls from frames as they pass        (meter.rs)
//!        ─► settle   usage → price → one ledger event, exactly once           (settle.rs)
//! ```
//! Nothing here touches the database: the key cache is filled and kept fresh by the store, and
//! settled calls go to a non-blocking ledger sink.

pub mod admission;
pub mod attribution;
pub mod auth;
pub mod body;
pub mod deadline;
pub mod estimate;
pub mod first_byte;
pub mod forward;
pub mod headers;
pub mod inspect;
pub mod meter;
pub mod route;
pub mod server;
pub mod settle;
pub mod upstream;

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use tollgate_core::config::ProxyConfig;
use tollgate_core::pricing::UnpricedPolicy;
use tollgate_core::{ApiError, CallOutcome, KeyCache, KeyRecord, LedgerEvent};
use tollgate_telemetry::RequestSpan;

pub use admission::Admission;
use admission::Call;
use attribution::Attribution;
pub use body::ProxyBody;
pub use deadline::BodyDeadline;
use deadline::DeadlineBody;
use forward::OutgoingBody;
use meter::Metered;
use route::Endpoint;
use settle::Pending;
pub use settle::Settler;
pub use upstream::{Upstream, UpstreamSetupError};

/// Everything the hot path needs, shared by all connections.
pub struct Gateway {
    pub keys: Arc<KeyCache>,
    pub upstream: Upstream,
    pub max_body_bytes: u64,
    /// How long a request body may take, in all and between pieces.
    pub body_deadline: BodyDeadline,
    /// Which unpriced endpoints are forwarded anyway (`[proxy] unmetered`).
    pub proxy: ProxyConfig,
    pub settler: Arc<Settler>,
    pub admission: Arc<Admission>,
}

const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl Gateway {
    /// Handles one `/v1/*` request. Every failure becomes an OpenAI-shaped error response, and
    /// every response carries tollgate's request id (the ledger row's key).
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        let started_at_ms = tollgate_core::time::now_ms();
        let request_id = attribution::new_request_id(started_at_ms);
        let span = match &self.settler.telemetry {
            Some(telemetry) => telemetry.begin(request.headers()),
            None => RequestSpan::default(),
        };
        let mut response = match self
            .proxy(request, &request_id, started, started_at_ms, span)
            .await
        {
            Ok(response) => response,
            Err(error) => error_response(&error),
        };
        let headers = response.headers_mut();
        // The upstream's own id stays available for support tickets with the provider.
        if let Some(upstream_id) = headers.remove(REQUEST_ID) {
            headers.insert(UPSTREAM_REQUEST_ID, upstream_id);
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            headers.insert(REQUEST_ID, value);
        }
        response
    }

    async fn proxy(
        &self,
        request: Request<Incoming>,
        request_id: &str,
        started: Instant,
        started_at_ms: i64,
        mut span: RequestSpan,
    ) -> Result<Response<ProxyBody>, ApiError> {
        let endpoint = Endpoint::classify(request.method(), request.uri().path())?;
        if headers::wants_websocket(request.headers()) {
            return Err(ApiError::websocket_unsupported());
        }
        let key = auth::authenticate(&self.keys, request.headers(), started_at_ms)?;
        let (mut parts, body) = request.into_parts();
        let body = DeadlineBody::new(body, self.body_deadline);
        let attribution = Attribution::from_headers(&parts.headers);
        let refused = |error: ApiError, reason: &'static str, model: Option<&str>, span| {
            self.refused(Refusal {
                key: &key,
                attribution: &attribution,
                endpoint,
                model,
                request_id,
                started_at_ms,
                span,
                error: &error,
                reason,
            });
            error
        };
        // Default deny: an endpoint tollgate cannot price is forwarded only where the operator
        // allowed it, and then flagged on its ledger row.
        let unmetered = endpoint == Endpoint::Other;
        if unmetered && !self.proxy.allows_unmetered(parts.uri.path()) {
            let error = route::not_allowed(&parts.method, parts.uri.path());
            return Err(refused(error, "endpoint_not_allowed", None, span));
        }
        if let Some(session) = attribution.session_id.as_deref()
            && let Some(message) = self
                .settler
                .telemetry
                .as_ref()
                .and_then(|t| t.session_refused(&key.team.id, session))
        {
            let error = ApiError::session_stopped(message);
            return Err(refused(error, "session_loop", None, span));
        }
        let mut model_requested = None;
        let mut strip_usage = false;
        let mut request_body = None;
        let admitted;
        let outgoing = if endpoint.reads_body() {
            let raw = body::read_limited(body, self.max_body_bytes).await?;
            let encoding = parts
                .headers
                .get(header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok());
            let inspected = inspect::inspect(raw, encoding, self.max_body_bytes)?;
            let model = inspected.peek.model.as_deref();
            if let Err(error) = self
                .admit(&key, model, started_at_ms)
                .and_then(|()| refuse_background(&inspected.peek))
            {
                let reason = error.code;
                return Err(refused(error, reason, model, span));
            }
            let call = Call {
                key: &key,
                endpoint,
                peek: &inspected.peek,
                body: &inspected.body,
                session_id: attribution.session_id.as_deref(),
                now_ms: started_at_ms,
            };
            admitted = match self.admission.admit(call, &self.settler.prices).await {
                Ok(admitted) => admitted,
                Err(r) => return Err(refused(*r.error, r.reason, model, span)),
            };
            let (body, strip) =
                if matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions) {
                    meter::usage_option::ensure_usage_reported(inspected.body, &inspected.peek)?
                } else {
                    (inspected.body, false)
                };
            // The meter must read the body: ask for it uncompressed.
            parts.headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
            model_requested = inspected.peek.model;
            strip_usage = strip;
            request_body = Some(body.clone());
            OutgoingBody::Read {
                body,
                decoded: inspected.decoded,
            }
        } else {
            if declared_length(&parts.headers).is_some_and(|len| len > self.max_body_bytes) {
                return Err(ApiError::body_too_large(self.max_body_bytes));
            }
            let check = if unmetered {
                self.admission
                    .unmetered(&key, attribution.session_id.as_deref())
                    .await
            } else {
                self.admission.requests_only(&key)
            };
            admitted = match check {
                Ok(admitted) => admitted,
                Err(r) => return Err(refused(*r.error, r.reason, None, span)),
            };
            OutgoingBody::Streamed {
                body,
                limit: self.max_body_bytes,
            }
        };
        let mut admitted = admitted;
        let rate_headers = admitted
            .rate
            .as_mut()
            .map(|r| std::mem::take(&mut r.headers))
            .unwrap_or_default();
        span.inject(&mut parts.headers);
        // From here the call may reach the upstream: whatever happens next, including the
        // client leaving before the response headers, it is settled exactly once.
        let mut pending = SettleIfDropped(Some(Pending {
            request_id: request_id.to_string(),
            started_at_ms,
            started,
            key,
            endpoint,
            model_requested,
            attribution,
            request_body,
            settler: Arc::clone(&self.settler),
            admitted,
            span,
            unmetered,
        }));
        let forwarded = forward::forward(&self.upstream, parts, outgoing).await;
        let Some(pending) = pending.0.take() else {
            return Err(ApiError::internal("a call was settled twice"));
        };
        let response = match forwarded {
            Ok(response) => response,
            Err(unanswered) => {
                pending.settle_unanswered(
                    unanswered.error.status,
                    unanswered.outcome,
                    unanswered.reached_upstream,
                );
                return Err(unanswered.error);
            }
        };
        let (mut parts, body) = response.into_parts();
        let sse = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        // tollgate's limits, not the upstream organisation's, are the ones this client has.
        for (name, value) in rate_headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                parts.headers.insert(name, value);
            }
        }
        if strip_usage {
            // The client will get fewer bytes than the upstream sent.
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        let metered = Metered::new(body, parts.status.as_u16(), sse, strip_usage, pending);
        Ok(Response::from_parts(
            parts,
            ProxyBody::Upstream(Box::new(metered)),
        ))
    }

    /// Records a call tollgate refused before sending anything upstream: a rejection metric and
    /// (with export on) a span. Never a ledger row: nothing was spent.
    fn refused(&self, r: Refusal<'_>) {
        let Some(telemetry) = &self.settler.telemetry else {
            return;
        };
        let team = &r.key.team;
        let cost_centre = team.cost_centre.as_deref().unwrap_or("");
        telemetry.rejection(&team.name, cost_centre, r.reason);
        let now = tollgate_core::time::now_ms();
        let event = LedgerEvent {
            request_id: r.request_id.to_string(),
            started_at_ms: r.started_at_ms,
            finished_at_ms: now,
            team_id: team.id.clone(),
            key_id: r.key.id.clone(),
            cost_centre: team.cost_centre.clone(),
            user: r.attribution.user.clone(),
            session_id: r.attribution.session_id.clone(),
            turn_id: r.attribution.turn_id.clone(),
            endpoint: r.endpoint.label().to_string(),
            model_requested: r.model.map(str::to_string),
            model_served: None,
            status: r.error.status,
            usage: tollgate_core::Usage::default(),
            cost: tollgate_core::Money::ZERO,
            price_id: None,
            estimated: false,
            unpriced: false,
            service_tier: None,
            ttfb_ms: None,
            latency_ms: now - r.started_at_ms,
            tool_calls: Vec::new(),
            outcome: CallOutcome::Complete,
            unmetered: false,
        };
        telemetry.finish(
            r.span,
            &event,
            &team.name,
            tollgate_telemetry::Outcome::Rejected,
            None,
        );
    }

    /// Admission: the key and its team may use the model, and the model can be priced (budgets
    /// and rate limits join here). Refusals are 400s: Codex stops on them instead of retrying.
    fn admit(&self, key: &KeyRecord, model: Option<&str>, now_ms: i64) -> Result<(), ApiError> {
        let Some(model) = model else { return Ok(()) };
        if let Err(list) = key.model_allowed(model) {
            let message = format!(
                "Model '{model}' is not allowed for this {list} (team '{}'). Ask your team admin to add it to the {list}'s allowed models.",
                key.team.name
            );
            return Err(
                ApiError::new(400, "invalid_request_error", "model_not_allowed", message)
                    .with_param("model"),
            );
        }
        let prices = &self.settler.prices;
        if prices.resolve(model, now_ms).is_none()
            && prices.unpriced_policy() == UnpricedPolicy::Reject
        {
            let message = format!(
                "tollgate has no price for model '{model}', so it cannot meter this call. Ask your platform team to add it to the price table."
            );
            return Err(
                ApiError::new(400, "invalid_request_error", "model_not_priced", message)
                    .with_param("model"),
            );
        }
        Ok(())
    }
}

/// Holds a call while it is with the upstream. hyper drops the request's future when the client
/// disconnects before the response headers; the upstream already has the request then, so the
/// call is settled here (status 499, as nginx logs it) rather than lost.
struct SettleIfDropped(Option<Pending>);

impl Drop for SettleIfDropped {
    fn drop(&mut self) {
        if let Some(pending) = self.0.take() {
            pending.settle_unanswered(499, CallOutcome::ClientGoneBeforeHeaders, true);
        }
    }
}

/// A background Responses call bills while it runs, after its POST has returned with no usage;
/// tollgate has nowhere to meter that, so it refuses the call rather than let it run unmetered.
fn refuse_background(peek: &inspect::Peek) -> Result<(), ApiError> {
    if peek.background != Some(true) {
        return Ok(());
    }
    Err(ApiError::new(
        400,
        "invalid_request_error",
        "background_not_supported",
        "tollgate cannot meter background responses (they bill after the call returns), so it does not forward them. Send the request without \"background\": true (stream it instead for long tasks).",
    )
    .with_param("background"))
}

/// A refused call, for [`Gateway::refused`].
struct Refusal<'a> {
    key: &'a KeyRecord,
    attribution: &'a Attribution,
    endpoint: Endpoint,
    model: Option<&'a str>,
    request_id: &'a str,
    started_at_ms: i64,
    span: RequestSpan,
    error: &'a ApiError,
    reason: &'static str,
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// An OpenAI-shaped JSON error response.
pub fn error_response(error: &ApiError) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(error.to_json()));
    *response.status_mut() =
        StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in &error.headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
    response
}

/// A JSON response for tollgate's own endpoints (admin API, health).
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
