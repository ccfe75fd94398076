//! The Responses API over WebSocket, the transport Codex tries first: `GET /v1/responses`
//! upgraded, then one `response.create` JSON object per client text frame, and one streaming
//! event per server text frame — exactly the JSON the SSE stream carries after `data: `.
//!
//! ```text
//! handshake: Bearer auth (401) → x-mock-status (plain HTTP) → 101 + x-request-id,
//!            x-codex-turn-state, x-models-etag, x-reasoning-included → session
//! session:   reader (record, read each frame on arrival) ─FIFO queue→ writer (one response
//!            at a time: limit → previous_response_id → script → events → terminal event)
//! ```
//!
//! The `x-mock-*` headers of the handshake apply to every response on the connection; the
//! `mock:ws-*` words of a last user message script one response (Codex cannot set headers
//! per request).

mod frames;
mod session;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::body::MockBody;
use crate::route::{Knobs, json_response, recorded};
use crate::state::{State, Transport};
use crate::wire::{error_json, failure_json};

pub use session::{WS_CUT_EVENTS, WS_REMEMBERED_RESPONSES};

/// The `x-models-etag` of the 101 answer (an entity tag, quotes included).
pub const MODELS_ETAG: &str = "\"mock-models-1\"";

/// OpenAI's answer to a request without an API key.
const NO_KEY: &str = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";

/// An HTTP/1.1 `GET /v1/responses` asking to switch to WebSocket.
pub(crate) fn is_handshake(req: &Request<Incoming>) -> bool {
    req.method() == Method::GET
        && req.version() == Version::HTTP_11
        && req.uri().path() == "/v1/responses"
        && req
            .headers()
            .get(UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Answers the handshake: 101 and a session task, or a plain HTTP refusal (recorded as an
/// HTTP request, like any other). permessage-deflate is never negotiated.
pub(crate) fn handshake(state: Arc<State>, mut req: Request<Incoming>) -> Response<MockBody> {
    let knobs = Knobs::new(&state.opts, req.headers());
    let turn_state = req.headers().get("x-codex-turn-state").cloned();
    let key = match check(req.headers(), &knobs) {
        Ok(key) => key,
        Err((status, json)) => {
            let (parts, _) = req.into_parts();
            state.record(|| recorded(&parts, Bytes::new(), Transport::Http));
            let mut refusal = json_response(status, json.into());
            let headers = refusal.headers_mut();
            if status == StatusCode::UPGRADE_REQUIRED {
                headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
            headers.insert("x-request-id", HeaderValue::from(state.next_id()));
            if let Some(turn_state) = turn_state {
                headers.insert("x-codex-turn-state", turn_state);
            }
            return refusal;
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _) = req.into_parts();
    // Counted (and subscribed to shutdown) before the 101 goes out, so a client that has
    // its answer also sees the connection in the stats.
    let session = session::Session::new(Arc::clone(&state), knobs, &parts);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => session.run(TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "mock upstream WebSocket upgrade failed"),
        }
    });

    let mut response = Response::new(MockBody::full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::try_from(derive_accept_key(key.as_bytes())) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    headers.insert("x-request-id", HeaderValue::from(state.next_id()));
    // Codex's sticky-routing token: echoed, or issued when the client brought none.
    let turn_state =
        turn_state.or_else(|| HeaderValue::try_from(format!("ts_{}", state.next_id())).ok());
    if let Some(turn_state) = turn_state {
        headers.insert("x-codex-turn-state", turn_state);
    }
    headers.insert("x-models-etag", HeaderValue::from_static(MODELS_ETAG));
    headers.insert("x-reasoning-included", HeaderValue::from_static("true"));
    response
}

/// The handshake's `Sec-WebSocket-Key`, or the status and JSON error that refuse it.
fn check(headers: &HeaderMap, knobs: &Knobs) -> Result<HeaderValue, (StatusCode, Vec<u8>)> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| !key.trim().is_empty());
    if !bearer {
        let json = error_json(NO_KEY, "invalid_request_error", None);
        return Err((StatusCode::UNAUTHORIZED, json));
    }
    if let Some(status) = knobs.fail_status {
        return Err((status, failure_json(status)));
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        let message = "WebSocket handshake without Sec-WebSocket-Key.";
        let json = error_json(message, "invalid_request_error", None);
        return Err((StatusCode::BAD_REQUEST, json));
    };
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let message = "Unsupported Sec-WebSocket-Version; use 13.";
        let json = error_json(message, "invalid_request_error", None);
        return Err((StatusCode::UPGRADE_REQUIRED, json));
    }
    Ok(key.clone())
}
