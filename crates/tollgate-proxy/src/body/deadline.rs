//! Deadlines on a client's request body: it must arrive whole within a total time, and never
//! go silent for longer than an idle time. hyper bounds how long request headers may take, but
//! not the body: without these, a valid key could hold connections and tasks open forever by
//! sending one byte and then nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::BoxError;

/// The two limits, from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    pub total: Duration,
    pub idle: Duration,
}

/// The body did not arrive in time; the client gets a 408.
#[derive(Debug, thiserror::Error)]
pub enum BodyTimedOut {
    #[error("the request body did not arrive within {0:?}")]
    Total(Duration),
    #[error("the request body stalled: nothing arrived for {0:?}")]
    Idle(Duration),
}

/// A request body under a [`BodyDeadline`]. The timer is armed only when the body is polled and
/// has nothing ready, so a body that arrives with its headers costs no timer at all.
#[derive(Debug)]
pub struct DeadlineBody<B> {
    inner: B,
    limits: BodyDeadline,
    started: Instant,
    last_frame: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limits: BodyDeadline) -> DeadlineBody<B> {
        let now = Instant::now();
        DeadlineBody {
            inner,
            limits,
            started: now,
            last_frame: now,
            timer: None,
        }
    }

    /// Which limit comes first from here, and when.
    fn next_deadline(&self) -> (Instant, BodyTimedOut) {
        let total = self.started + self.limits.total;
        let idle = self.last_frame + self.limits.idle;
        if total <= idle {
            (total, BodyTimedOut::Total(self.limits.total))
        } else {
            (idle, BodyTimedOut::Idle(self.limits.idle))
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
                let (at, _) = this.next_deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    let (_, why) = this.next_deadline();
                    return Poll::Ready(Some(Err(Box::new(why))));
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
