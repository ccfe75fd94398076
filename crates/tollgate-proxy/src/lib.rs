//! tollgate's hot path: every proxied OpenAI call goes through [`Gateway::handle`].
//!
//! ```text
//! client ─► server (hyper: HTTP/1.1 + h2, optional TLS)
//!        ─► route    /v1/* only; WebSocket upgrade → 426 so Codex falls back to HTTP
//!        ─► auth     Bearer team key → SHA-256 → in-memory KeyCache            (auth.rs)
//!        ─► inspect  read + decode the JSON body once, peek model/stream       (inspect.rs)
//!        ─► forward  swap in the upstream key, stream the response back        (forward.rs)
//! ```
//! Nothing here touches the database: the key cache is filled and kept fresh by the store.

pub mod auth;
pub mod body;
pub mod first_byte;
pub mod forward;
pub mod headers;
pub mod inspect;
pub mod route;
pub mod server;
pub mod upstream;

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use tollgate_core::{ApiError, KeyCache};

pub use body::ProxyBody;
use forward::OutgoingBody;
use route::Endpoint;
pub use upstream::{Upstream, UpstreamSetupError};

/// Everything the hot path needs, shared by all connections.
pub struct Gateway {
    pub keys: Arc<KeyCache>,
    pub upstream: Upstream,
    pub max_body_bytes: u64,
}

impl Gateway {
    /// Handles one `/v1/*` request. Every failure becomes an OpenAI-shaped error response.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        match self.proxy(request).await {
            Ok(response) => response,
            Err(error) => error_response(&error),
        }
    }

    async fn proxy(&self, request: Request<Incoming>) -> Result<Response<ProxyBody>, ApiError> {
        let endpoint = Endpoint::classify(request.method(), request.uri().path());
        if headers::wants_websocket(request.headers()) {
            return Err(ApiError::websocket_unsupported());
        }
        let key = auth::authenticate(&self.keys, request.headers(), tollgate_core::time::now_ms())?;
        let (parts, body) = request.into_parts();
        let outgoing = if endpoint.reads_body() {
            let raw = body::read_limited(body, self.max_body_bytes).await?;
            let encoding = parts
                .headers
                .get(header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok());
            let inspected = inspect::inspect(raw, encoding, self.max_body_bytes)?;
            tracing::debug!(team = %key.team.name, key = %key.id, endpoint = endpoint.label(),
                model = inspected.peek.model.as_deref().unwrap_or(""), stream = inspected.peek.stream, "forwarding");
            OutgoingBody::Read {
                body: inspected.body,
                decoded: inspected.decoded,
            }
        } else {
            if declared_length(&parts.headers).is_some_and(|len| len > self.max_body_bytes) {
                return Err(ApiError::body_too_large(self.max_body_bytes));
            }
            OutgoingBody::Streamed {
                body,
                limit: self.max_body_bytes,
            }
        };
        forward::forward(&self.upstream, parts, outgoing).await
    }
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
