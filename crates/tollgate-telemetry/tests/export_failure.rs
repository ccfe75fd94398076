//! A collector that is not there: exports fail in the background, `finish` stays fast, the
//! failures are counted in `tollgate_telemetry_export_errors_total`, and the log gets one warning
//! rather than one per request. Its own test binary, because it installs a global tracing
//! subscriber to count those warnings.

// Integration tests: helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use tollgate_core::config::TelemetryConfig;
use tollgate_telemetry::testing::{self, capture_logs, closed_port};
use tollgate_telemetry::{Outcome, Signal, Telemetry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_collector_is_counted_not_logged_and_never_slows_finish() {
    let logs = capture_logs();
    let port = closed_port();
    let cfg = TelemetryConfig {
        export_timeout_ms: 300,
        enabled: Some(true),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        export_interval_ms: 600_000,
        ..TelemetryConfig::default()
    };
    let telemetry = Telemetry::start(&cfg).unwrap();
    let e = testing::event();
    let n = 20_000;
    let started = Instant::now();
    for _ in 0..n {
        let span = telemetry.begin(&http::HeaderMap::new());
        telemetry.finish(span, &e, "platform", Outcome::Complete, None);
    }
    let per_op = started.elapsed().as_nanos() / n;
    println!("finish() with an unreachable collector: {per_op} ns/op (debug build)");
    telemetry.flush().await;
    for signal in Signal::ALL {
        assert!(
            telemetry.export_errors(signal) >= 1,
            "{signal:?} failures counted"
        );
    }
    let text = telemetry.prometheus_text();
    let line = text
        .lines()
        .find(|l| l.starts_with("tollgate_telemetry_export_errors_total{signal=\"traces\"}"))
        .unwrap_or_else(|| panic!("no export error series in\n{text}"));
    let count: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1, "{line}");
    telemetry.shutdown().await;
    let output = logs.text();
    let warnings = output.matches("OpenTelemetry export failed").count();
    assert_eq!(
        warnings, 1,
        "one warning a minute at most, and the first failure warns:\n{output}"
    );
}
