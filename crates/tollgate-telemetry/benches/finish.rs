//! Per-request telemetry cost: `begin` + `finish` for one settled call, with telemetry off,
//! with only the Prometheus reader, and with OTLP export on (to a collector that is not
//! there, so the measurement includes the failing background exports competing for CPU).

// A benchmark: setup failures should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate_core::config::TelemetryConfig;
use tollgate_core::{LedgerEvent, ToolCount, Usage};
use tollgate_telemetry::{Outcome, Telemetry, testing};

fn event() -> LedgerEvent {
    LedgerEvent {
        request_id: "req_01JBENCH".into(),
        user: Some("codex_exec".into()),
        session_id: Some("019a0000-0000-7000-8000-000000000000".into()),
        usage: Usage {
            input: 40_000,
            cached_input: 38_000,
            output: 300,
            reasoning: 128,
        },
        tool_calls: vec![ToolCount {
            name: "exec_command".into(),
            count: 1,
        }],
        outcome: Default::default(),
        unmetered: false,
        units: Default::default(),
        ..testing::event()
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let closed = testing::closed_port();
    let cases = [
        (
            "off",
            TelemetryConfig {
                metrics_path: String::new(),
                ..TelemetryConfig::default()
            },
        ),
        ("prometheus_only", TelemetryConfig::default()),
        (
            "otlp_on",
            TelemetryConfig {
                enabled: Some(true),
                endpoint: Some(format!("http://127.0.0.1:{closed}")),
                export_timeout_ms: 200,
                ..TelemetryConfig::default()
            },
        ),
    ];
    let e = event();
    let headers = http::HeaderMap::new();
    for (name, cfg) in cases {
        let telemetry = Telemetry::start(&cfg).unwrap();
        c.bench_function(&format!("begin_finish/{name}"), |b| {
            b.iter(|| {
                let span = telemetry.begin(&headers);
                telemetry.finish(span, &e, "platform", Outcome::Complete, None);
            })
        });
        rt.block_on(telemetry.shutdown());
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
