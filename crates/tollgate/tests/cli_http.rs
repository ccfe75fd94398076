//! The `tollgate` management commands with `--server`: the same commands as against the
//! database, through a running gateway's admin API with an admin token, so they work from any
//! machine and obey the token's role; and the commands added with them (team show/update, key
//! rotate, session list/show) in the database mode too.

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
use serde_json::{Value, json};

use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, bearer, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// Runs the binary against `h`'s admin API with `token` (given through the environment, as a
/// script would), in a clean environment: no DATABASE_URL, so nothing can go to a database.
fn tollgate(h: &Harness, token: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("TOLLGATE_SERVER", h.base())
        .env("TOLLGATE_ADMIN_TOKEN", token)
        .output()
        .expect("tollgate runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_of(out: &Output) -> Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

async fn call(h: &Harness, key: &str, session: &str) -> StatusCode {
    h.http
        .json(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(key), ("session-id", session.to_string())],
            json!({"model": "gpt-4.1-mini", "input": "mock:exec hi", "max_output_tokens": 64}),
        )
        .await
        .status
}

#[test]
fn the_new_commands_have_help() {
    for args in [
        vec!["team", "show", "--help"],
        vec!["team", "update", "--help"],
        vec!["key", "rotate", "--help"],
        vec!["session", "--help"],
        vec!["session", "list", "--help"],
        vec!["session", "show", "--help"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: tollgate"), "{args:?}: {text}");
        assert!(text.contains("--server"), "{args:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_keys_budgets_sessions_and_reports_are_managed_over_the_admin_api() {
    let h = Harness::start(Backend::Sqlite).await;

    let team = json_of(&tollgate(
        &h,
        ADMIN_TOKEN,
        &[
            "team",
            "create",
            "platform",
            "--cost-centre",
            "CC-7",
            "--json",
        ],
    ));
    // Like the database mode, `create --json` prints the list of what it created.
    assert_eq!(team[0]["name"], "platform");
    assert_eq!(team[0]["cost_centre"], "CC-7");
    let dup = tollgate(&h, ADMIN_TOKEN, &["team", "create", "platform"]);
    assert!(!dup.status.success());
    let err = String::from_utf8_lossy(&dup.stderr);
    assert!(err.contains("409") && err.contains("platform"), "{err}");

    let updated = json_of(&tollgate(
        &h,
        ADMIN_TOKEN,
        &[
            "team",
            "update",
            "platform",
            "--label",
            "org=payments",
            "--json",
        ],
    ));
    assert_eq!(updated["labels"], json!({"org": "payments"}));
    let table = ok(&tollgate(&h, ADMIN_TOKEN, &["team", "list"]));
    assert!(
        table.starts_with("ID") && table.contains("platform") && table.contains("CC-7"),
        "{table}"
    );

    // A key: its secret alone on stdout, usable at once on the gateway.
    let created = tollgate(
        &h,
        ADMIN_TOKEN,
        &["key", "create", "--team", "platform", "--name", "ci"],
    );
    let secret = ok(&created).trim().to_string();
    assert!(secret.starts_with("tg-"), "{secret}");
    assert!(String::from_utf8_lossy(&created.stderr).contains("shown once"));
    assert_eq!(call(&h, &secret, "s-1").await, StatusCode::OK);
    let id = secret.split('-').nth(1).unwrap().to_string();

    let rotated = json_of(&tollgate(
        &h,
        ADMIN_TOKEN,
        &["key", "rotate", &id, "--grace-seconds", "0", "--json"],
    ));
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_eq!(rotated["replaces"]["id"], id.as_str());
    assert!(
        eventually(Duration::from_secs(2), || async {
            call(&h, &secret, "s-1").await == StatusCode::UNAUTHORIZED
        })
        .await,
        "the rotated-out key still works"
    );
    assert_eq!(call(&h, &new_secret, "s-1").await, StatusCode::OK);
    let keys = json_of(&tollgate(
        &h,
        ADMIN_TOKEN,
        &["key", "list", "--team", "platform", "--json"],
    ));
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    assert!(
        !keys.to_string().contains(&new_secret[15..]),
        "secret listed"
    );

    // Budgets: set creates, set again changes, show shows.
    for limit in ["25", "30"] {
        ok(&tollgate(
            &h,
            ADMIN_TOKEN,
            &[
                "budget",
                "set",
                "--team",
                "platform",
                "--period",
                "month",
                "--limit-usd",
                limit,
            ],
        ));
    }
    let budgets = json_of(&tollgate(
        &h,
        ADMIN_TOKEN,
        &["budget", "show", "--team", "platform", "--json"],
    ));
    assert_eq!(budgets.as_array().unwrap().len(), 1, "{budgets}");
    assert_eq!(budgets[0]["limit_usd"], "30.00");
    let table = ok(&tollgate(
        &h,
        ADMIN_TOKEN,
        &["budget", "show", "--team", "platform"],
    ));
    assert!(table.contains("$30.00"), "{table}");

    // Sessions, once the ledger has the calls.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let out = tollgate(&h, ADMIN_TOKEN, &["session", "show", "s-1", "--json"]);
            out.status.success() && json_of(&out)["requests"] == 2
        })
        .await,
        "the session never showed both calls"
    );
    let session = json_of(&tollgate(
        &h,
        ADMIN_TOKEN,
        &["session", "show", "s-1", "--json"],
    ));
    assert_eq!(
        session["tool_calls"],
        json!({"exec_command": 2}),
        "{session}"
    );
    let listed = ok(&tollgate(
        &h,
        ADMIN_TOKEN,
        &["session", "list", "--team", "platform"],
    ));
    assert!(
        listed.starts_with("SESSION") && listed.contains("s-1"),
        "{listed}"
    );

    // The month's report, as CSV and as a table, equals the session's cost.
    let month = this_month();
    let csv = ok(&tollgate(
        &h,
        ADMIN_TOKEN,
        &[
            "report",
            "--month",
            &month,
            "--group-by",
            "team",
            "--format",
            "csv",
        ],
    ));
    // The report writes every amount with all nine decimals.
    let cost = tollgate_core::Money::parse_usd(session["cost_usd"].as_str().unwrap())
        .unwrap()
        .to_usd_fixed();
    assert!(
        csv.starts_with("team_id,team_name,") && csv.contains(&format!(",{cost}\r\n")),
        "{csv}"
    );
    let table = ok(&tollgate(&h, ADMIN_TOKEN, &["report", "--month", &month]));
    assert!(
        table.contains("TOTAL") && table.contains("platform"),
        "{table}"
    );

    // The token's role applies: a team admin of another team is refused, naming the reason.
    h.team_key("other").await;
    let all = json_of(&tollgate(&h, ADMIN_TOKEN, &["key", "list", "--json"]));
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    let token = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/admin-tokens", h.base()),
            &[bearer(ADMIN_TOKEN)],
            json!({"name": "other-admin", "role": "team_admin", "team": "other"}),
        )
        .await
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = tollgate(&h, &token, &["key", "list", "--team", "platform"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("403") && err.contains("own team"), "{err}");
    let own = json_of(&tollgate(&h, &token, &["key", "list", "--json"]));
    assert!(
        own.as_array()
            .unwrap()
            .iter()
            .all(|k| k["team_name"] == "other"),
        "{own}"
    );

    // Without a token, --server says what is missing.
    let out = Command::new(BIN)
        .args(["team", "list", "--server", &h.base()])
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// This month as `YYYY-MM` in UTC (the report's default zone), from the clock the gateway uses.
fn this_month() -> String {
    let day = tollgate_store::ledger::utc_day(tollgate_core::time::now_ms());
    day[..7].to_string()
}

/// Without `--server` the new commands work on the database, printing the same shapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_server_the_same_commands_work_on_the_database() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    assert_eq!(call(&h, &key, "s-db").await, StatusCode::OK);
    let db = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("DATABASE_URL", &h.db.url)
            .output()
            .expect("tollgate runs")
    };
    let team = json_of(&db(&[
        "team",
        "update",
        "platform",
        "--no-cost-centre",
        "--label",
        "org=ml",
        "--json",
    ]));
    assert_eq!(team["cost_centre"], Value::Null);
    assert_eq!(team["labels"], json!({"org": "ml"}));
    let shown = ok(&db(&["team", "show", "platform"]));
    assert!(shown.contains("labels: org=ml"), "{shown}");

    let id = key.split('-').nth(1).unwrap();
    let rotated = json_of(&db(&["key", "rotate", id, "--json"]));
    assert!(rotated["secret"].as_str().unwrap().starts_with("tg-"));
    assert!(
        rotated["replaces"]["expires_at_ms"].as_i64().is_some(),
        "{rotated}"
    );

    assert!(
        eventually(Duration::from_secs(5), || async {
            let out = db(&["session", "list", "--team", "platform", "--json"]);
            out.status.success() && json_of(&out)[0]["id"] == "s-db"
        })
        .await,
        "the session never showed up"
    );
    let session = json_of(&db(&["session", "show", "s-db", "--json"]));
    assert_eq!(session["requests"], 1);
    assert_eq!(session["tool_calls"], json!({"exec_command": 1}));
}

/// Two teams sent one session id: `session show` without `--team` says so (both modes) rather
/// than pick one, and with `--team`, or as a team_admin, shows that team's calls only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_show_asks_for_the_team_when_two_teams_sent_the_id() {
    let h = Harness::start(Backend::Sqlite).await;
    let platform = h.team_key("platform").await;
    let research = h.team_key("research").await;
    assert_eq!(call(&h, &platform, "shared").await, StatusCode::OK);
    for _ in 0..2 {
        assert_eq!(call(&h, &research, "shared").await, StatusCode::OK);
    }
    h.gateway.flush_ledger().await;
    let db = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("DATABASE_URL", &h.db.url)
            .output()
            .expect("tollgate runs")
    };
    let over_http = tollgate(&h, ADMIN_TOKEN, &["session", "show", "shared", "--json"]);
    for out in [over_http, db(&["session", "show", "shared", "--json"])] {
        assert!(!out.status.success(), "an ambiguous id was shown");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("platform") && stderr.contains("research"),
            "{stderr}"
        );
    }
    let args = ["session", "show", "shared", "--team", "research", "--json"];
    for out in [tollgate(&h, ADMIN_TOKEN, &args), db(&args)] {
        let session = json_of(&out);
        assert_eq!(session["requests"], 2, "{session}");
        assert_eq!(session["tool_calls"], json!({"exec_command": 2}));
    }
    let token = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/admin-tokens", h.base()),
            &[bearer(ADMIN_TOKEN)],
            json!({"name": "platform-admin", "role": "team_admin", "team": "platform"}),
        )
        .await
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let own = json_of(&tollgate(
        &h,
        &token,
        &["session", "show", "shared", "--json"],
    ));
    assert_eq!(own["requests"], 1, "{own}");
}

/// `tollgate <args>` in a clean environment, with only what `args` says.
fn bare(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .output()
        .expect("tollgate runs")
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The mistakes people make with `--server`: the admin API's URL pasted whole (it works), a
/// URL with a query or credentials (refused, saying why, instead of a 404 from a mangled
/// path), a gateway that is not there (the cause, not just "client error (Connect)"), and a
/// wrong token (the API's 401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_careless_server_url_or_token_gets_a_message_that_says_what_is_wrong() {
    let h = Harness::start(Backend::Sqlite).await;
    h.team_key("alpha").await;
    let base = h.base();
    for server in [format!("{base}/admin/v1"), format!("{base}/admin/v1/")] {
        let out = bare(&["--server", &server, "--token", ADMIN_TOKEN, "team", "list"]);
        assert!(ok(&out).contains("alpha"), "{server}");
    }
    for server in [
        format!("{base}?team=alpha"),
        format!("{base}#admin"),
        base.replace("http://", "http://admin:pw@"),
    ] {
        let err = failed(&bare(&[
            "--server",
            &server,
            "--token",
            ADMIN_TOKEN,
            "team",
            "list",
        ]));
        assert!(err.contains("is not a server URL"), "{server}: {err}");
    }
    // A port nobody listens on (bound, then let go).
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = format!("http://{gone}");
    let err = failed(&bare(&[
        "--server",
        &server,
        "--token",
        ADMIN_TOKEN,
        "team",
        "list",
    ]));
    assert!(err.contains("cannot reach"), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");
    let err = failed(&bare(&[
        "--server",
        &base,
        "--token",
        "tga-wrong",
        "team",
        "list",
    ]));
    assert!(
        err.contains("401 invalid_admin_token") && err.contains("not valid"),
        "{err}"
    );
}
