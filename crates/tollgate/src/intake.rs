//! The OTLP intake: `POST /otlp/v1/{traces,metrics,logs}` on the main listener, where Codex (its
//! `[otel]` exporters, `otlp-http`) or any OpenTelemetry exporter sends its own telemetry with a
//! tollgate team key. Each export is stamped with the key's team and forwarded to the collector
//! tollgate exports its own telemetry to, so a team's Codex logs, metrics and spans sit beside
//! tollgate's cost signals under the same `tollgate.team`.
//!
//! ```text
//! POST /otlp/v1/<signal> ─► method (405)
//!        ─► auth     Bearer team key → in-memory KeyCache, as the proxy (401)
//!        ─► limit    exports per key per minute (429 + Retry-After)           (limit.rs)
//!        ─► read     content type (415), size (413)
//!        ─► decode   one export at a time, on the blocking pool (503 when busy for 5 s):
//!                    gzip, protobuf or OTLP/JSON (400)                       (decode.rs)
//!        ─► stamp    drop client-set `tollgate.*` resource attributes, add the team's
//!                                                                             (stamp.rs)
//!        ─► observe  the [`IntakeObserver`] (Codex's session signals), synchronously
//!        ─► forward  re-encoded as protobuf into a bounded queue; a background task
//!                    POSTs it to the collector, off the response path       (forward.rs)
//!        ─► 200      an empty Export*ServiceResponse, in the request's encoding
//! ```
//! Every refusal follows OTLP/HTTP: the status code plus a `google.rpc.Status` body in the
//! request's encoding (reply.rs), so exporters retry only what they should (429, 503).

mod decode;
mod forward;
mod limit;
mod reply;
mod stamp;

use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tollgate_core::config::Config;
use tollgate_core::{KeyCache, KeyRecord};
use tollgate_proxy::ProxyBody;
use tollgate_telemetry::{Signal, Telemetry, TelemetryError};

use decode::Encoding;
pub use decode::Export;
use forward::Forwarder;
use limit::PerKey;
use reply::Refusal;

/// The path prefix an exporter's base endpoint ends with: `https://<gateway>/otlp`.
pub const PREFIX: &str = "/otlp";

/// The signal an intake path carries, or `None` for any other path.
pub fn signal_of(path: &str) -> Option<Signal> {
    match path.strip_prefix(PREFIX)? {
        "/v1/traces" => Some(Signal::Traces),
        "/v1/metrics" => Some(Signal::Metrics),
        "/v1/logs" => Some(Signal::Logs),
        _ => None,
    }
}

/// The team an export was stamped with: what its resources now carry as `tollgate.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamStamp {
    pub team: String,
    pub team_id: String,
    pub cost_centre: Option<String>,
    pub key_id: String,
}

impl TeamStamp {
    fn of(key: &KeyRecord) -> TeamStamp {
        TeamStamp {
            team: key.team.name.clone(),
            team_id: key.team.id.clone(),
            cost_centre: key.team.cost_centre.clone(),
            key_id: key.id.clone(),
        }
    }
}

/// Sees every accepted export after stamping, before it is queued for the collector: the hook
/// for signals derived from clients' telemetry (a session's tool calls, its outcome). Called on
/// the blocking pool, in the intake's one decoding slot, before the client has its answer: it
/// must be cheap and must not wait on I/O; it copies what it needs and hands heavier work to a
/// task of its own.
pub trait IntakeObserver: Send + Sync {
    fn traces(&self, _team: &TeamStamp, _request: &ExportTraceServiceRequest) {}
    fn metrics(&self, _team: &TeamStamp, _request: &ExportMetricsServiceRequest) {}
    fn logs(&self, _team: &TeamStamp, _request: &ExportLogsServiceRequest) {}
}

/// The intake of one gateway process.
pub struct Intake {
    keys: Arc<KeyCache>,
    limit: PerKey,
    max_body_bytes: u64,
    read_timeout: Duration,
    forwarder: Forwarder,
    telemetry: Telemetry,
    observer: Arc<dyn IntakeObserver>,
    /// One permit: exports are decoded one at a time (see `accept`).
    work: Arc<Semaphore>,
}

/// Longest an export waits for the one decoding slot before it is answered 503.
const BUSY_WAIT: Duration = Duration::from_secs(5);

impl Intake {
    /// Builds the intake and starts its forwarder on `tasks` (stopped by `cancel`); `observer`
    /// sees every accepted export. Fails only when the collector's TLS setup does
    /// (`[telemetry] ca_file`).
    pub fn start(
        config: &Config,
        keys: Arc<KeyCache>,
        telemetry: Telemetry,
        observer: Arc<dyn IntakeObserver>,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Intake, TelemetryError> {
        let forwarder = Forwarder::start(config, telemetry.clone(), tasks, cancel)?;
        Ok(Intake {
            keys,
            limit: PerKey::new(config.intake.exports_per_minute),
            max_body_bytes: config.intake.max_body_bytes,
            read_timeout: Duration::from_millis(config.limits.body_read_timeout_ms),
            forwarder,
            telemetry,
            observer,
            work: Arc::new(Semaphore::new(1)),
        })
    }

    /// Answers one request to an intake path.
    pub async fn handle(&self, signal: Signal, request: Request<Incoming>) -> Response<ProxyBody> {
        let encoding = Encoding::of(request.headers());
        match self.accept(signal, request).await {
            Ok(()) => reply::accepted(encoding),
            Err(refusal) => reply::refused(encoding.unwrap_or(Encoding::Protobuf), &refusal),
        }
    }

    /// The phases in order; every refusal is decided here.
    async fn accept(&self, signal: Signal, request: Request<Incoming>) -> Result<(), Refusal> {
        if request.method() != Method::POST {
            return Err(Refusal::method(request.method()));
        }
        let authorization = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let key = self
            .keys
            .authenticate(authorization, tollgate_core::time::now_ms())
            .map_err(Refusal::unauthenticated)?;
        self.limit.check(&key.id)?;
        let encoding = Encoding::of(request.headers()).map_err(Refusal::unsupported_type)?;
        let gzip = decode::gzipped(request.headers())?;
        let body = tokio::time::timeout(
            self.read_timeout,
            tollgate_proxy::body::read_limited(request.into_body(), self.max_body_bytes),
        )
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "the export body arrived too slowly",
            )
        })?
        .map_err(|e| Refusal::body(e, self.max_body_bytes))?;
        // The CPU-bound part (gunzip, decode, stamp, observe, re-encode) runs on the blocking
        // pool, one export at a time per gateway: a flood of exports then takes at most one
        // core, and the proxy's tasks keep theirs. An export that waits too long for its turn
        // is answered 503 with Retry-After, which OTLP exporters retry.
        let permit = tokio::time::timeout(BUSY_WAIT, Arc::clone(&self.work).acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(Refusal::busy)?;
        let team = TeamStamp::of(&key);
        let observer = Arc::clone(&self.observer);
        let max_body_bytes = self.max_body_bytes;
        let stamped = team.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let body = if gzip {
                decode::gunzip(&body, max_body_bytes)?
            } else {
                body
            };
            let mut export = decode::decode(signal, encoding, &body)?;
            stamp::stamp(&mut export, &stamped);
            match &export {
                Export::Traces(r) => observer.traces(&stamped, r),
                Export::Metrics(r) => observer.metrics(&stamped, r),
                Export::Logs(r) => observer.logs(&stamped, r),
            }
            Ok::<_, Refusal>(export.encode())
        })
        .await
        .map_err(|_| Refusal::busy())??;
        self.telemetry.intake_export(&team.team, signal);
        self.forwarder.submit(signal, encoded);
        Ok(())
    }
}
