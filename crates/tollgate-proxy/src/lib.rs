//! tollgate's hot path: every proxied OpenAI call goes through [`Gateway::handle`].
//!
//! ```text
//! client ─► server (hyper: HTTP/1.1 + h2, optional TLS)                  (server.rs)
//!        ─► route    /v1/* only, canonical paths only; a WebSocket upgrade on
//!                    GET /v1/responses becomes a socket whose every response.create runs
//!                    the phases below (socket.rs); elsewhere 426      (route.rs)
//!        ─► auth     Bearer team key → SHA-256 → in-memory KeyCache        (auth.rs)
//!        ─► admit    the refusals that need no body: endpoint not allowed, session
//!                    stopped for looping                              (admission.rs)
//!        ─► inspect  read + decode the JSON body once, peek model/stream (inspect.rs)
//!        ─► admit    model allow-list and price, background calls, rate limits, budget
//!                    reservation                                      (admission.rs)
//!        ─► forward  swap in the upstream key, stream the response back (forward.rs)
//!        ─► meter    read usage and tool calls from frames as they pass   (meter.rs)
//!        ─► settle   usage → price → one ledger event, exactly once      (settle.rs)
//! ```
//! A batch (`POST /v1/batches`) leaves the line after admit: its input file is bounded and
//! reserved, and its lines are settled later by a background follower (batch.rs).
//! Each phase hands a small value to the next (`Endpoint` → `Authed` → `Inspected` →
//! `Admitted` → the upstream's response → a `Reading`) and never imports a later one; every
//! refusal is decided in admission.
//! Nothing here touches the database: the key cache is filled and kept fresh by the store, and
//! settled calls go to a non-blocking ledger sink.

pub mod admission;
pub mod attribution;
pub mod auth;
pub mod batch;
pub mod bill;
pub mod body;
pub mod estimate;
pub mod first_byte;
pub mod forward;
pub mod headers;
pub mod inspect;
pub mod meter;
pub mod response;
pub mod route;
pub mod server;
pub mod settle;
pub mod socket;
pub mod upstream;

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;

use tollgate_core::config::ProxyConfig;
use tollgate_core::{ApiError, CallOutcome, KeyCache};
use tollgate_telemetry::RequestSpan;

pub use admission::Admission;
use attribution::Started;
pub use body::BodyDeadline;
use inspect::Inspected;
pub use response::{ProxyBody, error_response, json_response};
pub use settle::Settler;
use settle::{Asked, Pending};
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
    /// Batches being created and followed, and where they are recorded.
    pub batches: Arc<batch::Batches>,
    /// Responses WebSocket connections open on this gateway.
    pub sockets: Arc<socket::Sockets>,
}

const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl Gateway {
    /// Handles one `/v1/*` request. Every failure becomes an OpenAI-shaped error response, and
    /// every response carries tollgate's request id (the ledger row's key).
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let started = Started::now();
        let span = match &self.settler.telemetry {
            Some(telemetry) => telemetry.begin(request.headers()),
            None => RequestSpan::default(),
        };
        let mut response = match self.proxy(request, &started, span).await {
            Ok(response) => response,
            Err(error) => error_response(&error),
        };
        let headers = response.headers_mut();
        // The upstream's own id stays available for support tickets with the provider.
        if let Some(upstream_id) = headers.remove(REQUEST_ID) {
            headers.insert(UPSTREAM_REQUEST_ID, upstream_id);
        }
        if let Ok(value) = HeaderValue::from_str(&started.request_id) {
            headers.insert(REQUEST_ID, value);
        }
        response
    }

    /// The phases in order. A refused call is recorded as a rejection and costs nothing; from
    /// the forward on, the call is settled exactly once whatever happens.
    async fn proxy(
        &self,
        request: Request<Incoming>,
        started: &Started,
        mut span: RequestSpan,
    ) -> Result<Response<ProxyBody>, ApiError> {
        let endpoint = route::route(&request)?;
        let who = auth::authenticate(&self.keys, request.headers(), endpoint, started.at_ms)?;
        let telemetry = self.settler.telemetry.as_ref();
        let gate = self.admission.gate(&who, &request, &self.proxy, telemetry);
        if let Err(refused) = gate {
            return Err(refused.record(telemetry, started, &who, None, span));
        }
        if endpoint == route::Endpoint::ResponsesSocket {
            // The handshake is a request (rate limits), each message a call (everything else).
            if let Err(refused) = self.admission.requests_only(&who.key) {
                return Err(refused.record(telemetry, started, &who, None, span));
            }
            return self.open_socket(request, who, started, span).await;
        }
        let (limit, deadline) = (self.max_body_bytes, self.body_deadline);
        let mut what = inspect::read(request, endpoint, limit, deadline).await?;
        let prices = &self.settler.prices;
        let admitted = match self
            .admission
            .admit(&who, &what, prices, started.at_ms)
            .await
        {
            Ok(admitted) => admitted,
            Err(refused) => {
                let model = what.peek.model.as_deref();
                return Err(refused.record(telemetry, started, &who, model, span));
            }
        };
        if endpoint == route::Endpoint::Batches {
            return self.create_batch(who, what, admitted, started, span).await;
        }
        let strip_usage = what.ask_for_usage(endpoint)?;
        span.inject(&mut what.parts.headers);
        // From here the call may reach the upstream: whatever happens next, including the
        // client leaving before the response headers, it is settled exactly once.
        let asked = Asked {
            media: std::mem::take(&mut what.media),
            n: what.peek.n,
            web_search_tool: what.peek.web_search_tool(),
            chat_search: what.peek.web_search_options.is_some(),
        };
        let mut pending = SettleIfDropped(Some(Pending {
            started: started.clone(),
            who,
            model_requested: what.peek.model.take(),
            request_body: what.read_body().cloned(),
            settler: Arc::clone(&self.settler),
            admitted,
            span,
            asked,
        }));
        let Inspected { parts, body, .. } = what;
        let forwarded = forward::forward(&self.upstream, parts, body).await;
        let Some(pending) = pending.0.take() else {
            return Err(ApiError::internal("a call was settled twice"));
        };
        match forwarded {
            Ok(answer) => Ok(response::metered(answer, strip_usage, pending)),
            Err(unanswered) => {
                let (status, outcome) = (unanswered.error.status, unanswered.outcome);
                pending.settle_unanswered(status, outcome, unanswered.reached_upstream);
                Err(unanswered.error)
            }
        }
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
