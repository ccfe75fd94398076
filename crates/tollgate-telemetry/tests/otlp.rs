//! Telemetry against a real OTLP receiver: `tests/otlp/receiver.py`, which decodes every export
//! with the official `opentelemetry-proto` package (installed by `tests/clients/setup.sh`).
//! Spans, cost events and metrics are checked value by value against the ledger events fed in.

// Integration tests: helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use serde_json::Value;
use tollgate_core::config::TelemetryConfig;
use tollgate_core::{LedgerEvent, ToolCount};
use tollgate_telemetry::testing::{
    ALLOWED_LABELS, Receiver, attrs, has_attrs, points, venv_python,
};
use tollgate_telemetry::{Outcome, Signal, Telemetry, testing};

const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";
fn event(request_id: &str, team_id: &str, cost_centre: Option<&str>, session: &str) -> LedgerEvent {
    LedgerEvent {
        request_id: request_id.into(),
        team_id: team_id.into(),
        cost_centre: cost_centre.map(String::from),
        user: Some("codex_exec".into()),
        session_id: Some(session.into()),
        price_id: Some("gpt-5@2025-08-07".into()),
        tool_calls: vec![ToolCount {
            name: "exec_command".into(),
            count: 2,
        }],
        outcome: Default::default(),
        unmetered: false,
        units: Default::default(),
        ..testing::event()
    }
}

/// The data point whose attributes include all of `want`.
fn point(metric: &Value, want: &[(&str, &str)]) -> Value {
    points(metric)
        .into_iter()
        .find(|p| has_attrs(p, want))
        .unwrap_or_else(|| panic!("no point with {want:?} in {metric:#}"))
}

fn config(endpoint: String) -> TelemetryConfig {
    TelemetryConfig {
        enabled: Some(true),
        endpoint: Some(endpoint),
        headers: tollgate_core::config::OtlpHeaders(
            [("x-collector-key".to_string(), "secret-1".to_string())].into(),
        ),
        // Metrics leave on flush/shutdown only: the test sees one deterministic export.
        export_interval_ms: 600_000,
        export_timeout_ms: 2_000,
        log_prompts: true,
        ..TelemetryConfig::default()
    }
}

/// Feeds the scripted requests; returns the traceparent injected upstream for the first.
fn feed(telemetry: &Telemetry) -> String {
    let mut incoming = http::HeaderMap::new();
    incoming.insert(
        "traceparent",
        format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
            .parse()
            .unwrap(),
    );
    let mut span = telemetry.begin(&incoming);
    let mut upstream = http::HeaderMap::new();
    span.inject(&mut upstream);
    span.set_response_id("resp_0123");
    let prompt = br#"{"input":"use key sk-proj-ABCDEFGHIJKLMNOPQRST and mail dev@example.com"}"#;
    telemetry.finish(
        span,
        &event("req_a", "team_1", Some("cc-42"), "sess-1"),
        "platform",
        Outcome::Complete,
        Some(prompt),
    );
    // Another team, no cost centre, no client trace; a tool loop in one response.
    let mut looping = event("req_b", "team_2", None, "sess-2");
    looping.tool_calls = vec![ToolCount {
        name: "exec_command".into(),
        count: 50,
    }];
    telemetry.finish(
        telemetry.begin(&http::HeaderMap::new()),
        &looping,
        "research",
        Outcome::Complete,
        None,
    );
    telemetry.rejection("platform", "cc-42", "budget");
    upstream["traceparent"].to_str().unwrap().to_string()
}

fn check_export(r: &Receiver, traceparent: &str) {
    // The upstream sees our span as the parent, inside the client's trace.
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], CLIENT_TRACE, "{traceparent}");
    assert_ne!(parts[2], CLIENT_SPAN);

    let spans = r.spans();
    let a = spans
        .iter()
        .find(|s| attrs(&s["attributes"])["tollgate.request_id"] == "req_a")
        .unwrap_or_else(|| panic!("no span for req_a in {spans:#?}"));
    assert_eq!(a["name"], "chat gpt-5");
    assert_eq!(a["traceId"], CLIENT_TRACE);
    assert_eq!(a["parentSpanId"], CLIENT_SPAN);
    assert_eq!(a["spanId"], parts[2]);
    assert_eq!(a["endTimeUnixNano"], "1800000001234000000");
    let expected: BTreeMap<&str, &str> = [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "gpt-5"),
        ("gen_ai.response.model", "gpt-5-2025-08-07"),
        ("gen_ai.response.id", "resp_0123"),
        ("gen_ai.usage.input_tokens", "1200"),
        ("gen_ai.usage.output_tokens", "300"),
        ("gen_ai.usage.cache_read.input_tokens", "1024"),
        ("gen_ai.usage.reasoning.output_tokens", "128"),
        ("http.response.status_code", "200"),
        ("tollgate.team", "platform"),
        ("tollgate.cost_centre", "cc-42"),
        ("tollgate.key_id", "key_abc123def456"),
        ("tollgate.cost_usd", "0.012345678"),
        ("tollgate.cost_nano_usd", "12345678"),
        ("tollgate.session_id", "sess-1"),
        ("tollgate.request_id", "req_a"),
        ("tollgate.estimated", "false"),
    ]
    .into();
    let span_attrs = attrs(&a["attributes"]);
    for (k, v) in &expected {
        assert_eq!(span_attrs.get(*k).map(String::as_str), Some(*v), "span {k}");
    }

    // The cost event: same values, linked to the span, prompt redacted.
    let logs = r.logs();
    let cost = logs
        .iter()
        .find(|l| {
            l["eventName"] == "tollgate.cost"
                && attrs(&l["attributes"])["tollgate.request_id"] == "req_a"
        })
        .unwrap_or_else(|| panic!("no tollgate.cost for req_a in {logs:#?}"));
    let log_attrs = attrs(&cost["attributes"]);
    for (k, v) in &expected {
        assert_eq!(log_attrs.get(*k).map(String::as_str), Some(*v), "log {k}");
    }
    assert_eq!(cost["traceId"], CLIENT_TRACE);
    assert_eq!(cost["spanId"], parts[2]);
    let prompt = &log_attrs["tollgate.prompt"];
    assert!(
        prompt.contains("[REDACTED]") && !prompt.contains("sk-proj") && !prompt.contains("dev@"),
        "{prompt}"
    );
    let b = logs
        .iter()
        .find(|l| {
            attrs(&l["attributes"])
                .get("tollgate.request_id")
                .map(String::as_str)
                == Some("req_b")
                && l["eventName"] == "tollgate.cost"
        })
        .unwrap();
    assert!(
        !attrs(&b["attributes"]).contains_key("tollgate.prompt"),
        "no prompt passed, none logged"
    );
    assert!(
        logs.iter()
            .any(|l| l["eventName"] == "tollgate.session.loop"
                && attrs(&l["attributes"])["tollgate.session_id"] == "sess-2"),
        "loop event for sess-2"
    );

    // Metrics: values per team and cost centre; no label outside the catalogue's.
    let m = r.metrics();
    let platform = [("team", "platform"), ("cost_centre", "cc-42")];
    assert_eq!(point(&m["tollgate.requests"], &platform)["asInt"], "1");
    assert_eq!(
        point(
            &m["tollgate.requests"],
            &[("team", "research"), ("cost_centre", "")]
        )["asInt"],
        "1"
    );
    let kind = |k| [("team", "platform"), ("cost_centre", "cc-42"), ("kind", k)];
    assert_eq!(
        point(&m["tollgate.tokens"], &kind("input"))["asInt"],
        "1200"
    );
    assert_eq!(
        point(&m["tollgate.tokens"], &kind("cached_input"))["asInt"],
        "1024"
    );
    assert_eq!(
        point(&m["tollgate.tokens"], &kind("output"))["asInt"],
        "300"
    );
    assert_eq!(
        point(&m["tollgate.tokens"], &kind("reasoning"))["asInt"],
        "128"
    );
    assert_eq!(point(&m["tollgate.spend"], &platform)["asInt"], "12345678");
    assert_eq!(
        point(
            &m["tollgate.tool_calls"],
            &[("team", "research"), ("tool", "exec_command")]
        )["asInt"],
        "50"
    );
    assert_eq!(
        point(&m["tollgate.session.loop_events"], &[("team", "research")])["asInt"],
        "1"
    );
    assert_eq!(
        point(&m["tollgate.rejections"], &[("reason", "budget")])["asInt"],
        "1"
    );
    let duration = point(&m["tollgate.request.duration"], &platform);
    assert_eq!(duration["sum"], 1.234);
    assert_eq!(
        duration["explicitBounds"],
        serde_json::json!([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0
        ])
    );
    assert_eq!(m["tollgate.request.duration"]["unit"], "s");
    for (name, metric) in &m {
        for p in points(metric) {
            for key in attrs(&p["attributes"]).keys() {
                assert!(
                    ALLOWED_LABELS.contains(&key.as_str()),
                    "{name} carries label {key}"
                );
            }
        }
    }
}

/// Exports the script through `cfg` to `r` and checks it value by value; returns every export
/// (traces, metrics, logs) for the caller's transport checks.
async fn export_script(r: &Receiver, cfg: &TelemetryConfig) -> Vec<Value> {
    let telemetry = Telemetry::start(cfg).unwrap();
    assert!(telemetry.exporting());
    let traceparent = feed(&telemetry);
    telemetry.shutdown().await;
    check_export(r, &traceparent);
    let mut exports = r.exports("traces");
    exports.extend(r.exports("metrics"));
    exports.extend(r.exports("logs"));
    exports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_carries_spans_cost_events_and_metrics() {
    let r = Receiver::start(&venv_python());
    let cfg = config(format!("http://127.0.0.1:{}", r.http_port));
    for export in export_script(&r, &cfg).await {
        assert_eq!(export["transport"], "http");
        assert_eq!(export["headers"]["x-collector-key"], "secret-1");
        assert_eq!(export["headers"]["content-type"], "application/x-protobuf");
    }
    let resource = &r.exports("traces")[0]["body"]["resourceSpans"][0]["resource"];
    assert_eq!(attrs(&resource["attributes"])["service.name"], "tollgate");
}

// A current-thread runtime: flush and shutdown must not block the thread the batch tasks run on.
#[tokio::test(flavor = "current_thread")]
async fn grpc_export_carries_the_same() {
    let r = Receiver::start(&venv_python());
    let cfg = TelemetryConfig {
        protocol: "grpc".into(),
        ..config(format!("http://127.0.0.1:{}", r.grpc_port))
    };
    for export in export_script(&r, &cfg).await {
        assert_eq!(export["transport"], "grpc");
        assert_eq!(export["headers"]["x-collector-key"], "secret-1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_collector_is_trusted_through_ca_file_over_both_transports() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let r = Receiver::start_with(
        &venv_python(),
        &[
            "--tls-cert".as_ref(),
            cert_path.as_os_str(),
            "--tls-key".as_ref(),
            key_path.as_os_str(),
        ],
    );
    for (protocol, port) in [("http/protobuf", r.http_port), ("grpc", r.grpc_port)] {
        let cfg = TelemetryConfig {
            protocol: protocol.into(),
            ca_file: Some(cert_path.display().to_string()),
            ..config(format!("https://localhost:{port}"))
        };
        let telemetry = Telemetry::start(&cfg).unwrap();
        feed(&telemetry);
        telemetry.flush().await;
        for signal in Signal::ALL {
            assert_eq!(telemetry.export_errors(signal), 0, "{protocol} {signal:?}");
        }
        telemetry.shutdown().await;
    }
    let transports: Vec<String> = r
        .exports("traces")
        .iter()
        .map(|e| e["transport"].as_str().unwrap().to_string())
        .collect();
    assert!(
        transports.contains(&"http".to_string()) && transports.contains(&"grpc".to_string()),
        "{transports:?}"
    );

    // Without the CA the collector's certificate is refused, and that is counted.
    let cfg = TelemetryConfig {
        export_timeout_ms: 500,
        ..config(format!("https://localhost:{}", r.http_port))
    };
    let telemetry = Telemetry::start(&cfg).unwrap();
    feed(&telemetry);
    telemetry.flush().await;
    assert!(telemetry.export_errors(Signal::Traces) >= 1);
    telemetry.shutdown().await;
}
