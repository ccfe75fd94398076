//! `/metrics`: the MeterProvider's on-demand reader rendered as Prometheus text exposition
//! format 0.0.4. The reader is registered on the same MeterProvider as the OTLP periodic
//! reader, so both see the same instruments and the same measurements.

use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{
    AggregatedMetrics, Histogram, Metric, MetricData, ResourceMetrics,
};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};

/// The content type of what [`render`] produces.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A [`ManualReader`] the MeterProvider owns and tollgate keeps a handle to.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedReader(pub(crate) Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        // Prometheus counters are cumulative by definition.
        self.0.temporality(kind)
    }
}

/// The Prometheus name of an instrument: dots to underscores, the unit appended unless the
/// name already ends with it, `_total` for counters — the Collector's translation rules.
pub fn prometheus_name(name: &str, unit: &str, counter: bool) -> String {
    let mut out = sanitize(name);
    let suffix = match unit {
        "s" => "seconds",
        "ms" => "milliseconds",
        "By" => "bytes",
        "1" if !counter => "ratio",
        u if u.starts_with('{') || u == "1" || u.is_empty() => "",
        u => u,
    };
    if !suffix.is_empty() && !out.ends_with(&format!("_{suffix}")) {
        out.push('_');
        out.push_str(&sanitize(suffix));
    }
    if counter && !out.ends_with("_total") {
        out.push_str("_total");
    }
    out
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Renders one collection. Metrics without data points are left out.
pub(crate) fn render(rm: &ResourceMetrics) -> String {
    let mut out = String::with_capacity(4096);
    for metric in rm.scope_metrics().flat_map(|s| s.metrics()) {
        match metric.data() {
            AggregatedMetrics::U64(data) => render_data(&mut out, metric, data, |v| v.to_string()),
            AggregatedMetrics::I64(data) => render_data(&mut out, metric, data, |v| v.to_string()),
            AggregatedMetrics::F64(data) => render_data(&mut out, metric, data, |v| float(*v)),
        }
    }
    out
}

fn render_data<T>(
    out: &mut String,
    metric: &Metric,
    data: &MetricData<T>,
    value: impl Fn(&T) -> String,
) where
    T: Copy,
{
    match data {
        MetricData::Sum(sum) => {
            let counter = sum.is_monotonic();
            let points: Vec<_> = sum
                .data_points()
                .map(|p| (p.attributes().cloned().collect::<Vec<_>>(), p.value()))
                .collect();
            let kind = if counter { "counter" } else { "gauge" };
            series(out, metric, counter, kind, &points, &value);
        }
        MetricData::Gauge(gauge) => {
            let points: Vec<_> = gauge
                .data_points()
                .map(|p| (p.attributes().cloned().collect::<Vec<_>>(), p.value()))
                .collect();
            series(out, metric, false, "gauge", &points, &value);
        }
        MetricData::Histogram(hist) => histogram(out, metric, hist, &value),
        // tollgate creates no exponential histograms.
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn header(out: &mut String, name: &str, metric: &Metric, kind: &str) {
    let help = metric
        .description()
        .replace('\\', "\\\\")
        .replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn series<T>(
    out: &mut String,
    metric: &Metric,
    counter: bool,
    kind: &str,
    points: &[(Vec<KeyValue>, T)],
    value: &impl Fn(&T) -> String,
) {
    if points.is_empty() {
        return;
    }
    let name = prometheus_name(metric.name(), metric.unit(), counter);
    header(out, &name, metric, kind);
    for (attrs, v) in points {
        let _ = writeln!(out, "{name}{} {}", labels(attrs, None), value(v));
    }
}

fn histogram<T: Copy>(
    out: &mut String,
    metric: &Metric,
    hist: &Histogram<T>,
    value: &impl Fn(&T) -> String,
) {
    let mut points = hist.data_points().peekable();
    if points.peek().is_none() {
        return;
    }
    let name = prometheus_name(metric.name(), metric.unit(), false);
    header(out, &name, metric, "histogram");
    for p in points {
        let attrs: Vec<KeyValue> = p.attributes().cloned().collect();
        let mut cumulative = 0u64;
        // The SDK reports one more count than bounds: the last is the overflow (+Inf) bucket.
        let counts: Vec<u64> = p.bucket_counts().collect();
        for (bound, count) in p.bounds().zip(&counts) {
            cumulative += count;
            let le = float(bound);
            let _ = writeln!(
                out,
                "{name}_bucket{} {cumulative}",
                labels(&attrs, Some(&le))
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{} {}",
            labels(&attrs, Some("+Inf")),
            p.count()
        );
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            labels(&attrs, None),
            value(&p.sum())
        );
        let _ = writeln!(out, "{name}_count{} {}", labels(&attrs, None), p.count());
    }
}

fn labels(attrs: &[KeyValue], le: Option<&str>) -> String {
    if attrs.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
    for (i, kv) in sorted.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{}=\"{}\"",
            sanitize(kv.key.as_str()),
            escape(&kv.value.as_str())
        );
    }
    if let Some(le) = le {
        if !sorted.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
    out
}

/// Label value escaping of the text format: backslash, double quote, line feed.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Go-compatible float text: `+Inf`, `-Inf`, `NaN`, otherwise Rust's shortest round-trip form.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_catalogue() {
        use crate::names::*;
        let cases = [
            (REQUESTS, true, "tollgate_requests_total"),
            (TOKENS, true, "tollgate_tokens_total"),
            (SPEND, true, "tollgate_spend_nano_usd_total"),
            (REQUEST_DURATION, false, "tollgate_request_duration_seconds"),
            (
                TIME_TO_FIRST_BYTE,
                false,
                "tollgate_time_to_first_byte_seconds",
            ),
            (TOOL_CALLS, true, "tollgate_tool_calls_total"),
            (REJECTIONS, true, "tollgate_rejections_total"),
            (UPSTREAM_ERRORS, true, "tollgate_upstream_errors_total"),
            (BUDGET_USED, false, "tollgate_budget_used_ratio"),
            (BUDGET_EVENTS, true, "tollgate_budget_events_total"),
            (
                SESSION_LOOP_EVENTS,
                true,
                "tollgate_session_loop_events_total",
            ),
            (
                SESSION_COST_EVENTS,
                true,
                "tollgate_session_cost_events_total",
            ),
            (LEDGER_QUEUE_DEPTH, false, "tollgate_ledger_queue_depth"),
            (LEDGER_SPOOL, false, "tollgate_ledger_spool_bytes"),
            (
                EXPORT_ERRORS,
                true,
                "tollgate_telemetry_export_errors_total",
            ),
        ];
        for (def, counter, expected) in cases {
            assert_eq!(prometheus_name(def.name, def.unit, counter), expected);
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let attrs = [KeyValue::new("team", "a\"b\\c\nd")];
        assert_eq!(labels(&attrs, None), r#"{team="a\"b\\c\nd"}"#);
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(0.005), "0.005");
        assert_eq!(float(300.0), "300");
    }
}
