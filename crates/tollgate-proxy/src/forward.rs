//! Phase 4, forward: build the upstream request from the client's, send it, and hand back the
//! upstream's response with its body untouched (frames pass through as they arrive; a client
//! that goes away drops the body, which closes the upstream stream).

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response};
use http_body_util::Limited;

use crate::body::DeadlineBody;
use crate::headers::{strip_client_credentials, strip_hop_by_hop};
use crate::inspect::OutgoingBody;
use crate::upstream::{PooledBody, Unanswered, Upstream, UpstreamBody};

/// The upstream's response body, passed through untouched, ended with an error when the
/// upstream goes silent for longer than the stream idle timeout.
pub type UpstreamStream = DeadlineBody<PooledBody>;

/// Sends the request upstream; the response comes back with its body not yet read.
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
            UpstreamBody::full(body)
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
        DeadlineBody::upstream(body, upstream.stream_idle_timeout()),
    ))
}
