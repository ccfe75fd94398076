//! The Responses WebSocket through tollgate, attacked by a hostile key holder and misused by a
//! careless new user: pipelined calls against a tight budget, messages read one way by tollgate
//! and another by the upstream, frames cut or fragmented, peers that stop reading or talking,
//! handshakes that try to choose who pays. Each test asserts what a user would notice: the
//! ledger's rows, what reached the mock upstream, and the in-band errors.

// Integration tests: shared helpers fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use tollgate_mock::{MockOptions, RecordedRequest, Transport};
use tollgate_tests::socket::{Socket, create, is_terminal, open, open_on};
use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, UPSTREAM_KEY, both_stores, eventually};

both_stores!(
    pipelined_creates_on_one_socket_are_each_reserved_before_forwarding,
    creates_on_many_sockets_at_once_share_one_budget,
);

/// One ledger row, any session.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    endpoint: i64,
    status: i64,
    turn: Option<String>,
    team: String,
    tokens: [i64; 4],
    cost: i64,
    estimated: bool,
}

/// endpoint, status, turn, team, input, cached, output, reasoning, cost, estimated.
type RawRow = (
    i64,
    i64,
    Option<String>,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);

/// Every ledger row in `database_url`, oldest first.
async fn ledger(database_url: &str) -> Vec<Row> {
    let pool = sqlx::AnyPool::connect(database_url).await.unwrap();
    let rows: Vec<RawRow> = sqlx::query_as(
        "SELECT CAST(l.endpoint AS BIGINT), CAST(l.status AS BIGINT), l.turn_id, t.name, \
         CAST(l.input_tokens AS BIGINT), CAST(l.cached_input_tokens AS BIGINT), \
         CAST(l.output_tokens AS BIGINT), CAST(l.reasoning_tokens AS BIGINT), l.cost_nanos, \
         CAST(l.estimated AS BIGINT) FROM ledger l JOIN teams t ON t.id = l.team_id \
         ORDER BY l.started_at_ms, l.request_id",
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
            team: r.3,
            tokens: [r.4, r.5, r.6, r.7],
            cost: r.8,
            estimated: r.9 == 1,
        })
        .collect()
}

async fn rows(h: &Harness) -> Vec<Row> {
    h.gateway.flush_ledger().await;
    ledger(&h.db.url).await
}

/// Waits until the ledger has `n` rows, and checks it then has exactly `n`.
async fn rows_n(h: &Harness, n: usize) -> Vec<Row> {
    let landed = eventually(Duration::from_secs(10), || async {
        rows(h).await.len() >= n
    })
    .await;
    let rows = rows(h).await;
    assert!(landed && rows.len() == n, "expected {n} rows: {rows:?}");
    rows
}

/// The one row of turn `id`.
fn turn<'a>(rows: &'a [Row], id: &str) -> &'a Row {
    let of_turn: Vec<&Row> = rows
        .iter()
        .filter(|r| r.turn.as_deref() == Some(id))
        .collect();
    assert_eq!(of_turn.len(), 1, "one row for {id}: {rows:?}");
    of_turn[0]
}

/// The `response.create` frames the mock upstream received.
fn forwarded(h: &Harness) -> Vec<RecordedRequest> {
    h.mock
        .requests()
        .into_iter()
        .filter(|r| r.transport == Transport::WebSocket)
        .collect()
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

fn admin() -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {ADMIN_TOKEN}"))]
}

const RESPONSES_WS: i64 = 18;
const RESPONSES_WS_PREWARM: i64 = 19;

/// USD in the ledger's unit (nano-USD).
const NANOS_PER_USD: i64 = 1_000_000_000;

/// A budget of $10 and calls that each reserve at least 100,000 output tokens of gpt-5.5
/// ($30 per 1M, so $3 each): at most 3 calls can be in flight at once.
const TIGHT_BUDGET_USD: &str = "10.00";
const MOST_IN_FLIGHT: usize = 3;

fn bounded_create(turn: &str) -> Value {
    let mut message = create(turn, "Say hello");
    message["max_output_tokens"] = json!(100_000);
    message
}

/// The answers to `n` creates sent at once: how many were answered and how many refused for
/// the budget, each create getting exactly one terminal event.
fn tally(events: &[Value], n: usize) -> (usize, usize) {
    let terminals: Vec<&Value> = events.iter().filter(|e| is_terminal(e)).collect();
    assert_eq!(terminals.len(), n, "one answer per create: {events:?}");
    let completed = terminals
        .iter()
        .filter(|e| e["type"] == "response.completed")
        .count();
    let refused = terminals
        .iter()
        .filter(|e| e["status"] == 429 && e["error"]["type"] == "usage_limit_reached")
        .count();
    assert_eq!(completed + refused, n, "{terminals:?}");
    (completed, refused)
}

/// 20 `response.create`s written without waiting, on one socket, under a budget that holds 3:
/// each must be reserved before it is forwarded, so the rest are refused in-band.
async fn pipelined_creates_on_one_socket_are_each_reserved_before_forwarding(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("tight").await;
    h.set_budget("tight", TIGHT_BUDGET_USD).await;
    // Slow answers keep the first calls in flight while the rest arrive.
    let mut socket = open(&h, &key, &[("x-mock-chunk-delay-ms", "20")])
        .await
        .unwrap();
    for i in 0..20 {
        let frame = Message::text(bounded_create(&format!("turn-{i}")).to_string());
        socket.0.feed(frame).await.unwrap();
    }
    socket.0.flush().await.unwrap();
    let events = socket.until_terminals(20).await;
    let (completed, refused) = tally(&events, 20);
    assert!(
        (1..=MOST_IN_FLIGHT).contains(&completed),
        "{completed} calls admitted at once under a budget for {MOST_IN_FLIGHT} ({refused} refused)"
    );
    assert_eq!(
        forwarded(&h).len(),
        completed,
        "only admitted calls reach the upstream"
    );
    let rows = rows_n(&h, completed).await;
    let spent: i64 = rows.iter().map(|r| r.cost).sum();
    assert!(spent <= 10 * NANOS_PER_USD, "{rows:?}");
}

/// The same under the same budget, from 5 sockets at once, 4 creates each.
async fn creates_on_many_sockets_at_once_share_one_budget(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("tight").await;
    h.set_budget("tight", TIGHT_BUDGET_USD).await;
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let socket = open(&h, &key, &[("x-mock-chunk-delay-ms", "20")])
            .await
            .unwrap();
        sockets.push(socket);
    }
    let runs = sockets.into_iter().map(|mut socket| async move {
        for i in 0..4 {
            let frame = Message::text(bounded_create(&format!("turn-{i}")).to_string());
            socket.0.feed(frame).await.unwrap();
        }
        socket.0.flush().await.unwrap();
        let events = socket.until_terminals(4).await;
        tally(&events, 4)
    });
    let answers = futures_util::future::join_all(runs).await;
    let completed: usize = answers.iter().map(|a| a.0).sum();
    assert!(
        (1..=MOST_IN_FLIGHT).contains(&completed),
        "{completed} calls admitted at once under a budget for {MOST_IN_FLIGHT}: {answers:?}"
    );
    assert_eq!(forwarded(&h).len(), completed);
    let rows = rows_n(&h, completed).await;
    let spent: i64 = rows.iter().map(|r| r.cost).sum();
    assert!(spent <= 10 * NANOS_PER_USD, "{rows:?}");
}

/// The upstream answers a client message tollgate forwards as "not a call" with an `error`
/// event (the mock, like OpenAI, knows no `response.interrupt`). That error must not be taken
/// for the answer of the next call in flight, or that call's whole response — its output
/// included — is metered as a free refusal.
#[tokio::test]
async fn an_error_answering_a_forwarded_non_call_does_not_make_the_next_response_free() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[("x-mock-chunk-delay-ms", "10")])
        .await
        .unwrap();
    socket.send(create("turn-1", "Say hello")).await;
    socket.send(json!({"type": "response.interrupt"})).await;
    socket.send(create("turn-2", "Say hello again")).await;
    // Two answers and the upstream's error for the interrupt, in the upstream's order.
    let events = socket.until_terminals(3).await;
    let completed: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "response.completed")
        .collect();
    assert_eq!(completed.len(), 2, "both calls were answered: {events:?}");
    assert!(
        completed[1]["response"]["usage"]["output_tokens"]
            .as_i64()
            .unwrap()
            > 0
    );
    let rows = rows_n(&h, 2).await;
    let rows = [turn(&rows, "turn-1"), turn(&rows, "turn-2")];
    for (row, done) in rows.iter().zip(&completed) {
        assert_eq!(
            (row.status, row.tokens),
            (200, usage_tokens(done)),
            "each answered call is billed its usage: {rows:?}"
        );
        assert!(row.cost > 0, "{rows:?}");
    }
}

/// `"type"` spelled with escapes (in the key or the value) is the same create to every JSON
/// reader: metered like any other, one row.
#[tokio::test]
async fn a_create_spelled_with_unicode_escapes_is_metered() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    let plain = create("turn-1", "Say hello").to_string();
    let escaped_value = plain.replacen(
        r#""type":"response.create""#,
        r#""type":"response\u002ecre\u0061te""#,
        1,
    );
    let escaped_key = plain.replacen(r#""type":"#, r#""\u0074ype":"#, 1);
    assert!(escaped_value != plain && escaped_key != plain);
    for frame in [escaped_value, escaped_key] {
        socket.send_raw(&frame).await;
        let events = socket.until_terminals(1).await;
        assert_eq!(
            events.last().unwrap()["type"],
            "response.completed",
            "{events:?}"
        );
    }
    assert_eq!(forwarded(&h).len(), 2);
    let rows = rows_n(&h, 2).await;
    assert!(rows.iter().all(|r| r.cost > 0 && !r.estimated), "{rows:?}");
}

/// A key given twice can be read as either value (OpenAI's Python reads the last one): a
/// message with a duplicated `type`, `model` or `generate` is refused, never forwarded.
#[tokio::test]
async fn messages_with_duplicated_keys_are_refused_and_never_forwarded() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    let body =
        r#""stream":true,"input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}]"#;
    for frame in [
        format!(
            r#"{{"type":"response.processed","type":"response.create","model":"gpt-5.5",{body}}}"#
        ),
        format!(r#"{{"type":"response.create","model":"gpt-5-nano","model":"gpt-5.5",{body}}}"#),
        format!(
            r#"{{"type":"response.create","model":"gpt-5.5","generate":false,"generate":true,{body}}}"#
        ),
    ] {
        socket.send_raw(&frame).await;
        let event = socket.next_event().await.unwrap();
        assert_eq!(
            (event["type"].as_str(), event["status"].as_i64()),
            (Some("error"), Some(400)),
            "{frame} → {event}"
        );
        assert_eq!(event["error"]["code"], "invalid_json", "{event}");
    }
    assert!(
        forwarded(&h).is_empty(),
        "a duplicated key reached the upstream"
    );
    assert!(rows(&h).await.is_empty());
}

/// A prewarm (`generate: false`) is billed as input only; anything else that is not exactly
/// `false` is an ordinary call, billed its output.
#[tokio::test]
async fn only_a_literal_generate_false_is_billed_as_a_prewarm() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    let mut prewarm = create("turn-1", "Say hello");
    prewarm["generate"] = json!(false);
    let warmed = socket.call(prewarm).await;
    let mut zero = create("turn-2", "Say hello");
    zero["generate"] = json!(0);
    let zero_answer = socket.call(zero).await;
    let rows = rows_n(&h, 2).await;
    assert_eq!(rows[0].endpoint, RESPONSES_WS_PREWARM, "{rows:?}");
    assert_eq!(rows[0].tokens, usage_tokens(warmed.last().unwrap()));
    assert_eq!(rows[0].tokens[2], 0, "{rows:?}");
    // `generate: 0` is not a prewarm to tollgate: whatever the upstream makes of it, its
    // output (if any) is billed.
    assert_eq!(rows[1].endpoint, RESPONSES_WS, "{rows:?}");
    let last = zero_answer.last().unwrap();
    if last["type"] == "response.completed" {
        assert_eq!(rows[1].tokens, usage_tokens(last));
    } else {
        assert_eq!(rows[1].cost, 0, "{rows:?}");
    }
}

/// Continuing a response tollgate never saw on this socket (another socket's, another team's)
/// reserves the configured bound of stored input, so a tight budget refuses it; the same
/// message without it fits.
#[tokio::test]
async fn a_previous_response_of_another_socket_is_reserved_at_the_stored_input_bound() {
    let h = Harness::start(Backend::Sqlite).await;
    let other = h.team_key("other").await;
    let mut theirs = open(&h, &other, &[]).await.unwrap();
    let answer = theirs.call(create("turn-1", "Say hello")).await;
    let their_id = answer.last().unwrap()["response"]["id"].clone();
    assert!(their_id.is_string(), "{answer:?}");

    let key = h.team_key("thrifty").await;
    // 400,000 stored input tokens of gpt-5.5 are $2; 16 output tokens and the body are cents.
    h.set_budget("thrifty", "1.50").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    let mut continuing = create("turn-2", "go on");
    continuing["previous_response_id"] = their_id;
    continuing["max_output_tokens"] = json!(16);
    let refused = socket.call(continuing).await;
    assert_eq!(
        (
            refused[0]["status"].as_i64(),
            refused[0]["error"]["type"].as_str()
        ),
        (Some(429), Some("usage_limit_reached")),
        "{refused:?}"
    );
    let mut alone = create("turn-3", "Say hello");
    alone["max_output_tokens"] = json!(16);
    let answered = socket.call(alone).await;
    assert_eq!(answered.last().unwrap()["type"], "response.completed");
    let rows = rows_n(&h, 2).await;
    assert_eq!(
        rows.iter().filter(|r| r.team == "thrifty").count(),
        1,
        "{rows:?}"
    );
}

/// A message in two fragments, with a ping between them, is one message: one call, one row.
#[tokio::test]
async fn a_fragmented_create_is_one_metered_call() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    let text = create("turn-1", "Say hello").to_string();
    let (head, tail) = text.split_at(text.len() / 2);
    let first = Frame::message(head.as_bytes().to_vec(), OpCode::Data(Data::Text), false);
    let ping = Frame::ping(b"between".to_vec());
    let last = Frame::message(tail.as_bytes().to_vec(), OpCode::Data(Data::Continue), true);
    for frame in [first, ping, last] {
        socket.0.send(Message::Frame(frame)).await.unwrap();
    }
    let events = socket.until_terminals(1).await;
    assert_eq!(
        events.last().unwrap()["type"],
        "response.completed",
        "{events:?}"
    );
    assert_eq!(forwarded(&h).len(), 1);
    assert_eq!(forwarded(&h)[0].body.as_ref(), text.as_bytes());
    let rows = rows_n(&h, 1).await;
    assert!(rows[0].cost > 0 && !rows[0].estimated, "{rows:?}");
}

/// Thousands of pings around a call change nothing about its metering.
#[tokio::test]
async fn a_ping_flood_does_not_disturb_metering() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    for _ in 0..2000 {
        socket
            .0
            .feed(Message::Ping(vec![7u8; 125].into()))
            .await
            .unwrap();
    }
    socket
        .0
        .feed(Message::text(create("turn-1", "Say hello").to_string()))
        .await
        .unwrap();
    for _ in 0..2000 {
        socket
            .0
            .feed(Message::Ping(vec![7u8; 125].into()))
            .await
            .unwrap();
    }
    socket.0.flush().await.unwrap();
    let events = socket.until_terminals(1).await;
    let done = events.last().unwrap();
    assert_eq!(done["type"], "response.completed", "{events:?}");
    let rows = rows_n(&h, 1).await;
    assert_eq!(rows[0].tokens, usage_tokens(done));
    assert_eq!(forwarded(&h).len(), 1);
}

/// An upstream that never answers a call is given up after the idle timeout, even while the
/// client keeps pinging (and the upstream keeps ponging): pongs are not an answer, and a call
/// held forever holds its budget reservation forever.
#[tokio::test]
async fn pings_do_not_keep_a_silent_upstream_call_alive() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.upstream.stream_idle_timeout_ms = 500;
    })
    .await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[("x-mock-first-byte-delay-ms", "60000")])
        .await
        .unwrap();
    socket.send(create("turn-1", "Say hello")).await;
    let mut pings = tokio::time::interval(Duration::from_millis(100));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let timed_out = loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break None,
            _ = pings.tick() => {
                if socket.0.send(Message::Ping(b"still here".to_vec().into())).await.is_err() {
                    break None;
                }
            }
            message = socket.0.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    break Some(serde_json::from_str::<Value>(&text).unwrap());
                }
                Some(Ok(_)) => {}
                _ => break None,
            },
        }
    };
    let event = timed_out.expect("the call was not given up within 5 s of a 0.5 s idle timeout");
    assert_eq!(event["status"], 504, "{event}");
    let rows = rows_n(&h, 1).await;
    assert_eq!(rows[0].status, 504, "{rows:?}");
}

/// A client that sends calls and never reads: the gateway stops reading the upstream (no
/// unbounded buffering), gives the client up after the idle timeout, and settles every call.
#[tokio::test]
async fn a_client_that_never_reads_is_given_up_and_its_calls_settled() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.upstream.stream_idle_timeout_ms = 1000;
    })
    .await;
    let key = h.team_key("platform").await;
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(h.gateway.addr).await.unwrap();
    let mut socket = open_on(h.gateway.addr, stream, &key, &[("x-mock-deltas", "100000")])
        .await
        .unwrap();
    for i in 0..4 {
        socket.send(create(&format!("turn-{i}"), "Say hello")).await;
    }
    let landed = eventually(Duration::from_secs(30), || async {
        rows(&h).await.len() >= 4
    })
    .await;
    let rows = rows(&h).await;
    assert!(
        landed,
        "calls of a client that never reads are unsettled: {rows:?}"
    );
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|r| r.cost > 0), "{rows:?}");
    let released = h
        .mock
        .wait_for_ws_connections_open(0, Duration::from_secs(10))
        .await;
    assert!(released, "the upstream socket is still held");
    drop(socket);
}

/// The client's connection ends in the middle of a frame while a call is in flight: the call
/// is settled once, estimated, and the upstream socket is released.
#[tokio::test]
async fn a_client_gone_mid_frame_leaves_one_estimated_row() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[("x-mock-chunk-delay-ms", "50")])
        .await
        .unwrap();
    socket.send(create("turn-1", "Say hello")).await;
    let created = socket.next_event().await.unwrap();
    assert_eq!(created["type"], "response.created", "{created}");
    // A masked text frame announcing 1000 bytes, 10 of them sent, then the connection ends.
    let tcp = socket.0.get_mut();
    let mut partial = vec![0x81, 0xFE, 0x03, 0xE8, 1, 2, 3, 4];
    partial.extend_from_slice(b"{\"type\":\"r");
    tcp.write_all(&partial).await.unwrap();
    tcp.shutdown().await.unwrap();
    drop(socket);
    let rows = rows_n(&h, 1).await;
    assert!(rows[0].estimated && rows[0].cost > 0, "{rows:?}");
    assert!(
        h.mock
            .wait_for_ws_connections_open(0, Duration::from_secs(10))
            .await
    );
    // Nothing more lands later.
    assert_eq!(rows_n(&h, 1).await.len(), 1);
}

/// An upstream that sends broken frames and drops the connection: the call is settled once
/// and charged (it was answered), never free.
#[tokio::test]
async fn an_upstream_sending_garbage_then_dropping_leaves_one_charged_row() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[("x-mock-malformed", "1")]).await.unwrap();
    socket.send(create("turn-1", "Say hello")).await;
    // The frames are not all JSON: read them raw, up to the end of the socket.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(Ok(message)) = socket.0.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the socket outlived its upstream");
    let rows = rows_n(&h, 1).await;
    assert!(rows[0].cost > 0, "{rows:?}");
}

/// `response.failed` with usage bills its usage, as on HTTP.
#[tokio::test]
async fn a_failed_response_with_usage_is_billed_its_usage() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    let events = socket.call(create("turn-1", "mock:ws-failed now")).await;
    let failed = events.last().unwrap();
    assert_eq!(failed["type"], "response.failed", "{events:?}");
    let rows = rows_n(&h, 1).await;
    assert_eq!(rows[0].tokens, usage_tokens(failed), "{rows:?}");
    assert!(rows[0].cost > 0 && !rows[0].estimated, "{rows:?}");
    // An in-band error instead of a response: a refusal, free.
    let events = socket.call(create("turn-2", "mock:ws-error now")).await;
    assert_eq!(events[0]["type"], "error", "{events:?}");
    let rows = rows_n(&h, 2).await;
    assert_eq!((rows[1].status, rows[1].cost), (500, 0), "{rows:?}");
}

/// The upstream's connection limit: its refusal is free, and a call pipelined behind it —
/// which the upstream never began, closing the connection cleanly instead — is not charged
/// either (Codex sends it again on a new socket, where it is billed).
#[tokio::test]
async fn calls_behind_the_upstreams_connection_limit_are_not_charged() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut socket = open(
        &h,
        &key,
        &[
            ("x-mock-ws-max-responses", "1"),
            ("x-mock-chunk-delay-ms", "20"),
        ],
    )
    .await
    .unwrap();
    for turn in ["turn-1", "turn-2", "turn-3"] {
        socket.send(create(turn, "Say hello")).await;
    }
    let events = socket.until_terminals(3).await;
    let terminals: Vec<&Value> = events.iter().filter(|e| is_terminal(e)).collect();
    assert_eq!(terminals[0]["type"], "response.completed", "{events:?}");
    assert_eq!(
        terminals[1]["error"]["code"], "websocket_connection_limit_reached",
        "{events:?}"
    );
    assert_eq!(
        terminals.len(),
        2,
        "the socket closed after the limit: {events:?}"
    );
    let rows = rows_n(&h, 3).await;
    assert!(turn(&rows, "turn-1").cost > 0, "{rows:?}");
    let refused = turn(&rows, "turn-2");
    assert_eq!(
        (refused.status, refused.cost),
        (400, 0),
        "the limit's refusal is free: {rows:?}"
    );
    assert_eq!(
        turn(&rows, "turn-3").cost,
        0,
        "a call the upstream never began is charged: {rows:?}"
    );
}

/// Handshake headers that would choose the upstream organisation or project, or carry another
/// credential, never reach the upstream; the operator's organisation and project do.
#[tokio::test]
async fn handshake_headers_cannot_choose_who_the_upstream_bills() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.upstream.organization = Some("org-operator".into());
        c.upstream.project = Some("proj-operator".into());
    })
    .await;
    let key = h.team_key("platform").await;
    let mut socket = open(
        &h,
        &key,
        &[
            ("openai-organization", "org-attacker"),
            ("openai-project", "proj-attacker"),
            ("api-key", "sk-attacker-azure"),
            ("x-api-key", "sk-attacker-x"),
            ("authorization", "Bearer sk-attacker-second"),
            ("cookie", "session=attacker"),
        ],
    )
    .await
    .unwrap();
    let events = socket.call(create("turn-1", "Say hello")).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    let upstream = forwarded(&h);
    assert_eq!(upstream.len(), 1);
    let headers = &upstream[0].headers;
    assert!(
        headers
            .iter()
            .all(|(_, v)| !v.contains("attacker") && !v.contains(&key)),
        "{headers:?}"
    );
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(
        values("authorization"),
        [format!("Bearer {UPSTREAM_KEY}").as_str()]
    );
    assert_eq!(values("openai-organization"), ["org-operator"]);
    assert_eq!(values("openai-project"), ["proj-operator"]);
}

/// A raw handshake on the gateway; the head of its answer (status line and headers).
async fn raw_handshake(addr: SocketAddr, request: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(byte[0]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer to the handshake within 10 s");
    (tcp, String::from_utf8_lossy(&head).to_lowercase())
}

fn handshake_text(version: &str, path: &str, key: &str, extra: &str) -> String {
    format!(
        "GET {path} {version}\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// Extensions (permessage-deflate) and subprotocols a client offers are not negotiated behind
/// the meter's back: the 101 accepts none, and the upstream is not offered the extension.
#[tokio::test]
async fn extension_offers_are_not_negotiated() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let (_tcp, head) = raw_handshake(
        h.gateway.addr,
        &handshake_text("HTTP/1.1", "/v1/responses", &key, offer),
    )
    .await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
    let accepted = h
        .mock
        .wait_for_ws_connections_open(1, Duration::from_secs(5))
        .await;
    assert!(accepted);
}

/// WebSocket needs HTTP/1.1: an HTTP/1.0 handshake gets a plain error, and no upstream socket
/// is opened (or left open) for it.
#[tokio::test]
async fn an_http_1_0_handshake_gets_an_error_and_holds_no_upstream_socket() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let (_tcp, head) = raw_handshake(
        h.gateway.addr,
        &handshake_text("HTTP/1.0", "/v1/responses", &key, ""),
    )
    .await;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!((400..500).contains(&status), "{head}");
    assert_eq!(h.mock.ws_connections_opened(), 0, "{head}");
}

/// Spellings of the path other than `/v1/responses` never open a socket (nor reach the
/// upstream); a query string does not change what is metered.
#[tokio::test]
async fn path_spellings_other_than_v1_responses_open_no_socket() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    for path in [
        "/v1/responses/",
        "/v1//responses",
        "/V1/responses",
        "/v1/./responses",
        "/v1/%72esponses",
        "/v1/responses/../responses",
    ] {
        let (_tcp, head) =
            raw_handshake(h.gateway.addr, &handshake_text("HTTP/1.1", path, &key, "")).await;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!((400..500).contains(&status), "{path}: {head}");
    }
    assert_eq!(h.mock.ws_connections_opened(), 0);
    assert!(h.mock.requests().is_empty(), "{:?}", h.mock.requests());

    let url = format!("ws://{}/v1/responses?x=1", h.gateway.addr);
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let stream = TcpStream::connect(h.gateway.addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let mut socket = Socket(ws);
    let events = socket.call(create("turn-1", "Say hello")).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    assert_eq!(rows_n(&h, 1).await[0].endpoint, RESPONSES_WS);
}

/// A key limited to some models: a message naming another is refused in-band, and so is one
/// naming none (the upstream would pick a model the key may not use).
#[tokio::test]
async fn a_keys_model_allow_list_holds_for_every_message() {
    let h = Harness::start(Backend::Sqlite).await;
    let teams = format!("{}/admin/v1/teams", h.base());
    let team = h
        .http
        .json(Method::POST, &teams, &admin(), json!({"name": "narrow"}))
        .await;
    assert_eq!(team.status, StatusCode::CREATED, "{team:?}");
    let issued = h
        .http
        .json(
            Method::POST,
            &format!("{teams}/narrow/keys"),
            &admin(),
            json!({"name": "ci", "allowed_models": ["gpt-5-mini"]}),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{issued:?}");
    let key = issued.json()["secret"].as_str().unwrap().to_string();
    let mut socket = open(&h, &key, &[]).await.unwrap();

    let mut allowed = create("turn-1", "Say hello");
    allowed["model"] = json!("gpt-5-mini");
    let events = socket.call(allowed).await;
    assert_eq!(
        events.last().unwrap()["type"],
        "response.completed",
        "{events:?}"
    );

    let events = socket.call(create("turn-2", "Say hello")).await;
    assert_eq!(
        (
            events[0]["status"].as_i64(),
            events[0]["error"]["code"].as_str()
        ),
        (Some(400), Some("model_not_allowed")),
        "{events:?}"
    );
    let mut nameless = create("turn-3", "Say hello");
    nameless.as_object_mut().unwrap().remove("model");
    let events = socket.call(nameless).await;
    assert_eq!(
        events[0]["type"], "error",
        "a call naming no model was forwarded: {events:?}"
    );
    assert_eq!(events[0]["status"], 400, "{events:?}");
    assert_eq!(
        forwarded(&h).len(),
        1,
        "only the allowed model reached the upstream"
    );
    let rows = rows_n(&h, 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
}

/// A message of 31 MiB of one letter (under the 32 MiB body limit): a clear in-band error,
/// nothing forwarded, and the socket still serves the next call.
#[tokio::test]
async fn a_31_mib_message_of_one_letter_is_refused_in_band() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    socket.send_raw(&"a".repeat(31 << 20)).await;
    let event = socket.next_event().await.unwrap();
    assert_eq!(
        (event["status"].as_i64(), event["error"]["code"].as_str()),
        (Some(400), Some("invalid_json")),
        "{event}"
    );
    assert!(forwarded(&h).is_empty());
    let events = socket.call(create("turn-1", "Say hello")).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    assert_eq!(rows_n(&h, 1).await.len(), 1);
}

/// Handshakes count against the key's request rate: a key cannot open sockets (and upstream
/// connections) without limit.
#[tokio::test]
async fn handshakes_are_rate_limited() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("paced").await;
    let set = h
        .http
        .json(
            Method::PUT,
            &format!("{}/admin/v1/rate-limits", h.base()),
            &admin(),
            json!({"team": "paced", "requests_per_minute": 3}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{set:?}");
    let models = format!("{}/v1/models", h.base());
    let limited = eventually(Duration::from_secs(10), || async {
        let reply = h
            .http
            .send(Method::GET, &models, &[tollgate_tests::bearer(&key)], "")
            .await;
        reply.status == StatusCode::TOO_MANY_REQUESTS
    })
    .await;
    assert!(limited, "the rate limit never applied");
    match open(&h, &key, &[]).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS)
        }
        other => panic!(
            "a rate-limited key opened a socket: {:?}",
            other.map(|_| ())
        ),
    }
    assert_eq!(h.mock.ws_connections_opened(), 0);
}

/// A socket that carries no call and hears nothing (a client that vanished without a FIN
/// looks exactly like this) is closed after the idle timeout rather than holding a task and
/// an upstream connection forever.
#[tokio::test]
async fn an_idle_socket_is_closed_and_releases_its_upstream_connection() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.upstream.stream_idle_timeout_ms = 500;
    })
    .await;
    let key = h.team_key("platform").await;
    let mut socket = open(&h, &key, &[]).await.unwrap();
    let events = socket.call(create("turn-1", "Say hello")).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    assert!(
        socket.closed_within(Duration::from_secs(5)).await,
        "an idle socket is held open past 10× the idle timeout"
    );
    assert!(
        h.mock
            .wait_for_ws_connections_open(0, Duration::from_secs(5))
            .await
    );
}

/// Shutdown with a client that never reads and calls in flight: shutdown ends within its
/// drain deadline (plus the close bound), and every forwarded call has its row.
#[tokio::test]
async fn shutdown_settles_the_calls_of_a_client_that_never_reads() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.limits.drain_timeout_ms = 300;
    })
    .await;
    let key = h.team_key("platform").await;
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let stream = tcp.connect(h.gateway.addr).await.unwrap();
    let mut socket = open_on(h.gateway.addr, stream, &key, &[("x-mock-deltas", "100000")])
        .await
        .unwrap();
    for i in 0..3 {
        socket.send(create(&format!("turn-{i}"), "Say hello")).await;
    }
    let all_forwarded = eventually(Duration::from_secs(10), || async {
        forwarded(&h).len() == 3
    })
    .await;
    assert!(all_forwarded);
    let Harness {
        mock, gateway, db, ..
    } = h;
    let shutdown = tokio::time::timeout(Duration::from_secs(15), gateway.shutdown()).await;
    assert!(
        shutdown.is_ok(),
        "shutdown hung on a client that never reads"
    );
    let rows = ledger(&db.url).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.cost > 0), "{rows:?}");
    drop((socket, mock));
}
