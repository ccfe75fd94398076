//! A hostile key holder's worst body: 31 MiB of one repeated character, which the tokenizer
//! sees as one giant "word". Through the gateway it costs a bounded amount: a call over budget
//! is refused promptly, and a call whose upstream sends no usage still gets its one ledger row,
//! estimated, with an upper-bound token count (never more tokens than bytes).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use tollgate_core::Money;
use tollgate_mock::MockOptions;
use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, Reply, bearer, both_stores, eventually};

/// Just under the default `limits.max_body_bytes` (32 MiB).
const BODY_BYTES: usize = 31 * 1024 * 1024;
/// Main took minutes and gigabytes for this body (debug build); bounded, it takes seconds.
const PROMPTLY: Duration = Duration::from_secs(20);

/// A Responses call whose input is `BODY_BYTES` (less the JSON around it) of the letter `a`.
fn pathological_body() -> Vec<u8> {
    let head = br#"{"model":"gpt-5.5","input":""#;
    let tail = br#"","max_output_tokens":16}"#;
    let mut body = Vec::with_capacity(BODY_BYTES);
    body.extend_from_slice(head);
    body.resize(BODY_BYTES - tail.len(), b'a');
    body.extend_from_slice(tail);
    body
}

async fn send(h: &Harness, key: &str, body: Vec<u8>) -> Reply {
    h.http
        .send(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(key), ("content-type", "application/json".into())],
            body,
        )
        .await
}

async fn a_pathological_call_without_usage_gets_one_estimated_bounded_row(backend: Backend) {
    let no_usage = MockOptions {
        no_usage: true,
        ..MockOptions::default()
    };
    let h = Harness::start_with(backend, no_usage).await;
    let key = h.team_key("hostile").await;
    let body = pathological_body();
    let bytes = body.len() as i64;

    let started = Instant::now();
    let reply = send(&h, &key, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let id = reply.headers["x-request-id"].to_str().unwrap().to_string();
    let url = format!("{}/admin/v1/requests/{id}", h.base());
    let admin = [("authorization", format!("Bearer {ADMIN_TOKEN}"))];
    let landed = eventually(PROMPTLY, || async {
        h.http.send(Method::GET, &url, &admin, "").await.status == StatusCode::OK
    })
    .await;
    assert!(
        landed,
        "no ledger row {:?} after the call: the estimate is not bounded",
        started.elapsed()
    );
    let row = h.ledger_row(&id).await;
    assert_eq!(row["estimated"], true, "{row}");
    let input = row["input_tokens"].as_i64().unwrap();
    assert!(
        input > 0 && input <= bytes,
        "input tokens {input} must be an upper bound no larger than the body's {bytes} bytes: {row}"
    );
    assert!(row["cost_nanos"].as_i64().unwrap() > 0, "charged $0: {row}");

    h.gateway.flush_ledger().await;
    let totals = h.gateway.store.ledger_totals(0, i64::MAX).await.unwrap();
    assert_eq!(
        (totals.requests, totals.estimated_requests),
        (1, 1),
        "one call, one estimated row"
    );
}

async fn an_over_budget_pathological_call_is_refused_promptly(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("hostile").await;
    // $1: the byte bound of a 31 MiB body at gpt-5.5's $5 per 1M input tokens is ~$160, so
    // admission tokenizes the body for a tighter bound before it refuses.
    let budget = serde_json::json!({"team": "hostile", "period": "day", "limit_usd": Money(1_000_000_000).to_usd_string()});
    let created = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/budgets", h.base()),
            &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
            budget,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");

    let started = Instant::now();
    let reply = send(&h, &key, pathological_body()).await;
    let took = started.elapsed();
    reply.assert_error(429, "usage_limit_reached");
    assert!(took < PROMPTLY, "refused after {took:?}");
    assert_eq!(
        h.mock.requests().len(),
        0,
        "a refused call never reaches the upstream"
    );
}

both_stores!(
    a_pathological_call_without_usage_gets_one_estimated_bounded_row,
    an_over_budget_pathological_call_is_refused_promptly,
);
