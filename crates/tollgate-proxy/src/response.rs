//! What the client gets back: the upstream's response with its body metered on the way, or a
//! JSON body tollgate built itself (errors, admin API, health).

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use tollgate_core::ApiError;

use crate::body::Relay;
use crate::forward::UpstreamStream;
use crate::meter::{Content, Metered};
use crate::settle::Pending;

/// What the gateway sends back to its client: a buffer it built itself (errors, admin JSON) or
/// the upstream's body, metered frame by frame as it arrives.
pub type ProxyBody = Relay<Box<Metered<Pending>>>;

/// The upstream's response as the client gets it: tollgate's rate-limit headers in, its body
/// metered on the way to `pending`. `strip`: tollgate asked for usage the client did not.
pub fn metered(
    response: Response<UpstreamStream>,
    strip: bool,
    mut pending: Pending,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    let content_type = parts.headers.get(header::CONTENT_TYPE);
    let content = Content::of(content_type.and_then(|v| v.to_str().ok()));
    // tollgate's limits, not the upstream organisation's, are the ones this client has.
    let rate_headers = pending.admitted.rate.as_mut().map(|r| r.headers.drain(..));
    for (name, value) in rate_headers.into_iter().flatten() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            parts.headers.insert(name, value);
        }
    }
    if strip {
        // The client will get fewer bytes than the upstream sent.
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    let (status, endpoint, started) = (
        parts.status.as_u16(),
        pending.who.endpoint,
        pending.started.at,
    );
    let metered = Metered::new(body, status, endpoint, content, strip, started, pending);
    Response::from_parts(parts, ProxyBody::Streamed(Box::new(metered)))
}

/// An OpenAI-shaped JSON error response.
pub fn error_response(error: &ApiError) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, error.to_json());
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
