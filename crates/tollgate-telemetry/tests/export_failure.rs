//! A collector that is not there: exports fail in the background, `finish` stays fast, the
//! failures are counted in `tollgate_telemetry_export_errors_total`, and the log gets one warning
//! rather than one per request. Its own test binary, because it installs a global tracing
//! subscriber to count those warnings.

// Integration tests: helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tollgate_core::config::TelemetryConfig;
use tollgate_core::{LedgerEvent, Money, ToolCount, Usage};
use tollgate_telemetry::{Outcome, Signal, Telemetry};

fn event() -> LedgerEvent {
    LedgerEvent {
        request_id: "req_x".into(),
        started_at_ms: 1_800_000_000_000,
        finished_at_ms: 1_800_000_001_234,
        team_id: "team_1".into(),
        key_id: "key_abc123def456".into(),
        cost_centre: Some("cc-42".into()),
        user: None,
        session_id: Some("sess-x".into()),
        turn_id: None,
        endpoint: "responses".into(),
        model_requested: Some("gpt-5".into()),
        model_served: Some("gpt-5-2025-08-07".into()),
        status: 200,
        usage: Usage {
            input: 1200,
            cached_input: 1024,
            output: 300,
            reasoning: 128,
        },
        cost: Money(12_345_678),
        price_id: None,
        estimated: false,
        unpriced: false,
        service_tier: None,
        ttfb_ms: Some(420),
        latency_ms: 1234,
        tool_calls: vec![ToolCount {
            name: "apply_patch".into(),
            count: 1,
        }],
    }
}

/// Counts tracing events whose message mentions a failed export.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    captured
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_collector_is_counted_not_logged_and_never_slows_finish() {
    let logs = capture_logs();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = TelemetryConfig {
        export_timeout_ms: 300,
        enabled: true,
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        export_interval_ms: 600_000,
        ..TelemetryConfig::default()
    };
    let telemetry = Telemetry::start(&cfg).unwrap();
    let e = event();
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
    let output = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warnings = output.matches("OpenTelemetry export failed").count();
    assert_eq!(
        warnings, 1,
        "one warning a minute at most, and the first failure warns:\n{output}"
    );
}
