//! Failed OTLP exports are counted, not logged per batch: a collector outage must not turn
//! into a log storm on the gateway. Each exporter is wrapped in [`Counted`], which bumps a
//! per-signal counter (reported as `tollgate_telemetry_export_errors_total{signal}`) and warns
//! at most once a minute. The SDK's own internal logs are compiled out (no `internal-logs`
//! feature), so this is the only place export failures surface.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

const WARN_EVERY: Duration = Duration::from_secs(60);

/// The OTLP signal an export carried; the `signal` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    pub fn label(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

/// Failure counts per signal and the time of the last warning.
#[derive(Debug)]
pub struct ExportErrors {
    counts: [AtomicU64; 3],
    /// Milliseconds after `epoch` of the last warning, +1 (0: never warned).
    last_warn: AtomicU64,
    epoch: Instant,
}

impl Default for ExportErrors {
    fn default() -> ExportErrors {
        ExportErrors {
            counts: Default::default(),
            last_warn: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl ExportErrors {
    pub fn count(&self, signal: Signal) -> u64 {
        self.counts[signal as usize].load(Ordering::Relaxed)
    }

    fn record(&self, signal: Signal, error: &dyn std::fmt::Display) {
        let total = self.counts[signal as usize].fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last_warn.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        // compare_exchange: of several exporters failing at once, exactly one warns.
        if due
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                signal = signal.label(),
                failures = total,
                error = %error,
                "OpenTelemetry export failed; failures are counted in \
                 tollgate_telemetry_export_errors_total and this warning repeats at most once a minute"
            );
        }
    }
}

/// An exporter that counts its failures in [`ExportErrors`].
#[derive(Debug)]
pub struct Counted<E> {
    inner: E,
    signal: Signal,
    errors: std::sync::Arc<ExportErrors>,
}

impl<E> Counted<E> {
    pub fn new(inner: E, signal: Signal, errors: std::sync::Arc<ExportErrors>) -> Counted<E> {
        Counted {
            inner,
            signal,
            errors,
        }
    }

    fn tally(&self, result: OTelSdkResult) -> OTelSdkResult {
        if let Err(e) = &result {
            self.errors.record(self.signal, e);
        }
        result
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.tally(self.inner.export(batch).await)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: LogExporter> LogExporter for Counted<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        self.tally(self.inner.export(batch).await)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Counted<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        self.tally(self.inner.export(metrics).await)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
