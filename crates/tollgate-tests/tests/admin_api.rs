//! The admin API as its callers see it: who may call what (every route × every role, driven by
//! the route table dispatch uses, so a new route without an expectation fails here), key
//! rotation with a grace period, revocation reaching another gateway process, the audit log,
//! pagination, sessions, and conflicts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use tollgate::control::ROUTES;
use tollgate_tests::{
    ADMIN_TOKEN, Backend, Harness, HttpClient, Reply, bearer, both_stores, eventually,
};

/// The callers of the role matrix, in the order of each expectation row.
const CALLERS: [&str; 6] = [
    "admin",
    "team_admin (own team)",
    "team_admin (other team)",
    "finance",
    "team key",
    "no token",
];

/// Expected status per route for each of [`CALLERS`]. Written out by hand, not derived from
/// the route table's access levels: this is the specification the code is checked against.
#[rustfmt::skip]
const MATRIX: &[(&str, [u16; 6])] = &[
    ("GET /admin/v1/openapi.json",          [200, 200, 200, 200, 200, 200]),
    ("GET /admin/v1/teams",                 [200, 200, 200, 200, 401, 401]),
    ("POST /admin/v1/teams",                [201, 403, 403, 403, 401, 401]),
    ("GET /admin/v1/teams/{team}",          [200, 200, 403, 200, 401, 401]),
    ("PATCH /admin/v1/teams/{team}",        [200, 200, 403, 403, 401, 401]),
    ("GET /admin/v1/teams/{team}/keys",     [200, 200, 403, 403, 401, 401]),
    ("POST /admin/v1/teams/{team}/keys",    [201, 201, 403, 403, 401, 401]),
    ("GET /admin/v1/teams/{team}/sessions", [200, 200, 403, 200, 401, 401]),
    ("GET /admin/v1/teams/{team}/sessions/{id}", [200, 200, 403, 200, 401, 401]),
    ("GET /admin/v1/teams/{team}/sessions/{id}/calls", [200, 200, 403, 200, 401, 401]),
    ("GET /admin/v1/keys",                  [200, 200, 200, 403, 401, 401]),
    ("GET /admin/v1/keys/{id}",             [200, 200, 403, 403, 401, 401]),
    ("DELETE /admin/v1/keys/{id}",          [200, 200, 403, 403, 401, 401]),
    ("POST /admin/v1/keys/{id}/rotate",     [201, 201, 403, 403, 401, 401]),
    ("GET /admin/v1/budgets",               [200, 200, 200, 200, 401, 401]),
    ("POST /admin/v1/budgets",              [201, 201, 403, 403, 401, 401]),
    ("GET /admin/v1/budgets/{id}",          [200, 200, 403, 200, 401, 401]),
    ("PATCH /admin/v1/budgets/{id}",        [200, 200, 403, 403, 401, 401]),
    ("DELETE /admin/v1/budgets/{id}",       [200, 200, 403, 403, 401, 401]),
    ("GET /admin/v1/rate-limits",           [200, 200, 200, 403, 401, 401]),
    ("PUT /admin/v1/rate-limits",           [200, 200, 403, 403, 401, 401]),
    // A team_admin asks about its own team's session of that id: beta never sent it (404).
    // Finance reads sessions and request rows (no prompts) to trace a disputed charge.
    ("GET /admin/v1/sessions/{id}",         [200, 200, 404, 200, 401, 401]),
    ("GET /admin/v1/requests/{id}",         [200, 200, 403, 200, 401, 401]),
    ("GET /admin/v1/reports/spend",         [200, 200, 403, 200, 401, 401]),
    ("GET /admin/v1/reports/reconcile",     [200, 403, 403, 200, 401, 401]),
    ("GET /admin/v1/reports/refusals",      [200, 403, 403, 200, 401, 401]),
    ("GET /admin/v1/audit",                 [200, 403, 403, 403, 401, 401]),
    ("GET /admin/v1/admin-tokens",          [200, 403, 403, 403, 401, 401]),
    ("POST /admin/v1/admin-tokens",         [201, 403, 403, 403, 401, 401]),
    ("DELETE /admin/v1/admin-tokens/{id}",  [200, 403, 403, 403, 401, 401]),
];

/// Calls the admin API with `token` (or none); `body` is sent as JSON.
async fn send(
    h: &Harness,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let url = format!("{}{path}", h.base());
    let headers: Vec<(&str, String)> = token.map(bearer).into_iter().collect();
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    match body {
        Some(body) => h.http.json(method, &url, &headers, body).await,
        None => h.http.send(method, &url, &headers, "").await,
    }
}

/// As the bootstrap admin, expecting `status`; returns the body.
async fn as_admin(
    h: &Harness,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let reply = send(h, method, path, Some(ADMIN_TOKEN), body).await;
    assert_eq!(reply.status.as_u16(), status, "{method} {path}: {reply:?}");
    reply.json()
}

/// A small non-streamed Responses call with a team key, optionally in a session.
async fn call(http: &HttpClient, addr: SocketAddr, key: &str, session: Option<&str>) -> Reply {
    let mut headers = vec![bearer(key)];
    if let Some(s) = session {
        headers.push(("session-id", s.to_string()));
    }
    http.json(
        Method::POST,
        &format!("http://{addr}/v1/responses"),
        &headers,
        json!({"model": "gpt-4.1-mini", "input": "mock:exec hi", "max_output_tokens": 64}),
    )
    .await
}

fn key_id(secret: &str) -> String {
    secret.split('-').nth(1).unwrap().to_string()
}

/// Two teams, the callers of the matrix, and one of everything for team alpha.
struct World {
    alpha: String,
    beta: String,
    tokens: BTreeMap<&'static str, Option<String>>,
    key: String,
    budget: String,
    session: String,
    request: String,
}

async fn world(h: &Harness) -> World {
    let team_key = h.team_key("alpha").await;
    h.team_key("beta").await;
    let alpha = as_admin(h, "GET", "/admin/v1/teams/alpha", None, 200).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let beta = as_admin(h, "GET", "/admin/v1/teams/beta", None, 200).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = |body: Value| async move {
        as_admin(h, "POST", "/admin/v1/admin-tokens", Some(body), 201).await["secret"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let own = token(json!({"name": "alpha-admin", "role": "team_admin", "team": "alpha"})).await;
    let other = token(json!({"name": "beta-admin", "role": "team_admin", "team": beta})).await;
    let finance = token(json!({"name": "books", "role": "finance"})).await;
    let tokens = BTreeMap::from([
        (CALLERS[0], Some(ADMIN_TOKEN.to_string())),
        (CALLERS[1], Some(own)),
        (CALLERS[2], Some(other)),
        (CALLERS[3], Some(finance)),
        (CALLERS[4], Some(team_key.clone())),
        (CALLERS[5], None),
    ]);
    let budget = as_admin(
        h,
        "POST",
        "/admin/v1/budgets",
        Some(json!({"team": "alpha", "period": "month", "limit_usd": "100"})),
        201,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = call(&h.http, h.gateway.addr, &team_key, Some("sess-alpha")).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let request = reply.headers["x-request-id"].to_str().unwrap().to_string();
    h.ledger_row(&request).await;
    World {
        alpha,
        beta,
        tokens,
        key: key_id(&team_key),
        budget,
        session: "sess-alpha".into(),
        request,
    }
}

/// The request for `action` against team alpha's resources. Calls that use a resource up
/// (revoke, rotate, delete) get a fresh one each time, so every caller meets the same state.
async fn request_for(h: &Harness, w: &World, action: &str, n: usize) -> (String, Option<Value>) {
    let fresh_key = || async {
        let issued = as_admin(
            h,
            "POST",
            "/admin/v1/teams/alpha/keys",
            Some(json!({"name": format!("k{n}")})),
            201,
        )
        .await;
        issued["id"].as_str().unwrap().to_string()
    };
    let (path, body) = match action {
        "GET /admin/v1/openapi.json" => ("/admin/v1/openapi.json".to_string(), None),
        "GET /admin/v1/teams" => ("/admin/v1/teams".into(), None),
        "POST /admin/v1/teams" => (
            "/admin/v1/teams".into(),
            Some(json!({"name": format!("team-{n}")})),
        ),
        "GET /admin/v1/teams/{team}" => ("/admin/v1/teams/alpha".into(), None),
        "PATCH /admin/v1/teams/{team}" => (
            format!("/admin/v1/teams/{}", w.alpha),
            Some(json!({"labels": {"run": n.to_string()}})),
        ),
        "GET /admin/v1/teams/{team}/keys" => ("/admin/v1/teams/alpha/keys".into(), None),
        "POST /admin/v1/teams/{team}/keys" => (
            "/admin/v1/teams/alpha/keys".into(),
            Some(json!({"name": "matrix"})),
        ),
        "GET /admin/v1/teams/{team}/sessions" => ("/admin/v1/teams/alpha/sessions".into(), None),
        "GET /admin/v1/teams/{team}/sessions/{id}" => (
            format!("/admin/v1/teams/alpha/sessions/{}", w.session),
            None,
        ),
        "GET /admin/v1/teams/{team}/sessions/{id}/calls" => (
            format!("/admin/v1/teams/alpha/sessions/{}/calls", w.session),
            None,
        ),
        "GET /admin/v1/keys" => ("/admin/v1/keys".into(), None),
        "GET /admin/v1/keys/{id}" => (format!("/admin/v1/keys/{}", w.key), None),
        "DELETE /admin/v1/keys/{id}" => (format!("/admin/v1/keys/{}", fresh_key().await), None),
        "POST /admin/v1/keys/{id}/rotate" => (
            format!("/admin/v1/keys/{}/rotate", fresh_key().await),
            Some(json!({"grace_seconds": 60})),
        ),
        "GET /admin/v1/budgets" => ("/admin/v1/budgets".into(), None),
        // One budget per scope and period: each caller budgets a key of its own.
        "POST /admin/v1/budgets" => (
            "/admin/v1/budgets".into(),
            Some(
                json!({"team": "alpha", "key": fresh_key().await, "period": "day", "limit_usd": "5"}),
            ),
        ),
        "GET /admin/v1/budgets/{id}" => (format!("/admin/v1/budgets/{}", w.budget), None),
        "PATCH /admin/v1/budgets/{id}" => (
            format!("/admin/v1/budgets/{}", w.budget),
            Some(json!({"limit_usd": format!("{}", 100 + n)})),
        ),
        "DELETE /admin/v1/budgets/{id}" => {
            let created = as_admin(
                h,
                "POST",
                "/admin/v1/budgets",
                Some(json!({"team": "alpha", "key": fresh_key().await, "period": "week", "limit_usd": "1"})),
                201,
            )
            .await;
            (
                format!("/admin/v1/budgets/{}", created["id"].as_str().unwrap()),
                None,
            )
        }
        "GET /admin/v1/rate-limits" => ("/admin/v1/rate-limits".into(), None),
        "PUT /admin/v1/rate-limits" => (
            "/admin/v1/rate-limits".into(),
            Some(json!({"team": "alpha", "requests_per_minute": 1000 + n})),
        ),
        "GET /admin/v1/sessions/{id}" => (format!("/admin/v1/sessions/{}", w.session), None),
        "GET /admin/v1/requests/{id}" => (format!("/admin/v1/requests/{}", w.request), None),
        "GET /admin/v1/reports/spend" => (
            "/admin/v1/reports/spend?from=2020-01-01&to=2040-01-01&group_by=team&team=alpha".into(),
            None,
        ),
        "GET /admin/v1/reports/reconcile" => (
            "/admin/v1/reports/reconcile?from=2020-01-01&to=2040-01-01".into(),
            None,
        ),
        "GET /admin/v1/reports/refusals" => (
            "/admin/v1/reports/refusals?from=2020-01-01&to=2040-01-01".into(),
            None,
        ),
        "GET /admin/v1/audit" => ("/admin/v1/audit".into(), None),
        "GET /admin/v1/admin-tokens" => ("/admin/v1/admin-tokens".into(), None),
        "POST /admin/v1/admin-tokens" => (
            "/admin/v1/admin-tokens".into(),
            Some(json!({"name": format!("t{n}"), "role": "finance"})),
        ),
        "DELETE /admin/v1/admin-tokens/{id}" => {
            let created = as_admin(
                h,
                "POST",
                "/admin/v1/admin-tokens",
                Some(json!({"name": format!("gone{n}"), "role": "finance"})),
                201,
            )
            .await;
            (
                format!("/admin/v1/admin-tokens/{}", created["id"].as_str().unwrap()),
                None,
            )
        }
        other => panic!("the role matrix has no request for {other}"),
    };
    (path, body)
}

/// What a team_admin's list shows: only its own team's items.
fn team_of(item: &Value) -> Option<&str> {
    if item["id"].as_str().is_some_and(|id| id.starts_with("tm_")) {
        return item["id"].as_str();
    }
    item["team_id"].as_str()
}

#[tokio::test]
async fn every_route_answers_every_role_as_specified() {
    let h = Harness::start(Backend::Sqlite).await;
    let w = world(&h).await;
    let expected: BTreeMap<&str, [u16; 6]> = MATRIX.iter().copied().collect();
    assert_eq!(
        expected.len(),
        MATRIX.len(),
        "a route is in the matrix twice"
    );
    for route in ROUTES {
        assert!(
            expected.contains_key(route.action().as_str()),
            "{} is served but missing from the role matrix",
            route.action()
        );
    }
    for action in expected.keys() {
        assert!(
            ROUTES.iter().any(|r| r.action() == *action),
            "{action} is in the matrix but not served"
        );
    }

    let mut failures = Vec::new();
    let mut n = 0;
    for route in ROUTES {
        let action = route.action();
        for (i, caller) in CALLERS.iter().enumerate() {
            n += 1;
            let (path, body) = request_for(&h, &w, &action, n).await;
            let token = w.tokens[caller].as_deref();
            let reply = send(&h, route.method, &path, token, body).await;
            let want = expected[action.as_str()][i];
            if reply.status.as_u16() != want {
                failures.push(format!(
                    "{action} as {caller}: {} (want {want}) {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                ));
                continue;
            }
            match want {
                401 => reply.assert_error(401, "invalid_admin_token"),
                403 => {
                    reply.assert_error(403, "forbidden");
                    assert_eq!(reply.json()["error"]["type"], "permission_error");
                }
                _ => {
                    let body = reply.json();
                    assert!(body.is_object(), "{action} as {caller}: {body}");
                    // A team admin's lists hold its own team's items only.
                    let fence = match i {
                        1 => Some(w.alpha.as_str()),
                        2 => Some(w.beta.as_str()),
                        _ => None,
                    };
                    if let (Some(own), Some(items)) = (fence, body["data"].as_array()) {
                        for item in items {
                            let team = team_of(item);
                            assert!(
                                team.is_none() || team == Some(own),
                                "{action} as {caller} shows {item}"
                            );
                        }
                        if action == "GET /admin/v1/teams" {
                            assert_eq!(items.len(), 1, "{body}");
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} calls answered otherwise:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_team_admin_may_change_labels_but_not_cost_centre_or_disabled() {
    let h = Harness::start(Backend::Sqlite).await;
    h.team_key("alpha").await;
    let token = as_admin(
        &h,
        "POST",
        "/admin/v1/admin-tokens",
        Some(json!({"name": "a", "role": "team_admin", "team": "alpha"})),
        201,
    )
    .await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    for body in [json!({"cost_centre": "CC-2"}), json!({"disabled": true})] {
        let reply = send(
            &h,
            "PATCH",
            "/admin/v1/teams/alpha",
            Some(&token),
            Some(body),
        )
        .await;
        reply.assert_error(403, "forbidden");
    }
    let reply = send(
        &h,
        "PATCH",
        "/admin/v1/teams/alpha",
        Some(&token),
        Some(json!({"labels": {"org": "payments"}})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let team = reply.json();
    assert_eq!(team["labels"], json!({"org": "payments"}));
    assert_eq!(team["cost_centre"], "CC-1", "unchanged: {team}");
    // Bad labels are named, all of them.
    let reply = send(
        &h,
        "PATCH",
        "/admin/v1/teams/alpha",
        Some(ADMIN_TOKEN),
        Some(json!({"labels": {"bad name": "x", "ok": "a\u{7}b"}, "cost_centre": ""})),
    )
    .await;
    reply.assert_error(422, "invalid_fields");
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    for part in ["cost_centre:", "'bad name'", "label 'ok'"] {
        assert!(message.contains(part), "{message}");
    }
}

/// A second budget for the same scope and period would be enforced beside the first, and
/// `tollgate budget set` would change only one: refused, naming the budget to change.
#[tokio::test]
async fn a_scope_has_one_budget_per_period() {
    let h = Harness::start(Backend::Sqlite).await;
    h.team_key("alpha").await;
    let month = json!({"team": "alpha", "period": "month", "limit_usd": "10"});
    let first = as_admin(&h, "POST", "/admin/v1/budgets", Some(month.clone()), 201).await;
    let id = first["id"].as_str().unwrap();
    let again = send(
        &h,
        "POST",
        "/admin/v1/budgets",
        Some(ADMIN_TOKEN),
        Some(month),
    )
    .await;
    again.assert_error(409, "conflict");
    let message = again.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("month budget")
            && message.contains(&format!("PATCH /admin/v1/budgets/{id}")),
        "{message}"
    );
    // Another period is another budget; moving it onto the month is the same conflict.
    let day = as_admin(
        &h,
        "POST",
        "/admin/v1/budgets",
        Some(json!({"team": "alpha", "period": "day", "limit_usd": "1"})),
        201,
    )
    .await;
    let path = format!("/admin/v1/budgets/{}", day["id"].as_str().unwrap());
    send(
        &h,
        "PATCH",
        &path,
        Some(ADMIN_TOKEN),
        Some(json!({"period": "month"})),
    )
    .await
    .assert_error(409, "conflict");
    // A budget may keep its own period when it changes.
    let path = format!("/admin/v1/budgets/{id}");
    as_admin(
        &h,
        "PATCH",
        &path,
        Some(json!({"period": "month", "limit_usd": "20"})),
        200,
    )
    .await;
    let listed = as_admin(&h, "GET", "/admin/v1/budgets?team=alpha", None, 200).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2, "{listed}");
}

#[tokio::test]
async fn disabling_a_team_refuses_its_keys_at_once() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("alpha").await;
    assert_eq!(
        call(&h.http, h.gateway.addr, &key, None).await.status,
        StatusCode::OK
    );
    let team = as_admin(
        &h,
        "PATCH",
        "/admin/v1/teams/alpha",
        Some(json!({"disabled": true})),
        200,
    )
    .await;
    assert_eq!(team["disabled"], true);
    let refused = call(&h.http, h.gateway.addr, &key, None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
    as_admin(
        &h,
        "PATCH",
        "/admin/v1/teams/alpha",
        Some(json!({"disabled": false})),
        200,
    )
    .await;
    assert_eq!(
        call(&h.http, h.gateway.addr, &key, None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn during_the_grace_period_both_keys_work_and_after_it_only_the_new_one() {
    let h = Harness::start(Backend::Sqlite).await;
    let old = h.team_key("alpha").await;
    let old_id = key_id(&old);
    let before = tollgate_core::time::now_ms();
    let rotated = as_admin(
        &h,
        "POST",
        &format!("/admin/v1/keys/{old_id}/rotate"),
        Some(json!({"grace_seconds": 1})),
        201,
    )
    .await;
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(rotated["id"], key_id(&new));
    assert_eq!(
        rotated["name"], "test",
        "the new key keeps the old one's name"
    );
    assert_eq!(rotated["replaces"]["id"], old_id.as_str());
    let expiry = rotated["replaces"]["expires_at_ms"].as_i64().unwrap();
    assert!(
        (before + 1000..=tollgate_core::time::now_ms() + 1000).contains(&expiry),
        "old key expires a second after the rotation: {rotated}"
    );

    for key in [&old, &new] {
        let reply = call(&h.http, h.gateway.addr, key, None).await;
        assert_eq!(reply.status, StatusCode::OK, "during the grace: {reply:?}");
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            call(&h.http, h.gateway.addr, &old, None).await.status == StatusCode::UNAUTHORIZED
        })
        .await,
        "the old key still works after its grace period"
    );
    call(&h.http, h.gateway.addr, &old, None)
        .await
        .assert_error(401, "invalid_api_key");
    assert_eq!(
        call(&h.http, h.gateway.addr, &new, None).await.status,
        StatusCode::OK
    );

    // A revoked key cannot be rotated; an unknown one is 404.
    as_admin(
        &h,
        "DELETE",
        &format!("/admin/v1/keys/{}", key_id(&new)),
        None,
        200,
    )
    .await;
    send(
        &h,
        "POST",
        &format!("/admin/v1/keys/{}/rotate", key_id(&new)),
        Some(ADMIN_TOKEN),
        None,
    )
    .await
    .assert_error(409, "conflict");
    send(
        &h,
        "POST",
        "/admin/v1/keys/nosuchkey/rotate",
        Some(ADMIN_TOKEN),
        None,
    )
    .await
    .assert_error(404, "not_found");
    send(
        &h,
        "POST",
        &format!("/admin/v1/keys/{old_id}/rotate"),
        Some(ADMIN_TOKEN),
        Some(json!({"grace_seconds": 2_592_001})),
    )
    .await
    .assert_error(422, "invalid_fields");
}

#[tokio::test]
async fn a_revoked_key_stops_within_a_second_on_another_gateway_process() {
    let h = Harness::start(Backend::Sqlite).await;
    let other = h.replica().await;
    let key = h.team_key("alpha").await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            call(&h.http, other.addr, &key, None).await.status == StatusCode::OK
        })
        .await,
        "the replica never accepted the new key"
    );
    let revoked = as_admin(
        &h,
        "DELETE",
        &format!("/admin/v1/keys/{}", key_id(&key)),
        None,
        200,
    )
    .await;
    assert!(revoked["revoked_at_ms"].as_i64().is_some(), "{revoked}");
    let started = std::time::Instant::now();
    assert!(
        eventually(Duration::from_secs(1), || async {
            call(&h.http, other.addr, &key, None).await.status == StatusCode::UNAUTHORIZED
        })
        .await,
        "the replica still accepts the key a second after it was revoked"
    );
    assert!(started.elapsed() < Duration::from_secs(1) + Duration::from_millis(200));
    call(&h.http, other.addr, &key, None)
        .await
        .assert_error(401, "invalid_api_key");
}

both_stores!(
    each_change_is_audited_once_with_its_actor_and_the_change,
    lists_page_with_limit_and_after,
    sessions_rank_by_cost_and_show_tokens_and_tool_calls,
);

/// Every entry of the audit log, following `next_after` page by page.
async fn audit_log(h: &Harness, page: usize) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/admin/v1/audit?limit={page}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let body = as_admin(h, "GET", &path, None, 200).await;
        let data = body["data"].as_array().unwrap();
        assert!(data.len() <= page, "{body}");
        entries.extend(data.iter().cloned());
        if body["has_more"] == false {
            assert_eq!(body["next_after"], Value::Null);
            return entries;
        }
        after = Some(body["next_after"].as_str().unwrap().to_string());
    }
}

async fn each_change_is_audited_once_with_its_actor_and_the_change(backend: Backend) {
    let h = Harness::start(backend).await;
    // Changes by the bootstrap admin…
    let team = as_admin(
        &h,
        "POST",
        "/admin/v1/teams",
        Some(json!({"name": "gamma"})),
        201,
    )
    .await;
    let team_id = team["id"].as_str().unwrap();
    let tadm = as_admin(
        &h,
        "POST",
        "/admin/v1/admin-tokens",
        Some(json!({"name": "gamma-admin", "role": "team_admin", "team": "gamma"})),
        201,
    )
    .await;
    let tadm_secret = tadm["secret"].as_str().unwrap();
    // …and by a team admin.
    let by_team_admin = |method: &'static str, path: String, body: Option<Value>, status| {
        let token = tadm_secret.to_string();
        let h = &h;
        async move {
            let reply = send(h, method, &path, Some(&token), body).await;
            assert_eq!(reply.status.as_u16(), status, "{reply:?}");
            reply.json()
        }
    };
    let patched = by_team_admin(
        "PATCH",
        "/admin/v1/teams/gamma".into(),
        Some(json!({"labels": {"org": "payments"}})),
        200,
    )
    .await;
    assert_eq!(patched["labels"]["org"], "payments");
    let key = by_team_admin(
        "POST",
        "/admin/v1/teams/gamma/keys".into(),
        Some(json!({"name": "ci"})),
        201,
    )
    .await;
    let key_id = key["id"].as_str().unwrap().to_string();
    let rotated = by_team_admin("POST", format!("/admin/v1/keys/{key_id}/rotate"), None, 201).await;
    let new_key = rotated["id"].as_str().unwrap().to_string();
    by_team_admin("DELETE", format!("/admin/v1/keys/{new_key}"), None, 200).await;
    let budget = by_team_admin(
        "POST",
        "/admin/v1/budgets".into(),
        Some(json!({"team": "gamma", "period": "month", "limit_usd": "10"})),
        201,
    )
    .await;
    let budget_id = budget["id"].as_str().unwrap().to_string();
    by_team_admin(
        "PATCH",
        format!("/admin/v1/budgets/{budget_id}"),
        Some(json!({"limit_usd": "20"})),
        200,
    )
    .await;
    by_team_admin(
        "DELETE",
        format!("/admin/v1/budgets/{budget_id}"),
        None,
        200,
    )
    .await;
    by_team_admin(
        "PUT",
        "/admin/v1/rate-limits".into(),
        Some(json!({"team": "gamma", "requests_per_minute": 60})),
        200,
    )
    .await;
    let tadm_id = tadm["id"].as_str().unwrap();
    as_admin(
        &h,
        "DELETE",
        &format!("/admin/v1/admin-tokens/{tadm_id}"),
        None,
        200,
    )
    .await;
    // Refused and read-only calls are not changes.
    send(
        &h,
        "POST",
        "/admin/v1/teams",
        Some(ADMIN_TOKEN),
        Some(json!({"name": "gamma"})),
    )
    .await
    .assert_error(409, "conflict");
    send(&h, "GET", "/admin/v1/teams", Some(tadm_secret), None)
        .await
        .assert_error(401, "invalid_admin_token");
    as_admin(&h, "GET", "/admin/v1/keys", None, 200).await;

    let log = audit_log(&h, 3).await;
    let bootstrap = ("bootstrap", "admin");
    let gamma = (tadm_id, "team_admin");
    let want: [(&str, &str, (&str, &str)); 11] = [
        ("POST /admin/v1/teams", team_id, bootstrap),
        ("POST /admin/v1/admin-tokens", tadm_id, bootstrap),
        ("PATCH /admin/v1/teams/{team}", team_id, gamma),
        ("POST /admin/v1/teams/{team}/keys", &key_id, gamma),
        ("POST /admin/v1/keys/{id}/rotate", &key_id, gamma),
        ("DELETE /admin/v1/keys/{id}", &new_key, gamma),
        ("POST /admin/v1/budgets", &budget_id, gamma),
        ("PATCH /admin/v1/budgets/{id}", &budget_id, gamma),
        ("DELETE /admin/v1/budgets/{id}", &budget_id, gamma),
        ("PUT /admin/v1/rate-limits", team_id, gamma),
        ("DELETE /admin/v1/admin-tokens/{id}", tadm_id, bootstrap),
    ];
    let got: Vec<(String, String, (String, String))> = log
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
                (
                    e["actor_id"].as_str().unwrap().to_string(),
                    e["actor_role"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    let want: Vec<(String, String, (String, String))> = want
        .iter()
        .map(|(a, t, (id, role))| {
            (
                a.to_string(),
                t.to_string(),
                (id.to_string(), role.to_string()),
            )
        })
        .collect();
    // Entries are ordered by (time, id); two changes in one millisecond may come either way.
    let (mut got, mut want) = (got, want);
    got.sort();
    want.sort();
    assert_eq!(got, want, "the audit log: {log:#?}");
    for entry in &log {
        assert_eq!(entry["object"], "audit_entry");
        assert!(entry["at_ms"].as_i64().is_some());
        let who = if entry["actor_role"] == "admin" {
            "bootstrap"
        } else {
            "gamma-admin"
        };
        assert_eq!(entry["actor_name"], who, "{entry}");
    }

    // The change itself, before and after.
    let by = |action: &str| log.iter().find(|e| e["action"] == action).unwrap();
    let created = by("POST /admin/v1/teams");
    assert_eq!(created["before"], Value::Null);
    assert_eq!(created["after"]["name"], "gamma");
    let labelled = by("PATCH /admin/v1/teams/{team}");
    assert_eq!(labelled["before"]["labels"], json!({}));
    assert_eq!(labelled["after"]["labels"], json!({"org": "payments"}));
    let limit = by("PATCH /admin/v1/budgets/{id}");
    assert_eq!(limit["before"]["limit_usd"], "10.00");
    assert_eq!(limit["after"]["limit_usd"], "20.00");
    let deleted = by("DELETE /admin/v1/budgets/{id}");
    assert_eq!(deleted["before"]["id"], budget_id.as_str());
    assert_eq!(deleted["after"], Value::Null);
    let rotation = by("POST /admin/v1/keys/{id}/rotate");
    assert_eq!(rotation["before"]["expires_at_ms"], Value::Null);
    assert!(rotation["after"]["expires_at_ms"].as_i64().is_some());
    assert_eq!(rotation["after"]["replaced_by"], new_key.as_str());
    let revoked = by("DELETE /admin/v1/keys/{id}");
    assert_eq!(revoked["before"]["revoked_at_ms"], Value::Null);
    assert!(revoked["after"]["revoked_at_ms"].as_i64().is_some());
    let limits = by("PUT /admin/v1/rate-limits");
    assert_eq!(limits["before"], Value::Null);
    assert_eq!(limits["after"]["requests_per_minute"], 60);
    let token = by("POST /admin/v1/admin-tokens");
    assert!(
        !token.to_string().contains(tadm_secret),
        "the audit log must never hold a secret: {token}"
    );
    assert!(
        !by("POST /admin/v1/teams/{team}/keys")
            .to_string()
            .contains("secret")
    );
}

async fn lists_page_with_limit_and_after(backend: Backend) {
    let h = Harness::start(backend).await;
    let mut names: Vec<String> = (0..7).map(|i| format!("team-{i}")).collect();
    for name in names.iter().rev() {
        as_admin(
            &h,
            "POST",
            "/admin/v1/teams",
            Some(json!({"name": name})),
            201,
        )
        .await;
    }
    for i in 0..5 {
        as_admin(
            &h,
            "POST",
            "/admin/v1/teams/team-0/keys",
            Some(json!({"name": format!("k{i}")})),
            201,
        )
        .await;
    }
    names.sort();
    for (list, want) in [
        ("/admin/v1/teams", names.clone()),
        (
            "/admin/v1/teams/team-0/keys",
            (0..5).map(|i| format!("k{i}")).collect(),
        ),
    ] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("{list}?limit=2");
            if let Some(a) = &after {
                path.push_str(&format!("&after={a}"));
            }
            let page = as_admin(&h, "GET", &path, None, 200).await;
            pages += 1;
            assert_eq!(page["object"], "list");
            let data = page["data"].as_array().unwrap();
            seen.extend(data.iter().map(|t| t["name"].as_str().unwrap().to_string()));
            if page["has_more"] == false {
                assert_eq!(page["next_after"], Value::Null, "{page}");
                break;
            }
            assert_eq!(data.len(), 2, "{page}");
            after = Some(page["next_after"].as_str().unwrap().to_string());
        }
        assert_eq!(seen, want, "{list}: every item once, in order");
        assert_eq!(pages, want.len().div_ceil(2), "{list}");
    }
    // Defaults and bounds.
    let all = as_admin(&h, "GET", "/admin/v1/teams", None, 200).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 7);
    assert_eq!(all["has_more"], false);
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "limit=2&limit=3",
        "colour=red",
    ] {
        send(
            &h,
            "GET",
            &format!("/admin/v1/teams?{bad}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await
        .assert_error(422, "invalid_fields");
    }
    send(
        &h,
        "GET",
        "/admin/v1/audit?after=nonsense",
        Some(ADMIN_TOKEN),
        None,
    )
    .await
    .assert_error(422, "invalid_fields");
}

async fn sessions_rank_by_cost_and_show_tokens_and_tool_calls(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("alpha").await;
    for (session, calls) in [("cheap", 1), ("dear", 3)] {
        for _ in 0..calls {
            let reply = call(&h.http, h.gateway.addr, &key, Some(session)).await;
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
            let id = reply.headers["x-request-id"].to_str().unwrap().to_string();
            h.ledger_row(&id).await;
        }
    }
    let top = as_admin(
        &h,
        "GET",
        "/admin/v1/teams/alpha/sessions?limit=1",
        None,
        200,
    )
    .await;
    let data = top["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{top}");
    assert_eq!(data[0]["id"], "dear");
    assert_eq!(data[0]["requests"], 3);
    assert_eq!(top["has_more"], true);
    let after = top["next_after"].as_str().unwrap();
    let rest = as_admin(
        &h,
        "GET",
        &format!("/admin/v1/teams/alpha/sessions?after={after}"),
        None,
        200,
    )
    .await;
    assert_eq!(rest["data"][0]["id"], "cheap", "{rest}");
    assert_eq!(rest["has_more"], false);
    let dear = data[0]["cost_nano_usd"].as_i64().unwrap();
    let cheap = rest["data"][0]["cost_nano_usd"].as_i64().unwrap();
    assert!(dear > cheap && cheap > 0, "{dear} {cheap}");
    // A period that ended before the sessions began has none.
    let none = as_admin(
        &h,
        "GET",
        "/admin/v1/teams/alpha/sessions?from=2020-01-01&to=2020-02-01",
        None,
        200,
    )
    .await;
    assert_eq!(none["data"], json!([]));
    send(
        &h,
        "GET",
        "/admin/v1/teams/alpha/sessions?from=2020-02-01&to=2020-01-01",
        Some(ADMIN_TOKEN),
        None,
    )
    .await
    .assert_error(422, "invalid_fields");

    let one = as_admin(&h, "GET", "/admin/v1/sessions/dear", None, 200).await;
    assert_eq!(one["requests"], 3);
    assert_eq!(one["tool_calls"], json!({"exec_command": 3}), "{one}");
    assert_eq!(one["cost_nano_usd"].as_i64(), Some(dear));
    assert!(one["input_tokens"].as_i64().unwrap() > 0, "{one}");
    send(
        &h,
        "GET",
        "/admin/v1/sessions/nope",
        Some(ADMIN_TOKEN),
        None,
    )
    .await
    .assert_error(404, "not_found");
}

#[tokio::test]
async fn conflicts_unknown_ids_and_bad_input_have_their_statuses() {
    let h = Harness::start(Backend::Sqlite).await;
    as_admin(
        &h,
        "POST",
        "/admin/v1/teams",
        Some(json!({"name": "alpha"})),
        201,
    )
    .await;
    let dup = send(
        &h,
        "POST",
        "/admin/v1/teams",
        Some(ADMIN_TOKEN),
        Some(json!({"name": "alpha"})),
    )
    .await;
    dup.assert_error(409, "conflict");
    assert!(
        dup.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alpha")
    );
    for path in [
        "/admin/v1/teams/nope",
        "/admin/v1/keys/nope",
        "/admin/v1/budgets/nope",
        "/admin/v1/sessions/nope",
        "/admin/v1/requests/nope",
    ] {
        send(&h, "GET", path, Some(ADMIN_TOKEN), None)
            .await
            .assert_error(404, "not_found");
    }
    send(
        &h,
        "DELETE",
        "/admin/v1/admin-tokens/nope",
        Some(ADMIN_TOKEN),
        None,
    )
    .await
    .assert_error(404, "not_found");
    let bad = send(
        &h,
        "POST",
        "/admin/v1/admin-tokens",
        Some(ADMIN_TOKEN),
        Some(json!({"name": "bad name", "role": "team_admin"})),
    )
    .await;
    bad.assert_error(422, "invalid_fields");
    let message = bad.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("name:") && message.contains("team:"),
        "{message}"
    );
    // A method a path does not take is 405 and says which it does.
    let wrong = send(&h, "PUT", "/admin/v1/teams", Some(ADMIN_TOKEN), None).await;
    wrong.assert_error(405, "method_not_allowed");
    assert_eq!(wrong.headers["allow"], "GET, POST");
    // Revoking the admin token in use works for that call, and it fails from the next.
    let token = as_admin(
        &h,
        "POST",
        "/admin/v1/admin-tokens",
        Some(json!({"name": "short-lived", "role": "admin"})),
        201,
    )
    .await;
    let (id, secret) = (
        token["id"].as_str().unwrap(),
        token["secret"].as_str().unwrap(),
    );
    let revoked = send(
        &h,
        "DELETE",
        &format!("/admin/v1/admin-tokens/{id}"),
        Some(secret),
        None,
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    assert!(revoked.json()["revoked_at_ms"].as_i64().is_some());
    send(&h, "GET", "/admin/v1/teams", Some(secret), None)
        .await
        .assert_error(401, "invalid_admin_token");
}

/// A NUL anywhere in a request (`%00` in a path or query, `\u0000` in a body) is the caller's
/// mistake, answered as one: Postgres cannot compare text with a NUL, and before this was
/// checked every such request reached it and came back as a 503 "database unavailable",
/// which tells clients to retry and wakes whoever watches the error log.
#[tokio::test]
async fn a_nul_in_an_id_query_or_body_is_refused_as_a_bad_request_not_a_database_outage() {
    let h = Harness::start(Backend::Postgres).await;
    let w = world(&h).await;
    let own = w.tokens[CALLERS[1]].clone().unwrap();
    for path in [
        "/admin/v1/teams/%00",
        "/admin/v1/teams/alpha%00/keys",
        "/admin/v1/keys/%00",
        "/admin/v1/budgets/%00",
        "/admin/v1/sessions/%00",
        "/admin/v1/requests/%00",
        "/admin/v1/teams/alpha/sessions/%00",
    ] {
        for token in [ADMIN_TOKEN, own.as_str()] {
            send(&h, "GET", path, Some(token), None)
                .await
                .assert_error(404, "unknown_url");
        }
    }
    send(
        &h,
        "DELETE",
        "/admin/v1/admin-tokens/%00",
        Some(ADMIN_TOKEN),
        None,
    )
    .await
    .assert_error(404, "unknown_url");
    for path in [
        "/admin/v1/keys?team=%00",
        "/admin/v1/budgets?team=alpha%00",
        "/admin/v1/sessions/sess-alpha?team=%00",
        "/admin/v1/reports/spend?team=%00",
        "/admin/v1/audit?after=1.%00",
        "/admin/v1/teams/alpha/sessions?after=1.%00",
    ] {
        let reply = send(&h, "GET", path, Some(ADMIN_TOKEN), None).await;
        reply.assert_error(422, "invalid_fields");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains("NUL"), "{path}: {message}");
    }
    let bodies = [
        ("PUT", "/admin/v1/rate-limits", json!({"team": "\0"})),
        (
            "POST",
            "/admin/v1/budgets",
            json!({"team": "alpha", "key": "k\0", "period": "day", "limit_usd": "1"}),
        ),
        (
            "POST",
            "/admin/v1/admin-tokens",
            json!({"name": "x", "role": "team_admin", "team": "alpha\0"}),
        ),
    ];
    for (method, path, body) in bodies {
        let reply = send(&h, method, path, Some(ADMIN_TOKEN), Some(body)).await;
        reply.assert_error(422, "invalid_fields");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains("NUL"), "{method} {path}: {message}");
    }
    // Nothing was changed, so nothing was audited; and the API answers as before.
    let entries = audit_log(&h, 100).await;
    assert!(
        entries
            .iter()
            .all(|e| !e["action"].as_str().unwrap().contains("rate-limits")),
        "{entries:?}"
    );
    let team = as_admin(
        &h,
        "GET",
        &format!("/admin/v1/teams/{}", w.alpha),
        None,
        200,
    )
    .await;
    assert_eq!(team["name"], "alpha");
}

/// A body over the admin API's fixed 1 MiB is refused with a message about that limit, not
/// about the proxy's `limits.max_body_bytes`, which an operator would raise in vain.
#[tokio::test]
async fn an_oversized_admin_body_names_the_admin_apis_own_limit() {
    let h = Harness::start(Backend::Sqlite).await;
    let big = json!({"name": "big", "cost_centre": "x".repeat(2 << 20)});
    let reply = send(&h, "POST", "/admin/v1/teams", Some(ADMIN_TOKEN), Some(big)).await;
    reply.assert_error(413, "request_too_large");
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("admin API's limit of 1048576 bytes")
            && !message.contains("max_body_bytes"),
        "{message}"
    );
    as_admin(&h, "GET", "/admin/v1/teams/big", None, 404).await;
}
