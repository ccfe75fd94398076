//! OpenAI-hosted tools (web search, file search, code interpreter) in Responses answers, and
//! search-preview citations in Chat Completions: the calls a gateway bills per call.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on purpose"
)]

mod support;

use serde_json::{Value, json};
use support::Mock;
use tollgate_mock::{CITATION_URL, INTERPRETER_CODE, MockOptions, SENTENCE, WEB_SEARCH_QUERY};

fn all_tools() -> Value {
    json!({"model": "gpt-5.5", "input": "look it up",
           "tools": [{"type": "web_search_preview"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
                     {"type": "code_interpreter", "container": {"type": "auto"}}]})
}

fn types(output: &Value) -> Vec<&str> {
    output
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn hosted_tool_calls_come_before_the_message() {
    let mock = Mock::start(MockOptions::default()).await;
    let r = mock.post("/v1/responses", &[], &all_tools()).await.json();
    let output = &r["output"];
    assert_eq!(
        types(output),
        [
            "web_search_call",
            "file_search_call",
            "code_interpreter_call",
            "message"
        ]
    );
    assert_eq!(
        output[0]["action"],
        json!({"type": "search", "query": WEB_SEARCH_QUERY})
    );
    assert!(output[0]["id"].as_str().unwrap().starts_with("ws_"));
    assert_eq!(output[0]["status"], "completed");
    assert_eq!(output[1]["queries"], json!([WEB_SEARCH_QUERY]));
    assert_eq!(output[1]["results"], Value::Null);
    assert_eq!(output[2]["code"], INTERPRETER_CODE);
    assert!(
        output[2]["container_id"]
            .as_str()
            .unwrap()
            .starts_with("cntr_")
    );
    assert_eq!(output[2]["outputs"][0]["type"], "logs");
    assert_eq!(output[3]["content"][0]["text"], SENTENCE);
    let plain = mock
        .post(
            "/v1/responses",
            &[],
            &json!({"input": "hi", "tools": [{"type": "function", "name": "f"}]}),
        )
        .await
        .json();
    assert_eq!(types(&plain["output"]), ["message"]);
}

#[tokio::test]
async fn builtin_calls_header_repeats_calls_and_containers_header_spreads_them() {
    let mock = Mock::start(MockOptions::default()).await;
    let body = json!({"input": "run it", "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]});
    let shared = mock
        .post("/v1/responses", &[("x-mock-builtin-calls", "3")], &body)
        .await
        .json();
    let containers = |r: &Value| -> Vec<String> {
        r["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["container_id"].as_str().map(str::to_owned))
            .collect()
    };
    let c = containers(&shared);
    assert_eq!(c.len(), 3);
    assert!(
        c.iter().all(|id| *id == c[0]),
        "one container by default: {c:?}"
    );
    let spread = mock
        .post(
            "/v1/responses",
            &[("x-mock-builtin-calls", "3"), ("x-mock-containers", "2")],
            &body,
        )
        .await
        .json();
    let mut c = containers(&spread);
    c.sort();
    c.dedup();
    assert_eq!(c.len(), 2);
}

#[tokio::test]
async fn streamed_hosted_calls_send_their_progress_events_and_appear_in_the_completed_response() {
    let mock = Mock::start(MockOptions::default()).await;
    let mut body = all_tools();
    body["stream"] = json!(true);
    let events = mock.post("/v1/responses", &[], &body).await.events();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds[..19],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.web_search_call.in_progress",
            "response.web_search_call.searching",
            "response.web_search_call.completed",
            "response.output_item.done",
            "response.output_item.added",
            "response.file_search_call.in_progress",
            "response.file_search_call.searching",
            "response.file_search_call.completed",
            "response.output_item.done",
            "response.output_item.added",
            "response.code_interpreter_call.in_progress",
            "response.code_interpreter_call_code.delta",
            "response.code_interpreter_call_code.done",
            "response.code_interpreter_call.interpreting",
            "response.code_interpreter_call.completed",
            "response.output_item.done",
        ]
    );
    assert_eq!(events[2]["item"]["status"], "in_progress");
    assert_eq!(events[6]["item"]["status"], "completed");
    assert_eq!(events[12]["output_index"], 2);
    assert_eq!(events[19]["type"], "response.output_item.added");
    assert_eq!(
        events[19]["output_index"], 3,
        "the message follows the three calls"
    );
    let seq: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..events.len() as u64).collect::<Vec<_>>());
    let completed = events.last().unwrap();
    assert_eq!(completed["type"], "response.completed");
    assert_eq!(
        types(&completed["response"]["output"]),
        [
            "web_search_call",
            "file_search_call",
            "code_interpreter_call",
            "message"
        ]
    );
    assert_eq!(events[0]["response"]["output"], json!([]));
}

#[tokio::test]
async fn search_preview_chat_answers_cite_their_source() {
    let mock = Mock::start(MockOptions::default()).await;
    let body = json!({"model": "gpt-4o-search-preview", "web_search_options": {},
                      "messages": [{"role": "user", "content": "news?"}]});
    let r = mock.post("/v1/chat/completions", &[], &body).await.json();
    let annotations = &r["choices"][0]["message"]["annotations"];
    assert_eq!(annotations[0]["type"], "url_citation");
    assert_eq!(annotations[0]["url_citation"]["url"], CITATION_URL);
    assert_eq!(annotations[0]["url_citation"]["end_index"], SENTENCE.len());
    let plain = mock
        .post(
            "/v1/chat/completions",
            &[],
            &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .json();
    assert_eq!(plain["choices"][0]["message"]["annotations"], json!([]));
}
