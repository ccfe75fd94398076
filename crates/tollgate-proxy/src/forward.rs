//! Phase 3, forward: build the upstream request from the client's, send it, and hand back the
//! upstream's response with its body untouched (frames pass through as they arrive; a client
//! that goes away drops the body, which closes the upstream stream).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Limited;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;
use crate::headers::{strip_client_credentials, strip_hop_by_hop};
use crate::inspect::OutgoingBody;
use crate::upstream::{Unanswered, Upstream, UpstreamBody};

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
        UpstreamStream::new(body, upstream.stream_idle_timeout()),
    ))
}

/// The upstream's response body, passed through untouched, ended with an error when the
/// upstream goes silent for longer than the idle timeout (a stalled stream must not hold a
/// client and a connection forever; Codex itself gives up after 300 s and retries).
#[derive(Debug)]
pub struct UpstreamStream {
    body: Incoming,
    idle_timeout: Duration,
    last_frame: Instant,
    /// Armed lazily: a frame only records its time, so the timer is touched once per timeout
    /// period rather than once per frame.
    timer: Option<Pin<Box<Sleep>>>,
}

/// The upstream sent nothing for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {0:?}; the stream was closed")]
pub struct StreamIdle(pub Duration);

impl UpstreamStream {
    pub fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }

    /// Whether the upstream's body has been read to its end (its whole content-length).
    pub fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    pub fn new(body: Incoming, idle_timeout: Duration) -> UpstreamStream {
        UpstreamStream {
            body,
            idle_timeout,
            last_frame: Instant::now(),
            timer: None,
        }
    }

    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.last_frame = Instant::now();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let (last_frame, idle_timeout) = (self.last_frame, self.idle_timeout);
                let timer = self.timer.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(last_frame + idle_timeout))
                });
                // The timer may have been armed for an earlier frame: when it fires, check the
                // real deadline and re-arm if frames came since. So it is reset at most once per
                // timeout period, not once per frame.
                while timer.as_mut().poll(cx).is_ready() {
                    let deadline = last_frame + idle_timeout;
                    if Instant::now() >= deadline {
                        return Poll::Ready(Some(Err(Box::new(StreamIdle(idle_timeout)))));
                    }
                    timer.as_mut().reset(deadline);
                }
                Poll::Pending
            }
        }
    }
}
