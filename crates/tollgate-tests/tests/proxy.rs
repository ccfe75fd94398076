//! The proxy as a client sees it: calls pass through unchanged and unbuffered, the upstream key
//! replaces the team key, and bad requests get OpenAI-shaped errors without reaching upstream.

// Integration tests: shared helpers fail loudly, and read whole (small) test responses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::io::Write;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;

use tollgate_mock::MockOptions;
use tollgate_tests::{Backend, Harness, UPSTREAM_KEY, bearer};

fn codex_headers() -> Vec<(String, String)> {
    let text = include_str!("../../../tests/fixtures/codex/turn-request-headers.json");
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
    map.into_iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "authorization" | "content-length" | "host" | "accept-encoding"
            )
        })
        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
        .collect()
}

#[tokio::test]
async fn codex_turn_streams_through_with_upstream_key_headers_and_query() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let body = include_str!("../../../tests/fixtures/codex/turn-request-1.json");
    let mut headers: Vec<(&str, String)> = vec![
        bearer(&key),
        ("openai-organization", "org-123".into()),
        ("x-request-id", "req-abc".into()),
        ("x-codex-turn-state", "sticky-42".into()),
    ];
    let codex = codex_headers();
    headers.extend(codex.iter().map(|(k, v)| (k.as_str(), v.clone())));

    let reply = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses?api-version=1", h.base()),
            &headers,
            body,
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.headers["content-type"], "text/event-stream");
    assert_eq!(
        reply.headers["x-codex-turn-state"], "sticky-42",
        "turn state must pass back to Codex"
    );
    assert!(
        reply.headers.contains_key("x-request-id"),
        "upstream response headers must pass back"
    );
    let text = String::from_utf8(reply.body.to_vec()).unwrap();
    assert!(text.starts_with("event: response.created\n"), "{text}");
    assert!(text.contains("event: response.completed\n"), "{text}");

    let seen = h.mock.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.path, "/v1/responses");
    assert_eq!(req.query.as_deref(), Some("api-version=1"));
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert!(
        req.headers.iter().all(|(_, v)| !v.contains(&key)),
        "team key leaked upstream: {:?}",
        req.headers
    );
    for (name, value) in &codex {
        assert_eq!(
            req.header(name),
            Some(value.as_str()),
            "header {name} did not pass through"
        );
    }
    // A client's organisation would decide who OpenAI bills: dropped (no_way_around.rs).
    assert_eq!(req.header("openai-organization"), None);
    assert_eq!(req.header("x-request-id"), Some("req-abc"));
    assert_eq!(
        &req.body[..],
        body.as_bytes(),
        "body must reach upstream byte for byte"
    );
}

#[tokio::test]
async fn streaming_is_not_buffered() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let headers = [
        bearer(&key),
        ("x-mock-chunk-delay-ms", "200".into()),
        ("x-mock-deltas", "10".into()),
    ];
    let started = Instant::now();
    let response = h
        .http
        .start(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &headers,
            json!({"model":"gpt-5.5","input":"hi","stream":true}).to_string(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body
        .frame()
        .await
        .expect("a first frame")
        .expect("frame ok");
    assert!(
        first
            .data_ref()
            .is_some_and(|d| d.starts_with(b"event: response.created"))
    );
    // The mock sends ~14 events 200 ms apart; a buffering proxy would deliver nothing until all were sent.
    assert_eq!(
        h.mock.streams_completed(),
        0,
        "the first event arrived only after the upstream finished: buffered"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "first event took {:?}",
        started.elapsed()
    );
    let rest = body.collect().await.expect("rest of stream").to_bytes();
    assert!(String::from_utf8_lossy(&rest).contains("response.completed"));
    assert_eq!(h.mock.streams_completed(), 1);
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let headers = [
        bearer(&key),
        ("x-mock-chunk-delay-ms", "50".into()),
        ("x-mock-deltas", "400".into()),
    ];
    let response = h
        .http
        .start(
            Method::POST,
            &format!("{}/v1/chat/completions", h.base()),
            &headers,
            json!({"model":"gpt-5.5","messages":[{"role":"user","content":"hi"}],"stream":true})
                .to_string(),
        )
        .await;
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut body = response.into_body();
    body.frame()
        .await
        .expect("a first frame")
        .expect("frame ok");
    drop(body);
    assert!(
        h.mock.wait_for_cancelled(1, Duration::from_secs(10)).await,
        "the upstream stream was not cancelled"
    );
    assert_eq!(h.mock.streams_completed(), 0);
    // One row, for what was delivered: the usage never came, so it is an estimate.
    let row = h.ledger_row(&request_id).await;
    assert_eq!(
        (&row["status"], &row["outcome"], &row["estimated"]),
        (&json!(200), &json!("client_gone"), &json!(true)),
        "{row}"
    );
    assert!(row["cost_nanos"].as_i64().unwrap() > 0, "{row}");
}

#[tokio::test]
async fn json_endpoints_pass_through_unchanged() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let auth = [bearer(&key)];
    let cases = [
        (
            Method::POST,
            "/v1/chat/completions",
            json!({"model":"gpt-5.5","messages":[{"role":"user","content":"hi"}]}),
            "chat.completion",
        ),
        (
            Method::POST,
            "/v1/responses",
            json!({"model":"gpt-5.5","input":"hi"}),
            "response",
        ),
        (
            Method::POST,
            "/v1/completions",
            json!({"model":"gpt-3.5-turbo-instruct","prompt":"hi"}),
            "text_completion",
        ),
        (
            Method::POST,
            "/v1/embeddings",
            json!({"model":"text-embedding-3-small","input":["a","b"]}),
            "list",
        ),
        (Method::GET, "/v1/models", json!(null), "list"),
    ];
    for (method, path, body, object) in cases {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let via = h
            .http
            .send(
                method.clone(),
                &format!("{}{path}", h.base()),
                &auth,
                body.clone(),
            )
            .await;
        assert_eq!(
            via.status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&via.body)
        );
        assert_eq!(via.json()["object"], object, "{path}");
        let direct = h
            .http
            .send(
                method,
                &format!("http://{}{path}", h.mock.addr()),
                &[("authorization", format!("Bearer {UPSTREAM_KEY}"))],
                body,
            )
            .await;
        assert_eq!(
            strip_ids(via.json()),
            strip_ids(direct.json()),
            "{path}: gateway and direct differ"
        );
    }
    // An endpoint tollgate cannot price is refused unless the operator allowed it
    // (tests/no_way_around.rs has the allowed case).
    let before = h.mock.requests().len();
    h.http
        .send(
            Method::GET,
            &format!("{}/v1/vector_stores?limit=5", h.base()),
            &auth,
            "",
        )
        .await
        .assert_error(403, "endpoint_not_allowed");
    assert_eq!(h.mock.requests().len(), before);
}

/// Ids and timestamps differ per call; everything else must be identical.
fn strip_ids(mut v: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for k in [
                    "id",
                    "created",
                    "created_at",
                    "completed_at",
                    "system_fingerprint",
                ] {
                    map.remove(k);
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

#[tokio::test]
async fn compressed_request_bodies_are_forwarded_decoded_with_a_correct_length() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let json = json!({"model":"gpt-5.5","input":"compressed hello"}).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json.as_bytes()).unwrap();
    let encodings = [
        ("gzip", gz.finish().unwrap()),
        ("zstd", zstd::encode_all(json.as_bytes(), 3).unwrap()),
    ];
    for (encoding, body) in encodings {
        h.mock.clear();
        let headers = [
            bearer(&key),
            ("content-encoding", encoding.into()),
            ("content-type", "application/json".into()),
        ];
        let reply = h
            .http
            .send(
                Method::POST,
                &format!("{}/v1/responses", h.base()),
                &headers,
                body,
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{encoding}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let req = h.mock.requests().pop().unwrap();
        assert_eq!(&req.body[..], json.as_bytes(), "{encoding}");
        assert_eq!(req.header("content-encoding"), None, "{encoding}");
        assert_eq!(
            req.header("content-length"),
            Some(json.len().to_string().as_str()),
            "{encoding}"
        );
    }
}

/// What is wrong, the request headers and body, the expected status and error code.
type BadCase<'a> = (&'a str, Vec<(&'a str, String)>, String, u16, &'a str);

#[tokio::test]
async fn bad_requests_get_openai_shaped_errors_and_never_reach_upstream() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.limits.max_body_bytes = 4096;
    })
    .await;
    let key = h.team_key("platform").await;
    let revoked = h.team_key("platform").await;
    let revoked_id = revoked.split('-').nth(1).unwrap().to_string();
    let admin = [(
        "authorization",
        format!("Bearer {}", tollgate_tests::ADMIN_TOKEN),
    )];
    let r = h
        .http
        .send(
            Method::DELETE,
            &format!("{}/admin/v1/keys/{revoked_id}", h.base()),
            &admin,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let url = format!("{}/v1/responses", h.base());
    let ok_body = json!({"model":"gpt-5.5","input":"hi"}).to_string();
    let cases: Vec<BadCase> = vec![
        ("no key", vec![], ok_body.clone(), 401, "invalid_api_key"),
        (
            "an OpenAI key",
            vec![bearer("sk-proj-abcdef")],
            ok_body.clone(),
            401,
            "invalid_api_key",
        ),
        (
            "a wrong secret",
            vec![bearer(&tamper(&key))],
            ok_body.clone(),
            401,
            "invalid_api_key",
        ),
        (
            "a revoked key",
            vec![bearer(&revoked)],
            ok_body.clone(),
            401,
            "invalid_api_key",
        ),
        (
            "malformed JSON",
            vec![bearer(&key)],
            "{\"model\": ".into(),
            400,
            "invalid_json",
        ),
        (
            "a JSON array",
            vec![bearer(&key)],
            "[1,2]".into(),
            400,
            "invalid_json",
        ),
        (
            "an oversized body",
            vec![bearer(&key)],
            format!("{{\"input\":\"{}\"}}", "x".repeat(5000)),
            413,
            "request_too_large",
        ),
        (
            "an unsupported encoding",
            vec![bearer(&key), ("content-encoding", "br".into())],
            ok_body.clone(),
            415,
            "unsupported_content_encoding",
        ),
    ];
    for (what, headers, body, status, code) in cases {
        let reply = h.http.send(Method::POST, &url, &headers, body).await;
        println!("{what}: {}", String::from_utf8_lossy(&reply.body));
        reply.assert_error(status, code);
    }
    let ws = [
        bearer(&key),
        ("connection", "Upgrade".into()),
        ("upgrade", "websocket".into()),
        ("openai-beta", "responses_websockets=2026-02-06".into()),
    ];
    // Codex's WebSocket transport is taken on GET /v1/responses (tests/websocket.rs); an
    // upgrade that is no WebSocket handshake (no key, no version) is refused there.
    h.http
        .send(Method::GET, &url, &ws, "")
        .await
        .assert_error(400, "invalid_websocket_handshake");
    h.http
        .send(
            Method::POST,
            &format!("{}/v2/responses", h.base()),
            &[bearer(&key)],
            ok_body.clone(),
        )
        .await
        .assert_error(404, "unknown_url");
    h.http
        .send(Method::GET, &format!("{}/", h.base()), &[], "")
        .await
        .assert_error(404, "unknown_url");
    // Streamed endpoints (file uploads) are held to the size limit too, by declared length.
    let big = "x".repeat(5000);
    h.http
        .send(
            Method::POST,
            &format!("{}/v1/files", h.base()),
            &[bearer(&key)],
            big,
        )
        .await
        .assert_error(413, "request_too_large");
    assert!(
        h.mock.requests().is_empty(),
        "upstream was called: {:?}",
        h.mock
            .requests()
            .iter()
            .map(|r| &r.path)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_and_a_stalled_one_a_504() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let db = tollgate_store::testdb::TestDb::sqlite();
    let gateway = tollgate::app::start(tollgate_tests::test_config(&db.url, &dead))
        .await
        .unwrap();
    let http = tollgate_tests::HttpClient::new();
    let key = tollgate_tests::issue_key(&http, gateway.addr, "platform").await;
    let reply = http
        .send(
            Method::POST,
            &format!("http://{}/v1/responses", gateway.addr),
            &[bearer(&key)],
            json!({"model":"gpt-5.5","input":"hi"}).to_string(),
        )
        .await;
    reply.assert_error(502, "upstream_unavailable");

    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.upstream.response_timeout_ms = 300
    })
    .await;
    let key = h.team_key("platform").await;
    let headers = [bearer(&key), ("x-mock-first-byte-delay-ms", "5000".into())];
    let reply = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &headers,
            json!({"model":"gpt-5.5","input":"hi"}).to_string(),
        )
        .await;
    reply.assert_error(504, "upstream_timeout");
}

#[tokio::test]
async fn health_and_readiness() {
    let h = Harness::start(Backend::Sqlite).await;
    let health = h
        .http
        .send(Method::GET, &format!("{}/healthz", h.base()), &[], "")
        .await;
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (StatusCode::OK, json!("ok"))
    );
    let ready = h
        .http
        .send(Method::GET, &format!("{}/readyz", h.base()), &[], "")
        .await;
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (StatusCode::OK, json!("ready"))
    );
}

/// The same key with its last character changed.
fn tamper(key: &str) -> String {
    let last = if key.ends_with('A') { 'B' } else { 'A' };
    format!("{}{last}", &key[..key.len() - 1])
}
