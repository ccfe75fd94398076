//! The client's request body: read whole under the size limit, or held to the body deadlines
//! while it streams through; and the client-facing error when it fails either way.

pub mod deadline;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};

use tollgate_core::ApiError;

pub use deadline::{BodyDeadline, BodyTimedOut, DeadlineBody};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body tollgate built whole, or one it relays frame by frame as it arrives: an enum rather
/// than a boxed trait object, so passing a frame through costs one match and no allocation.
/// Both legs use it: [`crate::upstream::UpstreamBody`] and the client's response body.
#[derive(Debug)]
pub enum Relay<B> {
    Full(Option<Bytes>),
    Streamed(B),
}

impl<B> Relay<B> {
    pub fn full(bytes: impl Into<Bytes>) -> Relay<B> {
        let bytes = bytes.into();
        Relay::Full((!bytes.is_empty()).then_some(bytes))
    }

    pub fn empty() -> Relay<B> {
        Relay::Full(None)
    }
}

impl<B: Body<Data = Bytes, Error = BoxError> + Unpin> Body for Relay<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Relay::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Relay::Streamed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Relay::Full(bytes) => bytes.is_none(),
            Relay::Streamed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Relay::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Relay::Streamed(body) => body.size_hint(),
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
