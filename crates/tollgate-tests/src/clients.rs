//! The real clients and checkers the tests drive, installed (pinned) under `target/clients/` on
//! first use: the `openai` SDK, PyYAML, kubernetes-validate, the OTLP protobufs with grpcio, and
//! schemathesis in a venv; the Codex CLI from npm; `prometheus` and `promtool`. A missing one
//! that cannot be installed fails the test with the way to install it; nothing is skipped. The
//! one implementation lives beside the OTLP receiver in `tollgate_telemetry::testing::tools`.

pub use tollgate_telemetry::testing::tools::{clients_dir, prometheus_tool, repo_root, venv_bin};

use std::process::Command;

/// Runs a blocking client process without stalling the runtime that serves the gateway.
pub async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().expect("client process starts"))
        .await
        .expect("join")
}

/// `codex exec` with `config` as `$CODEX_HOME/config.toml` and `env`; `login` first stores the
/// key with `codex login --with-api-key` (reading it from stdin, as documented).
pub async fn codex_exec_with(
    config: &str,
    env: &[(String, String)],
    login: Option<&str>,
    prompt: &str,
) -> (std::process::Output, String) {
    let codex = clients_dir("the openai SDK and the Codex CLI").join("npm/node_modules/.bin/codex");
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::write(home.path().join("config.toml"), config).expect("write config.toml");
    let clean = |cmd: &mut Command| {
        cmd.env("CODEX_HOME", home.path())
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("CODEX_API_KEY")
            .env_remove("TOLLGATE_KEY");
    };
    if let Some(key) = login {
        use std::io::Write;
        let mut cmd = Command::new(&codex);
        cmd.args(["login", "--with-api-key"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        clean(&mut cmd);
        let mut child = cmd.spawn().expect("codex login starts");
        writeln!(child.stdin.take().unwrap(), "{key}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "codex login --with-api-key failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let work = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(&codex);
    cmd.args([
        "exec",
        "--skip-git-repo-check",
        "--ephemeral",
        "--json",
        "--sandbox",
        "read-only",
        prompt,
    ])
    .current_dir(work.path())
    .stdin(std::process::Stdio::null());
    clean(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(cmd).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    drop(home);
    (out, stdout)
}

/// The `thread.started` thread id and `turn.completed` usage Codex printed.
pub fn codex_turn(stdout: &str) -> (String, serde_json::Value) {
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let thread = events
        .iter()
        .find(|e| e["type"] == "thread.started")
        .and_then(|e| e["thread_id"].as_str())
        .expect("thread.started")
        .to_string();
    let usage = events
        .iter()
        .find(|e| e["type"] == "turn.completed")
        .map(|e| e["usage"].clone())
        .expect("turn.completed");
    (thread, usage)
}
