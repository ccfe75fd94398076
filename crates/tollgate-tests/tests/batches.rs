//! Batches through tollgate, as a team and finance see them: a batch is refused up front when
//! its budget or its lines say so, reserved while it runs, and charged once when it ends — one
//! ledger row per request line at half price — whether the gateway that created it is still
//! running or was restarted in between.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use tollgate::app::{self, Running};
use tollgate_mock::{MockOptions, MockServer};
use tollgate_tests::{
    ADMIN_TOKEN, Backend, Harness, HttpClient, Reply, bearer, eventually, test_config,
};

const SESSION: &str = "nightly-eval";
const BOUNDARY: &str = "tollgate-batch-test";

fn admin() -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {ADMIN_TOKEN}"))]
}

fn key_id(key: &str) -> String {
    key.split('-').nth(1).unwrap().to_string()
}

async fn start(backend: Backend) -> Harness {
    Harness::start_custom(backend, MockOptions::default(), |c| {
        c.batches.poll_interval_ms = 50;
    })
    .await
}

/// A gateway on this database and upstream, polling batches often.
async fn gateway_on(database_url: &str, upstream: &str) -> Running {
    let mut config = test_config(database_url, upstream);
    config.batches.poll_interval_ms = 50;
    app::start(config).await.expect("gateway starts")
}

fn chat_line(custom_id: &str, model: &str, text: &str) -> Value {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 100}
    })
}

fn lines(models: &[&str]) -> Vec<Value> {
    models
        .iter()
        .enumerate()
        .map(|(i, model)| chat_line(&format!("line-{i}"), model, &"words ".repeat(3 + 5 * i)))
        .collect()
}

/// Uploads a batch input file through tollgate (a free `files` call); returns its id.
async fn upload(http: &HttpClient, base: &str, key: &str, lines: &[Value]) -> String {
    let mut file = String::new();
    for line in lines {
        file.push_str(&line.to_string());
        file.push('\n');
    }
    let body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n{file}\r\n--{BOUNDARY}--\r\n"
    );
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let reply = http
        .send(
            Method::POST,
            &format!("{base}/v1/files"),
            &[bearer(key), ("content-type", content_type)],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json()["id"].as_str().unwrap().to_string()
}

async fn create(http: &HttpClient, base: &str, key: &str, file: &str) -> Reply {
    http.json(
        Method::POST,
        &format!("{base}/v1/batches"),
        &[bearer(key), ("session-id", SESSION.into())],
        json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
    )
    .await
}

/// Ends a batch in the mock: `complete`, `cancel-partly?lines=N` or `expire?lines=N`.
async fn end_batch(http: &HttpClient, mock: &MockServer, batch: &str, how: &str) -> Value {
    let reply = http
        .send(
            Method::POST,
            &format!("http://{}/__mock/batches/{batch}/{how}", mock.addr()),
            &[],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json()
}

async fn wait_settled(h: &Harness, batch: &str) -> tollgate_store::StoredBatch {
    let store = &h.gateway.store;
    let settled = eventually(Duration::from_secs(10), || async {
        store
            .batch(batch)
            .await
            .unwrap()
            .is_some_and(|b| b.state == "settled")
    })
    .await;
    assert!(settled, "batch {batch} was not settled");
    store.batch(batch).await.unwrap().unwrap()
}

/// What each billed line of a finished batch costs, computed by hand from the output file
/// read back through tollgate: gpt-4.1-mini at $0.40 / $0.10 cached / $1.60 per 1M tokens,
/// halved for the batch tier = 200 / 50 / 800 nano-USD per token.
async fn expected_lines(h: &Harness, key: &str, output_file: &str) -> Vec<(String, i64)> {
    let reply = h
        .http
        .send(
            Method::GET,
            &format!("{}/v1/files/{output_file}/content", h.base()),
            &[bearer(key)],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    String::from_utf8(reply.body.to_vec())
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let line: Value = serde_json::from_str(l).unwrap();
            let usage = &line["response"]["body"]["usage"];
            let input = usage["prompt_tokens"].as_i64().unwrap();
            let cached = usage["prompt_tokens_details"]["cached_tokens"]
                .as_i64()
                .unwrap_or(0);
            let output = usage["completion_tokens"].as_i64().unwrap();
            assert!(input > 0 && output > 0, "{line}");
            let cost = 200 * (input - cached) + 50 * cached + 800 * output;
            (line["custom_id"].as_str().unwrap().to_string(), cost)
        })
        .collect()
}

/// The key's batch-line rows (endpoint code 17): (request id, cost, service tier).
async fn batch_rows(h: &Harness, key: &str) -> Vec<(String, i64)> {
    let pool = sqlx::AnyPool::connect(&h.db.url).await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT request_id, cost_nanos FROM ledger WHERE key_id = $1 AND endpoint = 17 \
         ORDER BY request_id",
    )
    .bind(key_id(key))
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

async fn committed(h: &Harness, budget: &str) -> i64 {
    let reply = h
        .http
        .send(
            Method::GET,
            &format!("{}/admin/v1/budgets/{budget}", h.base()),
            &admin(),
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let v = reply.json();
    v["committed_nano_usd"]
        .as_i64()
        .or_else(|| v["status"]["committed_nano_usd"].as_i64())
        .unwrap_or_else(|| panic!("committed_nano_usd in {v}"))
}

fn assert_rows(batch: &str, rows: &[(String, i64)], expected: &[(String, i64)]) {
    let mut want: Vec<(String, i64)> = expected
        .iter()
        .map(|(custom, cost)| (format!("{batch}:{custom}"), *cost))
        .collect();
    want.sort();
    assert_eq!(rows, want.as_slice());
}

async fn a_completed_batch_is_charged_each_line_at_half_price(backend: Backend) {
    let h = start(backend).await;
    let key = h.team_key("evals").await;
    let budget = h.set_budget("evals", "100.00").await;
    let base = h.base();
    let file = upload(&h.http, &base, &key, &lines(&["gpt-4.1-mini"; 3])).await;
    let created = create(&h.http, &base, &key, &file).await;
    assert_eq!(created.status, StatusCode::OK, "{created:?}");
    let batch = created.json()["id"].as_str().unwrap().to_string();
    // Recorded before the client got the answer, with its upper bound reserved.
    let pending = h.gateway.store.batch(&batch).await.unwrap().unwrap();
    assert_eq!(pending.state, "pending");
    assert!(pending.record.reserved.nanos() > 0, "{pending:?}");
    assert_eq!(pending.record.session_id.as_deref(), Some(SESSION));

    let ended = end_batch(&h.http, &h.mock, &batch, "complete").await;
    let settled = wait_settled(&h, &batch).await;
    let output = ended["output_file_id"].as_str().unwrap();
    let expected = expected_lines(&h, &key, output).await;
    assert_eq!(expected.len(), 3);
    let total: i64 = expected.iter().map(|(_, c)| c).sum();
    let settlement = settled.settlement.unwrap();
    assert_eq!((settlement.lines, settlement.cost.nanos()), (3, total));
    assert!(
        total <= pending.record.reserved.nanos(),
        "bound {pending:?}"
    );
    h.gateway.flush_ledger().await;
    assert_rows(&batch, &batch_rows(&h, &key).await, &expected);

    // One row looks like any other call's, billed at the batch tier when the batch ended.
    let row = h.ledger_row(&format!("{batch}:line-0")).await;
    assert_eq!(row["endpoint"], "batch", "{row}");
    assert_eq!(row["service_tier"], "batch", "{row}");
    assert_eq!(row["session_id"], SESSION, "{row}");
    assert_eq!(row["cost_centre"], "CC-1", "{row}");
    let completed_at = ended["completed_at"].as_i64().unwrap();
    assert_eq!(
        row["started_at_ms"].as_i64(),
        Some(completed_at * 1000),
        "{row}"
    );

    // Reports and the budget add up to the same total: the creation and file calls are free.
    let report = h
        .http
        .send(
            Method::GET,
            &format!(
                "{base}/admin/v1/reports/spend?from=2020-01-01&to=2040-01-01&group_by=session&team=evals"
            ),
            &admin(),
            "",
        )
        .await;
    assert_eq!(report.status, StatusCode::OK, "{report:?}");
    let report = report.json();
    let session = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["session_id"] == SESSION)
        .unwrap_or_else(|| panic!("no {SESSION} in {report}"));
    assert_eq!(session["cost_nano_usd"].as_i64(), Some(total), "{report}");
    assert_eq!(
        report["totals"]["cost_nano_usd"].as_i64(),
        Some(total),
        "{report}"
    );
    let by_model = h
        .http
        .send(
            Method::GET,
            &format!("{base}/admin/v1/reports/spend?from=2020-01-01&to=2040-01-01&group_by=model&team=evals"),
            &admin(),
            "",
        )
        .await
        .json();
    let mini: i64 = by_model["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["model"]
                .as_str()
                .is_some_and(|m| m.starts_with("gpt-4.1-mini"))
        })
        .map(|r| r["cost_nano_usd"].as_i64().unwrap())
        .sum();
    assert_eq!(mini, total, "{by_model}");
    assert_eq!(committed(&h, &budget).await, total);
    // The creation and the file calls have rows of their own, at cost 0 and not flagged.
    let free = || async {
        let pool = sqlx::AnyPool::connect(&h.db.url).await.unwrap();
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT endpoint, cost_nanos, unmetered FROM ledger \
             WHERE key_id = $1 AND endpoint <> 17 ORDER BY started_at_ms",
        )
        .bind(key_id(&key))
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows
    };
    eventually(Duration::from_secs(5), || async { free().await.len() == 3 }).await;
    assert_eq!(free().await, [(16, 0, 0), (15, 0, 0), (16, 0, 0)]);
}

async fn a_batch_that_ends_while_the_gateway_is_down_is_settled_once_after_restart(
    backend: Backend,
) {
    let h = start(backend).await;
    let key = h.team_key("nightly").await;
    let budget = h.set_budget("nightly", "100.00").await;
    let base = h.base();
    let file = upload(&h.http, &base, &key, &lines(&["gpt-4.1-mini"; 4])).await;
    let created = create(&h.http, &base, &key, &file).await;
    assert_eq!(created.status, StatusCode::OK, "{created:?}");
    let batch = created.json()["id"].as_str().unwrap().to_string();

    let Harness {
        mock,
        gateway: first,
        db,
        http,
    } = h;
    first.shutdown().await;
    let ended = end_batch(&http, &mock, &batch, "complete").await;
    let restarted = gateway_on(&db.url, &mock.base_url()).await;
    let h = Harness {
        mock,
        gateway: restarted,
        db,
        http,
    };
    // A second replica follows the same batches: the batch must still be charged once.
    let replica = gateway_on(&h.db.url, &h.mock.base_url()).await;
    let settled = wait_settled(&h, &batch).await;
    let output = ended["output_file_id"].as_str().unwrap();
    let expected = expected_lines(&h, &key, output).await;
    assert_eq!(expected.len(), 4);
    let total: i64 = expected.iter().map(|(_, c)| c).sum();
    assert_eq!(settled.settlement.unwrap().cost.nanos(), total);
    replica.flush_ledger().await;
    h.gateway.flush_ledger().await;
    assert_rows(&batch, &batch_rows(&h, &key).await, &expected);
    assert_eq!(committed(&h, &budget).await, total);
    replica.shutdown().await;
}

async fn an_exhausted_budget_refuses_a_batch_before_anything_reaches_the_upstream(
    backend: Backend,
) {
    let h = start(backend).await;
    let key = h.team_key("broke").await;
    let base = h.base();
    let budget = h.set_budget("broke", "100.00").await;
    let file = upload(&h.http, &base, &key, &lines(&["gpt-4.1-mini"])).await;
    let call = json!({"model": "gpt-4.1-mini", "input": "hi", "max_output_tokens": 16});
    let spent = h
        .http
        .json(
            Method::POST,
            &format!("{base}/v1/responses"),
            &[bearer(&key)],
            call.clone(),
        )
        .await;
    assert_eq!(spent.status, StatusCode::OK, "{spent:?}");
    let lowered = h
        .http
        .json(
            Method::PATCH,
            &format!("{base}/admin/v1/budgets/{budget}"),
            &admin(),
            json!({"limit_usd": "0.000000001"}),
        )
        .await;
    assert_eq!(lowered.status, StatusCode::OK, "{lowered:?}");
    // Each replica holds a slice of the budget; wait until this one has learnt it is spent.
    let exhausted = eventually(Duration::from_secs(10), || async {
        create(&h.http, &base, &key, &file).await.status == StatusCode::TOO_MANY_REQUESTS
    })
    .await;
    assert!(exhausted, "the budget never ran out");
    h.mock.clear();
    let refused = create(&h.http, &base, &key, &file).await;
    refused.assert_error(429, "usage_limit_reached");
    // Neither the input file nor the creation reached the upstream (a batch admitted before
    // the budget ran out may still be polled: that is the only traffic allowed).
    let seen: Vec<String> = h.mock.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        !seen
            .iter()
            .any(|p| p == "/v1/batches" || p.starts_with("/v1/files")),
        "the upstream was called: {seen:?}"
    );
}

async fn a_line_for_a_model_the_key_may_not_use_refuses_the_whole_batch(backend: Backend) {
    let h = start(backend).await;
    let created = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/teams", h.base()),
            &admin(),
            json!({"name": "narrow", "allowed_models": ["gpt-4.1-mini"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let key = h.team_key("narrow").await;
    let base = h.base();
    let mut input = lines(&["gpt-4.1-mini", "gpt-4.1-mini"]);
    input.push(chat_line("the-big-one", "gpt-4.1", "hello"));
    let file = upload(&h.http, &base, &key, &input).await;
    h.mock.clear();
    let refused = create(&h.http, &base, &key, &file).await;
    refused.assert_error(400, "model_not_allowed");
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("Line 3")
            && message.contains("the-big-one")
            && message.contains("gpt-4.1"),
        "{message}"
    );
    // Only the input file was read; no batch was created.
    let seen: Vec<(String, String)> = h
        .mock
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        seen,
        [("GET".to_string(), format!("/v1/files/{file}/content"))]
    );
    assert!(
        h.gateway
            .store
            .unsettled_batches()
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_cancelled_batch_bills_only_the_lines_it_ran(backend: Backend) {
    let h = start(backend).await;
    let key = h.team_key("cancelled").await;
    let base = h.base();
    let file = upload(&h.http, &base, &key, &lines(&["gpt-4.1-mini"; 5])).await;
    let created = create(&h.http, &base, &key, &file).await;
    assert_eq!(created.status, StatusCode::OK, "{created:?}");
    let batch = created.json()["id"].as_str().unwrap().to_string();
    let cancel = h
        .http
        .send(
            Method::POST,
            &format!("{base}/v1/batches/{batch}/cancel"),
            &[bearer(&key)],
            "",
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{cancel:?}");
    let ended = end_batch(&h.http, &h.mock, &batch, "cancel-partly?lines=2").await;
    assert_eq!(ended["status"], "cancelled");
    let settled = wait_settled(&h, &batch).await;
    let expected = expected_lines(&h, &key, ended["output_file_id"].as_str().unwrap()).await;
    assert_eq!(expected.len(), 2);
    let total: i64 = expected.iter().map(|(_, c)| c).sum();
    let settlement = settled.settlement.unwrap();
    assert_eq!((settlement.lines, settlement.cost.nanos()), (2, total));
    h.gateway.flush_ledger().await;
    assert_rows(&batch, &batch_rows(&h, &key).await, &expected);
}

async fn a_creation_whose_answer_was_lost_is_found_upstream_and_charged(backend: Backend) {
    let h = start(backend).await;
    let key = h.team_key("lost").await;
    let base = h.base();
    let file = upload(&h.http, &base, &key, &lines(&["gpt-4.1-mini"; 2])).await;
    let other = upload(&h.http, &base, &key, &lines(&["gpt-4.1-mini"])).await;
    // A gateway died after its creation reached the upstream (made here directly, as that
    // gateway would have) and before it stored the answer; another died before sending its.
    let direct = h
        .http
        .json(
            Method::POST,
            &format!("{}/batches", h.mock.base_url()),
            &[("authorization", format!("Bearer {}", tollgate_tests::UPSTREAM_KEY))],
            json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await;
    assert_eq!(direct.status, StatusCode::OK, "{direct:?}");
    let batch = direct.json()["id"].as_str().unwrap().to_string();
    // Their intents, written a while ago.
    let started = tollgate_core::time::now_ms() - 120_000;
    let bearer_key = format!("Bearer {key}");
    let now = tollgate_core::time::now_ms();
    let team = h.gateway.keys.authenticate(Some(&bearer_key), now).unwrap();
    for (request_id, input) in [("req_lost_answer", &file), ("req_never_sent", &other)] {
        let intent = tollgate_core::batch::BatchRecord {
            request_id: request_id.into(),
            batch_id: None,
            team_id: team.team.id.clone(),
            key_id: team.id.clone(),
            cost_centre: team.team.cost_centre.clone(),
            user: None,
            session_id: Some(SESSION.into()),
            input_file_id: input.clone(),
            endpoint: "/v1/chat/completions".into(),
            reserved: tollgate_core::Money(1_000_000),
            created_at_ms: started,
        };
        h.gateway.store.record_batch(&intent).await.unwrap();
    }
    let store = &h.gateway.store;
    let found = eventually(Duration::from_secs(10), || async {
        store.batch(&batch).await.unwrap().is_some()
    })
    .await;
    assert!(found, "the lost batch was not reconciled");
    assert_eq!(
        store
            .batch(&batch)
            .await
            .unwrap()
            .unwrap()
            .record
            .request_id,
        "req_lost_answer"
    );
    // The intent that never reached the upstream is dropped in the same pass, maybe a moment
    // after the lost one is found.
    let cleared = eventually(Duration::from_secs(10), || async {
        store.batch_intents(i64::MAX).await.unwrap().is_empty()
    })
    .await;
    assert!(
        cleared,
        "an intent that never reached the upstream was kept"
    );
    let ended = end_batch(&h.http, &h.mock, &batch, "complete").await;
    let settled = wait_settled(&h, &batch).await;
    let expected = expected_lines(&h, &key, ended["output_file_id"].as_str().unwrap()).await;
    let total: i64 = expected.iter().map(|(_, c)| c).sum();
    assert_eq!(settled.settlement.unwrap().cost.nanos(), total);
    h.gateway.flush_ledger().await;
    assert_rows(&batch, &batch_rows(&h, &key).await, &expected);
}

tollgate_tests::both_stores!(
    a_completed_batch_is_charged_each_line_at_half_price,
    a_batch_that_ends_while_the_gateway_is_down_is_settled_once_after_restart,
    an_exhausted_budget_refuses_a_batch_before_anything_reaches_the_upstream,
    a_line_for_a_model_the_key_may_not_use_refuses_the_whole_batch,
    a_cancelled_batch_bills_only_the_lines_it_ran,
    a_creation_whose_answer_was_lost_is_found_upstream_and_charged,
);
