//! Response bodies: a fixed JSON body, or an SSE stream generated one event per poll.
//!
//! The stream produces an event only when hyper asks for the next frame, so a slow client
//! holds the generator back (backpressure) and nothing is buffered ahead. Dropping the body
//! before it ended is how a vanished client shows up: that counts as a cancelled stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::state::State;
use crate::wire::Framing;
use crate::{chat, completions, responses};

/// Why a mock body ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// `cut_after_events` / `x-mock-cut-after` asked for an aborted connection.
    #[error("stream cut after {0} events on purpose (x-mock-cut-after)")]
    Cut(usize),
}

/// The event generator behind one stream; each knows its endpoint's wire format.
pub(crate) enum Script {
    /// Boxed: with its hosted tool calls it is the largest script by far.
    Responses(Box<responses::Stream>),
    Chat(chat::Stream),
    Completions(completions::Stream),
    /// A short stream rendered up front (images, audio, transcripts), one entry per event.
    Prerendered(Vec<Vec<u8>>),
    /// `x-mock-malformed`: SSE that breaks the wire format (truncated JSON, a bare line, a
    /// data line that is not JSON) and no terminating event, for gateways' fault tests.
    Malformed,
}

impl Script {
    /// Appends event `index` to `out`; `false` once the stream has no more events.
    fn write_event(&self, index: usize, out: &mut Vec<u8>) -> bool {
        match self {
            Script::Responses(s) => s.write_event(index, Framing::Sse, out),
            Script::Chat(s) => s.write_event(index, out),
            Script::Completions(s) => s.write_event(index, out),
            Script::Prerendered(events) => match events.get(index) {
                Some(event) => {
                    out.extend_from_slice(event);
                    true
                }
                None => false,
            },
            Script::Malformed => {
                let event: &[u8] = match index {
                    0 => b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_x\"\n\n",
                    1 => b"this line is not SSE at all\n\n",
                    2 => b"event: response.output_text.delta\ndata: not json either\n\n",
                    3 => b"data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":\"many\"}}}\n\n",
                    _ => return false,
                };
                out.extend_from_slice(event);
                true
            }
        }
    }
}

/// Per-stream timing and failure knobs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    pub chunk_delay: Duration,
    pub cut_after: Option<usize>,
}

pub(crate) struct SseBody {
    script: Script,
    pacing: Pacing,
    next: usize,
    /// Allocated once per stream, and only when there is a delay to wait for.
    sleep: Option<Pin<Box<Sleep>>>,
    sleeping: bool,
    /// The next event, generated but held back until its delay has passed.
    pending: Option<Bytes>,
    cut_flushed: bool,
    finished: bool,
    state: Arc<State>,
}

impl SseBody {
    /// Counts the stream as started; from here on it ends as completed, cut or cancelled.
    pub fn new(script: Script, pacing: Pacing, state: Arc<State>) -> Self {
        state.stream_started();
        let sleep =
            (!pacing.chunk_delay.is_zero()).then(|| Box::pin(tokio::time::sleep(Duration::ZERO)));
        Self {
            script,
            pacing,
            next: 0,
            sleep,
            sleeping: false,
            pending: None,
            cut_flushed: false,
            finished: false,
            state,
        }
    }

    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, MockError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.pacing.cut_after.is_some_and(|cut| self.next >= cut) {
            if !self.cut_flushed {
                // Yield once first: hyper flushes what it buffered (headers, earlier events)
                // when the body is pending, and would discard it if the error came now.
                self.cut_flushed = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Not a cancellation: the mock itself broke the stream.
            self.finished = true;
            return Poll::Ready(Some(Err(MockError::Cut(self.next))));
        }
        if self.pending.is_none() {
            let mut out = Vec::with_capacity(384);
            if !self.script.write_event(self.next, &mut out) {
                // Ends right after the last event, without waiting one more delay.
                self.finished = true;
                self.state.stream_completed();
                return Poll::Ready(None);
            }
            self.pending = Some(Bytes::from(out));
            // The delay sits between events: none before the first one.
            if self.next > 0
                && let Some(sleep) = self.sleep.as_mut()
            {
                sleep
                    .as_mut()
                    .reset(Instant::now() + self.pacing.chunk_delay);
                self.sleeping = true;
            }
        }
        if self.sleeping
            && let Some(sleep) = self.sleep.as_mut()
        {
            ready!(sleep.as_mut().poll(cx));
            self.sleeping = false;
        }
        self.next += 1;
        Poll::Ready(self.pending.take().map(|event| Ok(Frame::data(event))))
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        if !self.finished {
            self.state.stream_cancelled();
        }
    }
}

/// Every response body the mock sends; an enum rather than a boxed trait object.
pub(crate) enum MockBody {
    Full(Option<Bytes>),
    Sse(SseBody),
}

impl MockBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        MockBody::Full(Some(bytes.into()))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = MockError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, MockError>>> {
        match self.get_mut() {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Sse(sse) => sse.poll_event(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        // A stream reports its end by returning `None`, which is where it counts as completed.
        matches!(self, MockBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Sse(_) => SizeHint::default(),
        }
    }
}
