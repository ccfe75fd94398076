//! The OTLP intake (`/otlp/v1/{traces,metrics,logs}`) through the real gateway: exports built
//! with the official `opentelemetry-proto` messages (prost), sent with team keys, and read back
//! where an operator would look — the real OTLP receiver (`tests/otlp/receiver.py`, decoding
//! with Python's `opentelemetry-proto`) standing in for the collector, and the gateway's own
//! `GET /metrics` for what was dropped.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::io::Write as _;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use serde_json::Value;

use tollgate_mock::MockOptions;
use tollgate_telemetry::testing::{Receiver, attrs, closed_port, venv_python};
use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, Reply, eventually};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";
const NOW_NS: u64 = 1_800_000_000_000_000_000;

// ------------------------------------------------------------------ export messages

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// A Codex-like resource: its service name (how tests find their exports among tollgate's
/// own) and whatever else the client claims.
fn resource(service: &str, claims: &[(&str, &str)]) -> Option<Resource> {
    let mut attributes = vec![string("service.name", service)];
    attributes.extend(claims.iter().map(|(k, v)| string(k, v)));
    Some(Resource {
        attributes,
        ..Resource::default()
    })
}

fn traces(service: &str, claims: &[(&str, &str)]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service, claims),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![0x5b; 16],
                    span_id: vec![0xee; 8],
                    name: "codex.turn".into(),
                    kind: 1,
                    start_time_unix_nano: NOW_NS,
                    end_time_unix_nano: NOW_NS + 1_000_000,
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn metrics(service: &str, claims: &[(&str, &str)]) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(service, claims),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "codex.tool.call".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: NOW_NS,
                            value: Some(number_data_point::Value::AsInt(3)),
                            ..NumberDataPoint::default()
                        }],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Metric::default()
                }],
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

fn logs(service: &str, claims: &[(&str, &str)]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service, claims),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: NOW_NS,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("codex.api_request".into())),
                    }),
                    ..LogRecord::default()
                }],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

// ------------------------------------------------------------------------- sending

/// POSTs an export body to `/otlp/v1/<signal>` with `key` (if any).
async fn send(
    h: &Harness,
    signal: &str,
    key: Option<&str>,
    content_type: &str,
    gzipped: bool,
    body: Vec<u8>,
) -> Reply {
    let mut headers = vec![("content-type", content_type.to_string())];
    if let Some(key) = key {
        headers.push(("authorization", format!("Bearer {key}")));
    }
    if gzipped {
        headers.push(("content-encoding", "gzip".into()));
    }
    h.http
        .send(
            Method::POST,
            &format!("{}/otlp/v1/{signal}", h.base()),
            &headers,
            body,
        )
        .await
}

/// The `google.rpc.Status` of a refusal, decoded as the request was encoded.
fn status_body(reply: &Reply) -> (i64, String) {
    let content_type = reply.headers["content-type"].to_str().unwrap();
    if content_type == JSON {
        let v: Value = serde_json::from_slice(&reply.body).unwrap();
        return (
            v["code"].as_i64().unwrap(),
            v["message"].as_str().unwrap().to_string(),
        );
    }
    assert_eq!(content_type, PROTOBUF);
    // google.rpc.Status: code (1, varint), message (2, string); decoded field by field.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Status {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let s = Status::decode(reply.body.clone()).unwrap();
    (i64::from(s.code), s.message)
}

fn assert_refused(reply: &Reply, status: StatusCode, code: i64) -> String {
    assert_eq!(reply.status, status, "{reply:?}");
    let (got, message) = status_body(reply);
    assert_eq!(got, code, "{message}");
    assert!(!message.is_empty());
    message
}

// ----------------------------------------------------------------------- receiving

async fn arrived(r: &Receiver, signal: &str, service: &str, count: usize) {
    let ok = eventually(Duration::from_secs(10), || async {
        r.resources(signal, service).len() >= count
    })
    .await;
    assert!(
        ok,
        "{count} {signal} export(s) of {service} never reached the receiver"
    );
}

async fn team_id(h: &Harness, team: &str) -> String {
    let reply = h
        .http
        .send(
            Method::GET,
            &format!("{}/admin/v1/teams/{team}", h.base()),
            &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json()["id"].as_str().unwrap().to_string()
}

fn key_id(key: &str) -> String {
    key.split('-').nth(1).unwrap().to_string()
}

/// `tollgate_intake_dropped_total{signal, reason}` from the gateway's `/metrics`.
async fn dropped(h: &Harness, signal: &str, reason: &str) -> f64 {
    h.metric(
        "tollgate_intake_dropped_total",
        &[("signal", signal), ("reason", reason)],
    )
    .await
}

// --------------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_arrive_stamped_with_their_own_team_whatever_the_client_claims() {
    let r = Receiver::start(&venv_python());
    let h = Harness::start_custom(
        Backend::Sqlite,
        MockOptions::default(),
        tollgate_tests::exporting_to(&r),
    )
    .await;
    let (key_a, key_b) = (h.team_key("platform").await, h.team_key("research").await);
    let (id_a, id_b) = (team_id(&h, "platform").await, team_id(&h, "research").await);
    // Team A's client claims to be team B; team B's claims team A's id and key.
    let claims_a = [("tollgate.team", "research"), ("tollgate.secret", "x")];
    let a_key_id = key_id(&key_a);
    let claims_b = [
        ("tollgate.team_id", id_a.as_str()),
        ("tollgate.key_id", a_key_id.as_str()),
    ];
    for (key, service, claims) in [
        (&key_a, "codex-a", &claims_a[..]),
        (&key_b, "codex-b", &claims_b[..]),
    ] {
        for (signal, body) in [
            ("traces", traces(service, claims).encode_to_vec()),
            ("metrics", metrics(service, claims).encode_to_vec()),
            ("logs", logs(service, claims).encode_to_vec()),
        ] {
            let reply = send(&h, signal, Some(key), PROTOBUF, false, body).await;
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
            assert_eq!(reply.headers["content-type"], PROTOBUF);
            assert!(reply.body.is_empty(), "an empty Export*ServiceResponse");
        }
    }
    for (service, team, id, key) in [
        ("codex-a", "platform", &id_a, &key_a),
        ("codex-b", "research", &id_b, &key_b),
    ] {
        for signal in ["traces", "metrics", "logs"] {
            arrived(&r, signal, service, 1).await;
            let got = r.resources(signal, service);
            assert_eq!(got.len(), 1, "{signal}: {got:?}");
            let a = &got[0];
            assert_eq!(a["tollgate.team"], team, "{signal}: {a:?}");
            assert_eq!(&a["tollgate.team_id"], id, "{signal}: {a:?}");
            assert_eq!(a["tollgate.cost_centre"], "CC-1", "{signal}: {a:?}");
            assert_eq!(a["tollgate.key_id"], key_id(key), "{signal}: {a:?}");
            assert!(!a.contains_key("tollgate.secret"), "{a:?}");
            let tollgate_keys = a.keys().filter(|k| k.starts_with("tollgate.")).count();
            assert_eq!(tollgate_keys, 4, "{a:?}");
        }
    }
    // The data itself is passed on untouched.
    let spans = r.spans();
    let span = spans.iter().find(|s| s["name"] == "codex.turn").unwrap();
    assert_eq!(span["traceId"], "5b".repeat(16));
    assert_eq!(span["spanId"], "ee".repeat(8));
    let m = &r.metrics()["codex.tool.call"];
    assert_eq!(m["sum"]["dataPoints"][0]["asInt"], "3");
    // Counted per team and signal.
    let text = h
        .http
        .send(
            Method::GET,
            &format!("{}/metrics", h.base()),
            &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
            "",
        )
        .await;
    let text = String::from_utf8_lossy(&text.body).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("tollgate_intake_exports_total{")
                && l.contains("team=\"research\"")
                && l.contains("signal=\"logs\"")
                && l.ends_with(" 1")),
        "{text}"
    );
    h.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_gzip_bodies_are_accepted() {
    let r = Receiver::start(&venv_python());
    let h = Harness::start_custom(
        Backend::Sqlite,
        MockOptions::default(),
        tollgate_tests::exporting_to(&r),
    )
    .await;
    let key = h.team_key("platform").await;
    // OTLP/JSON as the specification writes it: lowerCamelCase, hex ids, enum integers, 64-bit
    // integers as strings, and a field this version does not know (ignored).
    let json = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "codex-json"}},
            {"key": "tollgate.team", "value": {"stringValue": "someone-else"}}]},
        "scopeLogs": [{"scope": {"name": "codex_otel"}, "logRecords": [{
            "timeUnixNano": "1800000000000000000", "severityNumber": 9,
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "body": {"stringValue": "codex.tool_result"},
            "attributes": [{"key": "duration_ms", "value": {"intValue": "12"}}],
            "futureField": true}]}]}]});
    let reply = send(
        &h,
        "logs",
        Some(&key),
        JSON,
        false,
        json.to_string().into_bytes(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.headers["content-type"], JSON);
    assert_eq!(reply.json(), serde_json::json!({}));
    // gzip, protobuf and JSON.
    let body = gzip(&metrics("codex-gzip", &[]).encode_to_vec());
    let reply = send(&h, "metrics", Some(&key), PROTOBUF, true, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let body = gzip(json.to_string().as_bytes());
    let reply = send(
        &h,
        "logs",
        Some(&key),
        "application/json; charset=utf-8",
        true,
        body,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");

    arrived(&r, "logs", "codex-json", 2).await;
    arrived(&r, "metrics", "codex-gzip", 1).await;
    for a in r.resources("logs", "codex-json") {
        assert_eq!(a["tollgate.team"], "platform", "{a:?}");
    }
    let record = r
        .logs()
        .into_iter()
        .find(|l| l["body"]["stringValue"] == "codex.tool_result")
        .unwrap();
    assert_eq!(record["traceId"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(record["spanId"], "eee19b7ec3c1b174");
    assert_eq!(record["severityNumber"], "SEVERITY_NUMBER_INFO");
    assert_eq!(attrs(&record["attributes"])["duration_ms"], "12");
    h.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_follow_otlp_and_forward_nothing() {
    let r = Receiver::start(&venv_python());
    let to = tollgate_tests::exporting_to(&r);
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        to(c);
        c.intake.max_body_bytes = 4096;
    })
    .await;
    let key = h.team_key("platform").await;
    let good = || logs("codex-refused", &[]).encode_to_vec();

    // No key, a wrong key, a revoked key: 401 with UNAUTHENTICATED, protobuf or JSON.
    let reply = send(&h, "logs", None, PROTOBUF, false, good()).await;
    assert_refused(&reply, StatusCode::UNAUTHORIZED, 16);
    let mut wrong = key.clone();
    wrong.pop();
    wrong.push(if key.ends_with('a') { 'b' } else { 'a' });
    let json = serde_json::to_vec(&logs("codex-refused", &[])).unwrap();
    let reply = send(&h, "logs", Some(&wrong), JSON, false, json).await;
    let message = assert_refused(&reply, StatusCode::UNAUTHORIZED, 16);
    assert!(message.contains("Bearer"), "{message}");
    let revoked = h.team_key("platform").await;
    h.revoke_key(&revoked).await;
    let gone = eventually(Duration::from_secs(5), || async {
        send(&h, "logs", Some(&revoked), PROTOBUF, false, good())
            .await
            .status
            == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(gone, "a revoked key still exports");

    // Malformed, oversized (as sent, and once decompressed), wrong content type or encoding.
    let reply = send(
        &h,
        "traces",
        Some(&key),
        PROTOBUF,
        false,
        b"\x0a\xff\xff\xff".to_vec(),
    )
    .await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, 3);
    let reply = send(
        &h,
        "traces",
        Some(&key),
        JSON,
        false,
        b"{\"resourceSpans\": 7}".to_vec(),
    )
    .await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, 3);
    let reply = send(&h, "logs", Some(&key), PROTOBUF, true, b"not gzip".to_vec()).await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, 3);
    let reply = send(&h, "logs", Some(&key), PROTOBUF, false, vec![0; 5000]).await;
    assert_refused(&reply, StatusCode::PAYLOAD_TOO_LARGE, 3);
    let bomb = gzip(&vec![0; 1 << 20]);
    assert!(bomb.len() < 4096);
    let reply = send(&h, "logs", Some(&key), PROTOBUF, true, bomb).await;
    assert_refused(&reply, StatusCode::PAYLOAD_TOO_LARGE, 3);
    let reply = send(&h, "logs", Some(&key), "text/plain", false, good()).await;
    assert_refused(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, 3);
    let reply = h
        .http
        .send(
            Method::POST,
            &format!("{}/otlp/v1/logs", h.base()),
            &[
                ("authorization", format!("Bearer {key}")),
                ("content-type", PROTOBUF.into()),
                ("content-encoding", "br".into()),
            ],
            good(),
        )
        .await;
    assert_refused(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, 3);
    let reply = h
        .http
        .send(
            Method::GET,
            &format!("{}/otlp/v1/logs", h.base()),
            &[("authorization", format!("Bearer {key}"))],
            "",
        )
        .await;
    assert_refused(&reply, StatusCode::METHOD_NOT_ALLOWED, 12);
    assert_eq!(reply.headers["allow"], "POST");
    let reply = send(&h, "profiles", Some(&key), PROTOBUF, false, good()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    // One good export as a barrier: once it has arrived, anything forwarded before it has too.
    let barrier = logs("codex-barrier", &[]).encode_to_vec();
    let reply = send(&h, "logs", Some(&key), PROTOBUF, false, barrier).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    arrived(&r, "logs", "codex-barrier", 1).await;
    for signal in ["traces", "metrics", "logs"] {
        assert!(r.resources(signal, "codex-refused").is_empty(), "{signal}");
    }
    assert!(r.spans().is_empty(), "no malformed span was forwarded");
    h.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429_with_retry_after_per_key() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.intake.exports_per_minute = 2;
    })
    .await;
    let (key, other) = (h.team_key("platform").await, h.team_key("platform").await);
    let body = || traces("codex-limited", &[]).encode_to_vec();
    for _ in 0..2 {
        let reply = send(&h, "traces", Some(&key), PROTOBUF, false, body()).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    let reply = send(&h, "traces", Some(&key), PROTOBUF, false, body()).await;
    assert_refused(&reply, StatusCode::TOO_MANY_REQUESTS, 8);
    let retry: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    let json = serde_json::to_vec(&traces("codex-limited", &[])).unwrap();
    let reply = send(&h, "traces", Some(&key), JSON, false, json).await;
    assert_refused(&reply, StatusCode::TOO_MANY_REQUESTS, 8);
    // Another key of the same team has its own allowance.
    let reply = send(&h, "traces", Some(&other), PROTOBUF, false, body()).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    h.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_or_stalled_neither_slows_nor_fails_the_intake() {
    // Down: every connection refused.
    let closed = closed_port();
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.telemetry.enabled = Some(true);
        c.telemetry.endpoint = Some(format!("http://127.0.0.1:{closed}"));
        c.telemetry.export_interval_ms = 600_000;
        c.telemetry.export_timeout_ms = 1_000;
    })
    .await;
    let key = h.team_key("platform").await;
    let started = Instant::now();
    for _ in 0..20 {
        let reply = send(
            &h,
            "logs",
            Some(&key),
            PROTOBUF,
            false,
            logs("c", &[]).encode_to_vec(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let counted = eventually(Duration::from_secs(10), || async {
        dropped(&h, "logs", "send_failed").await >= 20.0
    })
    .await;
    assert!(
        counted,
        "send failures are counted: {}",
        dropped(&h, "logs", "send_failed").await
    );
    h.gateway.shutdown().await;

    // Stalled: connections are accepted and never answered; one send at a time, a queue of one.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stalled.local_addr().unwrap().port();
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.telemetry.enabled = Some(true);
        c.telemetry.endpoint = Some(format!("http://127.0.0.1:{port}"));
        c.telemetry.export_interval_ms = 600_000;
        c.telemetry.export_timeout_ms = 5_000;
        c.intake.queue = 1;
        c.intake.concurrency = 1;
    })
    .await;
    let key = h.team_key("platform").await;
    for _ in 0..10 {
        let started = Instant::now();
        let reply = send(
            &h,
            "metrics",
            Some(&key),
            PROTOBUF,
            false,
            metrics("c", &[]).encode_to_vec(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    // One in flight, one waiting for it, one queued: the rest were dropped, and counted, at once.
    assert!(dropped(&h, "metrics", "queue_full").await >= 7.0);
    drop(stalled);
    h.gateway.shutdown().await;

    // No destination at all (tollgate's own export off): accepted, dropped, counted.
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let reply = send(
        &h,
        "traces",
        Some(&key),
        PROTOBUF,
        false,
        traces("c", &[]).encode_to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(dropped(&h, "traces", "no_destination").await, 1.0);
    h.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_intake_is_not_served() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.intake.enabled = false;
    })
    .await;
    let key = h.team_key("platform").await;
    let reply = send(
        &h,
        "logs",
        Some(&key),
        PROTOBUF,
        false,
        logs("c", &[]).encode_to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    h.gateway.shutdown().await;
}

// ------------------------------------------------------- Codex's signals, joined to sessions

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// A span as Codex 0.169 exports it (names and attributes recorded from `codex exec`).
fn codex_span(name: &str, id: u8, millis: u64, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![0x11; 16],
        span_id: vec![id; 8],
        name: name.into(),
        start_time_unix_nano: NOW_NS,
        end_time_unix_nano: NOW_NS + millis * 1_000_000,
        attributes,
        ..Span::default()
    }
}

fn codex_traces(spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("codex_exec", &[]),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

/// A turn of `session`: 2.5 s, with Codex's own token counts; and Codex's other spans, which
/// say nothing (an OS thread's integer `thread.id` is not a session).
fn turn_spans(session: &str, id: u8) -> Vec<u8> {
    codex_traces(vec![
        codex_span(
            "session_task.turn",
            id,
            2_500,
            vec![
                string("thread.id", session),
                string("turn.id", "turn-1"),
                int("codex.turn.token_usage.input_tokens", 6934),
                int("codex.turn.token_usage.cached_input_tokens", 3467),
                int("codex.turn.token_usage.output_tokens", 56),
                int("codex.turn.token_usage.reasoning_output_tokens", 16),
            ],
        ),
        codex_span("run_turn", id + 1, 2_000, vec![int("thread.id", 3)]),
        codex_span("session_task.turn", id + 2, 100, vec![int("thread.id", 3)]),
    ])
}

fn codex_logs(session: &str) -> Vec<u8> {
    let event = |attributes: Vec<KeyValue>, at: u64| LogRecord {
        time_unix_nano: NOW_NS + at,
        attributes,
        ..LogRecord::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("codex_exec", &[]),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    event(
                        vec![
                            string("event.name", "codex.tool_decision"),
                            string("conversation.id", session),
                            string("tool_name", "exec_command"),
                            string("decision", "approved"),
                            string("call_id", "call_1"),
                        ],
                        1,
                    ),
                    event(
                        vec![
                            string("event.name", "codex.api_request"),
                            string("conversation.id", session),
                            int("http.response.status_code", 429),
                            string("error.message", "rate limited"),
                        ],
                        2,
                    ),
                    event(
                        vec![
                            string("event.name", "codex.api_request"),
                            string("conversation.id", session),
                            int("http.response.status_code", 200),
                        ],
                        3,
                    ),
                ],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
    .encode_to_vec()
}

/// Codex's `codex.turn.token_usage`: a delta histogram per token type.
fn codex_token_usage(input: f64, output: f64) -> Vec<u8> {
    use opentelemetry_proto::tonic::metrics::v1::{Histogram, HistogramDataPoint};
    let point = |kind: &str, sum: f64| HistogramDataPoint {
        attributes: vec![string("token_type", kind)],
        time_unix_nano: NOW_NS,
        count: 1,
        sum: Some(sum),
        ..HistogramDataPoint::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("codex_exec", &[]),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "codex.turn.token_usage".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![
                            point("input", input),
                            point("output", output),
                            point("total", input + output),
                        ],
                        aggregation_temporality: 1,
                    })),
                    ..Metric::default()
                }],
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
    .encode_to_vec()
}

async fn session(h: &Harness, team: &str, id: &str) -> Value {
    let reply = h
        .http
        .send(
            Method::GET,
            &format!("{}/admin/v1/sessions/{id}?team={team}", h.base()),
            &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json()
}

async fn accepted(h: &Harness, signal: &str, key: &str, body: Vec<u8>) {
    let reply = send(h, signal, Some(key), PROTOBUF, false, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

/// Codex's spans and events through the intake land on the session tollgate metered, once per
/// span or event however often an export is retried, and only for the key's own team; the
/// team's metrics count them with bounded labels.
async fn codex_telemetry_joins_its_own_teams_session_once(backend: Backend) {
    const SESSION: &str = "019ab6a2-codex-signals";
    let h = Harness::start(backend).await;
    let alpha = h.team_key("alpha").await;
    let beta = h.team_key("beta").await;
    let call = h
        .http
        .json(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[
                ("authorization", format!("Bearer {alpha}")),
                ("session-id", SESSION.to_string()),
            ],
            serde_json::json!({"model": "gpt-4.1-mini", "input": "hi", "max_output_tokens": 16}),
        )
        .await;
    assert_eq!(call.status, StatusCode::OK, "{call:?}");
    h.ledger_row(call.headers["x-request-id"].to_str().unwrap())
        .await;
    let before = session(&h, "alpha", SESSION).await;
    assert_eq!(before["codex"], Value::Null, "no telemetry yet: {before}");

    // Beta's key reports a turn and events under alpha's session id: they stay beta's.
    accepted(&h, "traces", &beta, turn_spans(SESSION, 0x40)).await;
    accepted(&h, "logs", &beta, codex_logs(SESSION)).await;
    // Alpha's own, each export sent twice as an exporter retrying would.
    for _ in 0..2 {
        accepted(&h, "traces", &alpha, turn_spans(SESSION, 0x10)).await;
        accepted(&h, "logs", &alpha, codex_logs(SESSION)).await;
    }
    accepted(&h, "metrics", &alpha, codex_token_usage(6934.0, 56.0)).await;
    let turn_seen = eventually(Duration::from_secs(10), || async {
        session(&h, "alpha", SESSION).await["codex"]["api_errors"] == 1
    })
    .await;
    let view = session(&h, "alpha", SESSION).await;
    assert!(turn_seen, "{view}");
    assert_eq!(
        view["codex"],
        serde_json::json!({
            "duration_ms": null,
            "turns": 1,
            "turn_duration_ms": 2500,
            "tokens": {"input": 6934, "cached_input": 3467, "output": 56, "reasoning": 16},
            "tool_decisions": {"exec_command": {"approved": 1}},
            "api_errors": 1,
        }),
        "one turn, one decision, one failed request: {view}"
    );
    assert_eq!(view["cost_nano_usd"], before["cost_nano_usd"]);

    // The session ends: its session_loop span is the time to resolution.
    accepted(
        &h,
        "traces",
        &alpha,
        codex_traces(vec![codex_span(
            "session_loop",
            0x20,
            95_000,
            vec![string("thread_id", SESSION), int("thread.id", 3)],
        )]),
    )
    .await;
    let resolved = eventually(Duration::from_secs(10), || async {
        session(&h, "alpha", SESSION).await["codex"]["duration_ms"] == 95_000
    })
    .await;
    assert!(resolved, "{}", session(&h, "alpha", SESSION).await);
    assert_eq!(session(&h, "alpha", SESSION).await["codex"]["turns"], 1);

    let text = h.metrics().await;
    let count =
        |name: &str, labels: &[(&str, &str)]| tollgate_tests::metric_sum(&text, name, labels);
    let alpha_labels = [("team", "alpha"), ("cost_centre", "CC-1")];
    assert_eq!(
        count("tollgate_codex_turn_duration_seconds_count", &alpha_labels),
        1.0
    );
    assert_eq!(
        count("tollgate_codex_turn_duration_seconds_sum", &alpha_labels),
        2.5
    );
    assert_eq!(
        count(
            "tollgate_codex_session_duration_seconds_count",
            &[("team", "alpha"), ("task_type", "other")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "tollgate_codex_tool_decisions_total",
            &[
                ("team", "alpha"),
                ("tool", "exec_command"),
                ("decision", "approved")
            ]
        ),
        1.0
    );
    assert_eq!(
        count(
            "tollgate_codex_api_errors_total",
            &[("team", "alpha"), ("transport", "http"), ("status", "429")]
        ),
        1.0
    );
    assert_eq!(
        count(
            "tollgate_codex_tokens_total",
            &[("team", "alpha"), ("type", "input")]
        ),
        6934.0
    );
    assert_eq!(
        count(
            "tollgate_codex_tokens_total",
            &[("team", "alpha"), ("type", "total")]
        ),
        0.0,
        "the total is the sum of the others: not counted twice"
    );
    assert_eq!(
        count(
            "tollgate_codex_turn_duration_seconds_count",
            &[("team", "beta")]
        ),
        1.0,
        "beta's turn is beta's"
    );
    assert!(!text.contains(SESSION), "a session id is never a label");
    h.gateway.shutdown().await;
}

tollgate_tests::both_stores!(codex_telemetry_joins_its_own_teams_session_once);
