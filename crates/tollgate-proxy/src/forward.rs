//! Phase 3, forward: build the upstream request from the client's, send it, and hand back the
//! upstream's response with its body untouched (frames pass through as they arrive; a client
//! that goes away drops the body, which closes the upstream stream).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response};
use http_body_util::Limited;
use hyper::body::Incoming;

use crate::body::{UpstreamBody, UpstreamStream};
use crate::deadline::DeadlineBody;
use crate::headers::{strip_client_credentials, strip_hop_by_hop};
use crate::upstream::{Unanswered, Upstream};

/// The body to send upstream, as the inspect phase left it.
pub enum OutgoingBody {
    /// Read and possibly decoded: sent with an exact length.
    Read { body: Bytes, decoded: bool },
    /// Not read (free and allowed-unmetered endpoints): streamed under the size limit and the
    /// body deadlines.
    Streamed {
        body: DeadlineBody<Incoming>,
        limit: u64,
    },
}

pub async fn forward(
    upstream: &Upstream,
    mut parts: Parts,
    body: OutgoingBody,
) -> Result<Response<UpstreamStream>, Unanswered> {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri = upstream
        .uri_for(path_and_query)
        .map_err(Unanswered::not_sent)?;
    strip_hop_by_hop(&mut parts.headers);
    strip_client_credentials(&mut parts.headers);
    let mut limit = u64::MAX;
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
        OutgoingBody::Streamed { body, limit: max } => {
            limit = max;
            UpstreamBody::Streamed(Limited::new(
                body,
                usize::try_from(max).unwrap_or(usize::MAX),
            ))
        }
    };
    let mut request = Request::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.headers_mut() = parts.headers;

    let response = upstream.send(request, limit).await?;
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        UpstreamStream::new(body, upstream.stream_idle_timeout()),
    ))
}
