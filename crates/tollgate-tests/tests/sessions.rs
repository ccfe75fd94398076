//! A session is (team, session id): the id is the client's choice, so a team that sends another
//! team's session id gets a session of its own. Neither team's cap, view, spend or loop signal
//! ever sees the other's calls.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use tollgate_core::Money;
use tollgate_mock::MockOptions;
use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, Reply, bearer, both_stores, eventually};

/// The id both teams' clients send.
const SHARED: &str = "019ab6a2-shared-session";

/// A small non-streamed Responses call in `session`; `mock:exec` makes the mock answer with an
/// `exec_command` tool call.
async fn call(h: &Harness, key: &str, session: &str, input: &str) -> Reply {
    h.http
        .json(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(key), ("session-id", session.to_string())],
            json!({"model": "gpt-4.1-mini", "input": input, "max_output_tokens": 64}),
        )
        .await
}

/// A call that must go through; returns its ledger row once the writer has landed it.
async fn ok_call(h: &Harness, key: &str, session: &str, input: &str) -> Value {
    let reply = call(h, key, session, input).await;
    assert_eq!(reply.status, StatusCode::OK, "{session}: {reply:?}");
    let id = reply.headers["x-request-id"].to_str().unwrap().to_string();
    h.ledger_row(&id).await
}

async fn get(h: &Harness, token: &str, path: &str) -> Reply {
    let url = format!("{}{path}", h.base());
    h.http.send(Method::GET, &url, &[bearer(token)], "").await
}

async fn get_ok(h: &Harness, token: &str, path: &str) -> Value {
    let reply = get(h, token, path).await;
    assert_eq!(reply.status, StatusCode::OK, "GET {path}: {reply:?}");
    reply.json()
}

async fn team_admin(h: &Harness, team: &str) -> String {
    let reply = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/admin-tokens", h.base()),
            &[bearer(ADMIN_TOKEN)],
            json!({"name": format!("{team}-admin"), "role": "team_admin", "team": team}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.json()["secret"].as_str().unwrap().to_string()
}

fn cost(rows: &[Value]) -> i64 {
    rows.iter().map(|r| r["cost_nanos"].as_i64().unwrap()).sum()
}

async fn a_reused_session_id_is_each_teams_own_session(backend: Backend) {
    let h = Harness::start(backend).await;
    let (alpha_key, beta_key) = (h.team_key("alpha").await, h.team_key("beta").await);
    h.team_key("gamma").await;
    // Beta starts the session; alpha's client later sends the same id, with tool calls.
    let mut beta_rows = Vec::new();
    for _ in 0..2 {
        beta_rows.push(ok_call(&h, &beta_key, SHARED, "hi").await);
    }
    let mut alpha_rows = Vec::new();
    for _ in 0..3 {
        alpha_rows.push(ok_call(&h, &alpha_key, SHARED, "mock:exec hi").await);
    }
    ok_call(&h, &alpha_key, "alpha-only", "hi").await;
    let (alpha_admin, beta_admin, gamma_admin) = (
        team_admin(&h, "alpha").await,
        team_admin(&h, "beta").await,
        team_admin(&h, "gamma").await,
    );

    // Each team_admin sees its own team's session under the id, and only its own calls.
    let path = format!("/admin/v1/sessions/{SHARED}");
    let beta = get_ok(&h, &beta_admin, &path).await;
    assert_eq!(beta["requests"], 2, "{beta}");
    assert_eq!(
        beta["cost_nano_usd"].as_i64(),
        Some(cost(&beta_rows)),
        "{beta}"
    );
    assert_eq!(beta["tool_calls"], json!({}), "{beta}");
    let alpha = get_ok(&h, &alpha_admin, &path).await;
    assert_eq!(alpha["requests"], 3, "{alpha}");
    assert_eq!(
        alpha["cost_nano_usd"].as_i64(),
        Some(cost(&alpha_rows)),
        "{alpha}"
    );
    assert_eq!(alpha["tool_calls"], json!({"exec_command": 3}), "{alpha}");
    assert_ne!(alpha["team_id"], beta["team_id"]);
    // The team route answers the same.
    let by_route = get_ok(
        &h,
        &beta_admin,
        &format!("/admin/v1/teams/beta/sessions/{SHARED}"),
    )
    .await;
    assert_eq!(by_route, beta);

    // A team that never sent the id: 404, not a hint that someone else did.
    for path in [
        path.clone(),
        format!("/admin/v1/teams/gamma/sessions/{SHARED}"),
    ] {
        let reply = get(&h, &gamma_admin, &path).await;
        reply.assert_error(404, "not_found");
    }
    get(&h, &beta_admin, "/admin/v1/sessions/alpha-only")
        .await
        .assert_error(404, "not_found");
    // Naming another team is refused for what it is (the team), as on every team route.
    get(&h, &beta_admin, &format!("{path}?team=alpha"))
        .await
        .assert_error(403, "forbidden");

    // An admin naming no team: one team has the id — unambiguous; two — 409 naming them.
    let only = get_ok(&h, ADMIN_TOKEN, "/admin/v1/sessions/alpha-only").await;
    assert_eq!(only["requests"], 1);
    let ambiguous = get(&h, ADMIN_TOKEN, &path).await;
    ambiguous.assert_error(409, "conflict");
    let message = ambiguous.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("alpha") && message.contains("beta"),
        "{message}"
    );
    assert_eq!(
        get_ok(&h, ADMIN_TOKEN, &format!("{path}?team=beta")).await,
        beta
    );
    assert_eq!(
        get_ok(
            &h,
            ADMIN_TOKEN,
            &format!("/admin/v1/teams/alpha/sessions/{SHARED}")
        )
        .await,
        alpha
    );
    get(&h, ADMIN_TOKEN, &format!("{path}?tem=beta"))
        .await
        .assert_error(422, "invalid_fields");

    // Beta's session list still has the session, with beta's calls only.
    let list = get_ok(&h, &beta_admin, "/admin/v1/teams/beta/sessions").await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{list}");
    assert_eq!(data[0]["id"], SHARED);
    assert_eq!(data[0]["requests"], 2);
    assert_eq!(data[0]["cost_nano_usd"].as_i64(), Some(cost(&beta_rows)));
    let list = get_ok(&h, &alpha_admin, "/admin/v1/teams/alpha/sessions").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");

    // Each team's session spend is its own ledger rows, in the spend report too.
    let report = get_ok(
        &h,
        ADMIN_TOKEN,
        "/admin/v1/reports/spend?from=2020-01-01&to=2100-01-01&group_by=team,session",
    )
    .await;
    let rows = report["data"].as_array().unwrap();
    for (team, id, spent) in [
        (&beta["team_id"], SHARED, cost(&beta_rows)),
        (&alpha["team_id"], SHARED, cost(&alpha_rows)),
    ] {
        let row = rows
            .iter()
            .find(|r| &r["team_id"] == team && r["session_id"] == id)
            .unwrap_or_else(|| panic!("no {team} {id} in {report}"));
        assert_eq!(row["cost_nano_usd"].as_i64(), Some(spent), "{row}");
    }

    // The rollups agree with the ledger, per team and session.
    let reconciled = get_ok(
        &h,
        ADMIN_TOKEN,
        "/admin/v1/reports/reconcile?from=2020-01-01&to=2100-01-01",
    )
    .await;
    assert_eq!(reconciled["clean"], true, "{reconciled}");
    assert_eq!(reconciled["sessions_checked"], 3, "{reconciled}");
}

async fn another_teams_calls_never_spend_a_session_cap(backend: Backend) {
    let h = Harness::start(backend).await;
    let (alpha_key, beta_key) = (h.team_key("alpha").await, h.team_key("beta").await);
    let beta_id = get_ok(&h, ADMIN_TOKEN, "/admin/v1/teams/beta").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let one = cost(&[ok_call(&h, &beta_key, "warm-up", "hi").await]);
    // Room for beta's session to go on for a while (estimates are ~5× a call's cost).
    let cap = 12 * one;
    let budget = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/budgets", h.base()),
            &[bearer(ADMIN_TOKEN)],
            json!({"team": "beta", "period": "month", "limit_usd": "1000.00",
                "session_cap_usd": Money(cap).to_usd_string()}),
        )
        .await;
    assert_eq!(budget.status, StatusCode::CREATED, "{budget:?}");
    let beta_first = ok_call(&h, &beta_key, SHARED, "hi").await;
    // Alpha (no cap) spends far past beta's cap under beta's session id.
    let mut alpha_spent = 0;
    while alpha_spent <= 2 * cap {
        alpha_spent += cost(&[ok_call(&h, &alpha_key, SHARED, "hi").await]);
    }
    // Every replica learns session costs from the sessions rollup: wait until this one has
    // read beta's session back from it.
    let observed = eventually(Duration::from_secs(10), || async {
        h.gateway
            .budgets
            .session_spend(&beta_id, SHARED)
            .is_some_and(|s| s.db > 0)
    })
    .await;
    assert!(
        observed,
        "the budget sync never read beta's session from the rollup"
    );
    let spend = h.gateway.budgets.session_spend(&beta_id, SHARED).unwrap();
    assert_eq!(
        spend.db,
        cost(&[beta_first]),
        "beta's session cost is beta's calls only"
    );
    let next = call(&h, &beta_key, SHARED, "hi").await;
    assert_eq!(
        next.status,
        StatusCode::OK,
        "alpha's calls spent beta's cap: {next:?}"
    );
}

async fn a_looping_session_of_one_team_does_not_stop_another_teams_session(backend: Backend) {
    let h = Harness::start_custom(backend, MockOptions::default(), |c| {
        c.telemetry.loop_exec_calls = 3;
        c.telemetry.loop_window_secs = 600;
        c.telemetry.loop_refuse = true;
    })
    .await;
    let (alpha_key, beta_key) = (h.team_key("alpha").await, h.team_key("beta").await);
    ok_call(&h, &beta_key, SHARED, "mock:exec hi").await;
    for _ in 0..3 {
        ok_call(&h, &alpha_key, SHARED, "mock:exec hi").await;
    }
    let stopped = call(&h, &alpha_key, SHARED, "hi").await;
    stopped.assert_error(429, "usage_limit_reached");
    let message = stopped.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("loop"), "{message}");
    // Beta's session of the same id is beta's: one shell call so far, and it goes on.
    ok_call(&h, &beta_key, SHARED, "mock:exec hi").await;
    ok_call(&h, &beta_key, SHARED, "hi").await;
}

both_stores!(
    a_reused_session_id_is_each_teams_own_session,
    another_teams_calls_never_spend_a_session_cap,
    a_looping_session_of_one_team_does_not_stop_another_teams_session,
);
