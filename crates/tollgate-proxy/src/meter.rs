//! Phase 5, meter: the response body wrapper. Frames pass through untouched and unbuffered
//! while the meter reads them — SSE `data:` lines as they go by, or a JSON body's frames kept by
//! reference until its end — and it hands its reading to the next phase exactly once: at the
//! end, on an upstream error, or when dropped because the client went away.

pub mod lines;
pub mod media;
pub mod observe;
pub mod strip;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tollgate_core::CallOutcome;

use crate::body::BoxError;
use crate::forward::UpstreamStream;
use crate::route::Endpoint;
use lines::LineSplitter;
use media::Media;
use observe::{Observed, ResponsesStream};
use strip::UsageChunkFilter;

/// What the meter read from a response by the time it ended.
pub struct Reading {
    pub status: u16,
    pub seen: Observed,
    pub ttfb: Option<Duration>,
    pub outcome: CallOutcome,
}

/// The phase after the meter (settle): takes the reading, exactly once. A trait so the meter
/// need not know what settling involves.
pub trait Settle {
    fn settle(self, reading: Reading);
}

/// A non-streamed body larger than this is not parsed whole: its usage is read from its last
/// `JSON_TAIL` bytes (estimated when it is not there).
const MAX_JSON: usize = 32 * 1024 * 1024;
const JSON_TAIL: usize = 64 * 1024;

/// How a response body is read.
#[derive(Debug)]
enum Reader {
    ResponsesSse(LineSplitter, ResponsesStream),
    ChatSse(LineSplitter),
    /// Image, speech and transcription event streams.
    MediaSse(LineSplitter, Media),
    /// A plain-text transcript (`text`, `srt`, `vtt`): kept for an estimate.
    Text,
    Json {
        endpoint: Endpoint,
        frames: Vec<Bytes>,
        len: usize,
        /// Past this many bytes only the tail is kept ([`MAX_JSON`], or 0 for image answers:
        /// megabytes of base64 images before a usage object at the end).
        whole_up_to: usize,
    },
    /// Not metered beyond status and timing (models, pass-through endpoints, error bodies).
    Opaque,
}

/// What the answer's `Content-Type` says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    EventStream,
    Json,
    /// Anything else: audio bytes, plain text.
    Other,
}

impl Content {
    pub fn of(content_type: Option<&str>) -> Content {
        let mime = content_type
            .and_then(|ct| ct.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        if mime.eq_ignore_ascii_case("text/event-stream") {
            Content::EventStream
        } else if mime.eq_ignore_ascii_case("application/json") {
            Content::Json
        } else {
            Content::Other
        }
    }
}

/// The media an endpoint's answers carry, if it is an image or audio endpoint.
fn media_of(endpoint: Endpoint) -> Option<Media> {
    match endpoint {
        Endpoint::ImagesGenerations | Endpoint::ImagesEdits | Endpoint::ImagesVariations => {
            Some(Media::Image)
        }
        Endpoint::AudioSpeech => Some(Media::Speech),
        Endpoint::AudioTranscriptions | Endpoint::AudioTranslations => Some(Media::Transcript),
        _ => None,
    }
}

/// The upstream's body as the client receives it, metered on the way.
pub struct Metered<S: Settle> {
    inner: UpstreamStream,
    status: u16,
    reader: Reader,
    strip: Option<UsageChunkFilter>,
    ready: VecDeque<Bytes>,
    seen: Observed,
    started: Instant,
    ttfb: Option<Duration>,
    pending: Option<S>,
    /// The upstream's error, held for one turn so that what came before it is written first.
    failed: Option<BoxError>,
}

impl<S: Settle> std::fmt::Debug for Metered<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metered")
            .field("status", &self.status)
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl<S: Settle> Metered<S> {
    /// `content`: what the answer is (an event stream, JSON, other bytes). `strip`: tollgate
    /// added `include_usage` to a chat stream the client did not ask usage for. `started`: when
    /// the call began, for the time to first byte.
    pub fn new(
        inner: UpstreamStream,
        status: u16,
        endpoint: Endpoint,
        content: Content,
        strip: bool,
        started: Instant,
        pending: S,
    ) -> Metered<S> {
        let success = (200..300).contains(&status);
        let sse = content == Content::EventStream;
        let reader = match (endpoint, content) {
            (_, _) if !success => Reader::Opaque,
            (endpoint, Content::EventStream) if endpoint.is_responses() => {
                Reader::ResponsesSse(LineSplitter::default(), ResponsesStream::default())
            }
            (Endpoint::ChatCompletions | Endpoint::Completions, Content::EventStream) => {
                Reader::ChatSse(LineSplitter::default())
            }
            (endpoint, Content::EventStream) => match media_of(endpoint) {
                Some(media) => Reader::MediaSse(LineSplitter::default(), media),
                None => Reader::Opaque,
            },
            // Speech is audio bytes: only counted. Transcripts asked for as text are kept.
            (Endpoint::AudioTranscriptions | Endpoint::AudioTranslations, Content::Other) => {
                Reader::Text
            }
            (Endpoint::AudioSpeech, _) => Reader::Opaque,
            (endpoint, _) if endpoint.is_priced() => Reader::Json {
                endpoint,
                frames: Vec::new(),
                len: 0,
                whole_up_to: match media_of(endpoint) {
                    Some(Media::Image) => 0,
                    _ => MAX_JSON,
                },
            },
            _ => Reader::Opaque,
        };
        let strip = (strip && success && sse).then(UsageChunkFilter::default);
        Metered {
            inner,
            status,
            reader,
            strip,
            ready: VecDeque::new(),
            seen: Observed::default(),
            started,
            ttfb: None,
            pending: Some(pending),
            failed: None,
        }
    }

    fn observe(&mut self, data: &Bytes) {
        let seen = &mut self.seen;
        seen.bytes += data.len() as u64;
        match &mut self.reader {
            Reader::ResponsesSse(lines, stream) => lines.feed(data, |line| stream.line(line, seen)),
            Reader::ChatSse(lines) => lines.feed(data, |line| observe::chat_line(line, seen)),
            Reader::MediaSse(lines, media) => {
                let media = *media;
                lines.feed(data, |line| media::media_line(media, line, seen))
            }
            Reader::Text => seen.push_text(&String::from_utf8_lossy(data)),
            Reader::Json {
                frames,
                len,
                whole_up_to,
                ..
            } => {
                *len += data.len();
                frames.push(data.clone());
                if *len > *whole_up_to {
                    // Too large to parse whole (logprobs, many choices): keep only the tail,
                    // where the usage is, or a client could make its output free.
                    let mut kept = 0;
                    let tail = frames
                        .iter()
                        .rev()
                        .take_while(|f| {
                            let more = kept < JSON_TAIL;
                            kept += f.len();
                            more
                        })
                        .count();
                    frames.drain(..frames.len() - tail);
                }
            }
            Reader::Opaque => {}
        }
    }

    fn finish_reading(&mut self) {
        let seen = &mut self.seen;
        match std::mem::replace(&mut self.reader, Reader::Opaque) {
            Reader::ResponsesSse(mut lines, mut stream) => {
                lines.finish(|line| stream.line(line, seen))
            }
            Reader::ChatSse(mut lines) => lines.finish(|line| observe::chat_line(line, seen)),
            Reader::MediaSse(mut lines, media) => {
                lines.finish(|line| media::media_line(media, line, seen))
            }
            Reader::Json {
                endpoint,
                frames,
                len,
                whole_up_to,
            } if len <= whole_up_to => {
                let joined;
                let body: &[u8] = match frames.as_slice() {
                    [one] => one,
                    many => {
                        joined = many.concat();
                        &joined
                    }
                };
                let whole = match (endpoint, media_of(endpoint)) {
                    (_, Some(media)) => media::media_json(media, body, seen),
                    (endpoint, _) if endpoint.is_responses() => observe::response_json(body, seen),
                    (Endpoint::Embeddings, _) => observe::embeddings_json(body, seen),
                    (Endpoint::Moderations, _) => observe::moderations_json(body, seen),
                    _ => observe::chat_json(body, seen),
                };
                if !whole {
                    observe::cut_json(body, seen);
                }
            }
            Reader::Json {
                endpoint,
                frames,
                len,
                ..
            } => {
                let kind = match (endpoint, media_of(endpoint)) {
                    (_, Some(media)) => observe::JsonKind::Media(media),
                    (endpoint, _) if endpoint.is_responses() => observe::JsonKind::Responses,
                    (Endpoint::Embeddings, _) => observe::JsonKind::Embeddings,
                    _ => observe::JsonKind::Chat,
                };
                let tail = frames.concat();
                observe::usage_in_tail(kind, &tail, seen);
                if seen.usage.is_none() {
                    // Cut: the tail as text, the rest by its length.
                    observe::cut_json(&tail, seen);
                    seen.text_overflow += len.saturating_sub(tail.len());
                }
            }
            Reader::Text | Reader::Opaque => {}
        }
    }

    fn settle(&mut self, outcome: CallOutcome) {
        if let Some(pending) = self.pending.take() {
            pending.settle(Reading {
                status: self.status,
                seen: std::mem::take(&mut self.seen),
                ttfb: self.ttfb,
                outcome,
            });
        }
    }
}

impl<S: Settle + Unpin> Body for Metered<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        loop {
            if let Some(bytes) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.pending.is_none() && this.strip.is_none() {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.finish_reading();
                    if let Some(mut filter) = this.strip.take() {
                        filter.finish(&mut this.ready);
                    }
                    this.settle(CallOutcome::Complete);
                    if this.ready.is_empty() {
                        return Poll::Ready(None);
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    this.finish_reading();
                    this.settle(CallOutcome::UpstreamCut);
                    // hyper drops what it has buffered but not yet written when a body fails,
                    // and the events before the error may have arrived in the same read: let it
                    // write them, then fail the stream on the next poll.
                    this.failed = Some(error);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if this.ttfb.is_none() {
                        this.ttfb = Some(this.started.elapsed());
                    }
                    let Some(data) = frame.data_ref() else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    this.observe(data);
                    let Some(filter) = this.strip.as_mut() else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    filter.feed(data, &mut this.ready);
                }
            }
        }
    }

    /// The upstream's size, unless tollgate edits the stream.
    fn size_hint(&self) -> SizeHint {
        if self.strip.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

impl<S: Settle> Drop for Metered<S> {
    fn drop(&mut self) {
        if self.pending.is_some() {
            // hyper drops a body of known length once it has written that many bytes, without
            // polling it to its end: every byte was handed over, so the response is complete.
            let outcome =
                if self.inner.is_end_stream() && self.ready.is_empty() && self.strip.is_none() {
                    CallOutcome::Complete
                } else {
                    // The client went away mid-body: charge what was delivered.
                    CallOutcome::ClientGone
                };
            self.finish_reading();
            self.settle(outcome);
        }
    }
}
