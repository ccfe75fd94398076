//! `tollgate hook` as Codex runs it (the built binary, the event on stdin) against a running
//! gateway: the event and its quality gate land in the session view beside the session's cost,
//! and whatever goes wrong the hook exits 0 with nothing on stdout, so Codex carries on unchanged.
//! The real Codex CLI running these hooks: tests/codex_telemetry.rs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, bearer, both_stores};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const SESSION: &str = "019ab6a2-hooks-session";

/// Runs `tollgate hook ARGS` with `event` on stdin, as Codex does (its own environment only).
async fn hook(gateway: &str, key: &str, args: &[&str], event: &Value) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(BIN)
        .arg("hook")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TOLLGATE_URL", gateway)
        .env("TOLLGATE_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tollgate hook starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(event.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("tollgate hook ends")
        .unwrap();
    (out, started.elapsed())
}

/// What Codex reads as "carry on unchanged": exit 0 and an empty stdout.
fn assert_codex_continues(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "stdout must stay empty: {out:?}");
}

/// Codex's Stop input (codex-rs/hooks/src/schema.rs `StopCommandInput`).
fn stop(session: &str, cwd: &str) -> Value {
    json!({"session_id": session, "turn_id": "turn-1", "transcript_path": null, "cwd": cwd,
           "hook_event_name": "Stop", "model": "gpt-5.5", "permission_mode": "default",
           "stop_hook_active": false, "last_assistant_message": "Done."})
}

/// Codex's PostToolUse input.
fn post_tool_use(session: &str, tool: &str) -> Value {
    json!({"session_id": session, "turn_id": "turn-1", "transcript_path": null, "cwd": "/",
           "hook_event_name": "PostToolUse", "model": "gpt-5.5", "permission_mode": "default",
           "tool_name": tool, "tool_input": {"command": "cat .env"}, "tool_response": "SECRET=1",
           "tool_use_id": "call-1"})
}

/// One metered call of `session`, landed in the ledger.
async fn metered_call(h: &Harness, key: &str, session: &str) {
    let reply = h
        .http
        .json(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(key), ("session-id", session.to_string())],
            json!({"model": "gpt-4.1-mini", "input": "hi", "max_output_tokens": 16}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    h.ledger_row(reply.headers["x-request-id"].to_str().unwrap())
        .await;
}

async fn session_view(h: &Harness, team: &str, session: &str) -> Value {
    let url = format!("{}/admin/v1/sessions/{session}?team={team}", h.base());
    let reply = h
        .http
        .send(Method::GET, &url, &[bearer(ADMIN_TOKEN)], "")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json()
}

async fn hook_events_and_gates_join_the_sessions_cost(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("alpha").await;
    metered_call(&h, &key, SESSION).await;
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path().to_str().unwrap();

    let before = session_view(&h, "alpha", SESSION).await;
    assert_eq!(before["hook_events"], 0, "{before}");
    assert_eq!(before["outcome"], Value::Null);
    assert_eq!(before["gate"], Value::Null);

    let (out, _) = hook(&h.base(), &key, &[], &post_tool_use(SESSION, "Bash")).await;
    assert_codex_continues(&out);

    // A failing gate: reported, never returned to Codex.
    let (out, _) = hook(
        &h.base(),
        &key,
        &["--gate", "exit 1", "--task-type", "bugfix"],
        &stop(SESSION, cwd),
    )
    .await;
    assert_codex_continues(&out);
    let view = session_view(&h, "alpha", SESSION).await;
    assert_eq!(view["outcome"], "gate_failed", "{view}");
    assert_eq!(view["gate"]["passed"], false);
    assert!(view["gate"]["duration_ms"].as_i64().unwrap() >= 0);
    assert_eq!(view["hook_events"], 2);
    assert_eq!(view["task_type"], "bugfix");
    assert_eq!(view["cost_nano_usd"], before["cost_nano_usd"]);

    // A passing gate run in the session's directory, as `sh -c`: the newest gate wins.
    std::fs::write(work.path().join("ok"), "").unwrap();
    let (out, _) = hook(
        &h.base(),
        &key,
        &["--gate", "sleep 0.2; test -f ok"],
        &stop(SESSION, cwd),
    )
    .await;
    assert_codex_continues(&out);
    let view = session_view(&h, "alpha", SESSION).await;
    assert_eq!(view["outcome"], "completed", "{view}");
    assert_eq!(view["gate"]["passed"], true);
    assert!(
        view["gate"]["duration_ms"].as_i64().unwrap() >= 200,
        "{view}"
    );
    assert_eq!(view["hook_events"], 3);
    assert_eq!(view["task_type"], "bugfix", "the newest task type reported");
    let duration = view["duration_ms"].as_i64().unwrap();
    let first = view["first_seen_ms"].as_i64().unwrap();
    assert!(duration >= view["last_seen_ms"].as_i64().unwrap() - first);
    assert!(
        duration >= 200,
        "the last hook event came after the gate: {view}"
    );

    // A gate that hangs is stopped and counts as a failed task (no verdict).
    let (out, took) = hook(
        &h.base(),
        &key,
        &["--gate", "sleep 30", "--gate-timeout-secs", "1"],
        &stop(SESSION, cwd),
    )
    .await;
    assert_codex_continues(&out);
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not finish"));
    let view = session_view(&h, "alpha", SESSION).await;
    assert_eq!(view["outcome"], "failed", "{view}");
    assert_eq!(view["gate"]["passed"], false);

    // Counted with bounded labels: team, cost centre, outcome, task type, result, tool.
    let metrics = h
        .http
        .send(
            Method::GET,
            &format!("{}/metrics", h.base()),
            &[bearer(ADMIN_TOKEN)],
            "",
        )
        .await;
    let text = String::from_utf8_lossy(&metrics.body);
    for series in [
        r#"tollgate_codex_tasks_total{cost_centre="CC-1",outcome="gate_failed",task_type="bugfix",team="alpha"} 1"#,
        r#"tollgate_codex_tasks_total{cost_centre="CC-1",outcome="completed",task_type="other",team="alpha"} 1"#,
        r#"tollgate_codex_tasks_total{cost_centre="CC-1",outcome="failed",task_type="other",team="alpha"} 1"#,
        r#"tollgate_codex_gate_runs_total{cost_centre="CC-1",result="fail",team="alpha"} 2"#,
        r#"tollgate_codex_gate_runs_total{cost_centre="CC-1",result="pass",team="alpha"} 1"#,
        r#"tollgate_codex_tool_events_total{cost_centre="CC-1",team="alpha",tool="Bash"} 1"#,
    ] {
        assert!(text.contains(series), "no {series} in:\n{text}");
    }
    assert!(!text.contains(SESSION), "a session id is never a label");
}

async fn another_teams_key_cannot_touch_this_teams_session(backend: Backend) {
    let h = Harness::start(backend).await;
    let alpha = h.team_key("alpha").await;
    let beta = h.team_key("beta").await;
    metered_call(&h, &alpha, SESSION).await;
    let (out, _) = hook(&h.base(), &alpha, &["--gate", "true"], &stop(SESSION, "/")).await;
    assert_codex_continues(&out);

    // Beta reports a failed gate under alpha's session id: stored as beta's, not alpha's.
    let (out, _) = hook(&h.base(), &beta, &["--gate", "false"], &stop(SESSION, "/")).await;
    assert_codex_continues(&out);
    let view = session_view(&h, "alpha", SESSION).await;
    assert_eq!(view["outcome"], "completed", "{view}");
    assert_eq!(view["gate"]["passed"], true);
    assert_eq!(view["hook_events"], 1);
    // Beta metered nothing under that id: it has no such session to show.
    let url = format!("{}/admin/v1/sessions/{SESSION}?team=beta", h.base());
    let reply = h
        .http
        .send(Method::GET, &url, &[bearer(ADMIN_TOKEN)], "")
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
}

both_stores!(
    hook_events_and_gates_join_the_sessions_cost,
    another_teams_key_cannot_touch_this_teams_session
);

#[tokio::test]
async fn the_hook_fails_open_when_the_gateway_is_down_slow_or_refuses_the_key() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("alpha").await;
    let event = stop(SESSION, "/");

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (out, took) = hook(&down, &key, &["--gate", "true"], &event).await;
    assert_codex_continues(&out);
    assert!(took < Duration::from_secs(5), "{took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach") && stderr.contains("Codex continues unchanged"));

    // Accepts and never answers: cut off at --timeout-ms.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let (out, took) = hook(&slow, &key, &["--timeout-ms", "300"], &event).await;
    assert_codex_continues(&out);
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not answer within 300 ms"));
    held.abort();

    // A key the gateway does not know.
    let (out, _) = hook(&h.base(), "tg-nosuchkey-0123456789abcdef", &[], &event).await;
    assert_codex_continues(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );

    // No gateway configured, input that is not JSON, a mistyped flag: still exit 0.
    let (out, _) = hook("", &key, &[], &event).await;
    assert_codex_continues(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOLLGATE_URL"));
    let (out, _) = hook(&h.base(), &key, &[], &json!("not an event")).await;
    assert_codex_continues(&out);
    let (out, _) = hook(&h.base(), &key, &["--no-such-flag"], &event).await;
    assert_codex_continues(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Codex continues unchanged"));
}

#[tokio::test]
async fn the_endpoint_checks_the_key_the_method_and_the_body() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("alpha").await;
    let url = format!("{}/tollgate/v1/hooks", h.base());
    let post = |headers: Vec<(&'static str, String)>, body: &'static str| {
        let (h, url) = (&h, &url);
        async move { h.http.send(Method::POST, url, &headers, body).await }
    };
    let event = r#"{"session_id":"s","hook_event_name":"Stop"}"#;
    post(vec![], event)
        .await
        .assert_error(401, "invalid_api_key");
    post(vec![bearer("tg-nosuchkey-0123456789abcdef")], event)
        .await
        .assert_error(401, "invalid_api_key");
    post(vec![bearer(&key)], "{not json")
        .await
        .assert_error(400, "invalid_json");
    post(vec![bearer(&key)], r#"{"hook_event_name":"Stop"}"#)
        .await
        .assert_error(400, "missing_required_parameter");
    post(
        vec![bearer(&key)],
        r#"{"session_id":"s","hook_event_name":"Stop","gate":1}"#,
    )
    .await
    .assert_error(400, "invalid_type");
    let got = h.http.send(Method::GET, &url, &[bearer(&key)], "").await;
    got.assert_error(405, "method_not_allowed");
    let big = format!(
        r#"{{"session_id":"s","hook_event_name":"Stop","x":"{}"}}"#,
        "x".repeat(70_000)
    );
    let reply = h.http.send(Method::POST, &url, &[bearer(&key)], big).await;
    reply.assert_error(413, "request_too_large");
    let ok = post(vec![bearer(&key)], event).await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    assert_eq!(
        ok.json(),
        json!({"object": "session_event", "session_id": "s", "event": "stop", "outcome": "completed"})
    );
}
