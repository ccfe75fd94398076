//! Faults from both sides, each bounded in time: an upstream that fails, stalls, cuts or talks
//! nonsense; clients that are slow, idle, hostile or malformed. What a user must see: an
//! OpenAI-shaped error or the partial stream exactly as delivered, no retry storm, no panic,
//! and a gateway that keeps serving everyone else.

// Integration tests: shared helpers fail loudly, and read whole (small) test responses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tollgate_mock::MockOptions;
use tollgate_tests::{Backend, Harness, bearer};

fn stream_body() -> String {
    json!({"model":"gpt-5.5","input":"hi","stream":true}).to_string()
}

/// Reads a streamed response to its end or its error: (bytes delivered, whether it ended cleanly).
async fn read_stream(response: http::Response<hyper::body::Incoming>) -> (Vec<u8>, bool) {
    let mut body = response.into_body();
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), body.frame())
            .await
            .expect("stream ends within 20 s")
        {
            None => return (got, true),
            Some(Ok(frame)) => got.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..])),
            Some(Err(_)) => return (got, false),
        }
    }
}

#[tokio::test]
async fn upstream_errors_pass_through_once_without_retries() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    for (status, code) in [
        (500, None),
        (503, Some("server_is_overloaded")),
        (429, Some("rate_limit_exceeded")),
        (400, None),
    ] {
        h.mock.clear();
        let headers = [bearer(&key), ("x-mock-status", status.to_string())];
        let reply = h
            .http
            .send(
                Method::POST,
                &format!("{}/v1/responses", h.base()),
                &headers,
                stream_body(),
            )
            .await;
        assert_eq!(reply.status.as_u16(), status);
        let error = reply.json();
        assert!(error["error"]["message"].is_string(), "{error}");
        if let Some(code) = code {
            assert_eq!(
                error["error"]["code"], code,
                "the upstream's error reaches the client as sent"
            );
        }
        assert_eq!(
            h.mock.requests().len(),
            1,
            "tollgate must not retry a {status}"
        );
    }
}

#[tokio::test]
async fn a_cut_stream_reaches_the_client_as_delivered_then_ends_in_error() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let headers = [bearer(&key), ("x-mock-cut-after", "4".into())];
    let response = h
        .http
        .start(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &headers,
            stream_body(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (got, clean) = read_stream(response).await;
    let text = String::from_utf8(got).unwrap();
    assert!(
        !clean,
        "a cut upstream stream must not look complete to the client"
    );
    assert_eq!(
        text.matches("event: ").count(),
        4,
        "exactly the 4 events the upstream sent:\n{text}"
    );
    assert!(!text.contains("response.completed"));
    assert_eq!(h.mock.requests().len(), 1, "no retry");
}

#[tokio::test]
async fn a_stalled_stream_is_closed_after_the_idle_timeout() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.upstream.stream_idle_timeout_ms = 300
    })
    .await;
    let key = h.team_key("platform").await;
    let headers = [bearer(&key), ("x-mock-chunk-delay-ms", "60000".into())];
    let started = Instant::now();
    let response = h
        .http
        .start(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &headers,
            stream_body(),
        )
        .await;
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let (got, clean) = read_stream(response).await;
    assert!(
        !clean,
        "a stalled stream must end in an error, not look complete"
    );
    assert!(
        String::from_utf8_lossy(&got).starts_with("event: response.created"),
        "what arrived before the stall is delivered"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed after {:?}",
        started.elapsed()
    );
    assert!(
        h.mock.wait_for_cancelled(1, Duration::from_secs(5)).await,
        "the stalled upstream stream was not closed"
    );
    // One row: the upstream broke off, so the call is charged an estimate, flagged as such.
    let row = h.ledger_row(&request_id).await;
    assert_eq!(
        (&row["status"], &row["outcome"], &row["estimated"]),
        (&json!(200), &json!("upstream_cut"), &json!(true)),
        "{row}"
    );
    assert!(row["cost_nanos"].as_i64().unwrap() > 0, "{row}");
}

#[tokio::test]
async fn malformed_upstream_output_is_passed_through_without_breaking_the_gateway() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let headers = [bearer(&key), ("x-mock-malformed", "1".into())];
    let direct = h
        .http
        .send(
            Method::POST,
            &format!("http://{}/v1/responses", h.mock.addr()),
            &[("x-mock-malformed", "1".into())],
            stream_body(),
        )
        .await;
    let via = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &headers,
            stream_body(),
        )
        .await;
    assert_eq!(via.status, StatusCode::OK);
    assert_eq!(
        via.body, direct.body,
        "the client sees exactly what the upstream sent"
    );
    let json = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &headers,
            json!({"model":"gpt-5.5","input":"hi"}).to_string(),
        )
        .await;
    assert_eq!(json.status, StatusCode::OK);
    assert!(
        json.body.starts_with(b"{\"id\":\"resp_malformed\""),
        "{:?}",
        json.body
    );
    // And the gateway is still fine.
    let ok = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(&key)],
            stream_body(),
        )
        .await;
    assert!(String::from_utf8_lossy(&ok.body).contains("response.completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_holds_back_the_upstream_and_others_are_unaffected() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    // ~15 MB of SSE: far more than socket buffers hold, so only backpressure keeps it upstream.
    let headers = [bearer(&key), ("x-mock-deltas", "100000".into())];
    let slow = h
        .http
        .start(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &headers,
            stream_body(),
        )
        .await;
    let mut slow_body = slow.into_body();
    slow_body.frame().await.unwrap().unwrap();

    // While the slow client reads nothing, another client's calls complete normally.
    for _ in 0..5 {
        let other = h
            .http
            .send(
                Method::POST,
                &format!("{}/v1/responses", h.base()),
                &[bearer(&key)],
                stream_body(),
            )
            .await;
        assert!(String::from_utf8_lossy(&other.body).contains("response.completed"));
    }
    // The slow client has not read, so the upstream cannot have finished: nothing buffers it.
    tokio::time::sleep(Duration::from_millis(500)).await; // the slow client "being slow"
    assert_eq!(
        h.mock.streams_completed(),
        5,
        "the 15 MB stream finished upstream although the client read nothing: buffered"
    );
    drop(slow_body);
    assert!(h.mock.wait_for_cancelled(1, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn slowloris_and_idle_connections_are_closed_and_the_gateway_keeps_serving() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.limits.header_read_timeout_ms = 300
    })
    .await;
    let key = h.team_key("platform").await;
    let mut attackers = Vec::new();
    for i in 0..100 {
        let mut stream = TcpStream::connect(h.gateway.addr).await.unwrap();
        if i % 2 == 0 {
            // Slowloris: a request line and part of the headers, never finished.
            stream
                .write_all(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        attackers.push(stream);
    }
    let served = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(&key)],
            stream_body(),
        )
        .await;
    assert!(
        String::from_utf8_lossy(&served.body).contains("response.completed"),
        "the gateway stopped serving"
    );
    let started = Instant::now();
    for (i, mut stream) in attackers.into_iter().enumerate() {
        let mut buf = Vec::new();
        // The gateway closes the connection (maybe after a 408); reading to EOF proves it.
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "connection {i} still open after {:?}",
            started.elapsed()
        );
    }
    assert!(
        h.mock.requests().len() == 1,
        "half-sent requests must not reach upstream"
    );
}

#[tokio::test]
async fn hostile_requests_get_clear_4xx_and_change_nothing() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let url = format!("{}/v1/responses", h.base());

    // Request headers past limits.max_header_bytes (64 KiB): 431, connection closed, no panic.
    let mut stream = TcpStream::connect(h.gateway.addr).await.unwrap();
    let big = format!(
        "POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let _ = stream.write_all(big.as_bytes()).await;
    let mut head = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut head))
        .await
        .expect("closed");
    assert!(
        String::from_utf8_lossy(&head).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&head[..head.len().min(200)])
    );

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "invalid UTF-8",
            b"{\"model\":\"gpt-5.5\",\"input\":\"\xff\xfe\"}".to_vec(),
            "application/json",
        ),
        (
            "a form body",
            b"model=gpt-5.5&input=hi".to_vec(),
            "application/x-www-form-urlencoded",
        ),
        (
            "a truncated object",
            b"{\"model\":\"gpt-5.5\"".to_vec(),
            "application/json",
        ),
    ];
    for (what, body, content_type) in cases {
        let reply = h
            .http
            .send(
                Method::POST,
                &url,
                &[bearer(&key), ("content-type", content_type.into())],
                body,
            )
            .await;
        println!("{what}: {}", String::from_utf8_lossy(&reply.body));
        reply.assert_error(400, "invalid_json");
    }
    assert!(
        h.mock.requests().is_empty(),
        "hostile requests reached upstream"
    );

    // 100,000 levels of nesting is valid JSON: the peek skips it without recursion (no stack
    // overflow) and the upstream's own 400 reaches the client.
    let deep = format!(
        "{{\"model\":\"gpt-5.5\",\"input\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let reply = h.http.send(Method::POST, &url, &[bearer(&key)], deep).await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.json()["error"]["message"].is_string());
    let ok = h
        .http
        .send(Method::POST, &url, &[bearer(&key)], stream_body())
        .await;
    assert!(
        String::from_utf8_lossy(&ok.body).contains("response.completed"),
        "the gateway stopped serving"
    );
}
