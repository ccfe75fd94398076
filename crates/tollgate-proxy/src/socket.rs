//! The Responses API over WebSocket, the transport Codex prefers: the same phases as an HTTP
//! call, run once per `response.create` message rather than once per request.
//!
//! ```text
//! client ─ GET /v1/responses + Upgrade: websocket
//!        ─► route, auth (a bad key: 401, no upgrade), gate, rate limit     (lib.rs)
//!        ─► open the upstream socket; a refusal (401, 426, 429 …) goes back as it came
//!        ─► 101, with the upstream's headers (x-codex-turn-state, x-models-etag, …)
//!        ─► relay, one task per socket                                     (relay.rs)
//!             client message  → response.create? key still valid, admit (model, rate, budget)
//!                               → forwarded as it came, or refused in-band (message.rs)
//!             upstream event  → metered into the oldest call in flight; its terminal event
//!                               settles it                                 (calls.rs)
//!             either side ends → every call in flight settles, estimated
//! ```
//! Frames pass through as tungstenite read them (a text frame's bytes are never re-encoded);
//! one loop serves both directions, so a side that stops reading slows the other down rather
//! than filling memory.

pub mod calls;
pub mod message;
pub mod relay;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tollgate_core::ApiError;
use tollgate_telemetry::RequestSpan;

use crate::Gateway;
use crate::attribution::Started;
use crate::auth::Authed;
use crate::headers::{strip_client_credentials, strip_hop_by_hop};
use crate::response::ProxyBody;
use crate::upstream::socket::SocketRefused;
use relay::Relay;

/// The sockets open on this gateway, so shutdown can close them (and settle their calls)
/// before the ledger is flushed.
#[derive(Default)]
pub struct Sockets {
    tracker: TaskTracker,
    /// Shutdown began: answer what is in flight, take no new call, then close (1001).
    closing: CancellationToken,
    /// The drain deadline passed: close now.
    stop: CancellationToken,
}

impl Sockets {
    /// Lets every socket finish the calls it has in flight for up to `timeout`, taking no new
    /// ones, then closes what is left. Their calls are settled when this returns.
    pub async fn drain(&self, timeout: Duration) {
        self.closing.cancel();
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_err()
        {
            self.stop.cancel();
            self.tracker.wait().await;
        }
    }

    /// Sockets open now.
    pub fn open(&self) -> usize {
        self.tracker.len()
    }
}

/// Largest frame the upstream may send: a `response.completed` repeats the whole output.
const MAX_UPSTREAM_MESSAGE: usize = 64 * 1024 * 1024;
/// Each socket's read buffer (tungstenite's default of 128 KiB, allocated up front, would make
/// an idle Codex session cost a quarter megabyte).
const READ_BUFFER: usize = 16 * 1024;

impl Gateway {
    /// Takes a client's upgrade on `GET /v1/responses`: the upstream's socket is opened first,
    /// so a refusal there reaches the client as a plain HTTP answer, before any upgrade.
    pub(crate) async fn open_socket(
        &self,
        mut request: Request<Incoming>,
        who: Authed,
        started: &Started,
        mut span: RequestSpan,
    ) -> Result<Response<ProxyBody>, ApiError> {
        let accept = client_accept_key(&request)?;
        let on_upgrade = hyper::upgrade::on(&mut request);
        let (parts, _body) = request.into_parts();
        let handshake_headers = parts.headers.clone();
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        strip_client_credentials(&mut headers);
        span.inject(&mut headers);
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let upstream_config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(MAX_UPSTREAM_MESSAGE))
            .max_frame_size(Some(MAX_UPSTREAM_MESSAGE));
        let (upstream, upstream_headers) = match self
            .upstream
            .open_socket(path, headers, upstream_config)
            .await
        {
            Ok(opened) => opened,
            Err(SocketRefused::Answered(answer)) => return Ok(passed_back(answer)),
            Err(SocketRefused::Unanswered(error)) => return Err(error),
        };
        let limit = usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX);
        let client_config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit));
        let relay = Relay {
            who,
            handshake: handshake_headers,
            keys: Arc::clone(&self.keys),
            admission: Arc::clone(&self.admission),
            settler: Arc::clone(&self.settler),
            idle: self.upstream.stream_idle_timeout(),
            max_message: limit,
            closing: self.sockets.closing.clone(),
            stop: self.sockets.stop.clone(),
        };
        tracing::debug!(request_id = %started.request_id, "websocket opened");
        self.sockets.tracker.spawn(async move {
            let client = match on_upgrade.await {
                Ok(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    WebSocketStream::from_raw_socket(io, Role::Server, Some(client_config)).await
                }
                Err(e) => {
                    return tracing::debug!(error = %e, "the client never completed its upgrade");
                }
            };
            relay.run(client, upstream).await;
        });
        Ok(switching(&accept, upstream_headers))
    }
}

/// The `Sec-WebSocket-Accept` for a well-formed client handshake, or why it is not one.
fn client_accept_key<B>(request: &Request<B>) -> Result<String, ApiError> {
    let headers = request.headers();
    let bad = |why: &str| {
        ApiError::new(
            400,
            "invalid_request_error",
            "invalid_websocket_handshake",
            format!("This is not a valid WebSocket handshake: {why}."),
        )
    };
    if request.version() != http::Version::HTTP_11 {
        return Err(bad("a WebSocket handshake needs HTTP/1.1"));
    }
    let upgrade_listed = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !upgrade_listed {
        return Err(bad("'Connection' does not list 'Upgrade'"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(bad("'Sec-WebSocket-Version' must be 13"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| bad("'Sec-WebSocket-Key' is missing"))?;
    Ok(derive_accept_key(key.as_bytes()))
}

/// The 101 the client gets: the upstream's headers (turn state, models etag, …) without
/// those of the upstream's own handshake.
fn switching(accept: &str, mut upstream: http::HeaderMap) -> Response<ProxyBody> {
    strip_hop_by_hop(&mut upstream);
    for name in [
        header::SEC_WEBSOCKET_ACCEPT,
        header::SEC_WEBSOCKET_EXTENSIONS,
        header::CONTENT_LENGTH,
    ] {
        upstream.remove(name);
    }
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    upstream.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    upstream.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(accept) {
        upstream.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    *response.headers_mut() = upstream;
    response
}

/// The upstream's refusal of the handshake, as the client gets it.
fn passed_back(answer: Response<Bytes>) -> Response<ProxyBody> {
    let (mut parts, body) = answer.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, ProxyBody::full(body))
}
