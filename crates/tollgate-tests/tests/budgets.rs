//! Budgets and rate limits as clients see them: a race of concurrent calls against a budget
//! (one gateway, then three on one Postgres), windows and time zones, soft-threshold webhooks,
//! session caps, and rate limits with OpenAI's headers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

use tollgate::app::Running;
use tollgate_core::budget::{Budgets, BudgetsOptions, Calendar, FailPolicy};
use tollgate_core::{LedgerEvent, Money, Usage};
use tollgate_mock::MockOptions;
use tollgate_store::{BudgetSpec, Store, StoreLeases};
use tollgate_tests::{
    ADMIN_TOKEN, Backend, Harness, HttpClient, Reply, bearer, eventually, issue_key,
};

fn admin() -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {ADMIN_TOKEN}"))]
}

/// A small non-streamed Responses call that bounds its output (the mock answers 28 tokens).
fn small_call() -> String {
    serde_json::json!({"model": "gpt-4.1-mini", "input": "hi", "max_output_tokens": 64}).to_string()
}

async fn call(http: &HttpClient, addr: SocketAddr, key: &str, session: Option<&str>) -> Reply {
    let mut headers = vec![
        bearer(key),
        ("content-type", "application/json".to_string()),
    ];
    if let Some(s) = session {
        headers.push(("session-id", s.to_string()));
    }
    http.send(
        Method::POST,
        &format!("http://{addr}/v1/responses"),
        &headers,
        small_call(),
    )
    .await
}

async fn create_budget(
    http: &HttpClient,
    addr: SocketAddr,
    body: serde_json::Value,
) -> serde_json::Value {
    let reply = http
        .json(
            Method::POST,
            &format!("http://{addr}/admin/v1/budgets"),
            &admin(),
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.json()
}

async fn budget(http: &HttpClient, addr: SocketAddr, id: &str) -> serde_json::Value {
    let reply = http
        .send(
            Method::GET,
            &format!("http://{addr}/admin/v1/budgets/{id}"),
            &admin(),
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json()
}

fn nanos(v: &serde_json::Value, field: &str) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

/// The cost of one `small_call`, measured through the gateway.
async fn one_call_cost(h: &Harness, key: &str) -> i64 {
    let reply = call(&h.http, h.gateway.addr, key, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let id = reply.headers["x-request-id"].to_str().unwrap().to_string();
    let row = h.ledger_row(&id).await;
    row["cost_nanos"].as_i64().expect("cost_nanos")
}

fn assert_usage_limit(reply: &Reply, team: &str) {
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["error"]["type"], "usage_limit_reached", "{body}");
    assert_eq!(body["error"]["code"], "usage_limit_reached", "{body}");
    assert!(body["error"]["resets_at"].as_i64().is_some(), "{body}");
    let promo = reply.headers["x-codex-promo-message"].to_str().unwrap();
    assert!(promo.contains(team), "{promo}");
    assert!(promo.contains("budget"), "{promo}");
}

/// Fires `n` concurrent calls spread over `gateways`; returns (admitted, refused).
async fn race(gateways: &[SocketAddr], key: &str, n: usize, team: &str) -> (usize, usize) {
    let http = Arc::new(HttpClient::new());
    let mut tasks = Vec::new();
    for i in 0..n {
        let http = Arc::clone(&http);
        let addr = gateways[i % gateways.len()];
        let key = key.to_string();
        tasks.push(tokio::spawn(
            async move { call(&http, addr, &key, None).await },
        ));
    }
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.status == StatusCode::OK {
            ok += 1;
        } else {
            assert_usage_limit(&reply, team);
            refused += 1;
        }
    }
    (ok, refused)
}

/// Committed spend (from the budget API) equals the ledger's total, and never exceeds the limit:
/// every call bounds its output, so estimates are upper bounds and the documented overspend bound
/// (the sum of estimate errors in flight) is zero.
async fn assert_budget_holds(h: &Harness, gateways: &[&Running], id: &str, limit: i64) -> i64 {
    for g in gateways {
        g.flush_ledger().await;
    }
    let totals = h.gateway.store.ledger_totals(0, i64::MAX).await.unwrap();
    let status = budget(&h.http, h.gateway.addr, id).await;
    let committed = nanos(&status, "committed_nano_usd");
    assert_eq!(
        committed,
        totals.cost.nanos(),
        "budget committed vs ledger total: {status}"
    );
    assert!(
        committed <= limit,
        "overspent: committed {committed} > limit {limit}"
    );
    committed
}

async fn race_on_one_gateway(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("racers").await;
    let cost = one_call_cost(&h, &key).await;
    let limit = 50 * cost;
    let b = create_budget(
        &h.http,
        h.gateway.addr,
        serde_json::json!({"team": "racers", "period": "day", "limit_usd": Money(limit).to_usd_string()}),
    )
    .await;
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(
        nanos(&b, "committed_nano_usd"),
        cost,
        "a new budget starts with the day's spend"
    );
    let (ok, refused) = race(&[h.gateway.addr], &key, 200, "racers").await;
    assert!(ok > 0 && refused > 0, "admitted {ok}, refused {refused}");
    let committed = assert_budget_holds(&h, &[&h.gateway], &id, limit).await;
    assert_eq!(
        committed,
        cost * (ok as i64 + 1),
        "every admitted call is charged once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_of_200_calls_cannot_overspend_sqlite() {
    race_on_one_gateway(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_of_200_calls_cannot_overspend_postgres() {
    race_on_one_gateway(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_budget_without_overspending() {
    let h = Harness::start(Backend::Postgres).await;
    let b = h.replica().await;
    let c = h.replica().await;
    let key = h.team_key("fleet").await;
    let cost = one_call_cost(&h, &key).await;
    let addrs = [h.gateway.addr, b.addr, c.addr];
    let mut worst = i64::MIN;
    for round in 0..3 {
        // Each round gets a fresh budget worth ~50 calls on top of what is already spent.
        h.gateway.flush_ledger().await;
        let spent = h
            .gateway
            .store
            .ledger_totals(0, i64::MAX)
            .await
            .unwrap()
            .cost
            .nanos();
        let limit = spent + 50 * cost;
        let created = create_budget(
            &h.http,
            h.gateway.addr,
            serde_json::json!({"team": "fleet", "period": "month", "limit_usd": Money(limit).to_usd_string()}),
        )
        .await;
        let id = created["id"].as_str().unwrap().to_string();
        // Every replica must know the budget before the race (changes reach them within 1 s).
        let known = eventually(Duration::from_secs(1), || {
            let (b, c, id) = (&b, &c, &id);
            async move {
                b.budgets.views().iter().any(|(d, _)| d.id == id.as_str())
                    && c.budgets.views().iter().any(|(d, _)| d.id == id.as_str())
            }
        })
        .await;
        assert!(
            known,
            "round {round}: a replica did not learn the budget within 1 s"
        );
        let (ok, refused) = race(&addrs, &key, 200, "fleet").await;
        assert!(
            ok > 0 && refused > 0,
            "round {round}: admitted {ok}, refused {refused}"
        );
        let committed = assert_budget_holds(&h, &[&h.gateway, &b, &c], &id, limit).await;
        worst = worst.max(committed - limit);
        // The next round's budget is the only one that may bind.
        let deleted = h
            .http
            .send(
                Method::DELETE,
                &format!("{}/admin/v1/budgets/{id}", h.base()),
                &admin(),
                "",
            )
            .await;
        assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    }
    println!("worst overspend over 3 rounds: {worst} nano-USD (negative: under the limit)");
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_change_reaches_another_replica_within_a_second() {
    let h = Harness::start(Backend::Postgres).await;
    let other = h.replica().await;
    let key = h.team_key("movers").await;
    let b = create_budget(
        &h.http,
        h.gateway.addr,
        serde_json::json!({"team": "movers", "period": "month", "limit_usd": "0.000000001"}),
    )
    .await;
    let id = b["id"].as_str().unwrap();
    let refused = eventually(Duration::from_secs(1), || async {
        call(&h.http, other.addr, &key, None).await.status == StatusCode::TOO_MANY_REQUESTS
    })
    .await;
    assert!(
        refused,
        "the other replica still admits past a tiny budget after 1 s"
    );
    let patched = h
        .http
        .json(
            Method::PATCH,
            &format!("{}/admin/v1/budgets/{id}", h.base()),
            &admin(),
            serde_json::json!({"limit_usd": "100.00"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    assert_eq!(patched.json()["limit_usd"], "100.00");
    let admitted = eventually(Duration::from_secs(1), || async {
        call(&h.http, other.addr, &key, None).await.status == StatusCode::OK
    })
    .await;
    assert!(
        admitted,
        "the raised limit did not reach the other replica within 1 s"
    );
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_api_validates_every_field_and_finds_nothing_unknown() {
    let h = Harness::start(Backend::Sqlite).await;
    h.team_key("valid").await;
    let url = format!("{}/admin/v1/budgets", h.base());
    let bad = h
        .http
        .json(
            Method::POST,
            &url,
            &admin(),
            serde_json::json!({"team": "valid", "period": "fortnight", "limit_usd": "-3", "soft_ratio": 1.5}),
        )
        .await;
    bad.assert_error(422, "invalid_fields");
    let message = bad.json()["error"]["message"].as_str().unwrap().to_string();
    for field in ["period", "limit_usd", "soft_ratio"] {
        assert!(message.contains(field), "{field} not named: {message}");
    }
    let unknown_team = h
        .http
        .json(
            Method::POST,
            &url,
            &admin(),
            serde_json::json!({"team": "nobody", "period": "day", "limit_usd": "1"}),
        )
        .await;
    unknown_team.assert_error(404, "not_found");
    let missing = h
        .http
        .send(Method::GET, &format!("{url}/bud_nothing"), &admin(), "")
        .await;
    missing.assert_error(404, "not_found");
    let listed = h.http.send(Method::GET, &url, &admin(), "").await;
    assert_eq!(
        listed.json()["data"].as_array().unwrap().len(),
        0,
        "a refused budget was stored"
    );
}

/// A budget window turns at local midnight in the configured zone, and the new window starts
/// empty. Driven through the real store with a clock the test moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_budget_resets_at_local_midnight() {
    let db = tollgate_store::testdb::TestDb::sqlite();
    let berlin = Calendar::new("Europe/Berlin").unwrap();
    let store = Store::connect(&db.url)
        .await
        .unwrap()
        .with_budget_calendar(berlin);
    store.migrate().await.unwrap();
    let team = store.create_team("night", None).await.unwrap();
    let spec = BudgetSpec {
        team_id: team.id.clone(),
        key_id: None,
        period: tollgate_core::budget::Period::Day,
        limit: Money(1_000),
        soft_ppm: 800_000,
        session_cap: None,
    };
    let def = store.create_budget(&spec, berlin).await.unwrap();
    // 22:30 UTC on 25 Nov is 23:30 in Berlin; midnight there is 23:00 UTC.
    let before = 1_764_109_800_000_i64; // 2025-11-25T22:30:00Z
    let clock = Arc::new(AtomicI64::new(before));
    let read = Arc::clone(&clock);
    let budgets = Budgets::with_clock(
        BudgetsOptions {
            calendar: berlin,
            replica_id: "r1".into(),
            lease_ttl_ms: 10_000,
            max_slice: Money(1_000),
            slice_divisor: 1,
            fail_policy: FailPolicy::Closed,
        },
        Arc::new(StoreLeases(store.clone())),
        Box::new(move || read.load(Ordering::SeqCst)),
    );
    budgets.set_budgets(vec![def.clone()]);
    let r = budgets
        .reserve(&team.id, "k1", None, Money(600))
        .await
        .unwrap()
        .unwrap();
    r.settle(Money(600));
    store
        .insert_ledger_batch_as(&[event(&team.id, before, 600)], Some("r1"))
        .await
        .unwrap();
    let refused = budgets.reserve(&team.id, "k1", None, Money(600)).await;
    assert!(refused.is_err(), "600 + 600 fits a 1000 budget?");
    let status = store.budget_status(&def, berlin, before).await.unwrap();
    assert_eq!(status.committed, Money(600));
    assert_eq!(status.resets_at_ms, Some(1_764_111_600_000)); // 23:00Z = midnight in Berlin

    clock.store(1_764_111_600_000 + 60_000, Ordering::SeqCst);
    let after = budgets.reserve(&team.id, "k1", None, Money(900)).await;
    assert!(
        after.is_ok(),
        "a new day did not reset the budget: {:?}",
        after.err()
    );
    let status = store
        .budget_status(&def, berlin, 1_764_111_600_000 + 60_000)
        .await
        .unwrap();
    assert_eq!(status.committed, Money::ZERO, "the new window starts empty");
    // In UTC the same instant is still 25 Nov: the spend would still count there.
    assert_eq!(
        Calendar::default()
            .window(tollgate_core::budget::Period::Day, 0, 1_764_111_660_000)
            .start_ms,
        1_764_028_800_000
    );
}

fn event(team: &str, at: i64, cost: i64) -> LedgerEvent {
    LedgerEvent {
        request_id: format!("req_{at}_{cost}"),
        started_at_ms: at,
        finished_at_ms: at + 10,
        team_id: team.into(),
        key_id: "k1".into(),
        cost_centre: None,
        user: None,
        session_id: None,
        turn_id: None,
        endpoint: "responses".into(),
        model_requested: Some("gpt-4.1-mini".into()),
        model_served: Some("gpt-4.1-mini".into()),
        status: 200,
        usage: Usage::default(),
        cost: Money(cost),
        price_id: None,
        estimated: false,
        unpriced: false,
        service_tier: None,
        ttfb_ms: None,
        latency_ms: 10,
        tool_calls: Vec::new(),
        outcome: Default::default(),
        unmetered: false,
        units: Default::default(),
        response_id: None,
    }
}

/// A local server that records the JSON bodies POSTed to it.
async fn webhook_receiver() -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            tx.send(serde_json::from_slice(&body).unwrap()).unwrap();
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_threshold_posts_one_webhook_per_window_and_throttles() {
    let (url, mut hooks) = webhook_receiver().await;
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.budgets.webhook_url = Some(url.clone());
        c.budgets.soft_throttle_rpm = Some(2);
    })
    .await;
    let key = h.team_key("softies").await;
    let cost = one_call_cost(&h, &key).await;
    // The first call already passes 50% of this budget.
    let b = create_budget(
        &h.http,
        h.gateway.addr,
        serde_json::json!({"team": "softies", "period": "week", "limit_usd": Money(100 * cost).to_usd_string(), "soft_ratio": 0.005}),
    )
    .await;
    let event = tokio::time::timeout(Duration::from_secs(5), hooks.recv())
        .await
        .expect("a webhook within 5 s")
        .unwrap();
    assert_eq!(event["event"], "budget.soft");
    assert_eq!(event["budget_id"], b["id"]);
    assert_eq!(event["team"], "softies");
    assert_eq!(event["spent_usd"], Money(cost).to_usd_string());
    // More spend in the same window sends nothing more.
    for _ in 0..2 {
        call(&h.http, h.gateway.addr, &key, None).await;
    }
    h.gateway.flush_ledger().await;
    // Past the soft threshold the team is throttled to 2 requests a minute.
    let throttled = eventually(Duration::from_secs(2), || async {
        call(&h.http, h.gateway.addr, &key, None).await.status == StatusCode::TOO_MANY_REQUESTS
    })
    .await;
    assert!(
        throttled,
        "a team past its soft threshold was not throttled"
    );
    let again = call(&h.http, h.gateway.addr, &key, None).await;
    again.assert_error(429, "rate_limit_exceeded");
    assert!(again.headers.contains_key("retry-after"), "{again:?}");
    assert!(
        tokio::time::timeout(Duration::from_millis(600), hooks.recv())
            .await
            .is_err(),
        "a second soft event in the same window"
    );
    assert_eq!(h.gateway.budget_events.soft.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cap_stops_that_session_only() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("sessions").await;
    let cost = one_call_cost(&h, &key).await;
    // Room for a few calls per session (estimates are ~5× a call's cost).
    create_budget(
        &h.http,
        h.gateway.addr,
        serde_json::json!({"team": "sessions", "period": "month", "limit_usd": "1000.00",
            "session_cap_usd": Money(12 * cost).to_usd_string()}),
    )
    .await;
    let mut admitted = 0;
    let refused = loop {
        let reply = call(&h.http, h.gateway.addr, &key, Some("sess-loop")).await;
        if reply.status != StatusCode::OK {
            break reply;
        }
        admitted += 1;
        assert!(admitted < 20, "the session cap never bound");
    };
    assert!(admitted >= 1, "not even one call fit the cap");
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    let body = refused.json();
    assert_eq!(body["error"]["code"], "usage_limit_reached");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sess-loop"),
        "{body}"
    );
    let promo = refused.headers["x-codex-promo-message"].to_str().unwrap();
    assert!(promo.contains("session"), "{promo}");
    // The session's committed cost never passed the cap.
    h.gateway.flush_ledger().await;
    let spent = h
        .gateway
        .store
        .ledger_totals(0, i64::MAX)
        .await
        .unwrap()
        .cost
        .nanos()
        - cost;
    assert!(
        spent <= 12 * cost,
        "session spent {spent} > cap {}",
        12 * cost
    );
    // Another session of the same team goes on.
    let other = call(&h.http, h.gateway.addr, &key, Some("sess-fresh")).await;
    assert_eq!(other.status, StatusCode::OK, "{other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_with_openai_headers_and_retry_after() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("limited").await;
    let set = h
        .http
        .json(
            Method::PUT,
            &format!("{}/admin/v1/rate-limits", h.base()),
            &admin(),
            serde_json::json!({"team": "limited", "requests_per_minute": 3, "tokens_per_minute": 100000}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{set:?}");
    let limited = eventually(Duration::from_secs(1), || async {
        let reply = call(&h.http, h.gateway.addr, &key, None).await;
        reply.headers.contains_key("x-ratelimit-limit-requests")
    })
    .await;
    assert!(limited, "the rate limit never applied");
    let mut last_ok = None;
    let refused = loop {
        let reply = call(&h.http, h.gateway.addr, &key, None).await;
        if reply.status != StatusCode::OK {
            break reply;
        }
        last_ok = Some(reply);
    };
    refused.assert_error(429, "rate_limit_exceeded");
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    if let Some(ok) = last_ok {
        assert_eq!(ok.headers["x-ratelimit-limit-requests"], "3");
        assert_eq!(ok.headers["x-ratelimit-limit-tokens"], "100000");
        assert!(ok.headers.contains_key("x-ratelimit-remaining-tokens"));
        assert!(ok.headers.contains_key("x-ratelimit-reset-requests"));
    }
    // Other teams are not limited.
    let other = issue_key(&h.http, h.gateway.addr, "free").await;
    let reply = call(&h.http, h.gateway.addr, &other, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.headers.contains_key("x-ratelimit-limit-requests"));
}
