//! What the client gets back: the upstream's response with its body metered on the way, or a
//! JSON body tollgate built itself (errors, admin API, health).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use tollgate_core::ApiError;

use crate::body::BoxError;
use crate::forward::UpstreamStream;
use crate::meter::Metered;
use crate::settle::Pending;

/// What the gateway sends back to its client: a buffer it built itself (errors, admin JSON) or
/// the upstream's body, frame by frame as it arrives.
#[derive(Debug)]
pub enum ProxyBody {
    Full(Option<Bytes>),
    Upstream(Box<Metered<Pending>>),
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
        let bytes = bytes.into();
        ProxyBody::Full((!bytes.is_empty()).then_some(bytes))
    }

    pub fn empty() -> ProxyBody {
        ProxyBody::Full(None)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(body) => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Upstream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ProxyBody::Upstream(body) => body.size_hint(),
        }
    }
}

/// The upstream's response as the client gets it: tollgate's rate-limit headers in, its body
/// metered on the way to `pending`. `strip`: tollgate asked for usage the client did not.
pub fn metered(
    response: Response<UpstreamStream>,
    rate_headers: Vec<(&'static str, String)>,
    strip: bool,
    pending: Pending,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    let sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    for (name, value) in rate_headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            parts.headers.insert(name, value);
        }
    }
    if strip {
        // The client will get fewer bytes than the upstream sent.
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    let (status, endpoint, started) = (parts.status.as_u16(), pending.endpoint, pending.started);
    let metered = Metered::new(body, status, endpoint, sse, strip, started, pending);
    Response::from_parts(parts, ProxyBody::Upstream(Box::new(metered)))
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
