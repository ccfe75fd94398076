//! Shared server state: options, recorded requests, stream and WebSocket counters and the
//! waiters on them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::MockOptions;
use crate::{batches, files};

/// How many requests are kept when recording; older ones are dropped first.
pub(crate) const RECORD_LIMIT: usize = 1000;

/// How a recorded request reached the mock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// An HTTP request (including a refused WebSocket handshake).
    Http,
    /// A `response.create` frame on a Responses WebSocket connection.
    WebSocket,
}

/// One request as it arrived at the mock.
///
/// A `response.create` sent over the Responses WebSocket transport is recorded as one
/// request too: `transport` [`Transport::WebSocket`], the handshake's method (`GET`), path,
/// query and headers, and the frame's text as `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// How it arrived.
    pub transport: Transport,
    /// `POST`, `GET`, ...
    pub method: String,
    /// The path without the query, e.g. `/v1/responses`.
    pub path: String,
    /// The raw query string, without the `?`.
    pub query: Option<String>,
    /// Header names are lowercase; repeated headers appear once per value, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body exactly as received (still compressed if it came with `content-encoding`);
    /// for a WebSocket `response.create`, the frame's payload.
    pub body: Bytes,
}

impl RecordedRequest {
    /// The first value of header `name` (give it in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// The `/__mock/stats` document.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Stats {
    pub streams_started: u64,
    pub streams_completed: u64,
    pub streams_cancelled: u64,
    pub requests: u64,
    /// Responses WebSocket connections accepted (101 answered).
    pub ws_connections_opened: u64,
    /// Responses WebSocket connections open now (not zeroed by a clear).
    pub ws_connections_open: u64,
    /// Responses streamed over WebSocket to their terminal event (`response.completed`,
    /// `response.failed`); in-band `error` events are not responses.
    pub ws_responses: u64,
    /// WebSocket responses whose client went away before their terminal event (cuts the
    /// mock made on purpose are not counted).
    pub ws_responses_cancelled: u64,
}

pub(crate) struct State {
    pub opts: MockOptions,
    recorded: Mutex<VecDeque<RecordedRequest>>,
    requests: AtomicU64,
    started: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    ws_opened: AtomicU64,
    ws_open: AtomicU64,
    ws_responses: AtomicU64,
    ws_cancelled: AtomicU64,
    /// Becomes `true` when the server shuts down. WebSocket sessions outlive the HTTP
    /// connection that upgraded, so they watch this instead, and the server waits until
    /// every receiver (one per session) is gone.
    pub ws_shutdown: watch::Sender<bool>,
    /// Source of unique ids for responses, items and calls.
    next_id: AtomicU64,
    /// Woken whenever a request arrives or a stream ends either way.
    changed: Notify,
    /// Uploaded files and batch output files (`/v1/files`), kept until the server stops.
    pub files: Mutex<files::Store>,
    /// Batches (`/v1/batches`), kept until the server stops.
    pub batches: Mutex<batches::Store>,
}

/// Locks `mutex`, ignoring poisoning: every critical section leaves its data consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    pub fn new(opts: MockOptions) -> Self {
        Self {
            opts,
            recorded: Mutex::new(VecDeque::new()),
            requests: AtomicU64::new(0),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            ws_opened: AtomicU64::new(0),
            ws_open: AtomicU64::new(0),
            ws_responses: AtomicU64::new(0),
            ws_cancelled: AtomicU64::new(0),
            ws_shutdown: watch::Sender::new(false),
            next_id: AtomicU64::new(1),
            changed: Notify::new(),
            files: Mutex::default(),
            batches: Mutex::default(),
        }
    }

    fn recorded(&self) -> MutexGuard<'_, VecDeque<RecordedRequest>> {
        // A panic while holding this lock cannot leave the queue inconsistent.
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request and, when recording, keeps it. `build` runs only when recording.
    pub fn record(&self, build: impl FnOnce() -> RecordedRequest) {
        if self.opts.record {
            let request = build();
            let mut recorded = self.recorded();
            if recorded.len() >= RECORD_LIMIT {
                recorded.pop_front();
            }
            recorded.push_back(request);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorded().iter().cloned().collect()
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn stream_started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stream_completed(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub fn stream_cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub fn ws_connection_opened(&self) {
        self.ws_opened.fetch_add(1, Ordering::Relaxed);
        self.ws_open.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub fn ws_connection_closed(&self) {
        self.ws_open.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub fn ws_response_answered(&self) {
        self.ws_responses.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub fn ws_response_cancelled(&self) {
        self.ws_cancelled.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub fn stats(&self) -> Stats {
        Stats {
            streams_started: self.started.load(Ordering::Relaxed),
            streams_completed: self.completed.load(Ordering::Relaxed),
            streams_cancelled: self.cancelled.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            ws_connections_opened: self.ws_opened.load(Ordering::Relaxed),
            ws_connections_open: self.ws_open.load(Ordering::Relaxed),
            ws_responses: self.ws_responses.load(Ordering::Relaxed),
            ws_responses_cancelled: self.ws_cancelled.load(Ordering::Relaxed),
        }
    }

    /// Forgets recorded requests and zeroes every counter but the open-connection gauge.
    pub fn clear(&self) {
        self.recorded().clear();
        for counter in [
            &self.requests,
            &self.started,
            &self.completed,
            &self.cancelled,
            &self.ws_opened,
            &self.ws_responses,
            &self.ws_cancelled,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.changed.notify_waiters();
    }

    /// Waits until `done(stats)` holds or `timeout` passes; returns whether it held.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(Stats) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            // Register interest before checking, so a change between the check and the
            // await cannot be missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(self.stats()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(self.stats());
            }
        }
    }
}
