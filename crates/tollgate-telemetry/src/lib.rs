//! tollgate's telemetry: one OpenTelemetry SDK setup per process, exported over OTLP and
//! served as Prometheus text, plus the session trajectory detector.
//!
//! ```text
//! proxy ─ begin(headers) ──► RequestSpan  (continues the client's traceparent)
//!       ─ span.inject(upstream headers)   (the upstream sees our span as parent)
//!       ─ finish(span, &LedgerEvent, team, outcome, prompt)
//!            ├─► metrics   one MeterProvider ─┬─ PeriodicReader ─► OTLP   (when enabled)
//!            │                                └─ ManualReader ───► /metrics
//!            ├─► span      GenAI + tollgate.* attributes ─► BatchSpanProcessor ─► OTLP
//!            ├─► log       "tollgate.cost" event          ─► BatchLogProcessor  ─► OTLP
//!            └─► trajectories  loop / session-cost signals ─► event + metric (+ refusal)
//! ```
//! Nothing on the request path waits for the network: spans and logs go to bounded batch
//! queues (dropped when full), metrics are in-memory aggregations. Export failures are
//! counted in `tollgate_telemetry_export_errors_total`, not logged per request.

mod export;
mod export_errors;
mod instruments;
pub mod names;
pub mod prometheus;
mod redact;
mod request;
mod signals;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod trajectory;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use opentelemetry::KeyValue;
use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tollgate_core::config::TelemetryConfig;

use export_errors::ExportErrors;
use instruments::{BudgetKey, Instruments, LedgerProbe};
use redact::Redactor;
use trajectory::Trajectories;

pub use export::collector_tls;
pub use export_errors::Signal;
pub use request::{Outcome, RequestSpan, UpstreamErrorKind};
pub use trajectory::SessionSignal;

/// Series per instrument before the SDK folds the rest into one overflow series. The SDK's
/// default (2000) is within reach of teams × models × endpoints × statuses.
const CARDINALITY_LIMIT: usize = 20_000;

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.ca_file '{path}': {reason}")]
    CaFile { path: String, reason: String },
    #[error("telemetry TLS setup: {0}")]
    Tls(String),
    #[error("telemetry.redact[{0}]: {1}")]
    Redact(usize, String),
    #[error("OTLP {0} exporter: {1}")]
    Exporter(&'static str, String),
    #[error("Telemetry::start must be called inside a tokio runtime")]
    NoRuntime,
}

/// The process's telemetry. Clone freely: clones share one SDK setup.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    tracer: Option<SdkTracer>,
    logger: Option<SdkLogger>,
    instruments: Option<Instruments>,
    prometheus: Option<prometheus::SharedReader>,
    providers: Providers,
    propagator: TraceContextPropagator,
    trajectories: Trajectories,
    redactor: Option<Redactor>,
    budgets: Arc<DashMap<BudgetKey, f64>>,
    /// Refusals by (team, reason) since the last [`Telemetry::take_refusals`], counted whether
    /// or not metrics are on, for the refusals rollup the console and reports read.
    refusals: DashMap<(String, String), u64>,
    ledger: Arc<RwLock<Option<LedgerProbe>>>,
    export_errors: Arc<ExportErrors>,
    shutdown_deadline: Duration,
}

#[derive(Default)]
struct Providers {
    tracer: Option<SdkTracerProvider>,
    logger: Option<SdkLoggerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Builds the SDK pipeline from the config. Must run inside a tokio runtime: the batch
    /// processors and the periodic reader are tasks on it. When it does not export
    /// ([`TelemetryConfig::exports`]) no exporter exists and no span is created; metrics are
    /// still kept for `/metrics` unless `metrics_path` is empty.
    pub fn start(cfg: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
        tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        // Everything that can fail comes first: a provider dropped half-built would block on
        // its own batch task while shutting down.
        let export_errors = Arc::new(ExportErrors::default());
        let exporters = if cfg.exports() {
            Some(export::Target::new(cfg)?.exporters(&export_errors)?)
        } else {
            None
        };
        let redactor = if cfg.log_prompts {
            Some(Redactor::new(&cfg.redact)?)
        } else {
            None
        };

        let resource = resource(cfg);
        let interval = Duration::from_millis(cfg.export_interval_ms);
        let otlp = exporters.map(|e| e.into_providers(&resource, interval));
        let prometheus = (!cfg.metrics_path.is_empty()).then(prometheus::SharedReader::default);
        let mut providers = Providers::default();
        let mut metric_readers = 0;
        let mut builder = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_view(|_: &opentelemetry_sdk::metrics::Instrument| {
                opentelemetry_sdk::metrics::Stream::builder()
                    .with_cardinality_limit(CARDINALITY_LIMIT)
                    .build()
                    .ok()
            });
        if let Some(reader) = &prometheus {
            builder = builder.with_reader(reader.clone());
            metric_readers += 1;
        }
        if let Some(otlp) = otlp {
            builder = builder.with_reader(otlp.metric_reader);
            metric_readers += 1;
            providers.tracer = Some(otlp.tracer);
            providers.logger = Some(otlp.logger);
        }
        // No reader at all: no MeterProvider, and `finish` skips metrics entirely.
        if metric_readers > 0 {
            providers.meter = Some(builder.build());
        }

        let budgets = Arc::new(DashMap::new());
        let ledger = Arc::new(RwLock::new(None));
        let instruments = providers.meter.as_ref().map(|mp| {
            Instruments::new(
                &mp.meter(names::SCOPE),
                budgets.clone(),
                ledger.clone(),
                export_errors.clone(),
            )
        });
        Ok(Telemetry {
            inner: Arc::new(Inner {
                tracer: providers.tracer.as_ref().map(|p| p.tracer(names::SCOPE)),
                logger: providers.logger.as_ref().map(|p| p.logger(names::SCOPE)),
                instruments,
                prometheus,
                providers,
                propagator: TraceContextPropagator::new(),
                trajectories: Trajectories::new(cfg),
                redactor,
                budgets,
                refusals: DashMap::new(),
                ledger,
                export_errors,
                shutdown_deadline: Duration::from_millis(cfg.export_timeout_ms)
                    .saturating_add(Duration::from_secs(1)),
            }),
        })
    }

    /// Whether OTLP export is on (spans and logs exist).
    pub fn exporting(&self) -> bool {
        self.inner.tracer.is_some()
    }

    /// Current metrics as Prometheus text (format 0.0.4; serve with
    /// [`prometheus::CONTENT_TYPE`]). Empty when `metrics_path` is empty or after shutdown.
    pub fn prometheus_text(&self) -> String {
        let Some(reader) = &self.inner.prometheus else {
            return String::new();
        };
        let mut rm = ResourceMetrics::default();
        match reader.collect(&mut rm) {
            Ok(()) => prometheus::render(&rm),
            Err(_) => String::new(),
        }
    }

    /// Registers the ledger's probe: `(queue depth, spool bytes)`, read at each collection.
    pub fn ledger_gauges(&self, f: impl Fn() -> (u64, u64) + Send + Sync + 'static) {
        if let Ok(mut slot) = self.inner.ledger.write() {
            *slot = Some(Arc::new(f));
        }
    }

    /// Failed OTLP exports so far for one signal (the counter behind
    /// `tollgate_telemetry_export_errors_total`).
    pub fn export_errors(&self, signal: Signal) -> u64 {
        self.inner.export_errors.count(signal)
    }

    /// Exports everything buffered now. Waits at most the export timeout plus a second.
    pub async fn flush(&self) {
        self.each_provider(|p| match p {
            Provider::Tracer(p) => drop(p.force_flush()),
            Provider::Logger(p) => drop(p.force_flush()),
            Provider::Meter(p) => drop(p.force_flush()),
        })
        .await;
    }

    /// Flushes and stops every provider, waiting at most the export timeout plus a second.
    /// Call it before the runtime stops and before the last clone is dropped: the exporters
    /// are tasks on the runtime, and the SDK would otherwise shut down in `Drop`, blocking.
    pub async fn shutdown(self) {
        let deadline = self.inner.shutdown_deadline;
        self.each_provider(move |p| match p {
            Provider::Tracer(p) => drop(p.shutdown_with_timeout(deadline)),
            Provider::Logger(p) => drop(p.shutdown_with_timeout(deadline)),
            Provider::Meter(p) => drop(p.shutdown_with_timeout(deadline)),
        })
        .await;
    }

    /// Runs `f` on each provider at once. The SDK's flush and shutdown block until the batch
    /// tasks answer, and those tasks run on this runtime: the blocking calls go to the blocking
    /// pool while this task awaits them, under one deadline.
    async fn each_provider(&self, f: impl Fn(Provider) + Clone + Send + 'static) {
        let p = &self.inner.providers;
        let all = [
            p.tracer.clone().map(Provider::Tracer),
            p.logger.clone().map(Provider::Logger),
            p.meter.clone().map(Provider::Meter),
        ];
        let tasks: Vec<_> = all
            .into_iter()
            .flatten()
            .map(|provider| {
                let f = f.clone();
                tokio::task::spawn_blocking(move || f(provider))
            })
            .collect();
        let _ = tokio::time::timeout(self.inner.shutdown_deadline, async {
            for task in tasks {
                let _ = task.await;
            }
        })
        .await;
    }
}

enum Provider {
    Tracer(SdkTracerProvider),
    Logger(SdkLoggerProvider),
    Meter(SdkMeterProvider),
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.exporting())
            .field("prometheus", &self.inner.prometheus.is_some())
            .finish()
    }
}

fn resource(cfg: &TelemetryConfig) -> Resource {
    Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attributes(
            cfg.resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .chain([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))]),
        )
        .build()
}
