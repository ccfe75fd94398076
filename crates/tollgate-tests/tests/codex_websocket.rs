//! The real Codex CLI on its WebSocket transport through tollgate: with OpenAI's built-in
//! provider moved to tollgate (`openai_base_url`) and with a provider of its own that says
//! `supports_websockets = true`, a turn runs over the WebSocket (no fallback to HTTP), each
//! response is one ledger row agreeing with the usage Codex prints, and tollgate's refusals
//! stop Codex the way they stop it over HTTP.

// Integration tests: shared helpers fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::Duration;

use tollgate_mock::{MockOptions, RecordedRequest, Transport};
use tollgate_tests::clients::{codex_exec_with, codex_turn};
use tollgate_tests::{Backend, Harness, UPSTREAM_KEY, eventually};

/// How Codex is pointed at tollgate.
#[derive(Debug, Clone, Copy)]
enum Setup {
    /// OpenAI's built-in provider with its base URL moved; the key in `CODEX_API_KEY`.
    BuiltIn,
    /// `[model_providers.tollgate]` with `supports_websockets = true`.
    Custom,
}

impl Setup {
    fn config(self, h: &Harness) -> String {
        let base = format!("{}/v1", h.base());
        match self {
            Setup::BuiltIn => format!("model = \"gpt-5.5\"\nopenai_base_url = \"{base}\"\n"),
            Setup::Custom => format!(
                "model = \"gpt-5.5\"\nmodel_provider = \"tollgate\"\n\n[model_providers.tollgate]\nname = \"tollgate\"\nbase_url = \"{base}\"\nenv_key = \"TOLLGATE_KEY\"\nwire_api = \"responses\"\nsupports_websockets = true\n"
            ),
        }
    }

    fn env(self, key: &str) -> Vec<(String, String)> {
        let name = match self {
            Setup::BuiltIn => "CODEX_API_KEY",
            Setup::Custom => "TOLLGATE_KEY",
        };
        vec![(name.to_string(), key.to_string())]
    }
}

/// Runs `codex exec` set up as `setup`; returns (success, stdout, stderr).
async fn codex(h: &Harness, setup: Setup, key: &str, prompt: &str) -> (bool, String, String) {
    let (out, stdout) = codex_exec_with(&setup.config(h), &setup.env(key), None, prompt).await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.success(), stdout, stderr)
}

fn responses_calls(h: &Harness) -> Vec<RecordedRequest> {
    h.mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/responses")
        .collect()
}

/// (endpoint code, input, cached, output, reasoning) of each ledger row of session `thread`.
async fn session_rows(h: &Harness, thread: &str) -> Vec<[i64; 5]> {
    h.gateway.flush_ledger().await;
    let pool = sqlx::AnyPool::connect(&h.db.url).await.unwrap();
    let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT CAST(endpoint AS BIGINT), CAST(input_tokens AS BIGINT), \
         CAST(cached_input_tokens AS BIGINT), CAST(output_tokens AS BIGINT), \
         CAST(reasoning_tokens AS BIGINT) FROM ledger WHERE session_id = $1",
    )
    .bind(thread)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|r| [r.0, r.1, r.2, r.3, r.4])
        .collect()
}

const RESPONSES_WS: i64 = 18;
const RESPONSES_WS_PREWARM: i64 = 19;

/// A plain turn and a tool-call turn over the WebSocket, metered to the token.
async fn turns_run_over_the_websocket(setup: Setup) {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    for prompt in ["Say hello", "mock:exec run the command"] {
        let before = responses_calls(&h).len();
        let (ok, stdout, stderr) = codex(&h, setup, &key, prompt).await;
        assert!(ok, "{setup:?} {prompt}: codex failed:\n{stdout}\n{stderr}");
        for line in stderr.lines() {
            assert!(
                !line.contains("ERROR") && !line.to_lowercase().contains("websocket"),
                "{setup:?}: Codex complained about the transport: {line}\n{stderr}"
            );
        }
        let calls = responses_calls(&h)[before..].to_vec();
        assert!(!calls.is_empty(), "{setup:?}: nothing reached the upstream");
        for call in &calls {
            assert_eq!(
                call.transport,
                Transport::WebSocket,
                "{setup:?}: Codex fell back to HTTP"
            );
            assert_eq!(
                call.header("authorization"),
                Some(format!("Bearer {UPSTREAM_KEY}").as_str())
            );
        }
        let (thread, usage) = codex_turn(&stdout);
        let rows = session_rows(&h, &thread).await;
        assert_eq!(rows.len(), calls.len(), "one row per response: {rows:?}");
        assert!(
            rows.iter()
                .all(|r| r[0] == RESPONSES_WS || r[0] == RESPONSES_WS_PREWARM),
            "{rows:?}"
        );
        let turn: Vec<_> = rows.iter().filter(|r| r[0] == RESPONSES_WS).collect();
        let sum = |i: usize| turn.iter().map(|r| r[i]).sum::<i64>();
        assert_eq!(
            [sum(1), sum(2), sum(3), sum(4)],
            [
                usage["input_tokens"].as_i64().unwrap(),
                usage["cached_input_tokens"].as_i64().unwrap(),
                usage["output_tokens"].as_i64().unwrap(),
                usage["reasoning_output_tokens"].as_i64().unwrap()
            ],
            "{setup:?} {prompt}: the ledger must agree with Codex's own usage: {usage} {rows:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_with_the_built_in_provider_runs_its_turns_over_the_websocket() {
    turns_run_over_the_websocket(Setup::BuiltIn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_with_a_websocket_provider_runs_its_turns_over_the_websocket() {
    turns_run_over_the_websocket(Setup::Custom).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_stops_after_one_refused_response_create_on_an_exhausted_budget() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("broke").await;
    h.set_budget("broke", "0.000001").await;
    let (ok, stdout, stderr) = codex(&h, Setup::BuiltIn, &key, "Say hello").await;
    assert!(
        !ok,
        "codex exec succeeded past an exhausted budget:\n{stdout}"
    );
    // Two calls, each refused once and never retried: the prewarm Codex sends when its session
    // starts, then the turn's own, on which it stops.
    assert_eq!(
        h.gateway.budgets.refusals(),
        2,
        "Codex retried a refused call:\n{stdout}\n{stderr}"
    );
    let errors = stdout
        .lines()
        .filter(|l| l.contains("\"type\":\"error\""))
        .count();
    assert_eq!(errors, 1, "one refusal shown:\n{stdout}");
    assert!(
        responses_calls(&h).is_empty(),
        "a refused call reached the upstream"
    );
    let shown = format!("{stdout}\n{stderr}");
    assert!(
        shown.contains("team 'broke' reached its month budget")
            && shown.contains("UTC, or try again at"),
        "Codex did not show the team's message:\n{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_during_a_codex_session_is_refused_at_its_next_call() {
    // Paced so that the test can revoke the key while the first response streams.
    let h = Harness::start_with(
        Backend::Sqlite,
        MockOptions {
            chunk_delay: Duration::from_millis(150),
            ..MockOptions::default()
        },
    )
    .await;
    let key = h.team_key("platform").await;
    let config = Setup::BuiltIn.config(&h);
    let env = Setup::BuiltIn.env(&key);
    let session = tokio::spawn(async move {
        codex_exec_with(&config, &env, None, "mock:exec run the command").await
    });
    let started = eventually(Duration::from_secs(60), || async {
        responses_calls(&h)
            .iter()
            .any(|r| r.json().is_some_and(|b| b["generate"] != false))
    })
    .await;
    assert!(started, "Codex's first turn never reached the upstream");
    h.revoke_key(&key).await;
    let (out, stdout) = session.await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the session went on after its key was revoked:\n{stdout}\n{stderr}"
    );
    let turns: Vec<_> = responses_calls(&h)
        .into_iter()
        .filter(|r| r.json().is_some_and(|b| b["generate"] != false))
        .collect();
    assert_eq!(
        turns.len(),
        1,
        "only the call made before the revocation reached the upstream"
    );
}
