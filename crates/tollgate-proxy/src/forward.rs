//! Phase 3, forward: build the upstream request from the client's, send it, and hand back the
//! upstream's response with its body untouched (frames pass through as they arrive; a client
//! that goes away drops the body, which closes the upstream stream).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response};
use http_body_util::Limited;
use hyper::body::Incoming;

use tollgate_core::ApiError;

use crate::body::{UpstreamBody, UpstreamStream};
use crate::headers::strip_hop_by_hop;
use crate::upstream::Upstream;

/// The body to send upstream, as the inspect phase left it.
pub enum OutgoingBody {
    /// Read and possibly decoded: sent with an exact length.
    Read { body: Bytes, decoded: bool },
    /// Not read (pass-through endpoints): streamed under the size limit.
    Streamed { body: Incoming, limit: u64 },
}

pub async fn forward(
    upstream: &Upstream,
    mut parts: Parts,
    body: OutgoingBody,
) -> Result<Response<UpstreamStream>, ApiError> {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri = upstream.uri_for(path_and_query)?;
    strip_hop_by_hop(&mut parts.headers);
    let body = match body {
        OutgoingBody::Read { body, decoded } => {
            if decoded {
                parts.headers.remove(header::CONTENT_ENCODING);
            }
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            UpstreamBody::Full((!body.is_empty()).then_some(body))
        }
        OutgoingBody::Streamed { body, limit } => UpstreamBody::Streamed(Limited::new(
            body,
            usize::try_from(limit).unwrap_or(usize::MAX),
        )),
    };
    let mut request = Request::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.headers_mut() = parts.headers;

    let response = upstream.send(request).await?;
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        UpstreamStream::new(body, upstream.stream_idle_timeout()),
    ))
}
