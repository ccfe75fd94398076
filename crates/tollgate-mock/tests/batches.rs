//! Files, batches and moderations over real sockets: what a batch user (or a gateway metering
//! batches) sees.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on purpose"
)]

mod support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Mock, jsonl};
use tollgate_mock::{MockOptions, MockUsage};

fn chat_line(custom_id: &str, text: &str) -> Value {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
           "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}})
}

async fn upload_batch_input(mock: &Mock, lines: &[Value]) -> String {
    let data = jsonl(lines);
    let (status, file) = mock
        .upload(
            "/v1/files",
            &[("purpose", "batch")],
            &[("file", "in.jsonl", &data)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{file}");
    file["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn uploaded_files_are_listed_retrieved_read_back_and_deleted() {
    let mock = Mock::start(MockOptions::default()).await;
    let data = b"{\"a\":1}\n".repeat(500_000); // 4 MB: a realistic batch input
    let (status, file) = mock
        .upload(
            "/v1/files",
            &[("purpose", "batch")],
            &[("file", "big.jsonl", &data)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{file}");
    assert_eq!(file["object"], "file");
    assert_eq!(file["bytes"], data.len());
    assert_eq!(file["filename"], "big.jsonl");
    assert_eq!(file["purpose"], "batch");
    let id = file["id"].as_str().unwrap();
    assert!(id.starts_with("file-"));

    let (_, got) = mock
        .json(Method::GET, &format!("/v1/files/{id}"), None)
        .await;
    assert_eq!(got, file);
    let (_, list) = mock.json(Method::GET, "/v1/files", None).await;
    assert_eq!(list["data"][0]["id"], id);
    let (status, content) = mock
        .raw(Method::GET, &format!("/v1/files/{id}/content"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content, data);

    let (_, deleted) = mock
        .json(Method::DELETE, &format!("/v1/files/{id}"), None)
        .await;
    assert_eq!(
        deleted,
        json!({"id": id, "object": "file", "deleted": true})
    );
    let (status, err) = mock
        .json(Method::GET, &format!("/v1/files/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn a_batch_on_an_unknown_file_or_endpoint_is_refused() {
    let mock = Mock::start(MockOptions::default()).await;
    let body = json!({"input_file_id": "file-nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let (status, err) = mock.json(Method::POST, "/v1/batches", Some(&body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["param"], "input_file_id");
    let file = upload_batch_input(&mock, &[chat_line("a", "hi")]).await;
    let body = json!({"input_file_id": file, "endpoint": "/v1/images/generations", "completion_window": "24h"});
    let (status, err) = mock.json(Method::POST, "/v1/batches", Some(&body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["param"], "endpoint");
}

#[tokio::test]
async fn a_completed_batch_answers_each_line_with_the_usage_of_a_direct_request() {
    let mock = Mock::start(MockOptions::default()).await;
    let good = chat_line("first", "hello");
    let wrong_url = json!({"custom_id": "second", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}});
    let file = upload_batch_input(&mock, &[good.clone(), wrong_url]).await;
    let create = json!({"input_file_id": file, "endpoint": "/v1/chat/completions",
                        "completion_window": "24h", "metadata": {"job": "nightly"}});
    let (status, batch) = mock.json(Method::POST, "/v1/batches", Some(&create)).await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["object"], "batch");
    assert_eq!(batch["status"], "in_progress");
    assert_eq!(
        batch["request_counts"],
        json!({"total": 2, "completed": 0, "failed": 0})
    );
    assert_eq!(batch["metadata"], json!({"job": "nightly"}));
    assert_eq!(batch["model"], "gpt-4o", "the first line's model");
    assert_eq!(batch["output_file_id"], Value::Null);
    let id = batch["id"].as_str().unwrap();

    let (status, done) = mock
        .json(
            Method::POST,
            &format!("/__mock/batches/{id}/complete"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "completed");
    assert!(done["completed_at"].as_u64().is_some());
    assert_eq!(
        done["request_counts"],
        json!({"total": 2, "completed": 1, "failed": 1})
    );

    let output = mock
        .raw(
            Method::GET,
            &format!(
                "/v1/files/{}/content",
                done["output_file_id"].as_str().unwrap()
            ),
        )
        .await
        .1;
    let lines: Vec<Value> = output
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["custom_id"], "first");
    assert_eq!(lines[0]["error"], Value::Null);
    assert_eq!(lines[0]["response"]["status_code"], 200);
    let usage = &lines[0]["response"]["body"]["usage"];
    let expected = MockUsage::for_request(good["body"].to_string().len(), 20);
    assert_eq!(usage["prompt_tokens"], expected.input_tokens);
    assert_eq!(usage["completion_tokens"], expected.output_tokens);
    assert_eq!(done["usage"]["input_tokens"], expected.input_tokens);
    assert_eq!(done["usage"]["output_tokens"], expected.output_tokens);

    let errors = mock
        .raw(
            Method::GET,
            &format!(
                "/v1/files/{}/content",
                done["error_file_id"].as_str().unwrap()
            ),
        )
        .await
        .1;
    let error: Value =
        serde_json::from_slice(errors.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(error["custom_id"], "second");
    assert_eq!(error["response"], Value::Null);
    assert_eq!(error["error"]["code"], "invalid_url");

    let (status, _) = mock
        .json(
            Method::POST,
            &format!("/__mock/batches/{id}/complete"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a batch ends once");
}

#[tokio::test]
async fn cancelled_and_expired_batches_keep_only_the_lines_run_before() {
    let mock = Mock::start(MockOptions::default()).await;
    let lines: Vec<Value> = (0..3).map(|i| chat_line(&format!("c{i}"), "hi")).collect();
    let file = upload_batch_input(&mock, &lines).await;
    let create = json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    for (action, status) in [("cancel-partly", "cancelled"), ("expire", "expired")] {
        let (_, batch) = mock.json(Method::POST, "/v1/batches", Some(&create)).await;
        let id = batch["id"].as_str().unwrap();
        if action == "cancel-partly" {
            let (_, cancelling) = mock
                .json(Method::POST, &format!("/v1/batches/{id}/cancel"), None)
                .await;
            assert_eq!(cancelling["status"], "cancelling");
        }
        let (_, ended) = mock
            .json(
                Method::POST,
                &format!("/__mock/batches/{id}/{action}?lines=2"),
                None,
            )
            .await;
        assert_eq!(ended["status"], status);
        assert_eq!(
            ended["request_counts"],
            json!({"total": 3, "completed": 2, "failed": 0})
        );
        let output = mock
            .raw(
                Method::GET,
                &format!(
                    "/v1/files/{}/content",
                    ended["output_file_id"].as_str().unwrap()
                ),
            )
            .await
            .1;
        assert_eq!(output.iter().filter(|b| **b == b'\n').count(), 2);
    }
    let (_, list) = mock.json(Method::GET, "/v1/batches?limit=1", None).await;
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["status"], "expired", "newest first");
    assert_eq!(list["has_more"], true);
    assert_eq!(list["first_id"], list["data"][0]["id"]);
}

#[tokio::test]
async fn batch_auto_complete_finishes_a_batch_when_it_is_polled() {
    let mock = Mock::start(MockOptions {
        batch_auto_complete: true,
        ..MockOptions::default()
    })
    .await;
    let file = upload_batch_input(&mock, &[chat_line("only", "hi")]).await;
    let create = json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let (_, batch) = mock.json(Method::POST, "/v1/batches", Some(&create)).await;
    assert_eq!(batch["status"], "in_progress");
    let id = batch["id"].as_str().unwrap();
    let (_, polled) = mock
        .json(Method::GET, &format!("/v1/batches/{id}"), None)
        .await;
    assert_eq!(polled["status"], "completed");
    assert_eq!(polled["request_counts"]["completed"], 1);
}

#[tokio::test]
async fn moderations_answer_one_result_per_input() {
    let mock = Mock::start(MockOptions::default()).await;
    let body = json!({"input": ["fine", "mock:flag this"]});
    let (status, r) = mock
        .json(Method::POST, "/v1/moderations", Some(&body))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["model"], "omni-moderation-latest");
    assert_eq!(r["results"].as_array().unwrap().len(), 2);
    assert_eq!(r["results"][0]["flagged"], false);
    assert_eq!(r["results"][1]["flagged"], true);
    assert_eq!(r["results"][1]["categories"]["harassment"], true);
    assert_eq!(r["results"][0]["categories"].as_object().unwrap().len(), 13);
    assert_eq!(
        r["results"][0]["category_applied_input_types"]["self-harm/intent"],
        json!(["text"])
    );
    let (_, one) = mock
        .json(
            Method::POST,
            "/v1/moderations",
            Some(&json!({"input": "one", "model": "text-moderation-latest"})),
        )
        .await;
    assert_eq!(one["results"].as_array().unwrap().len(), 1);
    assert_eq!(one["model"], "text-moderation-latest");
}
