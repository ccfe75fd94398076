//! `tollgate serve` at start-up, as an operator meets it: a database without tollgate's schema
//! gets one sentence saying what to run; a bootstrap admin token revoked through the admin API
//! stays revoked when the gateway restarts with the same `TOLLGATE_ADMIN_TOKEN`; the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` alone switches OTLP export on and `OTEL_SDK_DISABLED` off.

// Integration tests: shared helpers fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::path::Path;
use std::process::{Command, Output};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use tollgate_store::testdb::TestDb;
use tollgate_tests::HttpClient;
use tollgate_tests::process::Child;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// Runs the binary to completion with a clean environment plus `env`.
fn tollgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("tollgate runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ------------------------------------------------------------------------------ the schema

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_an_empty_postgres_database_says_once_to_run_migrate() {
    let db = TestDb::postgres().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("TOLLGATE_UPSTREAM_KEY", "sk-test"),
        ("TOLLGATE_LISTEN", listen.as_str()),
    ];
    for args in [&["serve"][..], &["team", "list"]] {
        let out = tollgate(args, &env);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(
            err.matches("has no tollgate schema yet").count(),
            1,
            "{args:?}: {err}"
        );
        assert!(
            err.contains("run `tollgate migrate`") && err.contains("serve --migrate"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("does not exist"),
            "{args:?}: a raw database error: {err}"
        );
    }

    // After `tollgate migrate` it serves.
    let migrated = tollgate(&["migrate"], &env);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Child::spawn(BIN, &["serve"], &env, dir.path());
    serve
        .read_until(|l| l.contains("tollgate is serving"))
        .await;
    assert!(serve.terminate().await.success());

    // A schema an older release left (its newest migration not yet run) is named as such.
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;
    let out = tollgate(&["serve"], &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the schema of an older release") && err.contains("run `tollgate migrate`"),
        "{err}"
    );
}

// ------------------------------------------------------------- the bootstrap admin token

/// One `serve` on `db` with `TOLLGATE_ADMIN_TOKEN=token`; returns it running, its base URL and
/// what it printed up to "tollgate is serving".
async fn serve(db: &TestDb, token: &str, dir: &Path) -> (Child, String, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("TOLLGATE_UPSTREAM_KEY", "sk-test"),
        ("TOLLGATE_LISTEN", listen.as_str()),
        ("TOLLGATE_ADMIN_TOKEN", token),
    ];
    let mut child = Child::spawn(BIN, &["serve", "--migrate"], &env, dir);
    let out = child
        .read_until(|l| l.contains("tollgate is serving"))
        .await;
    (child, format!("http://{listen}"), out)
}

async fn admin(http: &HttpClient, method: Method, url: &str, token: &str) -> (StatusCode, Value) {
    let reply = http
        .send(
            method,
            url,
            &[("authorization", format!("Bearer {token}"))],
            "",
        )
        .await;
    let body = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, body)
}

async fn revoked_bootstrap_admin_token_stays_revoked_across_restarts(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let http = HttpClient::new();
    let env_token = "tga-operator-chosen-bootstrap-token";

    let (first, base, out) = serve(&db, env_token, dir.path()).await;
    assert!(!out.contains("revoked"), "{out}");
    let second = http
        .json(
            Method::POST,
            &format!("{base}/admin/v1/admin-tokens"),
            &[("authorization", format!("Bearer {env_token}"))],
            json!({"name": "second", "role": "admin"}),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{second:?}");
    let second = second.json()["secret"].as_str().unwrap().to_string();
    let (status, _) = admin(
        &http,
        Method::DELETE,
        &format!("{base}/admin/v1/admin-tokens/bootstrap"),
        &second,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let teams = format!("{base}/admin/v1/teams");
    assert_eq!(
        admin(&http, Method::GET, &teams, env_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(first.terminate().await.success());

    // Restarted with the same environment: still revoked, and one log line says so.
    let (again, base, out) = serve(&db, env_token, dir.path()).await;
    assert_eq!(
        out.matches("TOLLGATE_ADMIN_TOKEN was revoked and stays revoked")
            .count(),
        1,
        "{out}"
    );
    let teams = format!("{base}/admin/v1/teams");
    assert_eq!(
        admin(&http, Method::GET, &teams, env_token).await.0,
        StatusCode::UNAUTHORIZED,
        "a revoked admin token came back after a restart"
    );
    let (status, tokens) = admin(
        &http,
        Method::GET,
        &format!("{base}/admin/v1/admin-tokens"),
        &second,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let bootstrap = tokens["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "bootstrap")
        .cloned()
        .unwrap();
    assert!(bootstrap["revoked_at_ms"].is_i64(), "{bootstrap}");
    assert!(again.terminate().await.success());

    // A new token in the environment replaces the revoked one, and the audit log shows it.
    let new_token = "tga-operator-chosen-replacement-token";
    let (last, base, out) = serve(&db, new_token, dir.path()).await;
    assert!(!out.contains("revoked"), "{out}");
    let teams = format!("{base}/admin/v1/teams");
    assert_eq!(
        admin(&http, Method::GET, &teams, new_token).await.0,
        StatusCode::OK
    );
    assert_eq!(
        admin(&http, Method::GET, &teams, env_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, audit) = admin(
        &http,
        Method::GET,
        &format!("{base}/admin/v1/audit"),
        new_token,
    )
    .await;
    let by_env: Vec<&Value> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor_id"] == "environment")
        .collect();
    assert_eq!(by_env.len(), 1, "{audit}");
    assert_eq!(by_env[0]["target"], "bootstrap");
    assert!(last.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_revoked_bootstrap_admin_token_stays_revoked_across_restarts() {
    revoked_bootstrap_admin_token_stays_revoked_across_restarts(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_revoked_bootstrap_admin_token_stays_revoked_across_restarts() {
    revoked_bootstrap_admin_token_stays_revoked_across_restarts(TestDb::postgres().await).await;
}

// ------------------------------------------------------------------ OpenTelemetry variables

/// `serve` with `env` (plus a SQLite file in `dir`, the mock upstream and an admin token); makes
/// one call through it, stops it with SIGTERM (which flushes telemetry) and returns its start
/// line.
async fn serve_one_call(dir: &Path, upstream: &str, env: &[(&str, &str)]) -> String {
    let listen = format!("127.0.0.1:{}", free_port());
    let token = "tga-otel-test-admin-token";
    let mut all = vec![
        ("TOLLGATE_LISTEN", listen.as_str()),
        ("TOLLGATE_UPSTREAM_URL", upstream),
        ("TOLLGATE_UPSTREAM_KEY", "sk-test"),
        ("TOLLGATE_ADMIN_TOKEN", token),
    ];
    all.extend_from_slice(env);
    let mut child = Child::spawn(BIN, &["serve"], &all, dir);
    let out = child
        .read_until(|l| l.contains("tollgate is serving"))
        .await;
    let base = format!("http://{listen}");
    let http = HttpClient::new();
    let admin = [("authorization", format!("Bearer {token}"))];
    let team = format!("otel{}", free_port());
    let created = http
        .json(
            Method::POST,
            &format!("{base}/admin/v1/teams"),
            &admin,
            json!({ "name": team }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let key = http
        .json(
            Method::POST,
            &format!("{base}/admin/v1/teams/{team}/keys"),
            &admin,
            json!({"name": "ci"}),
        )
        .await
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    // The key reaches the gateway's cache within its refresh interval.
    let body = json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]});
    let ok = tollgate_tests::eventually(std::time::Duration::from_secs(5), || async {
        http.json(
            Method::POST,
            &format!("{base}/v1/chat/completions"),
            &[("authorization", format!("Bearer {key}"))],
            body.clone(),
        )
        .await
        .status
            == StatusCode::OK
    })
    .await;
    assert!(ok, "the call never succeeded");
    assert!(child.terminate().await.success());
    let line = out
        .lines()
        .find(|l| l.contains("tollgate is serving"))
        .unwrap();
    without_colours(line)
}

/// The log line without its terminal colour codes (`ESC [ … m`).
fn without_colours(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_endpoint_alone_switches_export_on_and_otel_sdk_disabled_off() {
    use tollgate_telemetry::testing::{Receiver, venv_python};
    let receiver = Receiver::start(&venv_python());
    let mock = tollgate_mock::start(
        "127.0.0.1:0".parse().unwrap(),
        tollgate_mock::MockOptions::default(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", receiver.http_port);
    let otel = ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str());

    // Only the endpoint, as an OpenTelemetry user would set it: spans and metrics arrive.
    let line = serve_one_call(dir.path(), &mock.base_url(), &[otel]).await;
    assert!(line.contains(&format!("otlp={endpoint}")), "{line}");
    let spans = receiver.spans().len();
    assert!(
        spans >= 1,
        "no span exported with OTEL_EXPORTER_OTLP_ENDPOINT set"
    );
    assert!(
        receiver.metrics().contains_key("tollgate.requests"),
        "{:?}",
        receiver.metrics().keys()
    );

    // OTEL_SDK_DISABLED=true beats the endpoint and TOLLGATE_TELEMETRY_ENABLED: nothing more.
    let exports = ["traces", "metrics", "logs"].map(|s| receiver.exports(s).len());
    let line = serve_one_call(
        dir.path(),
        &mock.base_url(),
        &[
            otel,
            ("TOLLGATE_TELEMETRY_ENABLED", "true"),
            ("OTEL_SDK_DISABLED", "true"),
        ],
    )
    .await;
    assert!(line.contains("otlp=off"), "{line}");
    assert_eq!(
        ["traces", "metrics", "logs"].map(|s| receiver.exports(s).len()),
        exports,
        "exported although OTEL_SDK_DISABLED=true"
    );
}
