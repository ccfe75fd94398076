//! Body types for both legs of a proxied call, as enums rather than boxed trait objects so
//! passing a frame through costs one match and no allocation.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use std::future::Future;

use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::deadline::{BodyTimedOut, DeadlineBody};
use crate::meter::Metered;

use tollgate_core::ApiError;

/// What the gateway sends back to its client: a buffer it built itself (errors, admin JSON) or
/// the upstream's body, frame by frame as it arrives.
#[derive(Debug)]
pub enum ProxyBody {
    Full(Option<Bytes>),
    Upstream(Box<Metered>),
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

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the gateway sends upstream: a body it read (to inspect, decode or rewrite) or the
/// client's body streamed through under the size limit and the body deadlines.
#[derive(Debug)]
pub enum UpstreamBody {
    Full(Option<Bytes>),
    Streamed(Limited<DeadlineBody<Incoming>>),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            UpstreamBody::Streamed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Full(bytes) => bytes.is_none(),
            UpstreamBody::Streamed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            UpstreamBody::Streamed(body) => body.size_hint(),
        }
    }
}

/// Reads a whole request body, refusing past `limit` bytes with a 413 before reading further.
pub async fn read_limited<B>(body: B, limit: u64) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let body = Limited::new(body, limit_usize);
    let declared = body.size_hint().exact();
    let mut body = std::pin::pin!(body);
    // One buffer, sized up front when the length is declared, that frames are appended to as
    // they arrive (and then freed): collecting the frames first and joining them at the end
    // would hold every large body twice.
    let mut only: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(&*e, limit))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        match (&mut joined, only.take()) {
            (Some(buf), _) => buf.extend_from_slice(&data),
            (None, None) => only = Some(data),
            (None, Some(first)) => {
                let capacity = declared
                    .map_or(0, |n| n as usize)
                    .max(first.len() + data.len());
                let mut buf = BytesMut::with_capacity(capacity.min(limit_usize));
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    Ok(joined.map_or_else(|| only.unwrap_or_default(), BytesMut::freeze))
}

/// The client-facing error for a request body that failed while being read or forwarded:
/// 413 past the size limit, 408 past a body deadline, 400 for anything else.
pub fn body_error(error: &(dyn std::error::Error + 'static), limit: u64) -> ApiError {
    if error.is::<http_body_util::LengthLimitError>() {
        return ApiError::body_too_large(limit);
    }
    if let Some(timeout) = error.downcast_ref::<BodyTimedOut>() {
        return ApiError::new(
            408,
            "invalid_request_error",
            "request_timeout",
            format!("{timeout}; tollgate closed the request."),
        );
    }
    ApiError::new(
        400,
        "invalid_request_error",
        "body_read_failed",
        format!("The request body could not be read: {error}."),
    )
}
