//! The `tollgate` executable as operators run it: help on every command, bad configuration
//! refused with every problem named (exit 64), keys managed from the CLI taking effect on a
//! running gateway, `serve`, `demo` and `mock-upstream` end to end.

// Integration tests: shared helpers fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::process::{Command, Output};
use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;

use tollgate_tests::process::Child;
use tollgate_tests::{
    ADMIN_TOKEN, Backend, Harness, HttpClient, Reply, bearer, eventually, issue_key,
};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// Runs the binary to completion with a clean environment plus `env`.
fn tollgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("tollgate runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
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

/// An admin token without --server and no database yet: the user meant a gateway, so the CLI
/// says so and creates nothing, instead of answering from a new empty database.
#[test]
fn a_token_without_server_and_no_database_points_at_server() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tollgate.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let out = tollgate(
        &["team", "list"],
        &[
            ("DATABASE_URL", &url),
            ("TOLLGATE_ADMIN_TOKEN", "tga-something"),
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("no database at") && err.contains("--server"),
        "{err}"
    );
    assert!(!file.exists(), "an empty database was created");
    // Without the token, first use creates the embedded database, as documented.
    let out = tollgate(&["team", "list"], &[("DATABASE_URL", &url)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(file.exists());
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["demo", "--help"],
        vec!["migrate", "--help"],
        vec!["mock-upstream", "--help"],
        vec!["team", "--help"],
        vec!["team", "create", "--help"],
        vec!["team", "list", "--help"],
        vec!["key", "--help"],
        vec!["key", "create", "--help"],
        vec!["key", "list", "--help"],
        vec!["key", "revoke", "--help"],
    ] {
        let out = tollgate(&args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("Usage: tollgate"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
}

#[test]
fn invalid_configuration_names_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tollgate.toml");
    std::fs::write(&file, "listen = \"localhost\"\n[upstream]\nurl = \"ftp://example\"\nresponse_timeout_ms = 0\n[tls]\ncert_file = \"/nope/cert.pem\"\n").unwrap();
    let out = tollgate(
        &["serve", "--config", file.to_str().unwrap()],
        &[("DATABASE_URL", "mysql://x")],
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let err = stderr(&out);
    for field in [
        "listen:",
        "upstream.url:",
        "upstream.response_timeout_ms:",
        "tls:",
        "tls.cert_file:",
        "store.database_url:",
        "upstream key:",
    ] {
        assert!(err.contains(field), "{field} not reported in:\n{err}");
    }

    std::fs::write(&file, "[upstream]\nurll = \"https://x\"\n").unwrap();
    let out = tollgate(&["serve", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("urll"), "{}", stderr(&out));

    let out = tollgate(&["serve", "--config", "/does/not/exist.toml"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("--config"), "{}", stderr(&out));
}

async fn call(http: &HttpClient, h: &Harness, key: &str) -> Reply {
    http.send(
        Method::POST,
        &format!("{}/v1/chat/completions", h.base()),
        &[bearer(key)],
        json!({"model":"gpt-5.5","messages":[{"role":"user","content":"hi"}]}).to_string(),
    )
    .await
}

async fn keys_managed_from_the_cli_reach_a_running_gateway(backend: Backend) {
    let h = Harness::start(backend).await;
    let db = [("DATABASE_URL", h.db.url.as_str())];
    let team = tollgate(
        &[
            "team",
            "create",
            "platform",
            "--cost-centre",
            "CC-1042",
            "--json",
        ],
        &db,
    );
    assert!(team.status.success(), "{}", stderr(&team));
    let team: serde_json::Value = serde_json::from_str(&stdout(&team)).unwrap();
    assert_eq!(
        (team[0]["name"].clone(), team[0]["cost_centre"].clone()),
        (json!("platform"), json!("CC-1042"))
    );
    let dup = tollgate(&["team", "create", "platform"], &db);
    assert!(
        !dup.status.success() && stderr(&dup).contains("platform"),
        "{}",
        stderr(&dup)
    );

    let created = tollgate(
        &["key", "create", "--team", "platform", "--name", "ci"],
        &db,
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let secret = stdout(&created).trim().to_string();
    assert!(secret.starts_with("tg-"), "{secret}");
    assert!(stderr(&created).contains("shown once"));
    // Created by another process: the gateway's cache picks it up within a second.
    assert!(
        eventually(Duration::from_secs(1), || async {
            call(&h.http, &h, &secret).await.status == StatusCode::OK
        })
        .await,
        "CLI-created key never worked"
    );

    let listed = tollgate(&["key", "list", "--team", "platform"], &db);
    let table = stdout(&listed);
    assert!(
        table.starts_with("ID") && table.contains("active") && !table.contains(&secret[15..]),
        "{table}"
    );

    let id = secret.split('-').nth(1).unwrap();
    let revoked = tollgate(&["key", "revoke", id, "--json"], &db);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    assert!(
        eventually(Duration::from_secs(1), || async {
            call(&h.http, &h, &secret).await.status == StatusCode::UNAUTHORIZED
        })
        .await,
        "CLI-revoked key still works after 1 s"
    );
    // A key limited to one model, from the CLI: the other model is refused on the gateway.
    let limited = tollgate(
        &[
            "key",
            "create",
            "--team",
            "platform",
            "--allow-model",
            "gpt-5.5",
        ],
        &db,
    );
    assert!(limited.status.success(), "{}", stderr(&limited));
    let limited = stdout(&limited).trim().to_string();
    assert!(
        eventually(Duration::from_secs(1), || async {
            call(&h.http, &h, &limited).await.status == StatusCode::OK
        })
        .await
    );
    let other = json!({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}).to_string();
    let refused = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/chat/completions", h.base()),
            &[bearer(&limited)],
            other,
        )
        .await;
    refused.assert_error(400, "model_not_allowed");
    let missing = tollgate(&["key", "revoke", "nosuchkey123"], &db);
    assert!(
        !missing.status.success()
            && stderr(&missing).contains("No key 'nosuchkey123'")
            && stderr(&missing).contains("404 not_found"),
        "{}",
        stderr(&missing)
    );

    // The local operator's changes are in the audit log like any admin token's, and the
    // refused revocation is not.
    let log = h
        .http
        .send(
            Method::GET,
            &format!("{}/admin/v1/audit", h.base()),
            &[bearer(ADMIN_TOKEN)],
            String::new(),
        )
        .await
        .json();
    let by_operator: Vec<(String, String)> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor_id"] == "operator")
        .map(|e| {
            assert_eq!(e["actor_role"], "admin", "{e}");
            assert!(
                e["actor_name"]
                    .as_str()
                    .unwrap()
                    .starts_with("local operator"),
                "{e}"
            );
            (
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let team_id = team[0]["id"].as_str().unwrap().to_string();
    let actions: Vec<&str> = by_operator.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "POST /admin/v1/teams",
            "POST /admin/v1/teams/{team}/keys",
            "DELETE /admin/v1/keys/{id}",
            "POST /admin/v1/teams/{team}/keys",
        ],
        "{log}"
    );
    assert_eq!(by_operator[0].1, team_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keys_managed_from_the_cli_reach_a_running_gateway() {
    keys_managed_from_the_cli_reach_a_running_gateway(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keys_managed_from_the_cli_reach_a_running_gateway() {
    keys_managed_from_the_cli_reach_a_running_gateway(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_a_generated_admin_token_once_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mock = tollgate_mock::start(
        "127.0.0.1:0".parse().unwrap(),
        tollgate_mock::MockOptions::default(),
    )
    .await
    .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let upstream = mock.base_url();
    let env = [
        ("TOLLGATE_LISTEN", listen.as_str()),
        ("TOLLGATE_UPSTREAM_URL", upstream.as_str()),
        ("OPENAI_API_KEY", "sk-from-openai-env"),
    ];
    let mut serve = Child::spawn(BIN, &["serve"], &env, dir.path());
    let out = serve
        .read_until(|l| l.contains("tollgate is serving"))
        .await;
    assert!(
        dir.path().join("tollgate.db").exists(),
        "the embedded default is a SQLite file in the working directory"
    );
    let token = out
        .split_whitespace()
        .find(|w| w.starts_with("tga-"))
        .unwrap_or_else(|| panic!("no admin token printed:\n{out}"))
        .to_string();

    let http = HttpClient::new();
    let base = format!("http://{listen}");
    let admin = [("authorization", format!("Bearer {token}"))];
    let team = http
        .json(
            Method::POST,
            &format!("{base}/admin/v1/teams"),
            &admin,
            json!({"name": "platform"}),
        )
        .await;
    assert_eq!(team.status, StatusCode::CREATED, "{team:?}");
    let key = http
        .json(
            Method::POST,
            &format!("{base}/admin/v1/teams/platform/keys"),
            &admin,
            json!({"name":"ci"}),
        )
        .await
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = http
        .send(
            Method::GET,
            &format!("{base}/v1/models"),
            &[bearer(&key)],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        mock.requests().last().unwrap().header("authorization"),
        Some("Bearer sk-from-openai-env"),
        "OPENAI_API_KEY is the upstream key fallback"
    );
    assert!(
        serve.terminate().await.success(),
        "serve must exit 0 on SIGTERM"
    );

    // Second start on the same database: the token exists, so nothing is printed again.
    let mut again = Child::spawn(BIN, &["serve"], &env, dir.path());
    let out = again
        .read_until(|l| l.contains("tollgate is serving"))
        .await;
    assert!(
        !out.contains("tga-"),
        "the admin token was printed twice:\n{out}"
    );
    assert!(again.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_gateway_and_mock_with_a_working_key() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut demo = Child::spawn(BIN, &["demo", "--listen", &listen], &[], dir.path());
    let out = demo.read_until(|l| l.contains("Ctrl-C to stop")).await;
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("tg-"))
        .unwrap_or_else(|| panic!("no key printed:\n{out}"))
        .to_string();
    assert!(
        out.contains("[model_providers.tollgate]")
            && out.contains("OPENAI_BASE_URL=")
            && out.contains("curl"),
        "{out}"
    );
    // Codex's built-in provider reads CODEX_API_KEY in `codex exec`, never OPENAI_API_KEY.
    assert!(
        out.contains(&format!("CODEX_API_KEY={key} codex exec"))
            && !out
                .lines()
                .any(|l| l.contains("OPENAI_API_KEY=") && l.contains("codex")),
        "{out}"
    );
    let http = HttpClient::new();
    let reply = http
        .send(
            Method::POST,
            &format!("http://{listen}/v1/chat/completions"),
            &[bearer(&key)],
            json!({"model":"gpt-5.5","messages":[{"role":"user","content":"hello"}]}).to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(
        reply.json()["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert!(demo.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_upstream_command_speaks_the_openai_wire_format() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut mock = Child::spawn(
        BIN,
        &["mock-upstream", "--listen", &listen, "--deltas", "3"],
        &[],
        dir.path(),
    );
    mock.read_until(|l| l.contains("mock upstream listening"))
        .await;
    let http = HttpClient::new();
    let base = format!("http://{listen}");
    let ok = eventually(Duration::from_secs(5), || async {
        let models = http
            .send(Method::GET, &format!("{base}/v1/models"), &[], "")
            .await;
        models.status == StatusCode::OK && models.json()["object"] == "list"
    })
    .await;
    assert!(ok, "mock-upstream never served /v1/models");
    let chat = http
        .send(
            Method::POST,
            &format!("{base}/v1/chat/completions"),
            &[],
            json!({"model":"gpt-5.5","messages":[],"stream":true}).to_string(),
        )
        .await;
    let text = String::from_utf8_lossy(&chat.body);
    assert_eq!(text.matches("\"delta\":{\"content\"").count(), 3, "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let recorded = http
        .send(Method::GET, &format!("{base}/__mock/requests"), &[], "")
        .await
        .json();
    assert_eq!(recorded.as_array().map(Vec::len), Some(2));
    assert!(mock.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_streams_refuses_new_connections_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mock = tollgate_mock::start(
        "127.0.0.1:0".parse().unwrap(),
        tollgate_mock::MockOptions::default(),
    )
    .await
    .unwrap();
    let config = dir.path().join("tollgate.toml");
    std::fs::write(&config, "[limits]\ndrain_timeout_ms = 3000\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let upstream = mock.base_url();
    let env = [
        ("TOLLGATE_LISTEN", listen.as_str()),
        ("TOLLGATE_UPSTREAM_URL", upstream.as_str()),
        ("TOLLGATE_UPSTREAM_KEY", "sk-up"),
        ("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    let mut serve = Child::spawn(
        BIN,
        &["serve", "--config", config.to_str().unwrap()],
        &env,
        dir.path(),
    );
    serve
        .read_until(|l| l.contains("tollgate is serving"))
        .await;

    let http = HttpClient::new();
    let base = format!("http://{listen}");
    let key = issue_key(&http, listen.parse().unwrap(), "platform").await;
    let body = json!({"model":"gpt-5.5","input":"hi","stream":true}).to_string();
    // One stream that ends within the drain deadline (~1 s), one that would run a minute.
    let short = http
        .start(
            Method::POST,
            &format!("{base}/v1/responses"),
            &[
                bearer(&key),
                ("x-mock-chunk-delay-ms", "100".into()),
                ("x-mock-deltas", "8".into()),
            ],
            body.clone(),
        )
        .await;
    let long = http
        .start(
            Method::POST,
            &format!("{base}/v1/responses"),
            &[bearer(&key), ("x-mock-chunk-delay-ms", "60000".into())],
            body,
        )
        .await;
    let id = |r: &http::Response<hyper::body::Incoming>| {
        r.headers()["x-request-id"].to_str().unwrap().to_string()
    };
    let (short_id, long_id) = (id(&short), id(&long));
    let short =
        tokio::spawn(async move { short.into_body().collect().await.map(|b| b.to_bytes()) });
    let long = tokio::spawn(async move { long.into_body().collect().await.map(|b| b.to_bytes()) });

    let pid = serve.child.id().unwrap().to_string();
    let signalled = std::time::Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let refused = eventually(Duration::from_secs(2), || async {
        tokio::net::TcpStream::connect(&listen).await.is_err()
    })
    .await;
    assert!(refused, "new connections still accepted after SIGTERM");

    let short = short.await.unwrap().expect("the in-flight stream finishes");
    assert!(
        String::from_utf8_lossy(&short).contains("event: response.completed"),
        "in-flight stream was cut"
    );
    assert!(
        long.await.unwrap().is_err(),
        "a stream past the drain deadline is closed, not left hanging"
    );
    let status = tokio::time::timeout(Duration::from_secs(15), serve.child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "took {:?} to stop",
        signalled.elapsed()
    );

    // The ledger was flushed before exit: both calls are recorded — the finished one from the
    // upstream's usage, the one cut at the deadline estimated.
    let store = tollgate_store::Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("tollgate.db").display()
    ))
    .await
    .unwrap();
    let short_row = store
        .ledger_row(&short_id)
        .await
        .unwrap()
        .expect("drained call recorded");
    assert!(
        !short_row.estimated && short_row.cost_nanos > 0,
        "{short_row:?}"
    );
    let long_row = store
        .ledger_row(&long_id)
        .await
        .unwrap()
        .expect("call cut at the drain deadline recorded");
    assert!(
        long_row.estimated && long_row.cost_nanos > 0,
        "{long_row:?}"
    );
}
