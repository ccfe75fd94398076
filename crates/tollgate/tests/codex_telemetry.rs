//! The real Codex CLI (0.169, `tests/clients/setup.sh`) set up as the README's platform section
//! says: its provider, its `[otel]` exporters and its hooks (`tollgate hook`) all point at
//! tollgate with the team key. A tool-call turn whose quality gate fails and a plain turn whose
//! gate passes run through tollgate to the mock upstream; then
//! - the OTLP receiver behind tollgate holds Codex's own logs, metrics and spans, stamped with
//!   the team;
//! - each session in the admin API (and `tollgate session show`) has its cost beside Codex's
//!   own view of it: time to resolution, turns, its token counts, tool decisions, and the
//!   gate's outcome;
//! - `/metrics` counts tasks by outcome, time to resolution by task type, turns, tool decisions
//!   and Codex's tokens per team.
//!
//! `codex exec` runs hooks only once trusted: `--dangerously-bypass-hook-trust` here, as in CI.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use tollgate_mock::MockOptions;
use tollgate_telemetry::testing::{Receiver, venv_python};
use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, bearer, eventually, metric_sum};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// Codex's config.toml as the README gives it: provider, `[otel]` exporters and hooks, all
/// pointing at the gateway; `gate` and `task_type` go to `tollgate hook` on Stop.
fn codex_config(base: &str, key: &str, gate: &str, task_type: &str) -> String {
    let exporter = |signal: &str| {
        format!(
            r#"{{ otlp-http = {{ endpoint = "{base}/otlp/v1/{signal}", protocol = "binary", headers = {{ "authorization" = "Bearer {key}" }} }} }}"#
        )
    };
    format!(
        r#"model = "gpt-5.5"
model_provider = "tollgate"

[model_providers.tollgate]
name = "tollgate"
base_url = "{base}/v1"
env_key = "TOLLGATE_KEY"
wire_api = "responses"
supports_websockets = true

[otel]
exporter = {logs}
metrics_exporter = {metrics}
trace_exporter = {traces}

[[hooks.Stop]]
[[hooks.Stop.hooks]]
type = "command"
command = "{BIN} hook --gate '{gate}' --task-type {task_type}"
timeout = 660

[[hooks.PostToolUse]]
[[hooks.PostToolUse.hooks]]
type = "command"
command = "{BIN} hook"
timeout = 10
"#,
        logs = exporter("logs"),
        metrics = exporter("metrics"),
        traces = exporter("traces"),
    )
}

/// One `codex exec` run: its session id, its `turn.completed` usage, how long it took.
async fn codex_exec(h: &Harness, key: &str, config: &str, prompt: &str) -> (String, Value, u128) {
    let codex = tollgate_tests::clients::clients_dir("the openai SDK and the Codex CLI")
        .join("npm/node_modules/.bin/codex");
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let mut cmd = std::process::Command::new(&codex);
    cmd.args([
        "exec",
        "--dangerously-bypass-hook-trust",
        "--skip-git-repo-check",
        // Not --ephemeral: Codex 0.169 then exits before its turn and session_loop spans are
        // exported (README, platform section).
        "--json",
        "--sandbox",
        "read-only",
        prompt,
    ])
    .current_dir(work.path())
    .stdin(Stdio::null())
    .env("CODEX_HOME", home.path())
    .env_remove("OPENAI_API_KEY")
    .env_remove("OPENAI_BASE_URL")
    .env_remove("CODEX_API_KEY")
    .env("TOLLGATE_KEY", key)
    .env("TOLLGATE_URL", h.base());
    let started = Instant::now();
    let out = tollgate_tests::clients::run(cmd).await;
    let took = started.elapsed().as_millis();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout.matches(r#""type":"turn.completed""#).count(),
        1,
        "one turn, whatever the gate said:\n{stdout}"
    );
    let (session, usage) = tollgate_tests::clients::codex_turn(&stdout);
    (session, usage, took)
}

async fn session_view(h: &Harness, session: &str) -> Value {
    let url = format!("{}/admin/v1/sessions/{session}?team=alpha", h.base());
    let reply = h
        .http
        .send(Method::GET, &url, &[bearer(ADMIN_TOKEN)], "")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json()
}

/// The session view once Codex's session has ended (its `session_loop` span has arrived).
async fn resolved(h: &Harness, session: &str) -> Value {
    let ended = eventually(Duration::from_secs(20), || async {
        session_view(h, session).await["codex"]["duration_ms"].is_i64()
    })
    .await;
    let view = session_view(h, session).await;
    assert!(
        ended,
        "Codex's session_loop span never joined the session: {view}"
    );
    view
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_sessions_show_cost_time_to_resolution_tools_and_outcome() {
    let r = Receiver::start(&venv_python());
    let h = Harness::start_custom(
        Backend::Sqlite,
        MockOptions::default(),
        tollgate_tests::exporting_to(&r),
    )
    .await;
    let key = h.team_key("alpha").await;
    let team = h
        .http
        .send(
            Method::GET,
            &format!("{}/admin/v1/teams/alpha", h.base()),
            &[bearer(ADMIN_TOKEN)],
            "",
        )
        .await
        .json();

    // A tool-call turn whose gate fails, then a plain turn whose gate passes.
    let failing = codex_config(&h.base(), &key, "echo the gate talks; exit 1", "bugfix");
    let (tools, tools_usage, tools_took) =
        codex_exec(&h, &key, &failing, "mock:exec list the files").await;
    let passing = codex_config(&h.base(), &key, "true", "docs");
    let (plain, plain_usage, _) = codex_exec(&h, &key, &passing, "say hello").await;
    assert_ne!(tools, plain);

    // Codex's own logs, metrics and spans reached the collector, stamped with the team.
    for signal in ["logs", "metrics", "traces"] {
        let stamped = eventually(Duration::from_secs(10), || async {
            !r.resources(signal, "codex_exec").is_empty()
        })
        .await;
        assert!(stamped, "no Codex {signal} reached the receiver");
        for resource in r.resources(signal, "codex_exec") {
            assert_eq!(resource["tollgate.team"], "alpha", "{resource:?}");
            assert_eq!(resource["tollgate.team_id"], team["id"].as_str().unwrap());
            assert_eq!(resource["tollgate.cost_centre"], "CC-1");
            assert_eq!(
                resource["tollgate.key_id"],
                key.split('-').nth(1).unwrap(),
                "{resource:?}"
            );
        }
    }

    // The tool-call session: cost, Codex's own view of it, and its failed gate, side by side.
    let view = resolved(&h, &tools).await;
    assert!(view["requests"].as_i64().unwrap() >= 2, "{view}");
    assert!(view["cost_nano_usd"].as_i64().unwrap() > 0, "{view}");
    assert!(
        view["tool_calls"]["exec_command"].as_i64().unwrap() >= 1,
        "{view}"
    );
    assert_eq!(view["outcome"], "gate_failed", "{view}");
    assert_eq!(view["gate"]["passed"], false);
    assert_eq!(view["task_type"], "bugfix");
    let codex = &view["codex"];
    assert_eq!(codex["turns"], 1, "{view}");
    assert_eq!(
        codex["tool_decisions"],
        json!({"exec_command": {"approved": 1}}),
        "{view}"
    );
    assert_eq!(codex["api_errors"], 0);
    // Codex's own token counts are the ones it printed for the turn.
    assert_eq!(
        codex["tokens"]["input"], tools_usage["input_tokens"],
        "{view}"
    );
    assert_eq!(codex["tokens"]["output"], tools_usage["output_tokens"]);
    assert_eq!(
        codex["tokens"]["cached_input"],
        tools_usage["cached_input_tokens"]
    );
    let resolution = codex["duration_ms"].as_i64().unwrap();
    assert!(
        resolution > 0 && u128::try_from(resolution).unwrap() <= tools_took,
        "time to resolution {resolution} ms within the run's {tools_took} ms: {view}"
    );
    assert!(codex["turn_duration_ms"].as_i64().unwrap() <= resolution);

    // The plain session: completed, one turn, no tool decisions.
    let view = resolved(&h, &plain).await;
    assert_eq!(view["outcome"], "completed", "{view}");
    assert_eq!(view["task_type"], "docs");
    assert_eq!(view["codex"]["turns"], 1);
    assert_eq!(view["codex"]["tool_decisions"], json!({}));
    assert_eq!(
        view["codex"]["tokens"]["input"],
        plain_usage["input_tokens"]
    );

    // Per team, with bounded labels.
    let text = h.metrics().await;
    let n = |name: &str, labels: &[(&str, &str)]| metric_sum(&text, name, labels);
    let alpha = ("team", "alpha");
    for (outcome, task_type) in [("gate_failed", "bugfix"), ("completed", "docs")] {
        assert_eq!(
            n(
                "tollgate_codex_tasks_total",
                &[alpha, ("outcome", outcome), ("task_type", task_type)]
            ),
            1.0,
            "{outcome} {task_type}:\n{text}"
        );
        assert_eq!(
            n(
                "tollgate_codex_session_duration_seconds_count",
                &[alpha, ("task_type", task_type)]
            ),
            1.0,
            "time to resolution of the {task_type} session"
        );
    }
    assert_eq!(
        n("tollgate_codex_turn_duration_seconds_count", &[alpha]),
        2.0
    );
    assert_eq!(
        n(
            "tollgate_codex_tool_decisions_total",
            &[alpha, ("tool", "exec_command"), ("decision", "approved")]
        ),
        1.0
    );
    let codex_input = tools_usage["input_tokens"].as_f64().unwrap()
        + plain_usage["input_tokens"].as_f64().unwrap();
    let counted = eventually(Duration::from_secs(10), || async {
        h.metric("tollgate_codex_tokens_total", &[alpha, ("type", "input")])
            .await
            == codex_input
    })
    .await;
    assert!(counted, "Codex's own input tokens: {codex_input}");
    assert!(!text.contains(&tools), "a session id is never a label");

    // `tollgate session show` prints the same join.
    let out = tokio::process::Command::new(BIN)
        .args(["--server", &h.base(), "--token", ADMIN_TOKEN])
        .args(["session", "show", &tools, "--team", "alpha"])
        .output()
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        shown.contains("outcome: gate_failed")
            && shown.contains(&format!(
                "codex: time to resolution {resolution} ms, turns 1"
            ))
            && shown.contains("exec_command")
            && shown.contains("approved"),
        "{shown}"
    );
    h.gateway.shutdown().await;
}
