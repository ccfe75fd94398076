//! The load generator's HTTP client: hyper-util, HTTP/1.1, a keep-alive pool, and one
//! exchange timed to its first and last body byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderValue};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::scenario::RequestSpec;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A fresh pool: every cell starts with its own connections and closes them when dropped.
pub fn new_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(usize::MAX)
        .build(connector)
}

/// A request bound to a target: full URI, credential and the scenario's body and headers.
#[derive(Debug, Clone)]
pub struct Prepared {
    uri: Uri,
    authorization: HeaderValue,
    spec: RequestSpec,
    /// Requests built from this (and its clones), warm-ups and stragglers included.
    sent: Arc<AtomicU64>,
}

impl Prepared {
    pub fn new(origin: &str, authorization: &HeaderValue, spec: RequestSpec) -> Option<Prepared> {
        let uri = format!("{origin}{}", spec.path).parse().ok()?;
        Some(Prepared {
            uri,
            authorization: authorization.clone(),
            spec,
            sent: Arc::default(),
        })
    }

    /// How many requests have been sent from this and its clones.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Adds a header to every request sent from this (e.g. slow-stream knobs for the mock).
    pub fn with_header(mut self, name: &'static str, value: HeaderValue) -> Prepared {
        self.spec
            .headers
            .push((http::HeaderName::from_static(name), value));
        self
    }

    pub(crate) fn request(&self) -> Request<Full<Bytes>> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let mut request = Request::new(Full::new(self.spec.body.clone()));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, self.authorization.clone());
        for (name, value) in &self.spec.headers {
            headers.insert(name.clone(), value.clone());
        }
        request
    }
}

/// A completed exchange, timed from the moment it was *scheduled* to start.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    /// Until the first byte of the response body.
    pub ttfb: Duration,
    /// Until the last byte of the response body.
    pub total: Duration,
}

/// Why an exchange counts as an error.
#[derive(Debug, Clone)]
pub enum Failure {
    /// A response that was not 2xx.
    Status(u16),
    /// No connection, or it broke before the body ended.
    Transport(String),
    /// Longer than the per-request timeout.
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(code) => write!(f, "HTTP {code}"),
            Failure::Transport(e) => write!(f, "transport: {e}"),
            Failure::Timeout => f.write_str("timeout"),
        }
    }
}

/// Sends the request and reads the whole body; `opened` runs when response headers arrive.
pub async fn exchange(
    client: &HttpClient,
    prepared: &Prepared,
    scheduled: Instant,
    timeout: Duration,
    opened: impl FnOnce(),
) -> Result<Done, Failure> {
    let run = async {
        let response = client
            .request(prepared.request())
            .await
            .map_err(|e| Failure::Transport(root_cause(&e)))?;
        let status = response.status();
        opened();
        let mut body = response.into_body();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failure::Transport(root_cause(&e)))?;
            if first.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                first = Some(Instant::now());
            }
        }
        let end = Instant::now();
        if !status.is_success() {
            return Err(Failure::Status(status.as_u16()));
        }
        Ok(Done {
            ttfb: first.unwrap_or(end).saturating_duration_since(scheduled),
            total: end.saturating_duration_since(scheduled),
        })
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut source = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}
