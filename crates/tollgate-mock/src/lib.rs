//! tollgate-mock: a fake OpenAI upstream that speaks the wire format exactly and costs little.
//!
//! Used by tollgate's own tests (there is no internet), shipped to users for their CI as
//! `tollgate mock-upstream --listen …`, and used by the benchmarks, so it must stay much
//! cheaper than the gateway it is measured against.
//!
//! ```text
//! accept (server) → route::handle: record → knobs (options + x-mock-* headers)
//!     → fail? → endpoint (responses | chat | completions | embeddings | models | moderations
//!                         | images | audio | transcribe | files | batches)
//!     → first-byte delay → JSON / raw body, or an SSE body generating one event per poll (body)
//!   └ GET /v1/responses + Upgrade: websocket → websocket: handshake → session (reader → writer)
//! ```
//!
//! Per-request header switches (they pass through the gateway): `x-mock-chunk-delay-ms`,
//! `x-mock-first-byte-delay-ms`, `x-mock-status`, `x-mock-cut-after`, `x-mock-no-usage: 1`, `x-mock-malformed` (broken SSE or truncated JSON),
//! `x-mock-deltas`, `x-mock-builtin-calls` and `x-mock-containers` (hosted tool calls, see
//! `builtin`). Control endpoints: `GET /__mock/requests`, `DELETE /__mock/requests`,
//! `GET /__mock/stats`, and `POST /__mock/batches/{id}/complete`, `…/cancel-partly?lines=N`,
//! `…/expire?lines=N` (see `batches`).
//!
//! Files and batches live in memory for the life of the server. Image, audio and transcript
//! usage follow the formulas documented in `images::tokens`, `audio` and `transcribe`.
//!
//! Scripted turns for agents: a last user message containing `mock:exec` gets an
//! `exec_command` function call, `mock:patch` an `apply_patch` custom tool call, and a
//! request whose last item is a tool result gets the text `done`.
//!
//! # Responses over WebSocket (Codex's transport)
//!
//! `GET /v1/responses` with `Upgrade: websocket` and `Authorization: Bearer …` (missing: a
//! plain 401, no upgrade) switches to WebSocket (no permessage-deflate). The 101 carries
//! `x-request-id`, `x-codex-turn-state` (echoed, else `ts_<n>`), `x-models-etag:
//! "mock-models-1"` and `x-reasoning-included: true`. The client sends one JSON object per
//! text frame: `{"type":"response.create", …a Responses body…}` (`stream` and `background`
//! are ignored); the mock answers them one at a time, in arrival order, each event as one text
//! frame holding exactly the JSON the SSE stream puts after `data: ` — same script, same
//! usage (the frame's length is the body length of the usage formula). `response.processed`
//! and `response.append` are ignored; another `type`, a frame that is not JSON or a binary
//! frame gets an in-band error, `{"type":"error","status":400,"error":{"type",
//! "code","message","param"},"headers":{}}`, and the connection stays open.
//!
//! - `"generate": false` (a prewarm): `response.created`, then `response.completed` with no
//!   output and input-only usage (`output_tokens` 0).
//! - `previous_response_id` must name one of the last [`WS_REMEMBERED_RESPONSES`] responses
//!   completed on the same connection, else the in-band 400 `previous_response_not_found`.
//!   A request continuing one without a user message of its own (Codex after a prewarm)
//!   continues its script.
//! - The handshake's `x-mock-*` headers apply to every response on the connection:
//!   `x-mock-status` (4xx/5xx) refuses the handshake itself as plain HTTP, e.g. `426`;
//!   `x-mock-cut-after: N` drops the connection after N events of a response;
//!   `x-mock-malformed` sends broken frames, then drops it; the delays pace each response.
//! - `x-mock-ws-max-responses: N` (or [`MockOptions::ws_max_responses`]): after N responses
//!   the next `response.create` gets the in-band 400 `websocket_connection_limit_reached`,
//!   then a close frame 1000.
//! - In the last user message (Codex cannot set headers per request): `mock:ws-cut` drops the
//!   connection after [`WS_CUT_EVENTS`] events, without a close frame; `mock:ws-error` gets
//!   the in-band 500 `server_error` instead of a response; `mock:ws-failed` gets
//!   `response.failed` (`response.error.code` `server_error`, input-only usage). Over HTTP
//!   these are plain text turns.
//!
//! Each `response.create` is recorded as a request with `transport: "websocket"`, the
//! handshake's method, path and headers and the frame as body; `/__mock/stats` counts
//! `ws_connections_opened`, `ws_connections_open`, `ws_responses` and
//! `ws_responses_cancelled`.

mod answer;
mod audio;
mod batches;
mod body;
mod builtin;
mod chat;
mod completions;
mod control;
mod embeddings;
mod files;
mod images;
mod models;
mod moderations;
mod multipart;
mod request;
mod responses;
mod route;
mod server;
mod state;
mod transcribe;
mod websocket;
mod wire;

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use answer::{
    DONE_TEXT, EXEC_ARGUMENTS, MockUsage, PATCH_INPUT, REASONING_TOKENS, SENTENCE, SENTENCE_PIECES,
    answer_text,
};
pub use audio::speech_duration_ms;
pub use builtin::{INTERPRETER_CODE, WEB_SEARCH_QUERY};
pub use chat::CITATION_URL;
pub use embeddings::embedding_value;
pub use models::MODELS;
pub use state::{RecordedRequest, Transport};
pub use transcribe::{TRANSCRIPT, audio_duration_ms};
pub use websocket::{MODELS_ETAG, WS_CUT_EVENTS, WS_REMEMBERED_RESPONSES};

use state::State;

/// How the mock behaves unless a request's `x-mock-*` headers say otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockOptions {
    /// Delay between SSE events (`x-mock-chunk-delay-ms`).
    pub chunk_delay: Duration,
    /// Delay before the response headers (`x-mock-first-byte-delay-ms`).
    pub first_byte_delay: Duration,
    /// Answer every request with this status and an OpenAI-shaped error (`x-mock-status`).
    /// Only 4xx and 5xx take effect, so `x-mock-status: 200` exempts one request.
    pub fail_status: Option<u16>,
    /// Abort the connection after this many SSE events, without a clean end (`x-mock-cut-after`).
    pub cut_after_events: Option<usize>,
    /// Report no usage at all, in streams and JSON (`x-mock-no-usage: 1`).
    pub no_usage: bool,
    /// Text deltas per streamed answer, and the `deltas` of the usage formula (`x-mock-deltas`).
    pub deltas: usize,
    /// Keep the last 1000 requests for [`MockServer::requests`] and `GET /__mock/requests`.
    pub record: bool,
    /// Complete a batch the first time it is retrieved (`GET /v1/batches/{id}`), so a user's
    /// CI can poll a batch to its end without calling the `/__mock/batches/…` controls.
    pub batch_auto_complete: bool,
    /// Responses one Responses WebSocket connection answers; the next `response.create`
    /// gets the in-band `websocket_connection_limit_reached` error and the socket is closed
    /// (`x-mock-ws-max-responses` on the handshake). `None`: no limit.
    pub ws_max_responses: Option<usize>,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            chunk_delay: Duration::ZERO,
            first_byte_delay: Duration::ZERO,
            fail_status: None,
            cut_after_events: None,
            no_usage: false,
            deltas: 20,
            record: true,
            batch_auto_complete: false,
            ws_max_responses: None,
        }
    }
}

/// Binds `addr` and serves in a background task; returns as soon as the port is bound.
/// Dropping the returned [`MockServer`] shuts the server down.
pub async fn start(addr: SocketAddr, opts: MockOptions) -> std::io::Result<MockServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State::new(opts));
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, Arc::clone(&state), async move {
        // Resolves when the sender is used or dropped, i.e. when the MockServer goes away.
        let _ = stopped.await;
    }));
    Ok(MockServer {
        addr,
        state,
        _shutdown: shutdown,
    })
}

/// Binds `addr` and serves until `shutdown` resolves, then drains open connections.
/// Prints nothing: the caller (the CLI) reports the address.
pub async fn run(
    addr: SocketAddr,
    opts: MockOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    server::serve(listener, Arc::new(State::new(opts)), shutdown).await;
    Ok(())
}

/// A running mock upstream; shut down when dropped.
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<State>,
    _shutdown: oneshot::Sender<()>,
}

impl MockServer {
    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1` (a wildcard bind address is reported as loopback).
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                Ipv6Addr::LOCALHOST.into()
            });
        }
        format!("http://{addr}/v1")
    }

    /// Recorded requests, oldest first (the last 1000; empty when `record` is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// Waits until at least `n` requests (control endpoints excluded) arrived since start or
    /// the last [`clear`](Self::clear); `false` on timeout. Works with `record` off too.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.state
            .wait_until(timeout, |s| s.requests >= n as u64)
            .await
    }

    /// Streams whose response began.
    pub fn streams_started(&self) -> u64 {
        self.state.stats().streams_started
    }

    /// Streams fully written and ended cleanly.
    pub fn streams_completed(&self) -> u64 {
        self.state.stats().streams_completed
    }

    /// Streams the client abandoned before their end (their body was dropped unfinished).
    /// Streams cut on purpose (`cut_after_events`) are not counted.
    pub fn streams_cancelled(&self) -> u64 {
        self.state.stats().streams_cancelled
    }

    /// Waits until at least `n` streams were cancelled; `false` on timeout.
    pub async fn wait_for_cancelled(&self, n: u64, timeout: Duration) -> bool {
        self.state
            .wait_until(timeout, |s| s.streams_cancelled >= n)
            .await
    }

    /// Responses WebSocket connections accepted (answered 101).
    pub fn ws_connections_opened(&self) -> u64 {
        self.state.stats().ws_connections_opened
    }

    /// Responses WebSocket connections open now.
    pub fn ws_connections_open(&self) -> u64 {
        self.state.stats().ws_connections_open
    }

    /// Responses streamed over WebSocket to their terminal event (completed or failed).
    pub fn ws_responses(&self) -> u64 {
        self.state.stats().ws_responses
    }

    /// WebSocket responses whose client went away before their terminal event.
    pub fn ws_responses_cancelled(&self) -> u64 {
        self.state.stats().ws_responses_cancelled
    }

    /// Waits until exactly `n` Responses WebSocket connections are open; `false` on timeout.
    pub async fn wait_for_ws_connections_open(&self, n: u64, timeout: Duration) -> bool {
        self.state
            .wait_until(timeout, |s| s.ws_connections_open == n)
            .await
    }

    /// Forgets recorded requests and zeroes the request, stream and WebSocket counters (the
    /// number of open connections stays).
    pub fn clear(&self) {
        self.state.clear();
    }
}
