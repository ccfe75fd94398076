//! Real clients through tollgate to the mock upstream: the official `openai` Python SDK and the
//! real Codex CLI from npm. `tests/clients/setup.sh` installs both (pinned) on first use; if it
//! cannot, these tests fail and say why — they never skip.

// Integration tests: shared helpers fail loudly, and read whole (small) test responses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::process::Command;

use tollgate_tests::clients::{clients_dir, codex_exec_with, codex_turn, repo_root, run};
use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, UPSTREAM_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_sees_the_same_objects_through_tollgate() {
    let dir = clients_dir("the openai SDK and the Codex CLI");
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let mut cmd = Command::new(dir.join("venv/bin/python"));
    cmd.arg(repo_root().join("tests/clients/sdk_parity.py"))
        .env("DIRECT_BASE_URL", h.mock.base_url())
        .env("DIRECT_KEY", UPSTREAM_KEY)
        .env("GATEWAY_BASE_URL", format!("{}/v1", h.base()))
        .env("GATEWAY_KEY", &key)
        .env("SDK_PARITY_CALLS", "all");
    let out = run(cmd).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK parity failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        32,
        "{stdout}"
    );
    // Every gateway call reached the upstream with the upstream key, never the team key.
    let through_gateway: Vec<_> = h
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.header("authorization") == Some(&format!("Bearer {UPSTREAM_KEY}")))
        .collect();
    assert_eq!(through_gateway.len(), h.mock.requests().len());
    assert!(
        h.mock
            .requests()
            .iter()
            .all(|r| r.headers.iter().all(|(_, v)| !v.contains(&key)))
    );
    // Every batch the SDK created through tollgate (batches.create, .retrieve and .cancel make
    // one each) is followed until it ends.
    let followed = h.gateway.store.unsettled_batches().await.unwrap();
    assert_eq!(followed.len(), 3, "{followed:?}");
}

/// Runs `codex exec --json` against the gateway with a provider block of its own (plain HTTP
/// streaming: no `supports_websockets`).
async fn codex_exec(h: &Harness, key: &str, prompt: &str) -> (std::process::Output, String) {
    let config = format!(
        "model = \"gpt-5.5\"\nmodel_provider = \"tollgate\"\n\n[model_providers.tollgate]\nname = \"tollgate\"\nbase_url = \"{}/v1\"\nenv_key = \"TOLLGATE_KEY\"\nwire_api = \"responses\"\n",
        h.base()
    );
    let env = [("TOLLGATE_KEY".to_string(), key.to_string())];
    codex_exec_with(&config, &env, None, prompt).await
}

/// One Codex set-up as the README documents it: its `config.toml` block, verbatim, and the
/// ways its `# key:` lines give Codex the team key.
struct DocumentedSetup {
    config: String,
    keys: Vec<KeyWay>,
}

#[derive(Debug)]
enum KeyWay {
    /// `export NAME=tg-…`
    Env(String),
    /// `… | codex login --with-api-key`
    Login,
}

/// The `toml` blocks of the README's "Codex CLI" paragraph, so the test runs what users copy.
fn readme_codex_setups() -> Vec<DocumentedSetup> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find("**Codex CLI.**")
        .expect("the README's Codex CLI paragraph");
    let end = start + readme[start..].find("**OpenAI SDKs**").expect("its end");
    let section = &readme[start..end];
    let setups: Vec<DocumentedSetup> = section
        .split("```toml\n")
        .skip(1)
        .map(|rest| {
            let config = rest.split("```").next().unwrap().to_string();
            let keys = config
                .lines()
                .filter_map(|l| l.strip_prefix("# key:"))
                .map(|way| {
                    if way.contains("codex login --with-api-key") {
                        KeyWay::Login
                    } else {
                        let name = way
                            .trim()
                            .trim_start_matches("export ")
                            .split('=')
                            .next()
                            .unwrap();
                        KeyWay::Env(name.to_string())
                    }
                })
                .collect();
            DocumentedSetup { config, keys }
        })
        .collect();
    assert!(
        setups.len() >= 2 && setups.iter().all(|s| !s.keys.is_empty()),
        "expected the README's Codex blocks, each with a '# key:' line"
    );
    setups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codex_setup_in_the_readme_completes_a_turn_through_tollgate() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let base = format!("{}/v1", h.base());
    for setup in readme_codex_setups() {
        let config = setup
            .config
            .replace("https://tollgate.example.com/v1", &base);
        assert_ne!(config, setup.config, "no gateway URL in:\n{}", setup.config);
        for way in &setup.keys {
            let before = h.mock.requests().len();
            let (env, login) = match way {
                KeyWay::Env(name) => (vec![(name.clone(), key.clone())], None),
                // As documented: the key comes from the shell, through stdin.
                KeyWay::Login => (vec![], Some(key.as_str())),
            };
            let (out, stdout) = codex_exec_with(&config, &env, login, "Say hello").await;
            let turns: Vec<_> = h.mock.requests()[before..]
                .iter()
                .filter(|r| r.path == "/v1/responses")
                .cloned()
                .collect();
            assert!(
                out.status.success() && stdout.contains("\"turn.completed\""),
                "the README's Codex set-up failed with {way:?}:\n{}\n{stdout}\n{}",
                setup.config,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                !turns.is_empty(),
                "{way:?}: Codex never reached the upstream"
            );
            for r in &turns {
                assert_eq!(
                    r.header("authorization"),
                    Some(format!("Bearer {UPSTREAM_KEY}").as_str()),
                    "{way:?}"
                );
            }
        }
    }
}

/// Runs a Codex turn that must succeed: exit 0 and `turn.completed`. Returns Codex's output and
/// the `/v1/responses` requests the upstream received.
async fn codex_turn_ok(
    h: &Harness,
    key: &str,
    prompt: &str,
) -> (String, Vec<tollgate_mock::RecordedRequest>) {
    let (out, stdout) = codex_exec(h, key, prompt).await;
    assert!(
        out.status.success(),
        "codex exec failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().any(|l| l.contains("\"turn.completed\"")),
        "no turn.completed:\n{stdout}"
    );
    let turns = h
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/responses")
        .collect();
    (stdout, turns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_cli_plain_turn_completes_through_tollgate() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let (_, turns) = codex_turn_ok(&h, &key, "Say hello").await;
    assert!(!turns.is_empty(), "Codex never reached the upstream");
    for r in &turns {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {UPSTREAM_KEY}").as_str())
        );
        assert!(
            r.header("session-id").is_some(),
            "Codex's session-id did not pass through"
        );
        assert_eq!(r.header("originator"), Some("codex_exec"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_cli_tool_call_turn_completes_through_tollgate() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let (_, turns) = codex_turn_ok(&h, &key, "mock:exec run the command").await;
    assert!(
        turns.len() >= 2,
        "expected the tool call and a follow-up request, got {}",
        turns.len()
    );
    let follow_up = turns.last().and_then(|r| r.json()).expect("JSON body");
    let items = follow_up["input"].as_array().expect("input array");
    assert!(
        items.iter().any(|i| i["type"] == "function_call_output"),
        "Codex did not send the tool output back: {follow_up}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_turn_is_metered_to_the_token_codex_reports() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let (stdout, turns) = codex_turn_ok(&h, &key, "mock:exec run the command").await;
    let (thread, usage) = codex_turn(&stdout);
    h.gateway.flush_ledger().await;
    let session = h
        .gateway
        .store
        .find_session(None, &thread)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no ledger session for Codex thread {thread}"));
    assert_eq!(
        session.requests,
        turns.len() as i64,
        "one row per Codex request"
    );
    assert_eq!(
        (
            session.input_tokens,
            session.cached_input_tokens,
            session.output_tokens,
            session.reasoning_tokens
        ),
        (
            usage["input_tokens"].as_i64().unwrap(),
            usage["cached_input_tokens"].as_i64().unwrap(),
            usage["output_tokens"].as_i64().unwrap(),
            usage["reasoning_output_tokens"].as_i64().unwrap()
        ),
        "the ledger must agree with the usage Codex itself printed: {usage}"
    );
    assert!(session.cost_nanos > 0);
    assert_eq!(
        session.tools.get("exec_command"),
        Some(&1),
        "the scripted turn calls exec_command once: {:?}",
        session.tools
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_cli_stops_after_one_request_on_an_exhausted_budget() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("broke").await;
    let admin = [("authorization", format!("Bearer {ADMIN_TOKEN}"))];
    let created = h
        .http
        .json(
            http::Method::POST,
            &format!("{}/admin/v1/budgets", h.base()),
            &admin,
            serde_json::json!({"team": "broke", "period": "month", "limit_usd": "0.000001"}),
        )
        .await;
    assert_eq!(created.status, http::StatusCode::CREATED, "{created:?}");
    let (out, stdout) = codex_exec(&h, &key, "Say hello").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "codex exec succeeded past an exhausted budget:\n{stdout}"
    );
    assert_eq!(
        h.gateway.budgets.refusals(),
        1,
        "Codex sent more than one request after the 429:\n{stdout}\n{stderr}"
    );
    assert!(
        h.mock.requests().iter().all(|r| r.path != "/v1/responses"),
        "a refused call reached the upstream"
    );
    let shown = format!("{stdout}\n{stderr}");
    assert!(
        shown.contains("team 'broke' reached its month budget"),
        "Codex did not show the team's message:\n{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_cli_waits_out_a_rate_limit_and_the_turn_succeeds() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("paced").await;
    let admin = [("authorization", format!("Bearer {ADMIN_TOKEN}"))];
    // 10 a minute: one every 6 s once the burst is used up, longer than Codex takes to start
    // (2–3 s on a loaded machine), so its first request is the one that waits.
    let set = h
        .http
        .json(
            http::Method::PUT,
            &format!("{}/admin/v1/rate-limits", h.base()),
            &admin,
            serde_json::json!({"team": "paced", "requests_per_minute": 10}),
        )
        .await;
    assert_eq!(set.status, http::StatusCode::OK, "{set:?}");
    let limits = &h.gateway.rates;
    let burned = tollgate_tests::eventually(std::time::Duration::from_secs(5), || async {
        let reply = h
            .http
            .send(
                http::Method::GET,
                &format!("{}/v1/models", h.base()),
                &[tollgate_tests::bearer(&key)],
                "",
            )
            .await;
        reply.status == http::StatusCode::TOO_MANY_REQUESTS
    })
    .await;
    assert!(burned, "the burst was never used up");
    let before = limits.refused();
    let (_, turns) = codex_turn_ok(&h, &key, "Say hello").await;
    assert!(!turns.is_empty(), "the turn never reached the upstream");
    assert!(
        limits.refused() > before,
        "Codex's first request was not rate limited (nothing was waited out)"
    );
}
