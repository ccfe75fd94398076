//! The calls in flight on one socket, oldest first, each metered from the upstream's events
//! until its terminal event settles it. OpenAI answers the `response.create` messages of a
//! socket in the order they were sent, so the event in hand belongs to the oldest call.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Deserialize;

use tollgate_core::CallOutcome;

use crate::meter::observe::{self, Observed};
use crate::meter::{Reading, Settle};
use crate::settle::Pending;

/// One `response.create` the upstream has and has not finished answering.
pub struct InFlight {
    pub pending: Pending,
    pub seen: Observed,
    pub sent: Instant,
    pub ttfb: Option<Duration>,
}

impl InFlight {
    pub fn new(pending: Pending) -> InFlight {
        InFlight {
            pending,
            seen: Observed::default(),
            sent: Instant::now(),
            ttfb: None,
        }
    }
}

/// What an upstream event did to the calls in flight.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Part of the oldest call's answer.
    Progress,
    /// The end of the oldest call's answer: it is settled.
    Settled,
    /// Nothing was in flight (a connection-level notice).
    Unclaimed,
}

/// Responses remembered per socket for a `previous_response_id` to name (Codex names the one
/// before; OpenAI keeps a connection-local cache of about as many).
const HISTORY: usize = 16;

#[derive(Default)]
pub struct Calls {
    queue: VecDeque<InFlight>,
    /// Responses answered on this socket, newest last: id and tokens (input and output), the
    /// input a call continuing it makes the upstream read again.
    history: VecDeque<(String, u64)>,
}

impl Calls {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn push(&mut self, call: InFlight) {
        self.queue.push_back(call);
    }

    /// Tokens of response `id`, if it was answered on this socket with its usage.
    pub fn held(&self, id: &str) -> Option<u64> {
        self.history
            .iter()
            .rev()
            .find(|(known, _)| known == id)
            .map(|&(_, tokens)| tokens)
    }

    /// Meters one upstream event (a text frame's JSON), settling the oldest call when the
    /// event ends its answer: `response.completed`, `.failed` or `.incomplete` (charged by the
    /// usage inside, as the same event on HTTP is), or an `error` event (the upstream refused
    /// the call; charged nothing, with the event's status).
    pub fn upstream_event(&mut self, data: &[u8]) -> Event {
        let Some(call) = self.queue.front_mut() else {
            return Event::Unclaimed;
        };
        let answered = call.ttfb.is_some();
        if !answered {
            call.ttfb = Some(call.sent.elapsed());
        }
        let kind = event_type(data);
        observe::responses_event(kind.as_deref(), data, &mut call.seen);
        let status = match kind.as_deref() {
            Some("response.completed" | "response.failed" | "response.incomplete") => 200,
            // An error after output was delivered ends an answer that was billed: its usage
            // never comes, so it is estimated, as a cut stream is. Before any, it is a refusal.
            Some("error") if answered => 200,
            Some("error") => error_status(data),
            _ => return Event::Progress,
        };
        if let Some(call) = self.queue.pop_front() {
            if let (Some(id), Some(usage)) = (&call.seen.response_id, &call.seen.usage) {
                if self.history.len() == HISTORY {
                    self.history.pop_front();
                }
                let tokens = usage.input.saturating_add(usage.output);
                self.history.push_back((id.clone(), tokens));
            }
            settle(call, status, CallOutcome::Complete);
        }
        Event::Settled
    }

    /// Settles every call still in flight when the socket ends: what each got is charged (its
    /// usage never came, so it is estimated from its request and the text delivered), and a
    /// call that got nothing is charged an estimate of its input, which the upstream had.
    pub fn abandon(&mut self, outcome: CallOutcome) {
        for call in self.queue.drain(..) {
            if call.ttfb.is_some() {
                settle(call, 200, outcome);
            } else {
                let status = match outcome {
                    CallOutcome::ClientGone | CallOutcome::ClientGoneBeforeHeaders => 499,
                    CallOutcome::UpstreamTimeout => 504,
                    _ => 502,
                };
                call.pending.settle_unanswered(status, outcome, true);
            }
        }
    }
}

impl Calls {
    /// Settles the calls in flight when the upstream closed the socket on purpose: one it had
    /// begun to answer is charged (estimated), one it had not was never run and costs nothing
    /// (the client sends it again on a new socket).
    pub fn abandon_unstarted_unbilled(&mut self) {
        for call in self.queue.drain(..) {
            if call.ttfb.is_some() {
                settle(call, 200, CallOutcome::UpstreamCut);
            } else {
                let never_run = CallOutcome::UpstreamUnreachable;
                call.pending.settle_unanswered(502, never_run, false);
            }
        }
    }
}

impl Drop for Calls {
    /// A socket task that ends any other way (a panic, the runtime shutting down) still
    /// settles what it held.
    fn drop(&mut self) {
        self.abandon(CallOutcome::ClientGone);
    }
}

fn settle(call: InFlight, status: u16, outcome: CallOutcome) {
    call.pending.settle(Reading {
        status,
        seen: call.seen,
        ttfb: call.ttfb,
        outcome,
    });
}

/// An event's `"type"`. OpenAI writes it first, so it is read from the frame's start without
/// parsing the frame; any other order is parsed.
pub fn event_type(data: &[u8]) -> Option<Cow<'_, str>> {
    const PREFIX: &[u8] = br#"{"type":""#;
    if let Some(rest) = data.strip_prefix(PREFIX)
        && let Some(end) = memchr::memchr2(b'"', b'\\', rest)
        && rest[end] == b'"'
    {
        return std::str::from_utf8(&rest[..end]).ok().map(Cow::Borrowed);
    }
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<Typed<'_>>(data).ok()?.kind
}

/// The HTTP status an `error` event carries (`"status": 429`), 500 when it names none.
fn error_status(data: &[u8]) -> u16 {
    #[derive(Deserialize)]
    struct Status {
        status: Option<u16>,
    }
    serde_json::from_slice::<Status>(data)
        .ok()
        .and_then(|s| s.status)
        .filter(|s| (400..600).contains(s))
        .unwrap_or(500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_type_first_or_anywhere() {
        assert_eq!(
            event_type(br#"{"type":"response.completed","response":{}}"#).as_deref(),
            Some("response.completed")
        );
        assert_eq!(
            event_type(br#"{"sequence_number":3,"type":"response.output_text.delta"}"#).as_deref(),
            Some("response.output_text.delta")
        );
        assert_eq!(event_type(br#"{"type":"a\"b"}"#).as_deref(), Some("a\"b"));
        assert_eq!(event_type(b"not json"), None);
        assert_eq!(error_status(br#"{"type":"error","status":429}"#), 429);
        assert_eq!(error_status(br#"{"type":"error","status":200}"#), 500);
        assert_eq!(error_status(br#"{"type":"error"}"#), 500);
    }
}
