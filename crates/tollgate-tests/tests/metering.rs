//! Metering as finance relies on it: every call becomes one ledger row whose tokens and cost
//! match, to the nano-dollar, what the upstream reported and the price table says — streamed or
//! not, with cached and reasoning tokens, with tool calls, and estimated (never $0) when the
//! upstream's usage never arrives.

// Integration tests: shared helpers fail loudly, and read whole (small) test responses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use tollgate_mock::{MockUsage, REASONING_TOKENS};
use tollgate_tests::{Backend, Harness, Reply, bearer};

/// Nano-USD per token for the rates used here (USD per 1M tokens × 1000): exact integers.
struct Rate {
    input: i64,
    cached: i64,
    output: i64,
}
const GPT_5_5: Rate = Rate {
    input: 5_000,
    cached: 500,
    output: 30_000,
}; // $5 / $0.50 / $30 per 1M
const GPT_5_MINI: Rate = Rate {
    input: 250,
    cached: 25,
    output: 2_000,
}; // $0.25 / $0.025 / $2
const EMBED_3_SMALL: i64 = 20; // $0.02 per 1M

fn cost(rate: &Rate, input: i64, cached: i64, output: i64) -> i64 {
    (input - cached) * rate.input + cached * rate.cached + output * rate.output
}

fn request_id(reply: &Reply) -> String {
    reply
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id on every response")
        .to_string()
}

fn tokens(row: &Value) -> (i64, i64, i64, i64) {
    let t = |k: &str| {
        row[k]
            .as_i64()
            .unwrap_or_else(|| panic!("{k} missing in {row}"))
    };
    (
        t("input_tokens"),
        t("cached_input_tokens"),
        t("output_tokens"),
        t("reasoning_tokens"),
    )
}

/// The last request body the mock received (after tollgate's rewriting), for its usage formula.
fn upstream_body_len(h: &Harness) -> usize {
    h.mock.requests().last().unwrap().body.len()
}

#[tokio::test]
async fn every_endpoint_is_priced_exactly_from_upstream_usage() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let cases = [
        (
            "/v1/responses",
            json!({"model":"gpt-5.5","input":"hello","stream":true}),
            "responses",
        ),
        (
            "/v1/responses",
            json!({"model":"gpt-5.5","input":"hello"}),
            "responses",
        ),
        (
            "/v1/chat/completions",
            json!({"model":"gpt-5.5","messages":[{"role":"user","content":"hello"}],"stream":true}),
            "chat.completions",
        ),
        (
            "/v1/chat/completions",
            json!({"model":"gpt-5.5","messages":[{"role":"user","content":"hello"}],"stream":true,"stream_options":{"include_usage":true}}),
            "chat.completions",
        ),
        (
            "/v1/chat/completions",
            json!({"model":"gpt-5.5","messages":[{"role":"user","content":"hello"}]}),
            "chat.completions",
        ),
    ];
    for (path, body, endpoint) in cases {
        let reply = h
            .http
            .send(
                Method::POST,
                &format!("{}{path}", h.base()),
                &[bearer(&key)],
                body.to_string(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let row = h.ledger_row(&request_id(&reply)).await;
        let expected = MockUsage::for_request(upstream_body_len(&h), 20);
        let (input, cached, output, reasoning) = (
            expected.input_tokens as i64,
            expected.cached_tokens as i64,
            expected.output_tokens as i64,
            REASONING_TOKENS as i64,
        );
        assert_eq!(
            tokens(&row),
            (input, cached, output, reasoning),
            "{path} {body}: {row}"
        );
        assert_eq!(
            row["cost_nanos"],
            cost(&GPT_5_5, input, cached, output),
            "{path} {body}: {row}"
        );
        assert_eq!(
            (
                row["estimated"].clone(),
                row["endpoint"].clone(),
                row["status"].clone()
            ),
            (json!(false), json!(endpoint), json!(200)),
            "{row}"
        );
        assert_eq!(row["model_requested"], "gpt-5.5");
        if endpoint == "responses" {
            let sent = h.mock.requests().last().unwrap().json().unwrap();
            assert!(
                sent.get("stream_options").is_none(),
                "Responses requests must reach upstream unchanged: {sent}"
            );
        }
    }

    // Legacy completions report no details; embeddings only input.
    let reply = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/completions", h.base()),
            &[bearer(&key)],
            json!({"model":"gpt-5-mini","prompt":"hi","stream":true}).to_string(),
        )
        .await;
    let row = h.ledger_row(&request_id(&reply)).await;
    let input = MockUsage::for_request(upstream_body_len(&h), 20).input_tokens as i64;
    assert_eq!(tokens(&row), (input, 0, 20, 0), "{row}");
    assert_eq!(row["cost_nanos"], cost(&GPT_5_MINI, input, 0, 20));

    let reply = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/embeddings", h.base()),
            &[bearer(&key)],
            json!({"model":"text-embedding-3-small","input":["a","b"]}).to_string(),
        )
        .await;
    let row = h.ledger_row(&request_id(&reply)).await;
    let input = MockUsage::for_request(upstream_body_len(&h), 20).input_tokens as i64;
    assert_eq!(tokens(&row), (input, 0, 0, 0), "{row}");
    assert_eq!(row["cost_nanos"], input * EMBED_3_SMALL);
    // The decimal string is the same number, exactly.
    let usd: String = row["cost_usd"].as_str().unwrap().to_string();
    assert_eq!(
        tollgate_core::Money::parse_usd(&usd),
        Some(tollgate_core::Money(input * EMBED_3_SMALL))
    );
}

#[tokio::test]
async fn chat_stream_without_include_usage_is_metered_and_the_client_sees_no_trace_of_it() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let body =
        json!({"model":"gpt-5.5","messages":[{"role":"user","content":"hello"}],"stream":true})
            .to_string();
    let direct = h
        .http
        .send(
            Method::POST,
            &format!("http://{}/v1/chat/completions", h.mock.addr()),
            &[],
            body.clone(),
        )
        .await;
    let via = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/chat/completions", h.base()),
            &[bearer(&key)],
            body,
        )
        .await;
    assert!(
        h.mock.requests().last().unwrap().json().unwrap()["stream_options"]["include_usage"]
            == true,
        "tollgate must ask for usage"
    );
    let events = |r: &Reply| -> Vec<String> {
        String::from_utf8(r.body.to_vec())
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(normalise_chunk)
            .collect()
    };
    assert_eq!(
        events(&via),
        events(&direct),
        "the client's stream must be what it would get without tollgate"
    );
    assert!(
        !String::from_utf8_lossy(&via.body).contains("usage"),
        "usage leaked to a client that did not ask for it"
    );
    let row = h.ledger_row(&request_id(&via)).await;
    assert_eq!(row["estimated"], false);
    assert!(row["output_tokens"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn chat_stream_with_stream_options_null_is_metered_exactly_and_passes_through() {
    // `"stream_options": null` is valid and means "no usage". tollgate must replace it rather
    // than add a second `stream_options` key: a parser that keeps the last key would read the
    // null (no usage: an estimate that misses reasoning tokens), a strict one refuses the call.
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    for path in ["/v1/chat/completions", "/v1/completions"] {
        let body = if path == "/v1/completions" {
            json!({"model":"gpt-5.5","prompt":"hello","stream":true,"stream_options":null})
        } else {
            json!({"model":"gpt-5.5","messages":[{"role":"user","content":"hello"}],"stream":true,"stream_options":null})
        }
        .to_string();
        let direct = h
            .http
            .send(
                Method::POST,
                &format!("http://{}{path}", h.mock.addr()),
                &[],
                body.clone(),
            )
            .await;
        assert_eq!(direct.status, StatusCode::OK, "{direct:?}");
        let via = h
            .http
            .send(
                Method::POST,
                &format!("{}{path}", h.base()),
                &[bearer(&key)],
                body,
            )
            .await;
        assert_eq!(
            via.status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&via.body)
        );
        let sent = String::from_utf8(h.mock.requests().last().unwrap().body.to_vec()).unwrap();
        assert_eq!(sent.matches("stream_options").count(), 1, "{sent}");
        let events = |r: &Reply| -> Vec<String> {
            String::from_utf8(r.body.to_vec())
                .unwrap()
                .split("\n\n")
                .filter(|e| !e.is_empty())
                .map(normalise_chunk)
                .collect()
        };
        assert_eq!(events(&via), events(&direct), "{path}");
        let row = h.ledger_row(&request_id(&via)).await;
        assert_eq!(row["estimated"], false, "{path}: {row}");
        assert!(row["output_tokens"].as_i64().unwrap() > 0, "{row}");
    }
}

/// A chat chunk with its per-request id and timestamp blanked, byte layout otherwise kept.
fn normalise_chunk(event: &str) -> String {
    let Some(data) = event.strip_prefix("data: ") else {
        return event.to_string();
    };
    match serde_json::from_str::<Value>(data) {
        Ok(mut v) => {
            v["id"] = json!("x");
            v["created"] = json!(0);
            // Key order and spacing are checked by comparing the raw length too.
            format!(
                "{}|{}",
                v,
                data.len() - data.find("\"object\"").unwrap_or(0)
            )
        }
        Err(_) => event.to_string(),
    }
}

/// Output tokens the delivered text of a streamed answer counts to.
fn tiktoken(text: &str) -> i64 {
    tiktoken_rs::o200k_base_singleton()
        .encode_ordinary(text)
        .len() as i64
}

fn delivered_text(sse: &[u8]) -> String {
    String::from_utf8_lossy(sse)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn streams_without_usage_are_estimated_never_free() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let url = format!("{}/v1/responses", h.base());
    let body = json!({"model":"gpt-5.5","input":"estimate me","stream":true}).to_string();

    // An upstream that never reports usage, one that cuts the stream, and a client that leaves.
    let no_usage = h
        .http
        .send(
            Method::POST,
            &url,
            &[bearer(&key), ("x-mock-no-usage", "1".into())],
            body.clone(),
        )
        .await;
    let cut = h
        .http
        .start(
            Method::POST,
            &url,
            &[bearer(&key), ("x-mock-cut-after", "9".into())],
            body.clone(),
        )
        .await;
    let cut_id = cut.headers()["x-request-id"].to_str().unwrap().to_string();
    let mut cut_body = cut.into_body();
    let mut cut_bytes = Vec::new();
    while let Some(Ok(frame)) = cut_body.frame().await {
        cut_bytes.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..]));
    }
    let gone = h
        .http
        .start(
            Method::POST,
            &url,
            &[
                bearer(&key),
                ("x-mock-chunk-delay-ms", "20".into()),
                ("x-mock-deltas", "1000".into()),
            ],
            body.clone(),
        )
        .await;
    let gone_id = gone.headers()["x-request-id"].to_str().unwrap().to_string();
    let mut gone_body = gone.into_body();
    let mut gone_bytes = Vec::new();
    for _ in 0..8 {
        gone_bytes.extend_from_slice(
            gone_body
                .frame()
                .await
                .unwrap()
                .unwrap()
                .data_ref()
                .unwrap(),
        );
    }
    drop(gone_body);

    for (what, id, delivered) in [
        ("no usage", request_id(&no_usage), no_usage.body.to_vec()),
        ("cut", cut_id, cut_bytes),
        ("client gone", gone_id, gone_bytes),
    ] {
        let row = h.ledger_row(&id).await;
        assert_eq!(row["estimated"], true, "{what}: {row}");
        assert!(
            row["cost_nanos"].as_i64().unwrap() > 0,
            "{what}: charged $0: {row}"
        );
        assert!(row["input_tokens"].as_i64().unwrap() > 0, "{what}: {row}");
        let text = delivered_text(&delivered);
        let want = tiktoken(&text);
        let got = row["output_tokens"].as_i64().unwrap();
        assert!(want > 0, "{what}: nothing delivered?");
        assert!(
            (got - want).abs() * 10 <= want,
            "{what}: estimated {got} output tokens, delivered text is {want}: {text:?}"
        );
    }
}

#[tokio::test]
async fn tool_calls_are_counted_by_name() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let url = format!("{}/v1/responses", h.base());
    for (prompt, tool) in [
        ("mock:exec now", "exec_command"),
        ("mock:patch now", "apply_patch"),
    ] {
        let body =
            json!({"model":"gpt-5.5","input":[{"role":"user","content":prompt}],"stream":true})
                .to_string();
        let reply = h
            .http
            .send(
                Method::POST,
                &url,
                &[bearer(&key), ("session-id", "sess-1".into())],
                body,
            )
            .await;
        let row = h.ledger_row(&request_id(&reply)).await;
        assert_eq!(row["tool_calls"], json!({tool: 1}), "{row}");
        assert_eq!(row["session_id"], "sess-1");
    }
}

#[tokio::test]
async fn failed_calls_are_recorded_but_not_charged_and_rejected_ones_not_at_all() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let url = format!("{}/v1/responses", h.base());
    let body = json!({"model":"gpt-5.5","input":"hi"}).to_string();
    let failed = h
        .http
        .send(
            Method::POST,
            &url,
            &[bearer(&key), ("x-mock-status", "500".into())],
            body.clone(),
        )
        .await;
    let row = h.ledger_row(&request_id(&failed)).await;
    assert_eq!(
        (
            row["status"].clone(),
            row["cost_nanos"].clone(),
            row["estimated"].clone()
        ),
        (json!(500), json!(0), json!(false)),
        "{row}"
    );

    let unauthorised = h
        .http
        .send(
            Method::POST,
            &url,
            &[bearer("tg-aaaaaaaaaaaa-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
            body,
        )
        .await;
    unauthorised.assert_error(401, "invalid_api_key");
    let id = request_id(&unauthorised);
    let admin = [(
        "authorization",
        format!("Bearer {}", tollgate_tests::ADMIN_TOKEN),
    )];
    h.gateway.flush_ledger().await;
    let lookup = h
        .http
        .send(
            Method::GET,
            &format!("{}/admin/v1/requests/{id}", h.base()),
            &admin,
            "",
        )
        .await;
    lookup.assert_error(404, "not_found");
}

#[tokio::test]
async fn unpriced_models_are_refused_before_anything_is_sent() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let reply = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(&key)],
            json!({"model":"mystery-model-9","input":"hi"}).to_string(),
        )
        .await;
    reply.assert_error(400, "model_not_priced");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mystery-model-9")
    );
    assert!(h.mock.requests().is_empty());
    // A dated snapshot of a priced family is priced as the family.
    let ok = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(&key)],
            json!({"model":"gpt-5.5-2026-04-23","input":"hi"}).to_string(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let row = h.ledger_row(&request_id(&ok)).await;
    assert!(
        row["cost_nanos"].as_i64().unwrap() > 0
            && row["price_id"].as_str().unwrap().starts_with("gpt-5.5@"),
        "{row}"
    );
}

#[tokio::test]
async fn a_json_answer_too_large_to_parse_whole_is_still_charged_its_usage() {
    // Logprobs for many choices make a non-streamed answer tens of MB. The meter does not
    // parse one that large whole; it must still find the usage at its end, or the output of
    // such a call (all of it billed upstream) would cost its client nothing.
    use tokio::io::AsyncWriteExt;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", upstream.local_addr().unwrap());
    let h = Harness::start_custom(
        Backend::Sqlite,
        tollgate_mock::MockOptions::default(),
        |c| {
            c.upstream.url = url;
        },
    )
    .await;
    let key = h.team_key("logprobs").await;
    let filler = "x".repeat(33 * 1024 * 1024);
    let answer = format!(
        "{{\n  \"id\": \"chatcmpl-big\",\n  \"object\": \"chat.completion\",\n  \"model\": \"gpt-5.5\",\n  \"choices\": [{{\"index\": 0, \"message\": {{\"role\": \"assistant\", \"content\": \"{filler}\"}}, \"finish_reason\": \"length\"}}],\n  \"usage\": {{\n    \"prompt_tokens\": 12,\n    \"completion_tokens\": 200000,\n    \"total_tokens\": 200012\n  }},\n  \"service_tier\": \"default\"\n}}"
    );
    let server = tokio::spawn(async move {
        let (mut conn, _) = upstream.accept().await.unwrap();
        read_request(&mut conn).await;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(answer.as_bytes()).await.unwrap();
        conn.flush().await.unwrap();
        answer.len()
    });
    let reply = h
        .http
        .json(
            Method::POST,
            &format!("{}/v1/chat/completions", h.base()),
            &[bearer(&key)],
            json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 20, "n": 8}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body.len(),
        server.await.unwrap(),
        "the answer arrived whole"
    );
    let row = h.ledger_row(&request_id(&reply)).await;
    assert_eq!(row["estimated"], false, "{row}");
    assert_eq!(tokens(&row), (12, 0, 200_000, 0), "{row}");
    assert_eq!(row["cost_nanos"], cost(&GPT_5_5, 12, 0, 200_000), "{row}");
}

#[tokio::test]
async fn a_responses_stream_whose_last_event_is_huge_is_still_charged_its_usage() {
    // `response.completed` carries the whole response; with logprobs it can be tens of MB on
    // one line, more than the meter keeps. Its usage (reasoning tokens the client never saw
    // as text included) must still be read, not estimated from the deltas.
    use tokio::io::AsyncWriteExt;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", upstream.local_addr().unwrap());
    let h = Harness::start_custom(
        Backend::Sqlite,
        tollgate_mock::MockOptions::default(),
        |c| {
            c.upstream.url = url;
        },
    )
    .await;
    let key = h.team_key("hugeevent").await;
    let filler = "x".repeat(12 * 1024 * 1024);
    let stream = format!(
        "event: response.created\ndata: {{\"type\":\"response.created\",\"response\":{{\"id\":\"resp_big\",\"model\":\"gpt-5.5\",\"usage\":null}}}}\n\n\
         event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}}\n\n\
         event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"id\":\"resp_big\",\"model\":\"gpt-5.5\",\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":\"Hi\",\"logprobs\":\"{filler}\"}}]}}],\"usage\":{{\"input_tokens\":12,\"input_tokens_details\":{{\"cached_tokens\":0}},\"output_tokens\":150000,\"output_tokens_details\":{{\"reasoning_tokens\":149000}}}},\"user\":null,\"metadata\":{{}}}}}}\n\n"
    );
    let server = tokio::spawn(async move {
        let (mut conn, _) = upstream.accept().await.unwrap();
        read_request(&mut conn).await;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n",
            stream.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        // In 64 KiB writes, as a long event arrives.
        for piece in stream.as_bytes().chunks(64 * 1024) {
            conn.write_all(piece).await.unwrap();
        }
        conn.flush().await.unwrap();
        stream.len()
    });
    let reply = h
        .http
        .json(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(&key)],
            json!({"model": "gpt-5.5", "input": "hi", "stream": true, "include": ["message.output_text.logprobs"], "top_logprobs": 20}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body.len(),
        server.await.unwrap(),
        "the stream arrived whole"
    );
    let row = h.ledger_row(&request_id(&reply)).await;
    assert_eq!(row["estimated"], false, "{row}");
    assert_eq!(tokens(&row), (12, 0, 150_000, 149_000), "{row}");
    assert_eq!(row["cost_nanos"], cost(&GPT_5_5, 12, 0, 150_000), "{row}");
}

/// Reads one HTTP/1.1 request (head and `content-length` body) from a raw upstream connection.
async fn read_request(conn: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut request = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "the request ended early");
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request).to_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if request.len() >= end + 4 + length {
                return request;
            }
        }
    }
}
