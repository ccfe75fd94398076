//! One upgraded connection: a reader that reads every frame on arrival (so pings are answered
//! and `response.create`s are recorded at once) and a writer that answers them one at a time,
//! in arrival order.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::request::Parts;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::frames::{Create, InBandError, Job};
use crate::request::Ask;
use crate::responses::{self, Ending, Stream};
use crate::route::{Knobs, recorded};
use crate::state::{RecordedRequest, State, Transport};
use crate::wire::Framing;

/// Events a `mock:ws-cut` response sends before the connection drops: for a text answer
/// without hosted tools, `response.created`, `in_progress`, `output_item.added`,
/// `content_part.added` and two deltas.
pub const WS_CUT_EVENTS: usize = 6;

/// Response ids a connection remembers for `previous_response_id` (the newest ones).
pub const WS_REMEMBERED_RESPONSES: usize = 64;

/// Frames read ahead of the response being answered; beyond that the reader waits.
const QUEUE: usize = 32;

/// How long a clean close waits for the client's close frame before dropping the socket.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

const CREATE: &str = "response.create";

/// Client events that need no answer from the mock.
const IGNORED: [&str; 2] = ["response.processed", "response.append"];

/// `x-mock-malformed`: frames that break the event format, then a dropped connection.
const MALFORMED: [&str; 3] = [
    r#"{"type":"response.created","response":{"id":"resp_x""#,
    "this frame is not JSON at all",
    r#"{"type":"response.completed","response":{"usage":{"input_tokens":"many"}}}"#,
];

type Sink<S> = SplitSink<WebSocketStream<S>, Message>;

/// A counted, open connection: the knobs of its handshake, and the handshake as each
/// `response.create` is recorded (the frame becomes the body).
pub(crate) struct Session {
    state: Arc<State>,
    knobs: Knobs,
    handshake: RecordedRequest,
    stop: watch::Receiver<bool>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.state.ws_connection_closed();
    }
}

/// How the writer ended.
enum End {
    /// It sent a close frame (limit, shutdown): read on until the client's reply.
    Closing,
    /// Drop the connection now: a scripted cut, or the client is gone.
    Drop,
}

impl Session {
    pub fn new(state: Arc<State>, knobs: Knobs, parts: &Parts) -> Self {
        state.ws_connection_opened();
        Self {
            stop: state.ws_shutdown.subscribe(),
            handshake: recorded(parts, Bytes::new(), Transport::WebSocket),
            state,
            knobs,
        }
    }

    pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(self, io: S) {
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        let (sink, frames) = ws.split();
        let (jobs, queue) = mpsc::channel(QUEUE);
        let reader = self.read(frames, jobs);
        tokio::pin!(reader);
        let writer = Writer {
            sink,
            session: &self,
            remembered: VecDeque::new(),
            answered: 0,
        };
        let end = tokio::select! {
            // The client closed or vanished; a response in flight counts as cancelled.
            () = &mut reader => return,
            end = writer.run(queue, self.stop.clone()) => end,
        };
        if let End::Closing = end {
            let _ = tokio::time::timeout(CLOSE_WAIT, reader).await;
        }
    }

    /// Reads until the client closes (tungstenite answers pings and the close frame while
    /// it is polled) and queues what needs an answer.
    async fn read<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut frames: SplitStream<WebSocketStream<S>>,
        jobs: mpsc::Sender<Job>,
    ) {
        while let Some(frame) = frames.next().await {
            let job = match frame {
                Ok(Message::Text(text)) => self.job(Bytes::from(text)),
                Ok(Message::Binary(_)) => Some(Job::Reject(InBandError::binary())),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_)) => {
                    None
                }
                Err(e) => {
                    tracing::debug!(error = %e, "mock upstream WebSocket read ended");
                    break;
                }
            };
            // Fails only once the writer has closed the socket: later frames go unanswered.
            if let Some(job) = job {
                let _ = jobs.send(job).await;
            }
        }
    }

    /// What a text frame asks for; `None` for client events that need no answer.
    fn job(&self, frame: Bytes) -> Option<Job> {
        let ctx = self.knobs.ctx(&self.state, frame.len());
        let asked = match responses::read(&ctx, &frame) {
            Ok(asked) => asked,
            Err(e) => return self.unreadable(frame, &e),
        };
        match asked.kind.as_deref() {
            Some(CREATE) => {
                self.record(frame);
                Some(Job::Create(Box::new(Create { ctx, asked })))
            }
            Some(kind) if IGNORED.contains(&kind) => None,
            kind => Some(Job::Reject(InBandError::unknown_type(kind))),
        }
    }

    /// A frame that is no Responses request: find out whether it is JSON, and of what type.
    fn unreadable(&self, frame: Bytes, e: &serde_json::Error) -> Option<Job> {
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(rename = "type", borrow, default)]
            kind: Option<Cow<'a, str>>,
        }
        let error = match serde_json::from_slice::<Kind<'_>>(&frame) {
            Err(_) => InBandError::invalid_json(e),
            Ok(Kind { kind }) => match kind.as_deref() {
                Some(CREATE) => {
                    let error = InBandError::invalid_create(e);
                    self.record(frame);
                    error
                }
                Some(kind) if IGNORED.contains(&kind) => return None,
                kind => InBandError::unknown_type(kind),
            },
        };
        Some(Job::Reject(error))
    }

    fn record(&self, frame: Bytes) {
        self.state.record(|| RecordedRequest {
            body: frame,
            ..self.handshake.clone()
        });
    }
}

/// Answers the queued frames in order on the connection's sending half.
struct Writer<'a, S> {
    sink: Sink<S>,
    session: &'a Session,
    /// The newest responses completed here, for `previous_response_id`, with what their
    /// conversation asked (an incremental request without a user message continues it).
    remembered: VecDeque<(String, Ask)>,
    /// Responses streamed to their terminal event, for the connection limit.
    answered: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Writer<'_, S> {
    async fn run(mut self, mut queue: mpsc::Receiver<Job>, mut stop: watch::Receiver<bool>) -> End {
        loop {
            // Shutdown is looked at between responses: one in flight is finished first.
            let job = tokio::select! {
                biased;
                () = stopping(&mut stop) => {
                    return self.close(CloseCode::Away, "server shutting down").await;
                }
                job = queue.recv() => match job {
                    Some(job) => job,
                    None => return End::Drop,
                },
            };
            let step = match job {
                Job::Reject(error) => self.send(error.to_json()).await,
                Job::Create(create) => self.answer(*create).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn answer(&mut self, create: Create) -> Result<(), End> {
        let Create { ctx, asked } = create;
        let knobs = self.session.knobs;
        if knobs
            .ws_max_responses
            .is_some_and(|max| self.answered >= max)
        {
            self.send(InBandError::limit_reached().to_json()).await?;
            return Err(self.close(CloseCode::Normal, "").await);
        }
        let input = asked.input;
        let mut ask = input.ask;
        if let Some(previous) = asked.previous_response_id.as_deref() {
            match self.remembered.iter().find(|(id, _)| id == previous) {
                None => {
                    let error = InBandError::previous_not_found(previous);
                    return self.send(error.to_json()).await;
                }
                Some((_, earlier)) if !input.has_user_message => ask = *earlier,
                Some(_) => {}
            }
        }
        if knobs.malformed {
            for frame in MALFORMED {
                self.send(frame.as_bytes().to_vec()).await?;
            }
            return Err(End::Drop);
        }
        // A prewarm is never scripted to fail; a tool result ends the scripted turn.
        let scripted = asked.generate && !input.ends_with_tool_output;
        let (ending, cut) = match ask {
            Ask::WsError if scripted => {
                return self.send(InBandError::server_error().to_json()).await;
            }
            _ if !asked.generate => (Ending::Prewarm, None),
            Ask::WsFailed if scripted => (Ending::Failed, None),
            Ask::WsCut if scripted => (Ending::Answer, Some(WS_CUT_EVENTS)),
            _ => (Ending::Answer, None),
        };
        let cut = match (cut, knobs.cut_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let answer = responses::answer(input.ends_with_tool_output, ask, ctx.deltas);
        let stream = Stream::new(&ctx, asked, answer, ending);
        self.stream(&stream, cut).await?;
        self.answered += 1;
        self.session.state.ws_response_answered();
        if ending != Ending::Failed {
            if self.remembered.len() >= WS_REMEMBERED_RESPONSES {
                self.remembered.pop_front();
            }
            // After a tool result the script is over: continuing it means plain text.
            let ask = if input.ends_with_tool_output {
                Ask::Text
            } else {
                ask
            };
            self.remembered.push_back((stream.id().to_string(), ask));
        }
        Ok(())
    }

    /// Sends the response's events, paced like the SSE stream; `Err` when the connection
    /// must end (a cut after `cut` events, or the client is gone).
    async fn stream(&mut self, stream: &Stream, cut: Option<usize>) -> Result<(), End> {
        let session = self.session;
        let knobs = session.knobs;
        let mut unfinished = Unfinished(Some(&session.state));
        if !knobs.first_byte_delay.is_zero() {
            tokio::time::sleep(knobs.first_byte_delay).await;
        }
        let mut index = 0;
        loop {
            if cut.is_some_and(|cut| index >= cut) {
                // Not a cancellation: the mock broke the connection on purpose.
                unfinished.0 = None;
                return Err(End::Drop);
            }
            let mut out = Vec::with_capacity(384);
            if !stream.write_event(index, Framing::Bare, &mut out) {
                break;
            }
            if index > 0 && !knobs.chunk_delay.is_zero() {
                tokio::time::sleep(knobs.chunk_delay).await;
            }
            self.send(out).await?;
            index += 1;
        }
        unfinished.0 = None;
        Ok(())
    }

    /// Sends one JSON text frame.
    async fn send(&mut self, json: Vec<u8>) -> Result<(), End> {
        // serde_json writes UTF-8 only; a failure here would be a bug, not a client's fault.
        let text = String::from_utf8(json).map_err(|_| End::Drop)?;
        self.sink.send(Message::text(text)).await.map_err(|e| {
            tracing::debug!(error = %e, "mock upstream WebSocket write failed");
            End::Drop
        })
    }

    async fn close(&mut self, code: CloseCode, reason: &'static str) -> End {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        match self.sink.send(Message::Close(Some(frame))).await {
            Ok(()) => End::Closing,
            Err(_) => End::Drop,
        }
    }
}

/// Resolves once the server shuts down.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens with the server.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Counts a response as cancelled if it is dropped before its terminal event was sent.
struct Unfinished<'a>(Option<&'a State>);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(state) = self.0 {
            state.ws_response_cancelled();
        }
    }
}
