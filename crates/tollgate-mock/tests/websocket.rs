//! The Responses API over WebSocket (Codex's transport), driven by a tokio-tungstenite client
//! over a real socket: handshake, event frames, scripted turns and failures, FIFO order.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly on purpose"
)]

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use serde_json::{Value, json};
use support::Mock;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, client_async};
use tollgate_mock::{
    DONE_TEXT, EXEC_ARGUMENTS, MockOptions, MockUsage, SENTENCE, Transport, WS_CUT_EVENTS,
};

type Ws = WebSocketStream<TcpStream>;

/// Bounds every wait, so a broken mock fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

const KEY: (&str, &str) = ("authorization", "Bearer sk-test");

/// Opens `/v1/responses` as a WebSocket with `headers`; `Err` carries a refused handshake.
async fn open(mock: &Mock, headers: &[(&str, &str)]) -> Result<(Ws, Response), WsError> {
    let addr = mock.server.addr();
    let mut request = format!("ws://{addr}/v1/responses")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(WAIT, client_async(request, tcp))
        .await
        .expect("handshake timed out")
}

async fn connect(mock: &Mock, headers: &[(&str, &str)]) -> Ws {
    let mut all = vec![KEY];
    all.extend_from_slice(headers);
    open(mock, &all).await.unwrap().0
}

fn create(body: Value) -> String {
    let mut frame = json!({"type": "response.create"});
    frame
        .as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    frame.to_string()
}

async fn send(ws: &mut Ws, frame: &str) {
    ws.send(Message::text(frame)).await.unwrap();
}

/// The next frame that is not a ping or pong; `None` once the connection is gone.
async fn next(ws: &mut Ws) -> Option<Result<Message, WsError>> {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame in time");
        match frame {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => return other,
        }
    }
}

async fn event(ws: &mut Ws) -> Value {
    match next(ws).await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Events up to and including the response's terminal event (or an in-band error).
async fn response(ws: &mut Ws) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let event = event(ws).await;
        let last = matches!(
            event["type"].as_str(),
            Some("response.completed" | "response.failed" | "response.incomplete" | "error")
        );
        events.push(event);
        if last {
            return events;
        }
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn text(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_plain_turn_streams_the_sse_events_as_frames_with_the_same_usage() {
    let mock = Mock::start(MockOptions::default()).await;
    // The same bytes over both transports: HTTP streams because of `stream`, the WebSocket
    // ignores it, and the usage formula counts the same length.
    let frame = create(json!({"model": "gpt-5.5", "stream": true, "input": "hi"}));
    let sse = mock
        .send(
            http::Method::POST,
            "/v1/responses",
            &[],
            Some("application/json"),
            frame.clone().into_bytes(),
        )
        .await
        .events();

    let (mut ws, handshake) = open(
        &mock,
        &[
            KEY,
            ("openai-beta", "responses_websockets=2026-02-06"),
            ("x-codex-turn-state", "ts_from_client"),
            ("sec-websocket-extensions", "permessage-deflate"),
        ],
    )
    .await
    .unwrap();
    let headers = handshake.headers();
    assert_eq!(handshake.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(headers["x-codex-turn-state"], "ts_from_client");
    assert_eq!(headers["x-models-etag"], "\"mock-models-1\"");
    assert_eq!(headers["x-reasoning-included"], "true");
    assert!(!headers.contains_key("sec-websocket-extensions"));

    send(&mut ws, &frame).await;
    let events = response(&mut ws).await;
    assert_eq!(types(&events), types(&sse));
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["sequence_number"], i);
    }
    assert_eq!(text(&events), SENTENCE);
    let completed = &events.last().unwrap()["response"];
    assert_eq!(completed["usage"], sse.last().unwrap()["response"]["usage"]);
    let usage = MockUsage::for_request(frame.len(), 20);
    assert_eq!(completed["usage"]["input_tokens"], usage.input_tokens);
    assert_eq!(completed["usage"]["output_tokens"], usage.output_tokens);
    assert_eq!(completed["output"][0]["content"][0]["text"], SENTENCE);

    let recorded = mock.server.requests();
    let last = recorded.last().unwrap();
    assert_eq!(last.transport, Transport::WebSocket);
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("GET", "/v1/responses")
    );
    assert_eq!(last.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(&last.body[..], frame.as_bytes());
    assert_eq!(recorded[0].transport, Transport::Http);
    let (_, log) = mock.json(http::Method::GET, "/__mock/requests", None).await;
    assert_eq!(log[0]["transport"], "http");
    assert_eq!(log[1]["transport"], "websocket");

    let (_, stats) = mock.json(http::Method::GET, "/__mock/stats", None).await;
    assert_eq!(stats["ws_connections_opened"], 1);
    assert_eq!(stats["ws_connections_open"], 1);
    assert_eq!(stats["ws_responses"], 1);
    assert_eq!(stats["requests"], 2);

    ws.close(None).await.unwrap();
    assert!(matches!(
        next(&mut ws).await,
        Some(Ok(Message::Close(_))) | None
    ));
    assert!(mock.server.wait_for_ws_connections_open(0, WAIT).await);
}

#[tokio::test]
async fn the_handshake_issues_a_turn_state_when_the_client_sends_none() {
    let mock = Mock::start(MockOptions::default()).await;
    let (_ws, handshake) = open(&mock, &[KEY]).await.unwrap();
    let turn_state = handshake.headers()["x-codex-turn-state"].to_str().unwrap();
    assert!(turn_state.starts_with("ts_"), "{turn_state}");
}

#[tokio::test]
async fn mock_exec_gets_a_function_call_and_its_result_continues_by_previous_response_id() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[]).await;
    let ask = json!([{"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": "please mock:exec"}]}]);
    send(&mut ws, &create(json!({"model": "gpt-5.5", "input": ask}))).await;
    let events = response(&mut ws).await;
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let completed = &events.last().unwrap()["response"];
    let first_id = completed["id"].clone();
    let call = &completed["output"][0];
    assert_eq!(call["type"], "function_call");
    assert_eq!(call["name"], "exec_command");
    assert_eq!(call["arguments"], EXEC_ARGUMENTS);

    // Codex sends only what is new, chained to the response it continues.
    let result = json!({"model": "gpt-5.5",
                        "previous_response_id": completed["id"],
                        "input": [{"type": "function_call_output", "call_id": call["call_id"],
                                   "output": "tollgate"}]});
    send(&mut ws, &create(result)).await;
    let events = response(&mut ws).await;
    let completed = &events.last().unwrap()["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(text(&events), DONE_TEXT);
    assert_eq!(completed["previous_response_id"], first_id);
}

#[tokio::test]
async fn a_prewarm_completes_without_output_and_bills_only_input() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[]).await;
    let frame = create(json!({"model": "gpt-5.5", "generate": false,
                              "input": [{"role": "user", "content": "mock:exec"}]}));
    send(&mut ws, &frame).await;
    let events = response(&mut ws).await;
    assert_eq!(types(&events), ["response.created", "response.completed"]);
    let completed = &events[1]["response"];
    assert_eq!(completed["output"], json!([]));
    let usage = MockUsage::input_only(frame.len());
    assert_eq!(completed["usage"]["input_tokens"], usage.input_tokens);
    assert_eq!(completed["usage"]["output_tokens"], 0);
    assert_eq!(
        completed["usage"]["output_tokens_details"]["reasoning_tokens"],
        0
    );
    assert_eq!(completed["usage"]["total_tokens"], usage.input_tokens);

    // The turn after a prewarm brings no new user message: the prewarmed script runs.
    let turn = json!({"model": "gpt-5.5", "previous_response_id": completed["id"], "input": []});
    send(&mut ws, &create(turn)).await;
    let events = response(&mut ws).await;
    let completed = &events.last().unwrap()["response"];
    assert_eq!(completed["output"][0]["name"], "exec_command");
    assert_eq!(mock.server.ws_responses(), 2);
}

#[tokio::test]
async fn an_unknown_previous_response_id_is_an_in_band_error_and_the_socket_stays_open() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[]).await;
    let unknown = json!({"model": "gpt-5.5", "previous_response_id": "resp_nope", "input": "hi"});
    send(&mut ws, &create(unknown)).await;
    assert_eq!(
        event(&mut ws).await,
        json!({"type": "error", "status": 400,
               "error": {"type": "invalid_request_error", "code": "previous_response_not_found",
                         "message": "Previous response with id 'resp_nope' not found.",
                         "param": "previous_response_id"},
               "headers": {}})
    );
    send(&mut ws, &create(json!({"input": "again"}))).await;
    let events = response(&mut ws).await;
    assert_eq!(events.last().unwrap()["type"], "response.completed");
}

#[tokio::test]
async fn a_handshake_without_a_key_is_refused_with_401_and_no_upgrade() {
    let mock = Mock::start(MockOptions::default()).await;
    let Err(WsError::Http(refused)) = open(&mock, &[]).await else {
        panic!("the handshake should be refused");
    };
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_slice(refused.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(mock.server.ws_connections_opened(), 0);
    let recorded = mock.server.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].transport, Transport::Http);
}

#[tokio::test]
async fn x_mock_status_on_the_handshake_refuses_it_as_plain_http() {
    let mock = Mock::start(MockOptions::default()).await;
    let Err(WsError::Http(refused)) = open(&mock, &[KEY, ("x-mock-status", "426")]).await else {
        panic!("the handshake should be refused");
    };
    assert_eq!(refused.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(mock.server.ws_connections_opened(), 0);
}

#[tokio::test]
async fn the_connection_limit_answers_an_error_event_then_closes_normally() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[("x-mock-ws-max-responses", "1")]).await;
    send(&mut ws, &create(json!({"input": "one"}))).await;
    assert_eq!(
        response(&mut ws).await.last().unwrap()["type"],
        "response.completed"
    );
    send(&mut ws, &create(json!({"input": "two"}))).await;
    assert_eq!(
        event(&mut ws).await,
        json!({"type": "error", "status": 400,
               "error": {"type": "invalid_request_error",
                         "code": "websocket_connection_limit_reached",
                         "message": "Responses websocket connection limit reached (60 minutes). Create a new websocket connection to continue.",
                         "param": null},
               "headers": {}})
    );
    match next(&mut ws).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert!(next(&mut ws).await.is_none());
    assert!(mock.server.wait_for_ws_connections_open(0, WAIT).await);
    assert_eq!(mock.server.ws_responses(), 1);
}

#[tokio::test]
async fn the_ws_max_responses_option_limits_every_connection() {
    let mock = Mock::start(MockOptions {
        ws_max_responses: Some(0),
        ..MockOptions::default()
    })
    .await;
    let mut ws = connect(&mock, &[]).await;
    send(&mut ws, &create(json!({"input": "one"}))).await;
    let error = event(&mut ws).await;
    assert_eq!(error["error"]["code"], "websocket_connection_limit_reached");
    assert!(matches!(next(&mut ws).await, Some(Ok(Message::Close(_)))));
}

#[tokio::test]
async fn mock_ws_cut_drops_the_connection_mid_response_without_a_close_frame() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[]).await;
    send(&mut ws, &create(json!({"input": "mock:ws-cut please"}))).await;
    let mut received = Vec::new();
    let end = loop {
        match next(&mut ws).await {
            Some(Ok(Message::Text(text))) => {
                received.push(serde_json::from_str::<Value>(&text).unwrap());
            }
            other => break other,
        }
    };
    assert!(
        matches!(
            end,
            None | Some(Err(WsError::Protocol(_)
                | WsError::ConnectionClosed
                | WsError::Io(_)))
        ),
        "{end:?}"
    );
    assert_eq!(received.len(), WS_CUT_EVENTS);
    assert_eq!(received[0]["type"], "response.created");
    assert_eq!(received[5]["type"], "response.output_text.delta");
    assert!(mock.server.wait_for_ws_connections_open(0, WAIT).await);
    assert_eq!(mock.server.ws_responses(), 0);
    assert_eq!(mock.server.ws_responses_cancelled(), 0);
}

#[tokio::test]
async fn x_mock_cut_after_cuts_every_response_after_n_events() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[("x-mock-cut-after", "3")]).await;
    send(&mut ws, &create(json!({"input": "hi"}))).await;
    for _ in 0..3 {
        assert!(matches!(next(&mut ws).await, Some(Ok(Message::Text(_)))));
    }
    assert!(!matches!(next(&mut ws).await, Some(Ok(_))));
}

#[tokio::test]
async fn mock_ws_error_is_an_in_band_500_and_the_socket_stays_open() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[]).await;
    send(&mut ws, &create(json!({"input": "mock:ws-error"}))).await;
    let error = event(&mut ws).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["status"], 500);
    assert_eq!(error["error"]["type"], "server_error");
    assert_eq!(error["error"]["code"], "server_error");
    send(&mut ws, &create(json!({"input": "hi"}))).await;
    assert_eq!(
        response(&mut ws).await.last().unwrap()["type"],
        "response.completed"
    );
}

#[tokio::test]
async fn mock_ws_failed_ends_in_response_failed_with_input_only_usage() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[]).await;
    let frame = create(json!({"input": "mock:ws-failed"}));
    send(&mut ws, &frame).await;
    let events = response(&mut ws).await;
    assert_eq!(
        types(&events),
        [
            "response.created",
            "response.in_progress",
            "response.failed"
        ]
    );
    let failed = &events[2]["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "server_error");
    assert!(failed["error"]["message"].is_string());
    assert_eq!(
        failed["usage"]["input_tokens"],
        MockUsage::input_only(frame.len()).input_tokens
    );
    assert_eq!(failed["usage"]["output_tokens"], 0);
}

#[tokio::test]
async fn two_back_to_back_creates_are_answered_one_after_the_other() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[("x-mock-deltas", "3")]).await;
    send(&mut ws, &create(json!({"input": "first"}))).await;
    send(&mut ws, &create(json!({"input": "mock:exec"}))).await;
    let first = response(&mut ws).await;
    let second = response(&mut ws).await;
    assert_eq!(first.last().unwrap()["type"], "response.completed");
    assert_eq!(text(&first), "Hello from the");
    assert!(
        first
            .iter()
            .all(|e| e["type"] != "response.function_call_arguments.delta")
    );
    assert_eq!(second[0]["type"], "response.created");
    assert_eq!(
        second.last().unwrap()["response"]["output"][0]["name"],
        "exec_command"
    );
    assert_ne!(first[0]["response"]["id"], second[0]["response"]["id"]);
    assert_eq!(mock.server.requests().len(), 2);
}

#[tokio::test]
async fn bad_frames_get_in_band_errors_and_harmless_events_are_ignored() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[]).await;
    send(&mut ws, "{not json").await;
    let error = event(&mut ws).await;
    assert_eq!(
        (error["status"].as_u64(), error["error"]["code"].as_str()),
        (Some(400), Some("invalid_json"))
    );
    send(&mut ws, r#"{"type":"session.update"}"#).await;
    let error = event(&mut ws).await;
    assert_eq!(error["error"]["code"], "invalid_request");
    assert_eq!(error["error"]["param"], "type");
    ws.send(Message::binary(b"\x00\x01".to_vec()))
        .await
        .unwrap();
    assert_eq!(event(&mut ws).await["status"], 400);
    send(
        &mut ws,
        r#"{"type":"response.processed","response_id":"resp_1"}"#,
    )
    .await;
    send(&mut ws, &create(json!({"input": "hi"}))).await;
    // The ignored event got no answer: the next frame is already the response.
    assert_eq!(event(&mut ws).await["type"], "response.created");
    // Only the response.create reached the request log.
    assert_eq!(mock.server.requests().len(), 1);
}

#[tokio::test]
async fn pings_are_answered_with_pongs() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[]).await;
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    match pong {
        Some(Ok(Message::Pong(data))) => assert_eq!(&data[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[tokio::test]
async fn shutting_the_server_down_closes_open_sockets_with_1001() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[]).await;
    drop(mock);
    match next(&mut ws).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn x_mock_malformed_sends_broken_frames_then_drops_the_connection() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut ws = connect(&mock, &[("x-mock-malformed", "1")]).await;
    send(&mut ws, &create(json!({"input": "hi"}))).await;
    let mut frames = Vec::new();
    while let Some(Ok(Message::Text(text))) = next(&mut ws).await {
        frames.push(text.to_string());
    }
    assert_eq!(frames.len(), 3);
    assert!(serde_json::from_str::<Value>(&frames[0]).is_err());
    assert!(serde_json::from_str::<Value>(&frames[1]).is_err());
    assert!(mock.server.wait_for_ws_connections_open(0, WAIT).await);
}
