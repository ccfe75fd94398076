//! The admin API's OpenAPI document (`crates/tollgate/src/admin/openapi.json`, served at
//! `/admin/v1/openapi.json`) is kept true three ways: its paths and methods equal the route
//! table dispatch uses (`tollgate::control::ROUTES`), exactly; real responses from every route,
//! errors included, validate against its schemas (Python `jsonschema`, Draft 2020-12, as
//! OpenAPI 3.1 specifies); and schemathesis fuzzes a running gateway from it with every check
//! on. `tests/clients/setup.sh` installs schemathesis (pinned; jsonschema comes with it) into
//! its venv; a missing tool fails the test with the way to install it. Nothing is skipped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use tollgate::control::{OPENAPI_JSON, ROUTES};
use tollgate_tests::clients::venv_bin;
use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, Reply, bearer};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn document() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
}

/// `(METHOD, path)` of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn the_document_lists_exactly_the_routes_dispatch_serves() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.pattern.to_string()))
        .collect();
    let listed = documented(&doc);
    let undocumented: Vec<_> = served.difference(&listed).collect();
    let unserved: Vec<_> = listed.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not documented: {undocumented:?}\ndocumented but not served: {unserved:?}"
    );
    assert_eq!(served.len(), ROUTES.len(), "a route is in ROUTES twice");

    // Every operation says who may call it, names its statuses, and every authenticated one
    // documents 401, 403 and 503; every one with a body documents 400, 413 and 422.
    for route in ROUTES {
        let op = &doc["paths"][route.pattern][route.method.to_lowercase()];
        let what = route.action();
        assert!(op["operationId"].is_string(), "{what}: operationId");
        let statuses = op["responses"].as_object().expect("responses");
        let public = op["security"] == json!([]);
        assert_eq!(
            public,
            route.access == tollgate::control::routes::Access::Public,
            "{what}: security"
        );
        if !public {
            assert!(
                op["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("Roles:")),
                "{what}: roles"
            );
            for status in ["401", "403", "503"] {
                assert!(statuses.contains_key(status), "{what}: {status}");
            }
        }
        if op.get("requestBody").is_some() {
            for status in ["400", "413", "422"] {
                assert!(statuses.contains_key(status), "{what}: {status}");
            }
        }
        let success = if route.method == "POST" { "201" } else { "200" };
        assert!(statuses.contains_key(success), "{what}: {success}");
    }
}

/// One real exchange, to validate against the document.
struct Sample {
    method: &'static str,
    pattern: &'static str,
    reply: Reply,
}

struct Caller<'a> {
    h: &'a Harness,
    samples: Vec<Sample>,
}

impl Caller<'_> {
    /// Calls `path` (concrete) as `token`, keeps the reply as a sample of route `pattern`.
    async fn call(
        &mut self,
        method: &'static str,
        pattern: &'static str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let url = format!("{}{path}", self.h.base());
        let headers: Vec<(&str, String)> = token.map(bearer).into_iter().collect();
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = match body {
            Some(body) => self.h.http.json(m, &url, &headers, body).await,
            None => self.h.http.send(m, &url, &headers, "").await,
        };
        let value = if reply.headers["content-type"] == "application/json" {
            reply.json()
        } else {
            Value::Null
        };
        self.samples.push(Sample {
            method,
            pattern,
            reply,
        });
        value
    }
}

/// Data for every route: a team with a key, a budget, a rate limit, and one metered call in a
/// session (its request id and session id), through the real gateway and mock upstream.
struct Seeded {
    key_id: String,
    budget_id: String,
    session_id: String,
    request_id: String,
}

async fn seed(h: &Harness) -> Seeded {
    let secret = h.team_key("alpha").await;
    let key_id = secret.split('-').nth(1).unwrap().to_string();
    let admin = [bearer(ADMIN_TOKEN)];
    let budget = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/budgets", h.base()),
            &admin,
            json!({"team": "alpha", "period": "month", "limit_usd": "100"}),
        )
        .await;
    assert_eq!(budget.status, StatusCode::CREATED, "{budget:?}");
    let session_id = "sess-openapi".to_string();
    let call = h
        .http
        .json(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(&secret), ("session-id", session_id.clone())],
            json!({"model": "gpt-4.1-mini", "input": "mock:exec hi", "max_output_tokens": 64}),
        )
        .await;
    assert_eq!(call.status, StatusCode::OK, "{call:?}");
    let request_id = call.headers["x-request-id"].to_str().unwrap().to_string();
    h.ledger_row(&request_id).await; // the ledger writer has landed it, and its rollups
    Seeded {
        key_id,
        budget_id: budget.json()["id"].as_str().unwrap().to_string(),
        session_id,
        request_id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_of_every_route_match_the_documented_schemas() {
    let h = Harness::start(Backend::Sqlite).await;
    let s = seed(&h).await;
    let mut c = Caller {
        h: &h,
        samples: Vec::new(),
    };
    let a = Some(ADMIN_TOKEN);
    let team_admin = c
        .call(
            "POST",
            "/admin/v1/admin-tokens",
            "/admin/v1/admin-tokens",
            a,
            Some(json!({"name": "alpha-admin", "role": "team_admin", "team": "alpha"})),
        )
        .await;
    let team_admin = team_admin["secret"].as_str().unwrap().to_string();
    let beta = c
        .call(
            "POST",
            "/admin/v1/teams",
            "/admin/v1/teams",
            a,
            Some(json!({"name": "beta", "cost_centre": "CC-9"})),
        )
        .await;
    let beta = beta["id"].as_str().unwrap().to_string();

    // Successes, one or more per route.
    c.call(
        "GET",
        "/admin/v1/openapi.json",
        "/admin/v1/openapi.json",
        None,
        None,
    )
    .await;
    c.call("GET", "/admin/v1/teams", "/admin/v1/teams?limit=1", a, None)
        .await;
    c.call(
        "GET",
        "/admin/v1/teams/{team}",
        "/admin/v1/teams/alpha",
        a,
        None,
    )
    .await;
    c.call(
        "PATCH",
        "/admin/v1/teams/{team}",
        &format!("/admin/v1/teams/{beta}"),
        a,
        Some(json!({"labels": {"org": "payments"}, "cost_centre": null, "disabled": true})),
    )
    .await;
    c.call(
        "GET",
        "/admin/v1/teams/{team}/keys",
        "/admin/v1/teams/alpha/keys",
        a,
        None,
    )
    .await;
    let issued = c
        .call(
            "POST",
            "/admin/v1/teams/{team}/keys",
            "/admin/v1/teams/alpha/keys",
            a,
            Some(json!({"name": "spare", "allowed_models": ["gpt-5*"]})),
        )
        .await;
    let spare = issued["id"].as_str().unwrap().to_string();
    c.call(
        "GET",
        "/admin/v1/teams/{team}/sessions",
        "/admin/v1/teams/alpha/sessions?from=2020-01-01",
        a,
        None,
    )
    .await;
    c.call("GET", "/admin/v1/keys", "/admin/v1/keys", a, None)
        .await;
    c.call(
        "GET",
        "/admin/v1/keys/{id}",
        &format!("/admin/v1/keys/{}", s.key_id),
        a,
        None,
    )
    .await;
    c.call(
        "POST",
        "/admin/v1/keys/{id}/rotate",
        &format!("/admin/v1/keys/{spare}/rotate"),
        a,
        Some(json!({"grace_seconds": 60})),
    )
    .await;
    c.call(
        "DELETE",
        "/admin/v1/keys/{id}",
        &format!("/admin/v1/keys/{spare}"),
        a,
        None,
    )
    .await;
    c.call("GET", "/admin/v1/budgets", "/admin/v1/budgets", a, None)
        .await;
    let budget = c
        .call(
            "POST",
            "/admin/v1/budgets",
            "/admin/v1/budgets",
            a,
            Some(json!({"team": "alpha", "key": s.key_id, "period": "day", "limit_usd": "5"})),
        )
        .await;
    let key_budget = budget["id"].as_str().unwrap().to_string();
    let b = format!("/admin/v1/budgets/{}", s.budget_id);
    c.call("GET", "/admin/v1/budgets/{id}", &b, a, None).await;
    c.call(
        "PATCH",
        "/admin/v1/budgets/{id}",
        &b,
        a,
        Some(json!({"soft_ratio": 0.5, "session_cap_usd": "2.50", "reset": true})),
    )
    .await;
    c.call(
        "DELETE",
        "/admin/v1/budgets/{id}",
        &format!("/admin/v1/budgets/{key_budget}"),
        a,
        None,
    )
    .await;
    c.call(
        "PUT",
        "/admin/v1/rate-limits",
        "/admin/v1/rate-limits",
        a,
        Some(json!({"team": "alpha", "requests_per_minute": 600})),
    )
    .await;
    c.call(
        "GET",
        "/admin/v1/rate-limits",
        "/admin/v1/rate-limits",
        a,
        None,
    )
    .await;
    let session = c
        .call(
            "GET",
            "/admin/v1/sessions/{id}",
            &format!("/admin/v1/sessions/{}", s.session_id),
            a,
            None,
        )
        .await;
    assert_eq!(session["requests"], 1, "{session}");
    let team_session = c
        .call(
            "GET",
            "/admin/v1/teams/{team}/sessions/{id}",
            &format!("/admin/v1/teams/alpha/sessions/{}", s.session_id),
            a,
            None,
        )
        .await;
    assert_eq!(team_session, session);
    let calls = c
        .call(
            "GET",
            "/admin/v1/teams/{team}/sessions/{id}/calls",
            &format!("/admin/v1/teams/alpha/sessions/{}/calls", s.session_id),
            a,
            None,
        )
        .await;
    assert_eq!(
        calls["data"][0]["request_id"],
        s.request_id.as_str(),
        "{calls}"
    );
    c.call(
        "GET",
        "/admin/v1/requests/{id}",
        &format!("/admin/v1/requests/{}", s.request_id),
        a,
        None,
    )
    .await;
    for query in [
        "from=2020-01-01&to=2040-01-01&group_by=team,model",
        "from=2020-01-01&to=2040-01-01&format=csv",
    ] {
        c.call(
            "GET",
            "/admin/v1/reports/spend",
            &format!("/admin/v1/reports/spend?{query}"),
            a,
            None,
        )
        .await;
    }
    c.call(
        "GET",
        "/admin/v1/reports/reconcile",
        "/admin/v1/reports/reconcile?from=2020-01-01&to=2040-01-01",
        a,
        None,
    )
    .await;
    c.call(
        "GET",
        "/admin/v1/reports/refusals",
        "/admin/v1/reports/refusals?from=2020-01-01&to=2040-01-01",
        a,
        None,
    )
    .await;
    c.call("GET", "/admin/v1/audit", "/admin/v1/audit?limit=2", a, None)
        .await;
    let tokens = c
        .call(
            "GET",
            "/admin/v1/admin-tokens",
            "/admin/v1/admin-tokens",
            a,
            None,
        )
        .await;
    let finance = c
        .call(
            "POST",
            "/admin/v1/admin-tokens",
            "/admin/v1/admin-tokens",
            a,
            Some(json!({"name": "books", "role": "finance"})),
        )
        .await;
    assert_eq!(tokens["data"].as_array().unwrap().len(), 2, "{tokens}");
    c.call(
        "DELETE",
        "/admin/v1/admin-tokens/{id}",
        &format!("/admin/v1/admin-tokens/{}", finance["id"].as_str().unwrap()),
        a,
        None,
    )
    .await;

    // Errors: each status the document promises, from a real call.
    let t = Some(team_admin.as_str());
    c.call("GET", "/admin/v1/teams", "/admin/v1/teams", None, None)
        .await;
    c.call(
        "GET",
        "/admin/v1/teams/{team}",
        &format!("/admin/v1/teams/{beta}"),
        t,
        None,
    )
    .await;
    c.call("GET", "/admin/v1/audit", "/admin/v1/audit", t, None)
        .await;
    c.call(
        "GET",
        "/admin/v1/keys/{id}",
        "/admin/v1/keys/nosuchkey",
        a,
        None,
    )
    .await;
    c.call(
        "POST",
        "/admin/v1/teams",
        "/admin/v1/teams",
        a,
        Some(json!({"name": "alpha"})),
    )
    .await;
    c.call(
        "POST",
        "/admin/v1/teams",
        "/admin/v1/teams",
        a,
        Some(json!({"name": "tm_x", "cost_centre": ""})),
    )
    .await;
    c.call(
        "POST",
        "/admin/v1/budgets",
        "/admin/v1/budgets",
        a,
        Some(json!({"team": "alpha", "colour": "red"})),
    )
    .await;
    c.call("GET", "/admin/v1/keys", "/admin/v1/keys?limit=0", a, None)
        .await;
    c.call(
        "POST",
        "/admin/v1/keys/{id}/rotate",
        &format!("/admin/v1/keys/{spare}/rotate"),
        a,
        None,
    )
    .await;

    let samples = std::mem::take(&mut c.samples);
    let expected_statuses: BTreeSet<(u16, &str)> = [
        (401, "GET /admin/v1/teams"),
        (403, "GET /admin/v1/teams/{team}"),
        (403, "GET /admin/v1/audit"),
        (404, "GET /admin/v1/keys/{id}"),
        (409, "POST /admin/v1/teams"),
        (422, "POST /admin/v1/teams"),
        (400, "POST /admin/v1/budgets"),
        (422, "GET /admin/v1/keys"),
        (409, "POST /admin/v1/keys/{id}/rotate"),
    ]
    .into_iter()
    .collect();
    let got: BTreeSet<(u16, String)> = samples
        .iter()
        .map(|s| {
            (
                s.reply.status.as_u16(),
                format!("{} {}", s.method, s.pattern),
            )
        })
        .collect();
    for (status, what) in &expected_statuses {
        assert!(
            got.contains(&(*status, what.to_string())),
            "no {status} sample from {what}: {got:?}"
        );
    }
    let served: BTreeSet<String> = samples
        .iter()
        .filter(|s| s.reply.status.is_success())
        .map(|s| format!("{} {}", s.method, s.pattern))
        .collect();
    for route in ROUTES {
        assert!(
            served.contains(&route.action()),
            "no success sample from {}",
            route.action()
        );
    }
    validate(&samples);
}

/// Validates every sample against the document in Python's jsonschema (Draft 2020-12): the
/// status must be documented for the operation, with the reply's content type, and the body
/// must match its schema.
fn validate(samples: &[Sample]) {
    const SCRIPT: &str = r##"
import json, sys
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

doc = json.load(open(sys.argv[1]))
samples = json.load(open(sys.argv[2]))
registry = Registry().with_resource("urn:doc", Resource.from_contents(doc, default_specification=DRAFT202012))

def deref(node):
    while isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/components/responses/"):
        node = doc["components"]["responses"][node["$ref"].split("/")[-1]]
    return node

def rooted(schema):
    if isinstance(schema, dict) and "$ref" in schema:
        return {"$ref": "urn:doc" + schema["$ref"]}
    return schema

problems = []
for s in samples:
    what = f'{s["method"]} {s["pattern"]} -> {s["status"]}'
    op = doc["paths"][s["pattern"]][s["method"].lower()]
    response = op["responses"].get(str(s["status"]))
    if response is None:
        problems.append(f"{what}: status not documented")
        continue
    response = deref(response)
    media = s["content_type"].split(";")[0]
    content = response.get("content", {}).get(media)
    if content is None:
        problems.append(f"{what}: content type {media} not documented")
        continue
    if media != "application/json":
        continue
    validator = Draft202012Validator(rooted(content["schema"]), registry=registry)
    for error in validator.iter_errors(s["body"]):
        problems.append(f"{what}: {error.json_path}: {error.message}")
print(json.dumps(problems, indent=1))
"##;
    let dir = tempfile::tempdir().unwrap();
    let doc_path = dir.path().join("openapi.json");
    std::fs::write(&doc_path, OPENAPI_JSON).unwrap();
    let data: Vec<Value> = samples
        .iter()
        .map(|s| {
            let content_type = s.reply.headers["content-type"]
                .to_str()
                .unwrap()
                .to_string();
            let body = if content_type == "application/json" {
                s.reply.json()
            } else {
                Value::String(String::from_utf8_lossy(&s.reply.body).into_owned())
            };
            json!({"method": s.method, "pattern": s.pattern, "status": s.reply.status.as_u16(),
                   "content_type": content_type, "body": body})
        })
        .collect();
    let samples_path = dir.path().join("samples.json");
    std::fs::write(&samples_path, serde_json::to_vec(&data).unwrap()).unwrap();
    let out = Command::new(venv_bin("jsonschema and schemathesis").join("python"))
        .args(["-c", SCRIPT])
        .arg(&doc_path)
        .arg(&samples_path)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "validator failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        problems.is_empty(),
        "{} of {} samples do not match the document:\n{}",
        problems.len(),
        data.len(),
        problems.join("\n")
    );
}

/// The schemathesis configuration: every check on (what `--checks all` does, but per
/// operation overridable, which `--checks all` on the command line is not); real data where
/// no link in the document leads to it (a team, a session, a request: keys and budgets come
/// from the create calls' responses); and the few checks that are wrong here, each disabled
/// for the operations it is wrong for, with the reason.
fn schemathesis_config(s: &Seeded) -> String {
    format!(
        r#"[checks]
enabled = true

# Rules JSON Schema cannot state, so schema-valid input is rightly refused (422):
# `expires_at` must be in the future; `from` must be before `to`; `tz` must be one of the IANA
# zone names (a closed list the document does not enumerate).
[[operations]]
include-operation-id = ["issueKey", "topSessions", "spendReport", "reconcile", "refusalReport"]
checks.positive_data_acceptance.enabled = false

# DELETE on a key revokes it: the key stays readable, marked revoked, because the ledger, the
# reports and the audit log refer to it by id. So a GET after the DELETE answers 200 by design.
[[operations]]
include-operation-id = ["getKey", "revokeKey"]
checks.use_after_free.enabled = false

[[operations]]
include-operation-id = ["getTeam", "updateTeam", "listTeamKeys", "issueKey", "topSessions"]
parameters = {{ "team" = "alpha" }}

[[operations]]
include-operation-id = ["getSession"]
parameters = {{ "id" = "{session}" }}

[[operations]]
include-operation-id = ["getTeamSession", "listTeamSessionCalls"]
parameters = {{ "team" = "alpha", "id" = "{session}" }}

[[operations]]
include-operation-id = ["getRequest"]
parameters = {{ "id" = "{request}" }}

[[operations]]
include-operation-id = ["createBudget", "setRateLimit"]
parameters = {{ "body.team" = "alpha" }}
"#,
        session = s.session_id,
        request = s.request_id,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failures_with_every_check_on() {
    let h = Harness::start(Backend::Sqlite).await;
    let s = seed(&h).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, schemathesis_config(&s)).unwrap();
    let url = format!("{}/admin/v1/openapi.json", h.base());
    let args = schemathesis_args(&config, &url);
    let run =
        tokio::process::Command::new(venv_bin("jsonschema and schemathesis").join("schemathesis"))
            .args(&args)
            // Its own files (reports, the example database) go to the temporary directory.
            .current_dir(dir.path())
            .kill_on_drop(true)
            .output();
    let out = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("schemathesis finishes within 15 minutes")
        .expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis {} failed:\n{text}",
        args.join(" ")
    );
    // It really tested the API: every route but the excluded one and the document itself
    // (schemathesis does not test the operation it loaded the schema from).
    let tested = format!("Tested: {}", ROUTES.len() - 2);
    assert!(text.contains(&tested), "{tested}:\n{text}");
    // The summary, for `--nocapture` and CI logs.
    println!("{text}");
}

/// `schemathesis run`: every operation but revoking admin tokens (it would revoke the very
/// token it tests with, and every later call would be a 401; `admin_api.rs` covers that
/// route), 20 examples each, deterministic (no random seed, no example database), one worker,
/// no network but the gateway's.
fn schemathesis_args(config: &Path, url: &str) -> Vec<String> {
    [
        "--config-file",
        config.to_str().unwrap(),
        "--no-color",
        "run",
        url,
        "--header",
        &format!("Authorization: Bearer {ADMIN_TOKEN}"),
        "--max-examples",
        "20",
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--exclude-operation-id",
        "revokeAdminToken",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The team bodies take `cost_center` as the US spelling of `cost_centre`. The document says
/// so (one or the other, not both), or a client that checks its bodies against it, and
/// schemathesis, would take a body the server accepts for a wrong one.
#[tokio::test]
async fn the_team_bodies_document_the_cost_center_spelling_the_server_takes() {
    let doc = document();
    for name in ["CreateTeam", "UpdateTeam"] {
        let schema = &doc["components"]["schemas"][name];
        let properties = &schema["properties"];
        assert_eq!(
            properties["cost_center"]["anyOf"], properties["cost_centre"]["anyOf"],
            "{name}"
        );
        assert_eq!(
            schema["not"]["required"],
            json!(["cost_centre", "cost_center"]),
            "{name}"
        );
    }
    let h = Harness::start(Backend::Sqlite).await;
    let admin = [bearer(ADMIN_TOKEN)];
    let send = |method: Method, path: &str, body: Value| {
        let url = format!("{}{path}", h.base());
        let http = &h.http;
        let admin = &admin;
        async move { http.json(method, &url, admin, body).await }
    };
    let created = send(
        Method::POST,
        "/admin/v1/teams",
        json!({"name": "books", "cost_center": "CC-1"}),
    )
    .await;
    assert_eq!(created.status.as_u16(), 201, "{created:?}");
    assert_eq!(created.json()["cost_centre"], "CC-1");
    let changed = send(
        Method::PATCH,
        "/admin/v1/teams/books",
        json!({"cost_center": "CC-2"}),
    )
    .await;
    assert_eq!(changed.status.as_u16(), 200, "{changed:?}");
    assert_eq!(changed.json()["cost_centre"], "CC-2");
    send(
        Method::PATCH,
        "/admin/v1/teams/books",
        json!({"cost_center": "CC-3", "cost_centre": "CC-3"}),
    )
    .await
    .assert_error(400, "invalid_json");
}
