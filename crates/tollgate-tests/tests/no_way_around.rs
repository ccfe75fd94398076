//! Every way past the meter and the budget a hostile key holder tried, closed: paid endpoints
//! tollgate cannot price, second spellings of a path, clients that leave before the response,
//! upstreams that never answer, client credentials and billing headers, request bodies that
//! never finish, and a second reading of the Authorization header.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tollgate_mock::MockOptions;
use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, bearer, both_stores, eventually};

fn admin() -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {ADMIN_TOKEN}"))]
}

/// `tg-<id>-<secret>` → `<id>`, the key id ledger rows carry.
fn key_id(key: &str) -> String {
    key.split('-').nth(1).unwrap().to_string()
}

/// A ledger row as stored, read straight from the database the gateway writes.
#[derive(Debug)]
struct Row_ {
    request_id: String,
    endpoint: i64,
    status: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_nanos: i64,
    estimated: bool,
    outcome: i64,
    unmetered: bool,
}

async fn rows_of_key(h: &Harness, key: &str) -> Vec<Row_> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&h.db.url).await.unwrap();
    let rows = sqlx::query(
        "SELECT request_id, endpoint, status, input_tokens, output_tokens, cost_nanos, \
         estimated, outcome, unmetered FROM ledger WHERE key_id = $1 ORDER BY started_at_ms",
    )
    .bind(key_id(key))
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| Row_ {
            request_id: r.get("request_id"),
            endpoint: r.get::<i64, _>("endpoint"),
            status: r.get::<i64, _>("status"),
            input_tokens: r.get::<i64, _>("input_tokens"),
            output_tokens: r.get::<i64, _>("output_tokens"),
            cost_nanos: r.get::<i64, _>("cost_nanos"),
            estimated: r.get::<i64, _>("estimated") != 0,
            outcome: r.get::<i64, _>("outcome"),
            unmetered: r.get::<i64, _>("unmetered") != 0,
        })
        .collect()
}

/// Waits until the ledger holds `n` rows of `key`, then returns them.
async fn wait_rows(h: &Harness, key: &str, n: usize) -> Vec<Row_> {
    let found = eventually(Duration::from_secs(10), || async {
        rows_of_key(h, key).await.len() >= n
    })
    .await;
    let rows = rows_of_key(h, key).await;
    assert!(found, "expected {n} ledger rows, found {rows:?}");
    assert_eq!(rows.len(), n, "{rows:?}");
    rows
}

fn responses_call() -> String {
    json!({"model": "gpt-5.5", "input": "hi", "max_output_tokens": 64}).to_string()
}

both_stores!(
    an_exhausted_budget_refuses_every_paid_endpoint_and_every_spelling,
    allowed_unmetered_endpoints_are_checked_and_flagged,
    compaction_is_metered_and_charged_like_responses,
    a_client_that_leaves_before_the_headers_is_still_charged,
    a_timed_out_call_is_charged_for_the_input_the_upstream_had,
    responses_without_usage_are_estimated_from_the_text_delivered,
    a_stream_cut_before_any_byte_is_flagged_not_a_plain_200,
);

async fn an_exhausted_budget_refuses_every_paid_endpoint_and_every_spelling(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("holes").await;
    h.set_budget("holes", "0.000001").await;
    let send = |method: Method, path: &'static str| {
        let h = &h;
        let key = key.clone();
        async move {
            h.http
                .send(
                    method,
                    &format!("{}{path}", h.base()),
                    &[bearer(&key), ("content-type", "application/json".into())],
                    responses_call(),
                )
                .await
        }
    };
    send(Method::POST, "/v1/responses")
        .await
        .assert_error(429, "usage_limit_reached");
    // Codex's compaction bills tokens: held to the budget like any Responses call.
    send(Method::POST, "/v1/responses/compact")
        .await
        .assert_error(429, "usage_limit_reached");
    // Images and speech are metered now: refused by the budget like any paid call.
    for path in ["/v1/images/generations", "/v1/audio/speech"] {
        send(Method::POST, path)
            .await
            .assert_error(429, "usage_limit_reached");
    }
    for path in [
        "/v1/realtime/sessions",
        "/v1/fine_tuning/jobs",
        "/v1/Responses",
    ] {
        let reply = send(Method::POST, path).await;
        reply.assert_error(403, "endpoint_not_allowed");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains(path), "{message}");
    }
    // Listing another org's fine-tuned models is free, deleting them is not the team's call.
    send(Method::DELETE, "/v1/models/ft:gpt-4o:acme:x")
        .await
        .assert_error(403, "endpoint_not_allowed");
    for spelling in [
        "/v1/./responses",
        "/v1/x/../responses",
        "/v1/%72esponses",
        "/v1//responses",
        "/v1/responses/",
        "/v1/responses%2Fcompact",
    ] {
        send(Method::POST, spelling)
            .await
            .assert_error(400, "invalid_path");
    }
    assert!(
        h.mock.requests().is_empty(),
        "the upstream was called: {:?}",
        h.mock
            .requests()
            .iter()
            .map(|r| &r.path)
            .collect::<Vec<_>>()
    );
    assert!(rows_of_key(&h, &key).await.is_empty());
}

async fn allowed_unmetered_endpoints_are_checked_and_flagged(backend: Backend) {
    let h = Harness::start_custom(backend, MockOptions::default(), |c| {
        c.proxy.unmetered = vec!["/v1/vector_stores".into()];
    })
    .await;
    let key = h.team_key("files").await;
    let reply = h
        .http
        .send(
            Method::GET,
            &format!("{}/v1/vector_stores?limit=5", h.base()),
            &[bearer(&key)],
            "",
        )
        .await;
    // Forwarded as is (the mock has no vector stores API, so its own 404 comes back).
    reply.assert_error(404, "unknown_url");
    let last = h.mock.requests().pop().unwrap();
    assert_eq!(
        (last.path.as_str(), last.query.as_deref()),
        ("/v1/vector_stores", Some("limit=5"))
    );
    let request_id = reply.headers["x-request-id"].to_str().unwrap().to_string();
    let rows = wait_rows(&h, &key, 1).await;
    assert_eq!(rows[0].request_id, request_id);
    assert!(rows[0].unmetered && !rows[0].estimated, "{rows:?}");
    assert_eq!((rows[0].endpoint, rows[0].cost_nanos), (0, 0));
    let row = h.ledger_row(&request_id).await;
    assert_eq!(
        (row["unmetered"].clone(), row["endpoint"].clone()),
        (json!(true), json!("other"))
    );
    // A prefix is whole segments: /v1/vector_stores_x is not under /v1/vector_stores.
    h.http
        .send(
            Method::GET,
            &format!("{}/v1/vector_stores_x", h.base()),
            &[bearer(&key)],
            "",
        )
        .await
        .assert_error(403, "endpoint_not_allowed");
    // Still a team key's call: a wrong key never reaches the upstream.
    let before = h.mock.requests().len();
    h.http
        .send(
            Method::GET,
            &format!("{}/v1/vector_stores", h.base()),
            &[bearer("tg-nope")],
            "",
        )
        .await
        .assert_error(401, "invalid_api_key");
    assert_eq!(h.mock.requests().len(), before);

    // Once the team's budget is used up, unmetered calls stop too.
    let budget = h.set_budget("files", "100.00").await;
    let spent = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(&key), ("content-type", "application/json".into())],
            responses_call(),
        )
        .await;
    assert_eq!(spent.status, StatusCode::OK);
    wait_rows(&h, &key, 2).await;
    let lowered = h
        .http
        .json(
            Method::PATCH,
            &format!("{}/admin/v1/budgets/{budget}", h.base()),
            &admin(),
            json!({"limit_usd": "0.000000001"}),
        )
        .await;
    assert_eq!(lowered.status, StatusCode::OK, "{lowered:?}");
    let refused = eventually(Duration::from_secs(10), || async {
        let reply = h
            .http
            .send(
                Method::GET,
                &format!("{}/v1/vector_stores", h.base()),
                &[bearer(&key)],
                "",
            )
            .await;
        reply.status == StatusCode::TOO_MANY_REQUESTS
    })
    .await;
    assert!(refused, "an unmetered call passed an exhausted budget");
    h.http
        .send(
            Method::GET,
            &format!("{}/v1/vector_stores", h.base()),
            &[bearer(&key)],
            "",
        )
        .await
        .assert_error(429, "usage_limit_reached");
}

async fn compaction_is_metered_and_charged_like_responses(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("compact").await;
    let body = json!({"model": "gpt-5.5", "input": [{"role": "user", "content": "a long thread"}]})
        .to_string();
    let reply = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses/compact", h.base()),
            &[bearer(&key), ("content-type", "application/json".into())],
            body.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let usage = reply.json()["usage"].clone();
    let row = h
        .ledger_row(reply.headers["x-request-id"].to_str().unwrap())
        .await;
    assert_eq!(row["endpoint"], "responses.compact");
    assert_eq!(row["input_tokens"], usage["input_tokens"]);
    assert_eq!(row["output_tokens"], usage["output_tokens"]);
    assert_eq!(row["estimated"], false);
    // gpt-5.5: $5 input, $0.50 cached, $30 output per 1M tokens, in nano-USD per token.
    let input = usage["input_tokens"].as_i64().unwrap();
    let cached = usage["input_tokens_details"]["cached_tokens"]
        .as_i64()
        .unwrap();
    let output = usage["output_tokens"].as_i64().unwrap();
    let expected = (input - cached) * 5_000 + cached * 500 + output * 30_000;
    assert_eq!(row["cost_nanos"], expected, "{row}");
}

async fn a_client_that_leaves_before_the_headers_is_still_charged(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("leaver").await;
    let budget = h.set_budget("leaver", "10.00").await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        h.http.start(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[
                bearer(&key),
                ("content-type", "application/json".into()),
                ("x-mock-first-byte-delay-ms", "3000".into()),
            ],
            responses_call(),
        ),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the response came before the client gave up"
    );
    let rows = wait_rows(&h, &key, 1).await;
    let row = &rows[0];
    assert_eq!((row.status, row.outcome), (499, 3), "{row:?}");
    assert!(
        row.estimated && row.input_tokens > 0 && row.cost_nanos > 0,
        "{row:?}"
    );
    assert_eq!(row.output_tokens, 0, "no output was seen: {row:?}");
    // The reservation was settled with that charge: the budget counts it as spent.
    let view = || async {
        h.http
            .send(
                Method::GET,
                &format!("{}/admin/v1/budgets/{budget}", h.base()),
                &admin(),
                "",
            )
            .await
            .json()
    };
    let charged = eventually(Duration::from_secs(10), || async {
        view().await["committed_nano_usd"] == row.cost_nanos
    })
    .await;
    let view = view().await;
    assert!(charged, "the budget never saw the charge: {view}");
}

async fn a_timed_out_call_is_charged_for_the_input_the_upstream_had(backend: Backend) {
    let h = Harness::start_custom(backend, MockOptions::default(), |c| {
        c.upstream.response_timeout_ms = 300;
    })
    .await;
    let key = h.team_key("slow").await;
    let reply = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[
                bearer(&key),
                ("content-type", "application/json".into()),
                ("x-mock-first-byte-delay-ms", "3000".into()),
            ],
            responses_call(),
        )
        .await;
    reply.assert_error(504, "upstream_timeout");
    let rows = wait_rows(&h, &key, 1).await;
    let row = &rows[0];
    assert_eq!((row.status, row.outcome), (504, 4), "{row:?}");
    assert!(
        row.estimated && row.input_tokens > 0 && row.cost_nanos > 0,
        "{row:?}"
    );

    // An upstream that cannot be reached had nothing: no charge.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let config = tollgate_tests::test_config(&h.db.url, &dead);
    let gateway = tollgate::app::start(config).await.unwrap();
    h.http
        .send(
            Method::POST,
            &format!("http://{}/v1/responses", gateway.addr),
            &[bearer(&key), ("content-type", "application/json".into())],
            responses_call(),
        )
        .await
        .assert_error(502, "upstream_unavailable");
    let rows = wait_rows(&h, &key, 2).await;
    let row = &rows[1];
    assert_eq!(
        (row.status, row.outcome, row.cost_nanos),
        (502, 5, 0),
        "{row:?}"
    );
    assert!(!row.estimated);
}

async fn responses_without_usage_are_estimated_from_the_text_delivered(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("nousage").await;
    let mut estimates = Vec::new();
    for path in ["/v1/responses", "/v1/chat/completions"] {
        let body = if path == "/v1/responses" {
            responses_call()
        } else {
            json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}).to_string()
        };
        let reply = h
            .http
            .send(
                Method::POST,
                &format!("{}{path}", h.base()),
                &[
                    bearer(&key),
                    ("content-type", "application/json".into()),
                    ("x-mock-no-usage", "1".into()),
                ],
                body,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let row = h
            .ledger_row(reply.headers["x-request-id"].to_str().unwrap())
            .await;
        assert_eq!(row["estimated"], true, "{row}");
        estimates.push(row["output_tokens"].as_u64().unwrap());
    }
    // The same answer text, so the same estimate, whichever API delivered it.
    assert!(estimates[0] > 0, "{estimates:?}");
    assert_eq!(estimates[0], estimates[1], "{estimates:?}");
}

async fn a_stream_cut_before_any_byte_is_flagged_not_a_plain_200(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("cut").await;
    let body = json!({"model": "gpt-5.5", "input": "hi", "stream": true}).to_string();
    // The upstream answers 200 and breaks off before the first event. What the client sees
    // is only a broken connection (hyper sends the head with the first body bytes), so read it
    // raw.
    let mut conn = tokio::net::TcpStream::connect(h.gateway.addr)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/responses HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\nx-mock-cut-after: 0\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("the gateway ended the broken response");
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains("response.completed"), "{answer}");
    let rows = wait_rows(&h, &key, 1).await;
    let row = &rows[0];
    assert_eq!((row.status, row.outcome), (200, 1), "{row:?}");
    assert!(row.estimated && row.output_tokens == 0, "{row:?}");
}

#[tokio::test]
async fn client_credentials_and_billing_headers_never_reach_the_provider() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.upstream.project = Some("proj_tollgate".into());
    })
    .await;
    let key = h.team_key("creds").await;
    let other = h.team_key("other-team").await;
    let reply = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[
                bearer(&key),
                ("content-type", "application/json".into()),
                ("api-key", other.clone()),
                ("x-api-key", other.clone()),
                ("cookie", "session=abc".into()),
                ("openai-organization", "org-someone-else".into()),
                ("openai-project", "proj_someone_else".into()),
            ],
            responses_call(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = h.mock.requests().pop().unwrap();
    for name in ["api-key", "x-api-key", "cookie", "openai-organization"] {
        assert_eq!(seen.header(name), None, "{name} reached the upstream");
    }
    assert_eq!(seen.header("openai-project"), Some("proj_tollgate"));
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {}", tollgate_tests::UPSTREAM_KEY).as_str())
    );
}

#[tokio::test]
async fn request_bodies_that_stall_or_trickle_get_a_408() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        // Wide apart, so a loaded machine's scheduling never turns one limit into the other.
        c.limits.body_idle_timeout_ms = 1_000;
        c.limits.body_read_timeout_ms = 3_000;
        c.proxy.unmetered = vec!["/v1/files".into()];
    })
    .await;
    let key = h.team_key("slowbody").await;
    for path in ["/v1/responses", "/v1/files"] {
        // Stalls: headers and one byte of a 100-byte body, then nothing.
        let mut conn = tokio::net::TcpStream::connect(h.gateway.addr)
            .await
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
            .await
            .expect("the gateway closed the stalled request")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(answer.contains("\"request_timeout\""), "{path}: {answer}");
    }
    // Trickles: a byte every 100 ms never stalls for 1 s, but the whole body takes too long.
    let mut conn = tokio::net::TcpStream::connect(h.gateway.addr)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/responses HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-length: 1000\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (mut read, mut write) = conn.into_split();
    let trickle = tokio::spawn(async move {
        while write.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut answer))
        .await
        .expect("the gateway closed the trickling request")
        .unwrap();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    assert!(h.mock.requests().iter().all(|r| r.path != "/v1/responses"));
}

#[tokio::test]
async fn one_authorization_parser_for_the_api_and_the_admin_api() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("auth").await;
    let call = |auth: String| {
        let h = &h;
        async move {
            h.http
                .send(
                    Method::POST,
                    &format!("{}/v1/responses", h.base()),
                    &[
                        ("authorization", auth),
                        ("content-type", "application/json".into()),
                    ],
                    responses_call(),
                )
                .await
        }
    };
    let teams = |auth: String| {
        let h = &h;
        async move {
            h.http
                .send(
                    Method::GET,
                    &format!("{}/admin/v1/teams", h.base()),
                    &[("authorization", auth)],
                    "",
                )
                .await
        }
    };
    for scheme in ["Bearer", "bearer", "BEARER"] {
        assert_eq!(
            call(format!("{scheme} {key}")).await.status,
            StatusCode::OK,
            "{scheme}"
        );
        assert_eq!(
            teams(format!("{scheme} {ADMIN_TOKEN}")).await.status,
            StatusCode::OK,
            "{scheme}"
        );
    }
    // No scheme, or another one: refused by both, never guessed at.
    for bad in [key.clone(), format!("Basic {key}"), format!("Token {key}")] {
        call(bad).await.assert_error(401, "invalid_api_key");
    }
    for bad in [ADMIN_TOKEN.to_string(), format!("Basic {ADMIN_TOKEN}")] {
        teams(bad).await.assert_error(401, "invalid_admin_token");
    }
}

#[tokio::test]
async fn background_responses_are_refused_rather_than_run_unmetered() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("background").await;
    let send = |background: serde_json::Value| {
        let h = &h;
        let key = key.clone();
        async move {
            let body = json!({"model": "gpt-5.5", "input": "hi", "background": background});
            h.http
                .json(
                    Method::POST,
                    &format!("{}/v1/responses", h.base()),
                    &[bearer(&key)],
                    body,
                )
                .await
        }
    };
    send(json!(true))
        .await
        .assert_error(400, "background_not_supported");
    assert!(h.mock.requests().is_empty());
    for allowed in [json!(false), json!(null)] {
        assert_eq!(send(allowed).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_reservation_covers_every_choice_a_call_asks_for() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("choices").await;
    // One choice of at most 1000 output tokens of gpt-5.5 is bounded at $0.03 (plus the input);
    // four of them at $0.12, past this budget.
    h.set_budget("choices", "0.05").await;
    let send = |n: u64| {
        let h = &h;
        let key = key.clone();
        async move {
            let body = json!({
                "model": "gpt-5.5",
                "messages": [{"role": "user", "content": "hi"}],
                "max_completion_tokens": 1000,
                "n": n,
            });
            h.http
                .json(
                    Method::POST,
                    &format!("{}/v1/chat/completions", h.base()),
                    &[bearer(&key)],
                    body,
                )
                .await
        }
    };
    send(4).await.assert_error(429, "usage_limit_reached");
    assert!(h.mock.requests().is_empty());
    assert_eq!(send(1).await.status, StatusCode::OK);
}

/// When several refusals apply to one call, the client gets the one it meets first, in the
/// order of the proxy's phases: the path, the key, what needs no body (endpoint, looping
/// session), the body itself (size, encoding, JSON), the model and the request's shape, then
/// rate limits and budgets. Nothing reaches the upstream and nothing is recorded.
#[tokio::test]
async fn when_several_refusals_apply_the_client_gets_the_first_it_meets() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.limits.max_body_bytes = 4096;
        c.telemetry.loop_exec_calls = 3;
        c.telemetry.loop_window_secs = 600;
        c.telemetry.loop_refuse = true;
    })
    .await;
    let team = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/teams", h.base()),
            &admin(),
            json!({"name": "strict", "allowed_models": ["gpt-5.5", "mystery-model-9"]}),
        )
        .await;
    assert_eq!(team.status, StatusCode::CREATED, "{team:?}");
    let key = h.team_key("strict").await;
    let looping = "019ab6a2-looping-session";
    for _ in 0..3 {
        let reply = h
            .http
            .json(
                Method::POST,
                &format!("{}/v1/responses", h.base()),
                &[bearer(&key), ("session-id", looping.into())],
                json!({"model": "gpt-5.5", "input": "mock:exec hi", "max_output_tokens": 64}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        h.ledger_row(reply.headers["x-request-id"].to_str().unwrap())
            .await;
    }
    h.set_budget("strict", "0.000001").await;
    h.mock.clear();
    let before = rows_of_key(&h, &key).await.len();

    let oversized = format!("{{\"model\":\"gpt-4o\",\"input\":\"{}\"", "x".repeat(5000));
    let not_allowed = json!({"model": "gpt-4o", "input": "hi", "background": true}).to_string();
    let wrong_key = format!("{key}x");
    let cases: Vec<BadCase> = vec![
        (
            "a second spelling, a wrong key and an oversized body",
            Method::POST,
            "/v1//responses",
            vec![bearer(&wrong_key)],
            oversized.clone(),
            400,
            "invalid_path",
        ),
        (
            "a WebSocket upgrade with a wrong key",
            Method::GET,
            "/v1/responses",
            vec![
                bearer(&wrong_key),
                ("connection", "Upgrade".into()),
                ("upgrade", "websocket".into()),
            ],
            String::new(),
            401,
            "invalid_api_key",
        ),
        (
            "a wrong key, a looping session and an oversized body",
            Method::POST,
            "/v1/responses",
            vec![bearer(&wrong_key), ("session-id", looping.into())],
            oversized.clone(),
            401,
            "invalid_api_key",
        ),
        (
            "an endpoint not allowed, a looping session and an oversized body",
            Method::POST,
            "/v1/vector_stores",
            vec![bearer(&key), ("session-id", looping.into())],
            oversized.clone(),
            403,
            "endpoint_not_allowed",
        ),
        (
            "a looping session, an oversized malformed body and a spent budget",
            Method::POST,
            "/v1/responses",
            vec![bearer(&key), ("session-id", looping.into())],
            oversized.clone(),
            429,
            "usage_limit_reached",
        ),
        (
            "an oversized malformed body, a model not allowed and a spent budget",
            Method::POST,
            "/v1/responses",
            vec![bearer(&key)],
            oversized,
            413,
            "request_too_large",
        ),
        (
            "an unknown encoding, a model not allowed and a spent budget",
            Method::POST,
            "/v1/responses",
            vec![bearer(&key), ("content-encoding", "br".into())],
            not_allowed.clone(),
            415,
            "unsupported_content_encoding",
        ),
        (
            "malformed JSON naming a model not allowed, and a spent budget",
            Method::POST,
            "/v1/responses",
            vec![bearer(&key)],
            "{\"model\":\"gpt-4o\",\"input\":".into(),
            400,
            "invalid_json",
        ),
        (
            "a model not allowed, a background call and a spent budget",
            Method::POST,
            "/v1/responses",
            vec![bearer(&key)],
            not_allowed,
            400,
            "model_not_allowed",
        ),
        (
            "a model with no price, a background call and a spent budget",
            Method::POST,
            "/v1/responses",
            vec![bearer(&key)],
            json!({"model": "mystery-model-9", "input": "hi", "background": true}).to_string(),
            400,
            "model_not_priced",
        ),
        (
            "a background call and a spent budget",
            Method::POST,
            "/v1/responses",
            vec![bearer(&key)],
            json!({"model": "gpt-5.5", "input": "hi", "background": true}).to_string(),
            400,
            "background_not_supported",
        ),
        (
            "a spent budget",
            Method::POST,
            "/v1/responses",
            vec![bearer(&key)],
            responses_call(),
            429,
            "usage_limit_reached",
        ),
    ];
    for (what, method, path, headers, body, status, code) in cases {
        let reply = h
            .http
            .send(method, &format!("{}{path}", h.base()), &headers, body)
            .await;
        println!("{what}: {}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.status.as_u16(), status, "{what}: {reply:?}");
        reply.assert_error(status, code);
        if what.starts_with("a looping session") {
            let message = reply.json()["error"]["message"].to_string();
            assert!(message.contains("loop"), "{what}: {message}");
        }
    }
    // A rate limit comes before the budget: once the team is over it, that is what it hears.
    let set = h
        .http
        .json(
            Method::PUT,
            &format!("{}/admin/v1/rate-limits", h.base()),
            &admin(),
            json!({"team": "strict", "requests_per_minute": 1, "tokens_per_minute": 100000}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{set:?}");
    let rate_limited = eventually(Duration::from_secs(5), || async {
        let reply = h
            .http
            .json(
                Method::POST,
                &format!("{}/v1/responses", h.base()),
                &[bearer(&key)],
                json!({"model": "gpt-5.5", "input": "hi", "max_output_tokens": 64}),
            )
            .await;
        let code = reply.json()["error"]["code"].clone();
        assert!(
            code == "usage_limit_reached" || code == "rate_limit_exceeded",
            "{reply:?}"
        );
        code == "rate_limit_exceeded"
    })
    .await;
    assert!(
        rate_limited,
        "a rate-limited team was told about its budget"
    );
    assert!(
        h.mock.requests().is_empty(),
        "refused calls reached the upstream: {:?}",
        h.mock
            .requests()
            .iter()
            .map(|r| &r.path)
            .collect::<Vec<_>>()
    );
    // A call of another team lands after the refusals: none of them left a row.
    let other = h.team_key("bystander").await;
    let reply = h
        .http
        .json(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(&other)],
            json!({"model": "gpt-5.5", "input": "hi"}),
        )
        .await;
    h.ledger_row(reply.headers["x-request-id"].to_str().unwrap())
        .await;
    assert_eq!(rows_of_key(&h, &key).await.len(), before);
}

/// What is wrong, the request, the expected status and error code.
type BadCase<'a> = (
    &'a str,
    Method,
    &'a str,
    Vec<(&'a str, String)>,
    String,
    u16,
    &'a str,
);

#[tokio::test]
async fn a_client_that_leaves_mid_body_reaches_nothing_and_leaves_no_row() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("halfway").await;
    for path in ["/v1/responses", "/v1/chat/completions", "/v1/embeddings"] {
        let mut conn = tokio::net::TcpStream::connect(h.gateway.addr)
            .await
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\":\"gpt-5.5\","
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.shutdown().await.unwrap();
        // The gateway gives up on the body and closes its side too.
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
            .await
            .expect("the gateway closed the half-sent request");
        assert!(
            !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 2"),
            "{path}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    // A whole call after them lands its row; the half-sent ones left none and reached nothing.
    let reply = h
        .http
        .json(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(&key)],
            json!({"model": "gpt-5.5", "input": "hi"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let rows = wait_rows(&h, &key, 1).await;
    assert_eq!(
        rows[0].request_id,
        reply.headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(
        h.mock.requests().len(),
        1,
        "a half-sent request was forwarded"
    );
}

#[tokio::test]
async fn a_call_that_continues_input_the_upstream_holds_reserves_for_it() {
    // A Responses call can name input the upstream holds — a previous response, a conversation,
    // a stored prompt or item — in a few bytes, and is billed for all of it. Reserving only
    // for the body would let a handful of such calls in flight spend far past a budget.
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        // $0.50 of gpt-5.5 input: past this budget, while the body alone is far within it.
        c.budgets.stored_input_tokens = 100_000;
    })
    .await;
    let key = h.team_key("chained").await;
    h.set_budget("chained", "0.10").await;
    let send = |extra: serde_json::Value| {
        let h = &h;
        let key = key.clone();
        async move {
            let mut body = json!({"model": "gpt-5.5", "input": "hi", "max_output_tokens": 64});
            for (name, value) in extra.as_object().unwrap() {
                body[name] = value.clone();
            }
            h.http
                .json(
                    Method::POST,
                    &format!("{}/v1/responses", h.base()),
                    &[bearer(&key)],
                    body,
                )
                .await
        }
    };
    assert_eq!(send(json!({})).await.status, StatusCode::OK);
    for extra in [
        json!({"previous_response_id": "resp_0123"}),
        json!({"conversation": "conv_0123"}),
        json!({"conversation": {"id": "conv_0123"}}),
        json!({"prompt": {"id": "pmpt_0123", "version": "2"}}),
        json!({"input": [{"type": "item_reference", "id": "msg_0123"}]}),
    ] {
        send(extra.clone())
            .await
            .assert_error(429, "usage_limit_reached");
        assert_eq!(h.mock.requests().len(), 1, "{extra} reached the upstream");
    }
    // Naming nothing (null) holds nothing back.
    let reply = send(json!({"previous_response_id": null, "conversation": null})).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    // Only Responses holds input: a legacy completion's `prompt` is its text, and a chat
    // message that says "item_reference" is a message.
    for (path, body) in [
        (
            "/v1/completions",
            json!({"model": "gpt-5.5", "prompt": "hi", "max_tokens": 64}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-5.5", "max_completion_tokens": 64,
                   "messages": [{"role": "user", "content": "item_reference"}]}),
        ),
    ] {
        let reply = h
            .http
            .json(
                Method::POST,
                &format!("{}{path}", h.base()),
                &[bearer(&key)],
                body,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
    }
}

#[tokio::test]
async fn an_upload_the_client_abandons_is_not_blamed_on_the_upstream() {
    // An allowed unmetered endpoint streams the client's body upstream as it arrives. A client
    // that leaves halfway broke the call: its row must not say the upstream cut it (a 502 that
    // pages whoever watches upstream errors), and it costs nothing.
    // An upstream that takes the upload's head and waits for the rest.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", upstream.local_addr().unwrap());
    // File uploads are free and forwarded by default, streamed as they arrive.
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.upstream.url = url;
    })
    .await;
    let key = h.team_key("halfupload").await;
    let mut conn = tokio::net::TcpStream::connect(h.gateway.addr)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000\r\n\r\nabcdef"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // Once the gateway is streaming the upload upstream, the client leaves.
    let (mut upstream_conn, _) = tokio::time::timeout(Duration::from_secs(10), upstream.accept())
        .await
        .expect("the upload reached the upstream")
        .unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 1024];
        let n = upstream_conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "the gateway closed the upload before its head");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(head.starts_with(b"POST /v1/files "));
    drop(conn);
    let rows = wait_rows(&h, &key, 1).await;
    let row = &rows[0];
    assert!(
        !row.unmetered && row.endpoint == 16,
        "not a files row: {row:?}"
    );
    assert_ne!(row.outcome, 1, "blamed on the upstream: {row:?}");
    assert!(row.status < 500, "blamed on the upstream: {row:?}");
    assert_eq!(row.cost_nanos, 0, "{row:?}");
    drop(upstream_conn);
}

#[tokio::test]
async fn a_client_that_reads_a_json_answer_but_its_usage_pays_for_what_it_read() {
    // A non-streamed answer is whole (and billed whole) before its first byte is sent, with
    // its usage last. A client that reads the answer and leaves before the usage arrives
    // must still pay for the output it read, not for its input alone.
    use std::fmt::Write as _;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", upstream.local_addr().unwrap());
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.upstream.url = url;
        // Should the gateway not notice the client leave, the held-back end times out.
        c.upstream.stream_idle_timeout_ms = 2_000;
    })
    .await;
    let key = h.team_key("leaveearly").await;
    let mut content = String::new();
    for i in 0..20_000 {
        write!(content, "word{i} ").unwrap();
    }
    let answer_head = format!(
        "{{\"id\":\"chatcmpl-cut\",\"object\":\"chat.completion\",\"model\":\"gpt-5.5\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{content}\"}},\"finish_reason\":\"stop\"}}],"
    );
    let answer_tail =
        "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":60000,\"total_tokens\":60012}}";
    let total = answer_head.len() + answer_tail.len();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut conn, _) = upstream.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0);
            request.extend_from_slice(&buf[..n]);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(answer_head.as_bytes()).await.unwrap();
        conn.flush().await.unwrap();
        let _ = released.await;
        let _ = conn.write_all(answer_tail.as_bytes()).await;
        conn
    });
    let body =
        json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let mut client = tokio::net::TcpStream::connect(h.gateway.addr)
        .await
        .unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !got.windows(10).any(|w| w == b"word19999 ") {
        let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
            .await
            .expect("the answer arrives")
            .unwrap();
        assert!(n > 0, "the gateway closed early");
        got.extend_from_slice(&buf[..n]);
    }
    // The whole answer text was read; the usage has not come. The client leaves.
    drop(client);
    let rows = wait_rows(&h, &key, 1).await;
    let _ = release.send(());
    drop(server);
    let row = &rows[0];
    assert!(row.estimated, "{row:?}");
    assert!(
        row.output_tokens >= 20_000,
        "the client read ~40,000 tokens of answer and was charged for {}: {row:?}",
        row.output_tokens
    );
}
