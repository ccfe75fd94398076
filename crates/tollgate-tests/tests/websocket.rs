//! The Responses API over WebSocket through tollgate, against the mock upstream's WebSocket
//! transport: every `response.create` is a call of its own — admitted, metered from the
//! upstream's events and settled into one ledger row — and what tollgate refuses is refused
//! in-band, in the shape Codex acts on, without reaching the upstream.

// Integration tests: shared helpers fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use tollgate_mock::MockOptions;
use tollgate_tests::socket::{create, open, open_at};
use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, UPSTREAM_KEY, both_stores, eventually};

both_stores!(
    each_response_create_is_one_metered_row,
    an_exhausted_budget_is_refused_in_band_as_codex_stops_on_it,
    a_key_revoked_mid_connection_is_refused_at_its_next_call,
    calls_cut_short_are_settled_once_and_estimated,
    a_rate_limit_is_a_failed_response_codex_waits_out,
);

/// The ledger rows of session `sess-ws-1`, oldest first.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    endpoint: i64,
    status: i64,
    turn: Option<String>,
    tokens: [i64; 4],
    cost: i64,
    estimated: bool,
}

/// endpoint, status, turn, input, cached, output, reasoning, cost, estimated.
type RawRow = (i64, i64, Option<String>, i64, i64, i64, i64, i64, i64);

async fn rows(h: &Harness) -> Vec<Row> {
    h.gateway.flush_ledger().await;
    let pool = sqlx::AnyPool::connect(&h.db.url).await.unwrap();
    let rows: Vec<RawRow> = sqlx::query_as(
        "SELECT CAST(endpoint AS BIGINT), CAST(status AS BIGINT), turn_id, \
         CAST(input_tokens AS BIGINT), CAST(cached_input_tokens AS BIGINT), \
         CAST(output_tokens AS BIGINT), CAST(reasoning_tokens AS BIGINT), cost_nanos, \
         CAST(estimated AS BIGINT) FROM ledger WHERE session_id = 'sess-ws-1' \
         ORDER BY started_at_ms, request_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|r| Row {
            endpoint: r.0,
            status: r.1,
            turn: r.2,
            tokens: [r.3, r.4, r.5, r.6],
            cost: r.7,
            estimated: r.8 == 1,
        })
        .collect()
}

/// Waits until the session has `n` rows (estimates settle on a blocking thread).
async fn rows_n(h: &Harness, n: usize) -> Vec<Row> {
    let landed = eventually(Duration::from_secs(5), || async {
        rows(h).await.len() >= n
    })
    .await;
    let rows = rows(h).await;
    assert!(landed && rows.len() == n, "expected {n} rows: {rows:?}");
    rows
}

/// The usage a terminal event reported, as the ledger stores tokens.
fn usage_tokens(event: &Value) -> [i64; 4] {
    let u = &event["response"]["usage"];
    [
        u["input_tokens"].as_i64().unwrap(),
        u["input_tokens_details"]["cached_tokens"]
            .as_i64()
            .unwrap_or(0),
        u["output_tokens"].as_i64().unwrap(),
        u["output_tokens_details"]["reasoning_tokens"]
            .as_i64()
            .unwrap_or(0),
    ]
}

const RESPONSES_WS: i64 = 18;
const RESPONSES_WS_PREWARM: i64 = 19;

async fn each_response_create_is_one_metered_row(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();

    // A prewarm, then a turn continuing it, then a tool call: three calls, three rows.
    let mut prewarm = create("turn-1", "");
    prewarm["generate"] = json!(false);
    prewarm["input"] = json!([]);
    let warmed = socket.call(prewarm).await;
    let warmed_done = warmed.last().unwrap();
    assert_eq!(warmed_done["type"], "response.completed", "{warmed:?}");
    let mut first = create("turn-1", "Say hello");
    first["previous_response_id"] = warmed_done["response"]["id"].clone();
    let answered = socket.call(first).await;
    let tool = socket.call(create("turn-2", "mock:exec run it")).await;
    let (first_done, tool_done) = (answered.last().unwrap(), tool.last().unwrap());
    assert_eq!(first_done["type"], "response.completed", "{answered:?}");
    assert!(
        tool.iter().any(|e| e["item"]["name"] == "exec_command"),
        "the scripted tool call came through: {tool:?}"
    );

    let rows = rows_n(&h, 3).await;
    let endpoints: Vec<i64> = rows.iter().map(|r| r.endpoint).collect();
    assert_eq!(
        endpoints,
        [RESPONSES_WS_PREWARM, RESPONSES_WS, RESPONSES_WS]
    );
    for (row, done) in rows.iter().zip([warmed_done, first_done, tool_done]) {
        assert_eq!(row.tokens, usage_tokens(done), "{row:?} vs {done}");
        assert!(
            !row.estimated && row.status == 200 && row.cost > 0,
            "{row:?}"
        );
    }
    assert_eq!(rows[0].tokens[2], 0, "a prewarm makes no output");
    // The turn comes from each message's client_metadata, not the handshake's header.
    let turns: Vec<_> = rows.iter().map(|r| r.turn.as_deref()).collect();
    assert_eq!(turns, [Some("turn-1"), Some("turn-1"), Some("turn-2")]);

    // The upstream got tollgate's key, never the team's, and every frame as the client sent it.
    let upstream: Vec<_> = h
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/responses")
        .collect();
    assert_eq!(upstream.len(), 3);
    for r in &upstream {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {UPSTREAM_KEY}").as_str())
        );
        assert!(r.headers.iter().all(|(_, v)| !v.contains(&key)));
        assert_eq!(r.header("session-id"), Some("sess-ws-1"));
    }
    assert_eq!(
        upstream[1].json().unwrap()["input"][0]["content"][0]["text"],
        "Say hello"
    );
}

async fn an_exhausted_budget_is_refused_in_band_as_codex_stops_on_it(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("broke").await;
    h.set_budget("broke", "0.000001").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    let events = socket.call(create("turn-1", "Say hello")).await;
    // Codex stops on exactly this: an `error` event, status 429, error.type
    // usage_limit_reached with an integer resets_at, the team's text in x-codex-promo-message.
    let refusal = &events[0];
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(refusal["type"], "error");
    assert_eq!(refusal["status"], 429);
    assert_eq!(refusal["error"]["type"], "usage_limit_reached");
    assert!(refusal["error"]["resets_at"].is_i64(), "{refusal}");
    let promo = refusal["headers"]["x-codex-promo-message"]
        .as_str()
        .unwrap();
    assert!(
        promo.contains("team 'broke' reached its month budget"),
        "{promo}"
    );
    assert!(
        h.mock.requests().iter().all(|r| r.path != "/v1/responses"),
        "a refused call reached the upstream"
    );
    assert!(rows(&h).await.is_empty(), "a refused call costs nothing");
    // The socket stays usable: a message tollgate cannot meter is refused, not forwarded.
    socket.send(json!({"type": "session.update"})).await;
    let event = socket.next_event().await.unwrap();
    assert_eq!(
        (event["status"].as_i64(), event["error"]["code"].as_str()),
        (Some(400), Some("unsupported_message")),
        "{event}"
    );
}

async fn a_key_revoked_mid_connection_is_refused_at_its_next_call(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    let first = socket.call(create("turn-1", "Say hello")).await;
    assert_eq!(first.last().unwrap()["type"], "response.completed");
    h.revoke_key(&key).await;
    let second = socket.call(create("turn-2", "Say hello again")).await;
    assert_eq!(
        (
            second[0]["status"].as_i64(),
            second[0]["error"]["code"].as_str()
        ),
        (Some(401), Some("invalid_api_key")),
        "{second:?}"
    );
    assert_eq!(
        rows_n(&h, 1).await.len(),
        1,
        "only the first call was billed"
    );
    // A new connection with the revoked key is refused before any upgrade.
    match open(&h, &key, &[]).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
        }
        other => panic!("a revoked key opened a socket: {:?}", other.map(|_| ())),
    }
}

async fn calls_cut_short_are_settled_once_and_estimated(backend: Backend) {
    let h = Harness::start_with(
        backend,
        MockOptions {
            chunk_delay: Duration::from_millis(20),
            ..MockOptions::default()
        },
    )
    .await;
    let key = h.team_key("platform").await;

    // The upstream drops the connection mid-response: the client's socket ends, and the call
    // is charged an estimate of what it got.
    let mut socket = open(&h, &key, &[]).await.unwrap();
    socket.send(create("turn-1", "mock:ws-cut please")).await;
    let mut got = Vec::new();
    while let Some(event) = socket.next_event().await {
        got.push(event);
    }
    assert!(
        got.iter().all(|e| e["type"] != "response.completed"),
        "{got:?}"
    );
    let cut = rows_n(&h, 1).await;
    assert!(cut[0].estimated && cut[0].cost > 0, "{cut:?}");

    // The client leaves mid-response: the same.
    let mut socket = open(&h, &key, &[]).await.unwrap();
    socket.send(create("turn-2", "Say hello")).await;
    let first = socket.next_event().await.unwrap();
    assert_eq!(first["type"], "response.created", "{first}");
    drop(socket);
    let rows = rows_n(&h, 2).await;
    assert!(rows[1].estimated && rows[1].cost > 0, "{rows:?}");
    assert_eq!(rows[1].turn.as_deref(), Some("turn-2"));
}

#[tokio::test]
async fn upgrades_elsewhere_and_bad_handshakes_get_http_errors() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    // A wrong key: 401 before any upgrade, the upstream never asked.
    match open(&h, "tg-nope-nope", &[]).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), StatusCode::UNAUTHORIZED),
        other => panic!("a wrong key opened a socket: {:?}", other.map(|_| ())),
    }
    // The upstream refusing the handshake (426: Codex falls back to HTTP) is passed back.
    match open(&h, &key, &[("x-mock-status", "426")]).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED)
        }
        other => panic!("expected the upstream's 426: {:?}", other.map(|_| ())),
    }
    assert!(
        h.mock
            .requests()
            .iter()
            .all(|r| r.header("authorization") != Some(&format!("Bearer {key}"))),
        "the team key reached the upstream"
    );
    // Another path: 426 with tollgate's OpenAI-shaped error.
    let reply = h
        .http
        .send(
            Method::GET,
            &format!("{}/v1/chat/completions", h.base()),
            &[
                tollgate_tests::bearer(&key),
                ("upgrade", "websocket".into()),
                ("connection", "upgrade".into()),
            ],
            "",
        )
        .await;
    reply.assert_error(426, "websocket_not_supported");
    // Not a WebSocket handshake (no key): 400, nothing forwarded.
    let reply = h
        .http
        .send(
            Method::GET,
            &format!("{}/v1/responses", h.base()),
            &[
                tollgate_tests::bearer(&key),
                ("upgrade", "websocket".into()),
                ("connection", "upgrade".into()),
            ],
            "",
        )
        .await;
    reply.assert_error(400, "invalid_websocket_handshake");
}

#[tokio::test]
async fn hostile_messages_are_refused_and_never_forwarded() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.limits.max_body_bytes = 64 * 1024;
    })
    .await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    for (message, code) in [
        (Message::text("{not json"), "invalid_json"),
        (Message::text("[1,2]"), "invalid_json"),
        (
            Message::text(r#"{"model":"gpt-5.5"}"#),
            "unsupported_message",
        ),
        (Message::binary(b"\x00\x01".to_vec()), "unsupported_message"),
    ] {
        socket.0.send(message).await.unwrap();
        let event = socket.next_event().await.unwrap();
        assert_eq!(
            (event["type"].as_str(), event["error"]["code"].as_str()),
            (Some("error"), Some(code)),
            "{event}"
        );
    }
    // A model the key may not use, and a background call: refused in-band.
    let mut background = create("t", "hi");
    background["background"] = json!(true);
    let events = socket.call(background).await;
    assert_eq!(events[0]["status"], 400, "{events:?}");
    // A message past the body limit: refused with 413 and the socket closed (1009).
    let huge = "a".repeat(128 * 1024);
    socket.send(create("t", &huge)).await;
    let event = socket.next_event().await.unwrap();
    assert_eq!(
        (event["status"].as_i64(), event["error"]["code"].as_str()),
        (Some(413), Some("request_too_large")),
        "{event}"
    );
    let closed = loop {
        match socket.0.next().await {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            _ => break None,
        }
    };
    assert_eq!(closed, Some(CloseCode::Size));
    assert!(
        h.mock.requests().iter().all(|r| r.path != "/v1/responses"),
        "a refused message reached the upstream"
    );
}

async fn a_rate_limit_is_a_failed_response_codex_waits_out(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("paced").await;
    let set = h
        .http
        .json(
            Method::PUT,
            &format!("{}/admin/v1/rate-limits", h.base()),
            &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
            json!({"team": "paced", "requests_per_minute": 2}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{set:?}");
    // The socket is opened at once; the limit reaches the gateway with its next sync, and the
    // first call past it is refused in-band.
    let mut socket = open(&h, &key, &[]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut answered = 0;
    let refused = loop {
        let events = socket.call(create("turn-1", "Say hello")).await;
        let last = events.last().unwrap().clone();
        if last["type"] != "response.completed" {
            break events;
        }
        answered += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "a 2-a-minute limit let {answered} calls through in 10 s"
        );
    };
    // An `error` event cannot carry a delay (Codex gives up on it): a failed response with
    // rate_limit_exceeded and "try again in Ns" is what Codex waits out.
    let types: Vec<_> = refused.iter().map(|e| e["type"].clone()).collect();
    assert_eq!(types, [json!("response.failed")], "{refused:?}");
    let failed = &refused[0];
    assert_eq!(failed["response"]["error"]["code"], "rate_limit_exceeded");
    let message = failed["response"]["error"]["message"].as_str().unwrap();
    assert!(message.contains("try again in"), "{message}");
    assert_eq!(
        rows_n(&h, answered).await.len(),
        answered,
        "the refused call is not billed"
    );
}

#[tokio::test]
async fn shutdown_lets_a_call_in_flight_finish_then_closes_the_socket() {
    let h = Harness::start_with(
        Backend::Sqlite,
        MockOptions {
            chunk_delay: Duration::from_millis(30),
            ..MockOptions::default()
        },
    )
    .await;
    let key = h.team_key("platform").await;
    let replica = h.replica().await;
    let mut socket = open_at(replica.addr, &key, &[]).await.unwrap();
    socket.send(create("turn-1", "Say hello")).await;
    let created = socket.next_event().await.unwrap();
    assert_eq!(created["type"], "response.created", "{created}");
    let shutdown = tokio::spawn(replica.shutdown());
    // The answer in flight is delivered whole, then the socket is closed as going away.
    let mut last = created;
    while let Some(event) = socket.next_event().await {
        last = event;
    }
    assert_eq!(last["type"], "response.completed", "{last}");
    shutdown.await.unwrap();
    let rows = rows_n(&h, 1).await;
    assert!(!rows[0].estimated && rows[0].cost > 0, "{rows:?}");
}

/// The team's line of Prometheus series `name` (`tollgate_websocket_open{…team="platform"…} 1`),
/// its value.
async fn metric(h: &Harness, name: &str) -> Option<f64> {
    let reply = h
        .http
        .send(
            Method::GET,
            &format!("{}/metrics", h.base()),
            &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let text = String::from_utf8_lossy(&reply.body).to_string();
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains("team=\"platform\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn sockets_are_counted_in_metrics_while_open_and_when_closed() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    let done = socket.call(create("turn-1", "Say hello")).await;
    assert_eq!(done.last().unwrap()["type"], "response.completed");
    assert_eq!(
        metric(&h, "tollgate_websocket_connections_total").await,
        Some(1.0)
    );
    assert_eq!(metric(&h, "tollgate_websocket_open").await, Some(1.0));
    socket.0.close(None).await.unwrap();
    let closed = eventually(Duration::from_secs(5), || async {
        metric(&h, "tollgate_websocket_open").await == Some(0.0)
    })
    .await;
    assert!(closed, "the socket is still counted open");
    assert_eq!(
        metric(&h, "tollgate_websocket_duration_seconds_count").await,
        Some(1.0)
    );
}
