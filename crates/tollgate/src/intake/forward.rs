//! Forwarding stamped exports to the collector over OTLP/HTTP (protobuf), off the response
//! path: the handler puts the encoded export into a bounded queue and answers at once; one
//! drain task on the app's `TaskTracker` takes exports off it and sends up to
//! `[intake] concurrency` at a time, each bounded by `[telemetry] export_timeout_ms`.
//!
//! The destination is `[intake] forward_endpoint`, else tollgate's own OTLP/HTTP endpoint
//! (`[telemetry] endpoint`), with `[telemetry]`'s headers and CA bundle. When tollgate exports
//! over gRPC the collector's HTTP port cannot be derived, so without `forward_endpoint` there
//! is no destination; nor is there when tollgate's own export is off. Then exports are accepted
//! and dropped (`reason="no_destination"`), as start-up logs once.
//!
//! **A full queue answers 200, not 503.** OTLP exporters retry 503 with backoff, keeping the
//! batch in memory and sending it again: while the collector is slow, Codex would pile retries
//! onto a gateway that is already behind, for data that would most likely be dropped anyway
//! once the exporter's retry budget runs out. Answering 200 keeps Codex's exporters (and the
//! developer's session) healthy, and the loss is not silent: every dropped export is counted
//! in `tollgate.intake.dropped{signal, reason="queue_full"}`, like sends that fail afterwards
//! (`send_failed`, `collector_refused`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Request};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tollgate_core::config::Config;
use tollgate_telemetry::{Signal, Telemetry, TelemetryError};

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A collector answer larger than this is not read further (it is only drained).
const MAX_ANSWER: u64 = 64 * 1024;
/// Send failures are counted always, logged at most this often.
const WARN_EVERY_MS: i64 = 60_000;

struct Job {
    signal: Signal,
    body: Bytes,
}

/// The handler's end of the queue.
pub struct Forwarder {
    /// `None`: no destination, every export is dropped.
    queue: Option<mpsc::Sender<Job>>,
    telemetry: Telemetry,
}

impl Forwarder {
    /// Resolves the destination and starts the drain task on `tasks`.
    pub fn start(
        config: &Config,
        telemetry: Telemetry,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Forwarder, TelemetryError> {
        let endpoint = match destination(config) {
            Ok(endpoint) => endpoint,
            Err(why) => {
                tracing::info!(
                    "OTLP intake: exports to /otlp/v1/* are accepted and dropped: {why}"
                );
                return Ok(Forwarder {
                    queue: None,
                    telemetry,
                });
            }
        };
        let connector = if endpoint.starts_with("https://") {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tollgate_telemetry::collector_tls(&config.telemetry)?)
        } else {
            hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots()
        }
        .https_or_http()
        .enable_http1()
        .build();
        let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
        let mut headers = HeaderMap::new();
        for (name, value) in &config.telemetry.headers.0 {
            // Validated at start-up; a header that still fails to parse is left out.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        tracing::info!(endpoint = %endpoint, "OTLP intake forwards to the collector");
        let (tx, rx) = mpsc::channel(config.intake.queue.max(1));
        let drain = Drain {
            client,
            endpoint,
            headers: Arc::new(headers),
            timeout: Duration::from_millis(config.telemetry.export_timeout_ms),
            permits: Arc::new(Semaphore::new(config.intake.concurrency.max(1))),
            telemetry: telemetry.clone(),
            tasks: tasks.clone(),
            last_warn_ms: Arc::new(AtomicI64::new(i64::MIN)),
        };
        tasks.spawn(drain.run(rx, cancel));
        Ok(Forwarder {
            queue: Some(tx),
            telemetry,
        })
    }

    /// Queues an encoded export, or counts why it is dropped. Never waits.
    pub fn submit(&self, signal: Signal, body: Vec<u8>) {
        let Some(queue) = &self.queue else {
            self.telemetry.intake_dropped(signal, "no_destination");
            return;
        };
        if let Err(e) = queue.try_send(Job {
            signal,
            body: Bytes::from(body),
        }) {
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "queue_full",
                // Shutting down: the drain task has stopped.
                mpsc::error::TrySendError::Closed(_) => "shutdown",
            };
            self.telemetry.intake_dropped(signal, reason);
        }
    }
}

/// The collector base URL exports go to, or why there is none.
fn destination(config: &Config) -> Result<String, &'static str> {
    if let Some(endpoint) = &config.intake.forward_endpoint {
        return Ok(endpoint.trim_end_matches('/').to_string());
    }
    let telemetry = &config.telemetry;
    if !telemetry.exports() {
        return Err("tollgate's own OTLP export is off (no [telemetry] endpoint)");
    }
    if telemetry.is_grpc() {
        return Err(
            "tollgate exports over gRPC; set [intake] forward_endpoint to the collector's \
             OTLP/HTTP base URL (e.g. http://collector:4318)",
        );
    }
    Ok(telemetry.endpoint())
}

struct Drain {
    client: HttpClient,
    endpoint: String,
    headers: Arc<HeaderMap>,
    timeout: Duration,
    permits: Arc<Semaphore>,
    telemetry: Telemetry,
    tasks: TaskTracker,
    last_warn_ms: Arc<AtomicI64>,
}

impl Drain {
    /// Takes exports off the queue until shutdown; what is still queued then is dropped
    /// (`reason="shutdown"`), sends under way finish within the export timeout.
    async fn run(self, mut rx: mpsc::Receiver<Job>, cancel: CancellationToken) {
        loop {
            let job = tokio::select! {
                job = rx.recv() => job,
                () = cancel.cancelled() => None,
            };
            let Some(job) = job else { break };
            let permit = tokio::select! {
                permit = Arc::clone(&self.permits).acquire_owned() => permit,
                () = cancel.cancelled() => {
                    self.telemetry.intake_dropped(job.signal, "shutdown");
                    break;
                }
            };
            let Ok(permit) = permit else { break };
            let send = self.send(job);
            self.tasks.spawn(async move {
                send.await;
                drop(permit);
            });
        }
        rx.close();
        while let Ok(job) = rx.try_recv() {
            self.telemetry.intake_dropped(job.signal, "shutdown");
        }
    }

    /// One POST to the collector, counted as dropped unless it answers 2xx in time.
    fn send(&self, job: Job) -> impl std::future::Future<Output = ()> + Send + 'static {
        let path = match job.signal {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        };
        let url = format!("{}{path}", self.endpoint);
        let client = self.client.clone();
        let headers = Arc::clone(&self.headers);
        let timeout = self.timeout;
        let telemetry = self.telemetry.clone();
        let last_warn_ms = Arc::clone(&self.last_warn_ms);
        async move {
            let outcome = tokio::time::timeout(timeout, async {
                let mut request = Request::post(&url)
                    .body(Full::new(job.body))
                    .map_err(|e| e.to_string())?;
                request.headers_mut().extend(
                    headers
                        .iter()
                        .map(|(name, value)| (name.clone(), value.clone())),
                );
                let response = client.request(request).await.map_err(|e| e.to_string())?;
                let status = response.status();
                // Read the (small) answer so the connection goes back to the pool.
                let _ = tollgate_proxy::body::read_limited(response.into_body(), MAX_ANSWER).await;
                Ok::<_, String>(status)
            })
            .await;
            let (reason, detail) = match outcome {
                Ok(Ok(status)) if status.is_success() => return,
                Ok(Ok(status)) => ("collector_refused", format!("answered {status}")),
                Ok(Err(e)) => ("send_failed", e),
                Err(_) => ("send_failed", format!("no answer within {timeout:?}")),
            };
            telemetry.intake_dropped(job.signal, reason);
            let now = tollgate_core::time::now_ms();
            let last = last_warn_ms.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= WARN_EVERY_MS
                && last_warn_ms
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    url = %url,
                    error = %detail,
                    "OTLP intake cannot forward to the collector; exports are dropped and \
                     counted in tollgate_intake_dropped_total (warned at most once a minute)"
                );
            }
        }
    }
}
