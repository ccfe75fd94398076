//! Codex's turn-cost query (`POST /v1/analytics/codex/turn-costs`) answered from the ledger: a
//! turn's total is the exact sum of its rows, its responses are the upstream's ids Codex saw, a
//! turn is priced once its rows have settled, and nothing about one team's turns reaches another.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row;

use tollgate_core::Money;
use tollgate_tests::{Backend, Harness, Reply, bearer, both_stores};

both_stores!(codex_gets_each_turns_price_from_the_ledger);

const SESSION: &str = "019ab6a2-7c1e-7d33-9e2a-5f0c1d2e3f4a";
const T1: &str = "019ab6a2-8d2f-7a44-8b3c-000000000001";
const T2: &str = "019ab6a2-8d2f-7a44-8b3c-000000000002";

/// A Responses call as Codex sends it in turn `turn`; returns tollgate's request id and the
/// upstream's response id as the client saw it.
async fn codex_call(h: &Harness, key: &str, turn: &str, stream: bool) -> (String, String) {
    let metadata = json!({"session_id": SESSION, "thread_id": SESSION, "turn_id": turn});
    let reply = h
        .http
        .json(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[
                bearer(key),
                ("originator", "codex_exec".into()),
                ("session-id", SESSION.into()),
                ("x-codex-turn-metadata", metadata.to_string()),
            ],
            json!({"model": "gpt-5.5", "input": "list the files", "stream": stream}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let request_id = reply.headers["x-request-id"].to_str().unwrap().to_string();
    let response = match stream {
        true => String::from_utf8_lossy(&reply.body)
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|e| e["type"] == "response.completed")
            .expect("a response.completed event")["response"]
            .clone(),
        false => reply.json(),
    };
    let response_id = response["id"].as_str().expect("a response id").to_string();
    assert!(response_id.starts_with("resp_"), "{response_id}");
    (request_id, response_id)
}

async fn ask(h: &Harness, key: &str, turn_ids: &[&str]) -> Reply {
    h.http
        .json(
            Method::POST,
            &format!("{}/v1/analytics/codex/turn-costs", h.base()),
            &[bearer(key)],
            json!({ "turn_ids": turn_ids }),
        )
        .await
}

/// The answer's turns by id, asserting a 200 with one entry per distinct id asked.
async fn turns(h: &Harness, key: &str, turn_ids: &[&str]) -> BTreeMap<String, Value> {
    let reply = ask(h, key, turn_ids).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let turns: BTreeMap<String, Value> = reply.json()["turns"]
        .as_array()
        .expect("turns")
        .iter()
        .map(|t| (t["turn_id"].as_str().unwrap().to_string(), t.clone()))
        .collect();
    let distinct: BTreeSet<&&str> = turn_ids.iter().collect();
    assert_eq!(turns.len(), distinct.len(), "{turns:?}");
    turns
}

/// What Codex reads for an unknown turn, or one it may not see: pending, and nothing else.
fn assert_pending(turn: &Value, id: &str) {
    assert_eq!(turn, &json!({"turn_id": id, "status": "pending"}));
}

async fn codex_gets_each_turns_price_from_the_ledger(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("alpha").await;
    let other_team = h.team_key("beta").await;

    // Codex's start-up probe: a random id, which must answer 200 for the feature to stay on.
    let probe = "6f1c0a52-3b7d-4e8f-9a1b-2c3d4e5f6a7b";
    assert_pending(&turns(&h, &key, &[probe]).await[probe], probe);

    let (_, first) = codex_call(&h, &key, T1, true).await;
    let (_, second) = codex_call(&h, &key, T1, false).await;
    let (_, third) = codex_call(&h, &key, T2, true).await;
    let last_call = Instant::now();
    h.gateway.flush_ledger().await;

    // Just settled: the rows are in, but another replica's could still be on their way.
    let fresh = turns(&h, &key, &[T2]).await;
    if last_call.elapsed() < Duration::from_millis(1_500) {
        assert_pending(&fresh[T2], T2);
    }

    // Codex polls; within a few seconds both turns are priced.
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer = loop {
        let answer = turns(&h, &key, &[T1, "unknown-turn", T2, T1]).await;
        if answer[T1]["status"] == "priced" && answer[T2]["status"] == "priced" {
            break answer;
        }
        assert!(Instant::now() < deadline, "never priced: {answer:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // What the ledger holds for the two turns, in one query.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&h.db.url).await.unwrap();
    let rows = sqlx::query(
        "SELECT turn_id, response_id, cost_nanos, model_served FROM ledger_readable \
         WHERE turn_id IN ($1, $2) ORDER BY started_at_ms, request_id",
    )
    .bind(T1)
    .bind(T2)
    .fetch_all(&pool)
    .await
    .unwrap();
    let of = |turn: &str| -> Vec<(String, i64, String)> {
        rows.iter()
            .filter(|r| r.get::<String, _>(0) == turn)
            .map(|r| (r.get(1), r.get(2), r.get(3)))
            .collect()
    };
    let (t1_rows, t2_rows) = (of(T1), of(T2));
    let ids = |rows: &[(String, i64, String)]| -> Vec<String> {
        rows.iter().map(|r| r.0.clone()).collect()
    };
    assert_eq!(ids(&t1_rows), [first.as_str(), second.as_str()]);
    assert_eq!(ids(&t2_rows), [third.as_str()]);
    let usd = |nanos: i64| Money(nanos).to_usd_string();
    let total = |rows: &[(String, i64, String)]| usd(rows.iter().map(|r| r.1).sum());
    assert!(t1_rows.iter().all(|r| r.1 > 0), "{t1_rows:?}");
    let model = &t1_rows[0].2;

    assert_eq!(
        answer[T1],
        json!({
            "turn_id": T1,
            "status": "priced",
            "total_usd": total(&t1_rows),
            "event_count": 2,
            "responses": [
                {"response_id": first, "total_usd": usd(t1_rows[0].1)},
                {"response_id": second, "total_usd": usd(t1_rows[1].1)},
            ],
            "model": model,
        })
    );
    assert_eq!(
        answer[T2],
        json!({
            "turn_id": T2,
            "status": "priced",
            "total_usd": total(&t2_rows),
            "event_count": 1,
            "responses": [{"response_id": third, "total_usd": usd(t2_rows[0].1)}],
            "model": t2_rows[0].2,
        })
    );
    assert_pending(&answer["unknown-turn"], "unknown-turn");
    // In the request's order, each id once.
    let reply = ask(&h, &key, &[T2, "unknown-turn", T1, T2]).await;
    let order: Vec<Value> = reply.json()["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["turn_id"].clone())
        .collect();
    assert_eq!(order, [json!(T2), json!("unknown-turn"), json!(T1)]);

    // Another team's key learns nothing about alpha's turns.
    let theirs = turns(&h, &other_team, &[T1, T2]).await;
    assert_pending(&theirs[T1], T1);
    assert_pending(&theirs[T2], T2);

    // Refusals, OpenAI-shaped; none of them reaches the upstream.
    let upstream_calls = h.mock.requests().len();
    ask(&h, "tg-not-a-real-key", &[T1])
        .await
        .assert_error(401, "invalid_api_key");
    let too_many: Vec<String> = (0..101).map(|i| format!("turn-{i}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let refused = ask(&h, &key, &too_many).await;
    refused.assert_error(400, "array_above_max_length");
    assert_eq!(refused.json()["error"]["param"], "turn_ids");
    assert_eq!(refused.json()["error"]["type"], "invalid_request_error");
    let url = format!("{}/v1/analytics/codex/turn-costs", h.base());
    let json_headers = [bearer(&key), ("content-type", "application/json".into())];
    h.http
        .send(Method::POST, &url, &json_headers, "{\"turn_ids\": [")
        .await
        .assert_error(400, "invalid_json");
    h.http
        .send(Method::POST, &url, &json_headers, r#"{"turn_ids": [1]}"#)
        .await
        .assert_error(400, "invalid_type");
    let get = h.http.send(Method::GET, &url, &[bearer(&key)], "").await;
    get.assert_error(405, "method_not_allowed");
    assert_eq!(get.headers["allow"], "POST");
    assert_eq!(h.mock.requests().len(), upstream_calls);
}
