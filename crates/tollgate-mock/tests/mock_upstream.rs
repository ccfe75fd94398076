//! End-to-end tests of the mock upstream over real sockets, with a hyper-util client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on purpose"
)]

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tollgate_mock::{MockOptions, MockServer, MockUsage, SENTENCE, start};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const WAIT: Duration = Duration::from_secs(10);

async fn mock() -> MockServer {
    start("127.0.0.1:0".parse().unwrap(), MockOptions::default())
        .await
        .unwrap()
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn request(
    server: &MockServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", server.addr()));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap()
}

async fn post(
    server: &MockServer,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Response<Incoming> {
    let req = request(
        server,
        Method::POST,
        path,
        headers,
        body.to_string().as_bytes(),
    );
    client().request(req).await.unwrap()
}

/// Reads the body to its end; `Err` carries what arrived before the body failed.
async fn read_all(response: Response<Incoming>) -> Result<Bytes, Bytes> {
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => out.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..])),
            Err(_) => return Err(out.into()),
        }
    }
    Ok(out.into())
}

async fn json_of(response: Response<Incoming>) -> Value {
    serde_json::from_slice(&read_all(response).await.unwrap()).unwrap()
}

/// Splits an SSE body into `(event name, data)`; `[DONE]` comes back as a JSON string.
fn sse(bytes: &[u8]) -> Vec<(Option<String>, Value)> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.split_terminator("\n\n")
        .map(|block| {
            let mut event = None;
            let mut data = Value::Null;
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_owned()));
                }
            }
            (event, data)
        })
        .collect()
}

fn names(events: &[(Option<String>, Value)]) -> Vec<&str> {
    events
        .iter()
        .map(|(e, _)| e.as_deref().unwrap_or(""))
        .collect()
}

#[tokio::test]
async fn responses_stream_events_arrive_in_order_with_usage_in_completed() {
    let server = mock().await;
    let body = json!({"model": "gpt-5.5", "stream": true, "input": "hi"});
    let response = post(&server, "/v1/responses", &[], &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse(&read_all(response).await.unwrap());

    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", 20));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names(&events), expected);
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_deref().unwrap());
        assert_eq!(data["sequence_number"], i);
    }
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"].as_str())
        .collect();
    assert_eq!(text, SENTENCE);

    let completed = &events.last().unwrap().1["response"];
    let usage = MockUsage::for_request(body.to_string().len(), 20);
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["model"], "gpt-5.5");
    assert_eq!(completed["output"][0]["content"][0]["text"], SENTENCE);
    assert_eq!(completed["usage"]["input_tokens"], usage.input_tokens);
    assert_eq!(
        completed["usage"]["input_tokens_details"]["cached_tokens"],
        usage.cached_tokens
    );
    assert_eq!(completed["usage"]["output_tokens"], 28);
    assert_eq!(
        completed["usage"]["output_tokens_details"]["reasoning_tokens"],
        8
    );
    assert_eq!(completed["usage"]["total_tokens"], usage.total_tokens);
    assert_eq!(
        (
            server.streams_started(),
            server.streams_completed(),
            server.streams_cancelled()
        ),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn responses_json_is_a_full_response_object_and_no_usage_removes_usage() {
    let server = mock().await;
    let body = json!({"model": "gpt-4.1", "input": [{"role": "user", "content": "hello"}]});
    let r = json_of(post(&server, "/v1/responses", &[("x-mock-deltas", "2")], &body).await).await;
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "gpt-4.1");
    assert_eq!(r["parallel_tool_calls"], true);
    assert_eq!(r["tool_choice"], "auto");
    assert_eq!(r["tools"], json!([]));
    assert!(r["error"].is_null() && r["incomplete_details"].is_null());
    assert_eq!(r["output"][0]["type"], "message");
    assert_eq!(
        r["output"][0]["content"][0],
        json!({"type": "output_text", "text": "Hello from", "annotations": [], "logprobs": []})
    );
    assert_eq!(r["usage"]["output_tokens"], 10);

    let r = json_of(post(&server, "/v1/responses", &[("x-mock-no-usage", "1")], &body).await).await;
    assert!(r.get("usage").is_none());
}

#[tokio::test]
async fn chat_stream_carries_usage_only_when_include_usage_is_set() {
    let server = mock().await;
    let messages = json!([{"role": "user", "content": "hi"}]);

    let without = json!({"model": "gpt-4o", "stream": true, "messages": messages});
    let events = sse(
        &read_all(post(&server, "/v1/chat/completions", &[], &without).await)
            .await
            .unwrap(),
    );
    assert_eq!(events.len(), 1 + 20 + 1 + 1);
    assert_eq!(events[0].1["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(events[21].1["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[22].1, "[DONE]");
    assert!(events.iter().all(|(_, d)| d.get("usage").is_none()));
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, SENTENCE);

    let with = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}, "messages": messages});
    let events = sse(
        &read_all(post(&server, "/v1/chat/completions", &[], &with).await)
            .await
            .unwrap(),
    );
    assert_eq!(events.len(), 1 + 20 + 1 + 1 + 1);
    let usage_chunk = &events[22].1;
    assert_eq!(usage_chunk["object"], "chat.completion.chunk");
    assert_eq!(usage_chunk["choices"], json!([]));
    let usage = MockUsage::for_request(with.to_string().len(), 20);
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], usage.input_tokens);
    assert_eq!(
        usage_chunk["usage"]["completion_tokens"],
        usage.output_tokens
    );
    assert_eq!(
        usage_chunk["usage"]["prompt_tokens_details"]["cached_tokens"],
        usage.cached_tokens
    );
    assert!(events[..22].iter().all(|(_, d)| d["usage"].is_null()));
    assert_eq!(events[23].1, "[DONE]");
}

#[tokio::test]
async fn chat_json_answers_tool_calls_when_tools_are_offered() {
    let server = mock().await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "please mock:exec"}],
        "tools": [{"type": "function", "function": {"name": "exec_command", "parameters": {}}}]});
    let r = json_of(post(&server, "/v1/chat/completions", &[], &body).await).await;
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    let call = &r["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "exec_command");
    assert_eq!(call["function"]["arguments"], r#"{"cmd":"echo tollgate"}"#);

    let plain = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]});
    let r = json_of(post(&server, "/v1/chat/completions", &[], &plain).await).await;
    assert_eq!(
        r["choices"][0]["message"],
        json!({"role": "assistant", "content": SENTENCE, "refusal": null, "annotations": []})
    );
    assert_eq!(
        r["usage"]["completion_tokens_details"]["reasoning_tokens"],
        8
    );
}

#[tokio::test]
async fn x_mock_status_503_gives_an_openai_shaped_error() {
    let server = mock().await;
    let body = json!({"model": "gpt-5.5", "stream": true, "input": "hi"});
    let response = post(&server, "/v1/responses", &[("x-mock-status", "503")], &body).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error = &json_of(response).await["error"];
    assert_eq!(error["type"], "server_error");
    assert!(error["message"].is_string() && error["param"].is_null());
    assert_eq!(server.streams_started(), 0);

    let response = post(&server, "/v1/responses", &[("x-mock-status", "429")], &body).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        json_of(response).await["error"]["code"],
        "rate_limit_exceeded"
    );
}

#[tokio::test]
async fn cut_after_ends_the_stream_without_response_completed() {
    let server = mock().await;
    let body = json!({"model": "gpt-5.5", "stream": true, "input": "hi"});
    let response = post(
        &server,
        "/v1/responses",
        &[("x-mock-cut-after", "3")],
        &body,
    )
    .await;
    let partial = read_all(response)
        .await
        .expect_err("the stream must end with an error");
    let events = sse(&partial);
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added"
        ]
    );
    assert_eq!(
        (server.streams_completed(), server.streams_cancelled()),
        (0, 0)
    );
}

#[tokio::test]
async fn dropping_the_client_mid_stream_counts_a_cancelled_stream() {
    let server = mock().await;
    let body = json!({"model": "gpt-5.5", "stream": true, "input": "hi"});
    let headers = [("x-mock-chunk-delay-ms", "20"), ("x-mock-deltas", "1000")];
    let mut stream = post(&server, "/v1/responses", &headers, &body)
        .await
        .into_body();
    let first = stream.frame().await.unwrap().unwrap();
    assert!(
        first
            .data_ref()
            .unwrap()
            .starts_with(b"event: response.created\n")
    );
    drop(stream);
    assert!(server.wait_for_cancelled(1, WAIT).await);
    assert_eq!(
        (server.streams_started(), server.streams_completed()),
        (1, 0)
    );
}

#[tokio::test]
async fn exec_command_scripted_turn_then_done_after_the_tool_output() {
    let server = mock().await;
    let user = json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "run mock:exec please"}]});
    let body = json!({"model": "gpt-5.5", "stream": true, "input": [user]});
    let events = sse(&read_all(post(&server, "/v1/responses", &[], &body).await)
        .await
        .unwrap());
    assert_eq!(
        names(&events),
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
    let item = &events[5].1["item"];
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["name"], "exec_command");
    assert_eq!(item["arguments"], r#"{"cmd":"echo tollgate"}"#);
    assert_eq!(item["status"], "completed");
    let call_id = item["call_id"].as_str().unwrap();
    assert!(call_id.starts_with("call_") && item["id"].as_str().unwrap().starts_with("fc_"));
    assert_eq!(events[6].1["response"]["output"][0], *item);

    let output =
        json!({"type": "function_call_output", "call_id": call_id, "output": "tollgate\n"});
    let body = json!({"model": "gpt-5.5", "stream": true, "input": [user, item, output]});
    let events = sse(&read_all(post(&server, "/v1/responses", &[], &body).await)
        .await
        .unwrap());
    let completed = &events.last().unwrap().1["response"];
    assert_eq!(completed["output"][0]["content"][0]["text"], "done");
}

#[tokio::test]
async fn apply_patch_scripted_turn_is_a_custom_tool_call() {
    let server = mock().await;
    let body = json!({"model": "gpt-5.5", "input": [{"role": "user", "content": "mock:patch"}]});
    let r = json_of(post(&server, "/v1/responses", &[], &body).await).await;
    let item = &r["output"][0];
    assert_eq!(item["type"], "custom_tool_call");
    assert_eq!(item["name"], "apply_patch");
    assert_eq!(item["input"], tollgate_mock::PATCH_INPUT);
}

#[tokio::test]
async fn embeddings_come_as_floats_or_little_endian_base64() {
    let server = mock().await;
    let body = json!({"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 4});
    let r = json_of(post(&server, "/v1/embeddings", &[], &body).await).await;
    assert_eq!(r["object"], "list");
    assert_eq!(r["data"][1]["index"], 1);
    let floats: Vec<f32> = r["data"][1]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(
        floats,
        (0..4)
            .map(|j| tollgate_mock::embedding_value(1, j))
            .collect::<Vec<_>>()
    );
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() >= 1);

    let body = json!({"input": "a", "encoding_format": "base64"});
    let r = json_of(post(&server, "/v1/embeddings", &[], &body).await).await;
    let decoded = decode_base64(r["data"][0]["embedding"].as_str().unwrap());
    let values: Vec<f32> = decoded
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        values,
        (0..8)
            .map(|j| tollgate_mock::embedding_value(0, j))
            .collect::<Vec<_>>()
    );
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextets: Vec<u32> = text
        .bytes()
        .filter(|b| *b != b'=')
        .map(|b| ALPHABET.iter().position(|a| *a == b).unwrap() as u32)
        .collect();
    let mut out = Vec::new();
    for chunk in sextets.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0, |n, (i, s)| n | s << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[tokio::test]
async fn legacy_completions_stream_honours_include_usage() {
    let server = mock().await;
    let body = json!({"model": "gpt-4o", "prompt": "hi", "stream": true, "stream_options": {"include_usage": true}});
    let events = sse(&read_all(
        post(&server, "/v1/completions", &[("x-mock-deltas", "3")], &body).await,
    )
    .await
    .unwrap());
    assert_eq!(events.len(), 3 + 1 + 1 + 1);
    assert_eq!(events[0].1["object"], "text_completion");
    assert_eq!(events[3].1["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[4].1["usage"]["completion_tokens"], 3);
    assert_eq!(events[5].1, "[DONE]");
}

#[tokio::test]
async fn models_unknown_urls_and_bad_json_get_openai_errors() {
    let server = mock().await;
    let c = client();
    let list = json_of(
        c.request(request(&server, Method::GET, "/v1/models", &[], b""))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        tollgate_mock::MODELS.len()
    );
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gpt-image-1")
    );
    assert_eq!(list["data"][0]["object"], "model");
    let one = json_of(
        c.request(request(&server, Method::GET, "/v1/models/gpt-4o", &[], b""))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(one["id"], "gpt-4o");

    let missing = c
        .request(request(&server, Method::GET, "/v1/models/nope", &[], b""))
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_of(missing).await["error"]["code"], "model_not_found");

    let unknown = c
        .request(request(&server, Method::POST, "/v1/x", &[], b"{}"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json_of(unknown).await,
        json!({"error": {"message": "Invalid URL (POST /v1/x)", "type": "invalid_request_error", "param": null, "code": "unknown_url"}})
    );

    let bad = c
        .request(request(
            &server,
            Method::POST,
            "/v1/responses",
            &[],
            b"{not json",
        ))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(bad).await["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn requests_are_recorded_raw_and_visible_through_control_endpoints() {
    let server = mock().await;
    let c = client();
    let req = request(
        &server,
        Method::POST,
        "/v1/chat/completions?x=1",
        &[("X-Custom", "A"), ("content-type", "application/json")],
        br#"{"messages":[]}"#,
    );
    c.request(req).await.unwrap();
    assert!(server.wait_for_requests(1, WAIT).await);
    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        (recorded[0].method.as_str(), recorded[0].path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(recorded[0].query.as_deref(), Some("x=1"));
    assert_eq!(recorded[0].header("x-custom"), Some("A"));
    assert_eq!(&recorded[0].body[..], br#"{"messages":[]}"#);

    let listed = json_of(
        c.request(request(&server, Method::GET, "/__mock/requests", &[], b""))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed[0]["body"], r#"{"messages":[]}"#);
    assert_eq!(listed[0]["transport"], "http");
    let stats = json_of(
        c.request(request(&server, Method::GET, "/__mock/stats", &[], b""))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        stats,
        json!({"streams_started": 0, "streams_completed": 0, "streams_cancelled": 0, "requests": 1,
               "ws_connections_opened": 0, "ws_connections_open": 0, "ws_responses": 0,
               "ws_responses_cancelled": 0})
    );
    let cleared = c
        .request(request(
            &server,
            Method::DELETE,
            "/__mock/requests",
            &[],
            b"",
        ))
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn h2c_prior_knowledge_streams_too() {
    let server = mock().await;
    let h2: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let body = json!({"model": "gpt-5.5", "stream": true, "input": "hi"});
    let response = h2
        .request(request(
            &server,
            Method::POST,
            "/v1/responses",
            &[],
            body.to_string().as_bytes(),
        ))
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let events = sse(&read_all(response).await.unwrap());
    assert_eq!(names(&events).last(), Some(&"response.completed"));
}

#[tokio::test]
async fn cut_after_over_h2_delivers_the_events_before_the_reset() {
    let server = mock().await;
    let h2: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let body =
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let req = request(
        &server,
        Method::POST,
        "/v1/chat/completions",
        &[("x-mock-cut-after", "2")],
        body.to_string().as_bytes(),
    );
    let partial = read_all(h2.request(req).await.unwrap())
        .await
        .expect_err("the stream must be reset");
    assert_eq!(sse(&partial).len(), 2);
}

#[tokio::test]
async fn a_client_giving_up_during_the_first_byte_delay_cancels_the_stream() {
    let server = mock().await;
    let body = json!({"model": "gpt-5.5", "stream": true, "input": "hi"});
    let pending = post(
        &server,
        "/v1/responses",
        &[("x-mock-first-byte-delay-ms", "60000")],
        &body,
    );
    tokio::select! {
        _ = pending => panic!("the first byte must not arrive"),
        arrived = server.wait_for_requests(1, WAIT) => assert!(arrived),
    }
    assert!(server.wait_for_cancelled(1, WAIT).await);
    assert_eq!(server.streams_started(), 1);
}
