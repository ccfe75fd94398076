//! A gateway process killed with budget reservations outstanding leaves leases that lapse: after
//! `[budgets] lease_ttl_ms` the budget is whole again for every other process, and nothing the
//! dead process never settled is charged.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;

use tollgate_store::testdb::TestDb;
use tollgate_tests::process::Child;
use tollgate_tests::{ADMIN_TOKEN, HttpClient, bearer, eventually, issue_key, start_gateway};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateways_reservations_lapse_and_the_budget_is_whole_again() {
    let db = TestDb::postgres().await;
    // Slow streams keep calls (and their reservations) in flight when the process dies.
    let mock = tollgate_mock::start(
        "127.0.0.1:0".parse().unwrap(),
        tollgate_mock::MockOptions {
            chunk_delay: Duration::from_millis(500),
            ..tollgate_mock::MockOptions::default()
        },
    )
    .await
    .unwrap();
    let survivor = start_gateway(&db.url, &mock.base_url()).await;
    let http = HttpClient::new();
    let key = issue_key(&http, survivor.addr, "crashers").await;
    let admin = [("authorization", format!("Bearer {ADMIN_TOKEN}"))];
    let created = http
        .json(
            Method::POST,
            &format!("http://{}/admin/v1/budgets", survivor.addr),
            &admin,
            json!({"team": "crashers", "period": "month", "limit_usd": "1.00"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.json()["id"].as_str().unwrap().to_string();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\nspool_path = \"{}\"\n[budgets]\nlease_ttl_ms = 2000\nsync_ms = 250\n",
            dir.path().join("ledger.spool").display()
        ),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let upstream = mock.base_url();
    let env = [
        ("TOLLGATE_LISTEN", listen.as_str()),
        ("TOLLGATE_UPSTREAM_URL", upstream.as_str()),
        ("TOLLGATE_UPSTREAM_KEY", "sk-up"),
        ("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN),
        ("DATABASE_URL", db.url.as_str()),
    ];
    let args = ["serve", "--config", config.to_str().unwrap()];
    let mut doomed = Child::spawn(BIN, &args, &env, dir.path());
    doomed
        .read_until(|l| l.contains("tollgate is serving"))
        .await;

    let body =
        json!({"model": "gpt-4.1-mini", "input": "hi", "stream": true, "max_output_tokens": 64})
            .to_string();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let response = http
            .start(
                Method::POST,
                &format!("http://{listen}/v1/responses"),
                &[bearer(&key), ("content-type", "application/json".into())],
                body.clone(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        streams.push(response);
    }
    let status_url = format!("http://{}/admin/v1/budgets/{id}", survivor.addr);
    let held = http.send(Method::GET, &status_url, &admin, "").await.json();
    assert!(
        held["reserved_nano_usd"].as_i64().unwrap() > 0,
        "the doomed gateway holds no lease while calls are in flight: {held}"
    );

    doomed.kill_hard().await;
    drop(streams);

    let whole = eventually(Duration::from_secs(5), || async {
        let s = http.send(Method::GET, &status_url, &admin, "").await.json();
        s["reserved_nano_usd"] == 0 && s["committed_nano_usd"] == 0
    })
    .await;
    let after = http.send(Method::GET, &status_url, &admin, "").await.json();
    assert!(whole, "the dead gateway's lease did not lapse: {after}");
    assert_eq!(after["remaining_usd"], "1.00", "{after}");
    // The survivor can claim the whole budget again.
    let reply = http
        .send(
            Method::POST,
            &format!("http://{}/v1/responses", survivor.addr),
            &[bearer(&key), ("content-type", "application/json".into())],
            json!({"model": "gpt-4.1-mini", "input": "hi", "max_output_tokens": 64}).to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    survivor.shutdown().await;
}
