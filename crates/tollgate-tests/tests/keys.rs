//! Team keys and the minimal admin API, the same suite on SQLite and on Postgres: a key works
//! the moment it is issued, stops the moment it is revoked on the gateway that revoked it, and
//! within a second on every other gateway sharing the database.

// Integration tests: shared helpers fail loudly, and read whole (small) test responses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;

use tollgate_tests::{
    ADMIN_TOKEN, Backend, Harness, HttpClient, Reply, bearer, both_stores, eventually, issue_key,
};

fn admin() -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {ADMIN_TOKEN}"))]
}

async fn call(http: &HttpClient, addr: std::net::SocketAddr, key: &str) -> Reply {
    http.send(
        Method::POST,
        &format!("http://{addr}/v1/chat/completions"),
        &[bearer(key)],
        json!({"model":"gpt-5.5","messages":[{"role":"user","content":"hi"}]}).to_string(),
    )
    .await
}

both_stores!(
    key_lifecycle_across_two_gateways,
    admin_api_validates_and_reports_conflicts,
    admin_api_refuses_team_keys_and_bad_tokens,
    expired_keys_are_refused,
    keys_are_listed_without_secrets,
    model_allow_lists_of_key_and_team_are_enforced_everywhere,
);

async fn key_lifecycle_across_two_gateways(backend: Backend) {
    let h = Harness::start(backend).await;
    let b = h.replica().await;
    // Created on A: works on A at once, and on B within the refresh bound.
    let key = h.team_key("platform").await;
    assert_eq!(
        call(&h.http, h.gateway.addr, &key).await.status,
        StatusCode::OK
    );
    assert!(
        eventually(Duration::from_secs(1), || async {
            call(&h.http, b.addr, &key).await.status == StatusCode::OK
        })
        .await,
        "key created on A never worked on B"
    );

    // Revoked on A: refused on A at once, on B within 1 s, and the upstream never sees those calls.
    let id = key.split('-').nth(1).unwrap();
    let revoked = h
        .http
        .send(
            Method::DELETE,
            &format!("{}/admin/v1/keys/{id}", h.base()),
            &admin(),
            "",
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert!(
        revoked.json()["revoked_at_ms"].is_i64(),
        "{}",
        revoked.json()
    );
    call(&h.http, h.gateway.addr, &key)
        .await
        .assert_error(401, "invalid_api_key");
    let at = Instant::now();
    let stopped = eventually(Duration::from_secs(1), || async {
        call(&h.http, b.addr, &key).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(
        stopped,
        "B still accepted the revoked key after {:?}",
        at.elapsed()
    );
    let upstream_calls = h.mock.requests().len();
    call(&h.http, b.addr, &key)
        .await
        .assert_error(401, "invalid_api_key");
    assert_eq!(
        h.mock.requests().len(),
        upstream_calls,
        "a revoked key's call reached upstream"
    );
    b.shutdown().await;
}

async fn admin_api_validates_and_reports_conflicts(backend: Backend) {
    let h = Harness::start(backend).await;
    let teams = format!("{}/admin/v1/teams", h.base());
    let created = h
        .http
        .json(
            Method::POST,
            &teams,
            &admin(),
            json!({"name":"platform","cost_centre":"CC-1042"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let team = created.json();
    assert_eq!(
        (team["name"].clone(), team["cost_centre"].clone()),
        (json!("platform"), json!("CC-1042"))
    );
    let id = team["id"].as_str().unwrap();
    for lookup in [id, "platform"] {
        let got = h
            .http
            .send(Method::GET, &format!("{teams}/{lookup}"), &admin(), "")
            .await;
        assert_eq!(got.json()["id"], team["id"], "lookup by {lookup}");
    }
    h.http
        .json(Method::POST, &teams, &admin(), json!({"name":"platform"}))
        .await
        .assert_error(409, "conflict");
    let invalid = h
        .http
        .json(
            Method::POST,
            &teams,
            &admin(),
            json!({"name":"no spaces","cost_centre":""}),
        )
        .await;
    invalid.assert_error(422, "invalid_fields");
    let message = invalid.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("name:") && message.contains("cost_centre:"),
        "{message}"
    );
    h.http
        .json(Method::POST, &teams, &admin(), json!({"cost_centre":"x"}))
        .await
        .assert_error(422, "invalid_fields");
    h.http
        .send(Method::POST, &teams, &admin(), "{nope")
        .await
        .assert_error(400, "invalid_json");
    h.http
        .send(Method::GET, &format!("{teams}/nobody"), &admin(), "")
        .await
        .assert_error(404, "not_found");
    h.http
        .json(
            Method::POST,
            &format!("{teams}/nobody/keys"),
            &admin(),
            json!({"name":"ci"}),
        )
        .await
        .assert_error(404, "not_found");
    h.http
        .send(
            Method::DELETE,
            &format!("{}/admin/v1/keys/nosuchkey123", h.base()),
            &admin(),
            "",
        )
        .await
        .assert_error(404, "not_found");
    let past = h
        .http
        .json(
            Method::POST,
            &format!("{teams}/platform/keys"),
            &admin(),
            json!({"name":"ci","expires_at": 1}),
        )
        .await;
    past.assert_error(422, "invalid_fields");
    let listed = h.http.send(Method::GET, &teams, &admin(), "").await.json();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
}

async fn admin_api_refuses_team_keys_and_bad_tokens(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("platform").await;
    let url = format!("{}/admin/v1/teams", h.base());
    for headers in [vec![], vec![bearer(&key)], vec![bearer("tga-wrong")]] {
        h.http
            .send(Method::GET, &url, &headers, "")
            .await
            .assert_error(401, "invalid_admin_token");
    }
    // And an admin token is not a team key.
    call(&h.http, h.gateway.addr, ADMIN_TOKEN)
        .await
        .assert_error(401, "invalid_api_key");
}

async fn expired_keys_are_refused(backend: Backend) {
    let h = Harness::start(backend).await;
    h.team_key("platform").await;
    let expires_at = tollgate_core::time::now_ms() / 1000 + 1;
    let created = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/teams/platform/keys", h.base()),
            &admin(),
            json!({"name":"short","expires_at": expires_at}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created);
    let key = created.json()["secret"].as_str().unwrap().to_string();
    assert_eq!(
        call(&h.http, h.gateway.addr, &key).await.status,
        StatusCode::OK
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            call(&h.http, h.gateway.addr, &key).await.status == StatusCode::UNAUTHORIZED
        })
        .await
    );
    let reply = call(&h.http, h.gateway.addr, &key).await;
    reply.assert_error(401, "invalid_api_key");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

async fn keys_are_listed_without_secrets(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = issue_key(&h.http, h.gateway.addr, "platform").await;
    let secret_part = key.rsplit('-').next().unwrap();
    for url in [
        format!("{}/admin/v1/keys", h.base()),
        format!("{}/admin/v1/teams/platform/keys", h.base()),
    ] {
        let listed = h.http.send(Method::GET, &url, &admin(), "").await;
        assert_eq!(listed.status, StatusCode::OK);
        assert_eq!(listed.json()["data"].as_array().map(Vec::len), Some(1));
        assert!(
            !String::from_utf8_lossy(&listed.body).contains(secret_part),
            "secret leaked in {url}"
        );
    }
}

async fn model_allow_lists_of_key_and_team_are_enforced_everywhere(backend: Backend) {
    let h = Harness::start(backend).await;
    let b = h.replica().await;
    let teams = format!("{}/admin/v1/teams", h.base());
    let team = h
        .http
        .json(
            Method::POST,
            &teams,
            &admin(),
            json!({"name":"platform","allowed_models":["gpt-5*","text-embedding-3-small"]}),
        )
        .await;
    assert_eq!(team.status, StatusCode::CREATED, "{team:?}");
    assert_eq!(
        team.json()["allowed_models"],
        json!(["gpt-5*", "text-embedding-3-small"])
    );
    let narrow = h
        .http
        .json(
            Method::POST,
            &format!("{teams}/platform/keys"),
            &admin(),
            json!({"name":"ci","allowed_models":["gpt-5.5"]}),
        )
        .await;
    assert_eq!(narrow.json()["allowed_models"], json!(["gpt-5.5"]));
    let narrow = narrow.json()["secret"].as_str().unwrap().to_string();
    let wide = h
        .http
        .json(
            Method::POST,
            &format!("{teams}/platform/keys"),
            &admin(),
            json!({"name":"dev"}),
        )
        .await
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let chat = |addr: std::net::SocketAddr, key: String, model: &'static str| {
        let http = h.http.clone();
        async move {
            let body =
                json!({"model": model, "messages":[{"role":"user","content":"hi"}]}).to_string();
            http.send(
                Method::POST,
                &format!("http://{addr}/v1/chat/completions"),
                &[bearer(&key)],
                body,
            )
            .await
        }
    };
    assert_eq!(
        chat(h.gateway.addr, narrow.clone(), "gpt-5.5").await.status,
        StatusCode::OK
    );
    let refused = chat(h.gateway.addr, narrow.clone(), "gpt-5-mini").await;
    refused.assert_error(400, "model_not_allowed");
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("gpt-5-mini") && message.contains("key") && message.contains("platform"),
        "{message}"
    );
    assert_eq!(
        chat(h.gateway.addr, wide.clone(), "gpt-5-mini")
            .await
            .status,
        StatusCode::OK,
        "the team's list allows gpt-5*"
    );
    let by_team = chat(h.gateway.addr, wide.clone(), "gpt-4o").await;
    by_team.assert_error(400, "model_not_allowed");
    assert!(
        by_team.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("team")
    );
    let upstream_calls = h.mock.requests().len();
    assert_eq!(upstream_calls, 2, "refused calls must not reach upstream");
    // Another gateway on the same database enforces the same lists.
    let knows_both = || async {
        chat(b.addr, narrow.clone(), "gpt-5.5").await.status == StatusCode::OK
            && chat(b.addr, wide.clone(), "gpt-5.5").await.status == StatusCode::OK
    };
    assert!(
        eventually(Duration::from_secs(1), knows_both).await,
        "replica B never learned both keys"
    );
    chat(b.addr, narrow.clone(), "gpt-5-mini")
        .await
        .assert_error(400, "model_not_allowed");
    chat(b.addr, wide.clone(), "gpt-4o")
        .await
        .assert_error(400, "model_not_allowed");
    // The lists show on reads too.
    let got = h
        .http
        .send(Method::GET, &format!("{teams}/platform"), &admin(), "")
        .await
        .json();
    assert_eq!(
        got["allowed_models"],
        json!(["gpt-5*", "text-embedding-3-small"])
    );
    let id = narrow.split('-').nth(1).unwrap();
    let got = h
        .http
        .send(
            Method::GET,
            &format!("{}/admin/v1/keys/{id}", h.base()),
            &admin(),
            "",
        )
        .await
        .json();
    assert_eq!(got["allowed_models"], json!(["gpt-5.5"]));
    // Bad entries are named.
    let bad = h
        .http
        .json(
            Method::POST,
            &format!("{teams}/platform/keys"),
            &admin(),
            json!({"allowed_models":["gpt 5"]}),
        )
        .await;
    bad.assert_error(422, "invalid_fields");
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowed_models")
    );
    b.shutdown().await;
}
