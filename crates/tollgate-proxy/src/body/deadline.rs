//! Deadlines on a body in flight. A client's request body must arrive whole within a total
//! time and never go silent for longer than an idle time: hyper bounds how long request headers
//! may take, but not the body, and without these a valid key could hold connections and tasks
//! open forever by sending one byte and then nothing. The upstream's response body has only
//! the idle limit: a stalled stream must not hold a client and a connection forever (Codex
//! itself gives up after 300 s and retries), while a long one that keeps coming is fine.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::BoxError;

/// The two limits on a request body, from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    pub total: Duration,
    pub idle: Duration,
}

/// The body did not arrive in time: for a request body the client gets a 408; an upstream
/// stream is closed.
#[derive(Debug, thiserror::Error)]
pub enum BodyTimedOut {
    #[error("the request body did not arrive within {0:?}")]
    Total(Duration),
    #[error("the request body stalled: nothing arrived for {0:?}")]
    Idle(Duration),
    #[error("the upstream sent nothing for {0:?}; the stream was closed")]
    UpstreamIdle(Duration),
}

/// A body under its deadlines. The timer is armed only when the body is polled and has nothing
/// ready, so a body that arrives whole costs no timer at all; a frame only records its time,
/// so the timer is touched once per idle period rather than once per frame.
#[derive(Debug)]
pub struct DeadlineBody<B> {
    inner: B,
    /// No total for an upstream stream.
    total: Option<Duration>,
    idle: Duration,
    started: Instant,
    last_frame: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    /// A client's request body.
    pub fn new(inner: B, limits: BodyDeadline) -> DeadlineBody<B> {
        DeadlineBody::with(inner, Some(limits.total), limits.idle)
    }

    /// The upstream's response body: only silence ends it.
    pub fn upstream(inner: B, idle: Duration) -> DeadlineBody<B> {
        DeadlineBody::with(inner, None, idle)
    }

    fn with(inner: B, total: Option<Duration>, idle: Duration) -> DeadlineBody<B> {
        let now = Instant::now();
        DeadlineBody {
            inner,
            total,
            idle,
            started: now,
            last_frame: now,
            timer: None,
        }
    }

    /// Which limit comes first from here, and when.
    fn next_deadline(&self) -> (Instant, BodyTimedOut) {
        let idle = self.last_frame + self.idle;
        match self.total {
            None => (idle, BodyTimedOut::UpstreamIdle(self.idle)),
            Some(total) if self.started + total <= idle => {
                (self.started + total, BodyTimedOut::Total(total))
            }
            Some(_) => (idle, BodyTimedOut::Idle(self.idle)),
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.last_frame = Instant::now();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let (at, why) = this.next_deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                // The timer may have been armed before the latest frames: when it fires, check
                // the real deadline and re-arm if it has moved.
                while timer.as_mut().poll(cx).is_ready() {
                    if Instant::now() >= at {
                        return Poll::Ready(Some(Err(Box::new(why))));
                    }
                    timer.as_mut().reset(at);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test bodies are a few bytes
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    type Chunks = StreamBody<tokio_stream_shim::Receiver>;

    mod tokio_stream_shim {
        //! A channel as a body stream, so the test controls when each piece arrives.
        use super::*;
        pub struct Receiver(pub tokio::sync::mpsc::Receiver<Bytes>);
        impl futures_util::Stream for Receiver {
            type Item = Result<Frame<Bytes>, std::convert::Infallible>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
            }
        }
    }

    fn body(limits: BodyDeadline) -> (tokio::sync::mpsc::Sender<Bytes>, DeadlineBody<Chunks>) {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let inner = StreamBody::new(tokio_stream_shim::Receiver(rx));
        (tx, DeadlineBody::new(inner, limits))
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_the_idle_limit() {
        let limits = BodyDeadline {
            total: Duration::from_secs(60),
            idle: Duration::from_secs(2),
        };
        let (tx, body) = body(limits);
        tx.send(Bytes::from_static(b"{")).await.unwrap();
        let err = body.collect().await.unwrap_err();
        assert!(matches!(
            err.downcast_ref::<BodyTimedOut>(),
            Some(BodyTimedOut::Idle(_))
        ));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_fails_at_the_total_limit() {
        let limits = BodyDeadline {
            total: Duration::from_secs(5),
            idle: Duration::from_secs(2),
        };
        let (tx, body) = body(limits);
        let started = Instant::now();
        tokio::spawn(async move {
            // One byte a second never trips the idle limit, only the total one.
            while tx.send(Bytes::from_static(b" ")).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let err = body.collect().await.unwrap_err();
        assert!(matches!(
            err.downcast_ref::<BodyTimedOut>(),
            Some(BodyTimedOut::Total(_))
        ));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_coming_in_time_is_passed_whole() {
        let limits = BodyDeadline {
            total: Duration::from_secs(60),
            idle: Duration::from_secs(2),
        };
        let (tx, body) = body(limits);
        tokio::spawn(async move {
            for piece in [&b"{\"a\""[..], b":", b"1}"] {
                tx.send(Bytes::from_static(piece)).await.unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{\"a\":1}");
    }
}
