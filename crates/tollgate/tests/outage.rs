//! The ledger loses nothing when the database goes away: with PostgreSQL down, calls keep
//! succeeding (keys are served from memory) and their rows wait in the spool; when it returns
//! they are written exactly once — also when the gateway was SIGKILLed in between and a new
//! process replays what the old one spooled.

// Integration tests: shared helpers fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;

use tollgate_store::Store;
use tollgate_store::testdb::Cluster;
use tollgate_tests::process::Child;
use tollgate_tests::{ADMIN_TOKEN, HttpClient, bearer, eventually, issue_key};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Requests, counted in the ledger itself.
async fn ledger_rows(url: &str) -> Option<i64> {
    let store = Store::connect(url).await.ok()?;
    let totals = store.ledger_totals(0, i64::MAX).await.ok();
    store.close().await;
    totals.map(|t| t.requests)
}

async fn spool_lines(path: &std::path::Path) -> usize {
    tokio::fs::read_to_string(path)
        .await
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_survive_a_database_outage_and_a_sigkill_exactly_once() {
    let cluster = Cluster::start();
    let mock = tollgate_mock::start(
        "127.0.0.1:0".parse().unwrap(),
        tollgate_mock::MockOptions::default(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("ledger.spool");
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\nspool_path = \"{}\"\nflush_ms = 10\n",
            spool.display()
        ),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (db, upstream) = (cluster.url(), mock.base_url());
    let env = [
        ("TOLLGATE_LISTEN", listen.as_str()),
        ("TOLLGATE_UPSTREAM_URL", upstream.as_str()),
        ("TOLLGATE_UPSTREAM_KEY", "sk-up"),
        ("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN),
        ("DATABASE_URL", db.as_str()),
    ];
    let args = ["serve", "--migrate", "--config", config.to_str().unwrap()];
    let mut gateway = Child::spawn(BIN, &args, &env, dir.path());
    gateway
        .read_until(|l| l.contains("tollgate is serving"))
        .await;

    let http = HttpClient::new();
    let base = format!("http://{listen}");
    let key = issue_key(&http, listen.parse().unwrap(), "platform").await;
    let call = || async {
        let body = json!({"model":"gpt-5.5","input":"hi","stream":true}).to_string();
        http.send(
            Method::POST,
            &format!("{base}/v1/responses"),
            &[bearer(&key)],
            body,
        )
        .await
        .status
    };

    // Outage 1, gateway stays up: 10 calls succeed, then the database returns and gets them all.
    cluster.stop();
    for _ in 0..10 {
        assert_eq!(
            call().await,
            StatusCode::OK,
            "calls must keep working while the database is down"
        );
    }
    let ready = http
        .send(Method::GET, &format!("{base}/readyz"), &[], "")
        .await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "readiness reports the database"
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            spool_lines(&spool).await >= 10
        })
        .await,
        "rows were not spooled"
    );
    cluster.start_again();
    assert!(
        eventually(Duration::from_secs(30), || async {
            ledger_rows(&db).await == Some(10)
        })
        .await,
        "spooled rows were not replayed"
    );

    // Outage 2, and the gateway is killed with rows in the spool: a new process replays them.
    cluster.stop();
    for _ in 0..7 {
        assert_eq!(call().await, StatusCode::OK);
    }
    assert!(
        eventually(Duration::from_secs(30), || async {
            spool_lines(&spool).await >= 7
        })
        .await,
        "rows were not spooled"
    );
    gateway.kill_hard().await;
    cluster.start_again();
    let mut restarted = Child::spawn(BIN, &args, &env, dir.path());
    restarted
        .read_until(|l| l.contains("tollgate is serving"))
        .await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            ledger_rows(&db).await == Some(17)
        })
        .await,
        "rows spooled before SIGKILL were not replayed"
    );
    // And nothing is written twice, however often the spool is looked at again.
    assert!(restarted.terminate().await.success());
    assert_eq!(ledger_rows(&db).await, Some(17), "a row was doubled");
}
