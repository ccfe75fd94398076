//! Test harness for tollgate's integration tests: a real gateway (started exactly as
//! `tollgate serve` starts one) on 127.0.0.1:0, a fresh database per test (a SQLite file or a
//! Postgres database), and the project's mock upstream. Nothing is mocked but the LLM.

// A test harness: failing loudly at the first broken step is what a test wants.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

pub mod browser;
pub mod clients;
pub mod oidc;
pub mod process;
pub mod socket;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use tollgate::app::{self, Running};
use tollgate_core::config::Config;
use tollgate_mock::{MockOptions, MockServer};
use tollgate_store::testdb::TestDb;

/// The upstream key the gateway sends; tests assert it arrives and the team key does not.
pub const UPSTREAM_KEY: &str = "sk-upstream-test-0123456789";
/// The bootstrap admin token every test gateway is started with.
pub const ADMIN_TOKEN: &str = "tga-test-admin-token";

/// One `#[tokio::test]` per backend for each `async fn name(backend: Backend)` listed:
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name($crate::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name($crate::Backend::Postgres).await } )* }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A gateway, its database and its mock upstream, torn down together.
pub struct Harness {
    pub mock: MockServer,
    pub gateway: Running,
    pub db: TestDb,
    pub http: HttpClient,
}

impl Harness {
    pub async fn start(backend: Backend) -> Harness {
        Harness::start_with(backend, MockOptions::default()).await
    }

    pub async fn start_with(backend: Backend, mock_options: MockOptions) -> Harness {
        Harness::start_custom(backend, mock_options, |_| {}).await
    }

    /// Starts with the test config adjusted by `adjust` (limits, timeouts, …).
    pub async fn start_custom(
        backend: Backend,
        mock_options: MockOptions,
        adjust: impl FnOnce(&mut Config),
    ) -> Harness {
        let db = match backend {
            Backend::Sqlite => TestDb::sqlite(),
            Backend::Postgres => TestDb::postgres().await,
        };
        let mock = tollgate_mock::start(local(), mock_options)
            .await
            .expect("mock upstream starts");
        let mut config = test_config(&db.url, &mock.base_url());
        adjust(&mut config);
        let gateway = app::start(config).await.expect("gateway starts");
        Harness {
            mock,
            gateway,
            db,
            http: HttpClient::new(),
        }
    }

    /// Another gateway process on the same database and upstream (a second replica).
    pub async fn replica(&self) -> Running {
        start_gateway(&self.db.url, &self.mock.base_url()).await
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.gateway.addr)
    }

    /// The ledger row of `request_id` from `GET /admin/v1/requests/{id}`, waiting up to 5 s
    /// for the writer to land it.
    pub async fn ledger_row(&self, request_id: &str) -> serde_json::Value {
        let url = format!("{}/admin/v1/requests/{request_id}", self.base());
        let admin = [("authorization", format!("Bearer {ADMIN_TOKEN}"))];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let reply = self.http.send(Method::GET, &url, &admin, "").await;
            if reply.status == StatusCode::OK {
                return reply.json();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no ledger row for {request_id}: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates a team (if new) and a key through the admin API; returns the key's secret.
    pub async fn team_key(&self, team: &str) -> String {
        issue_key(&self.http, self.gateway.addr, team).await
    }

    /// Revokes team key `key` through the admin API.
    pub async fn revoke_key(&self, key: &str) {
        let id = key.split('-').nth(1).expect("a tg-<id>-<secret> key");
        let revoked = self
            .http
            .send(
                Method::DELETE,
                &format!("{}/admin/v1/keys/{id}", self.base()),
                &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
                "",
            )
            .await;
        assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    }

    /// The gateway's `GET /metrics` (Prometheus text), with the admin token.
    pub async fn metrics(&self) -> String {
        let reply = self
            .http
            .send(
                Method::GET,
                &format!("{}/metrics", self.base()),
                &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
                "",
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        String::from_utf8_lossy(&reply.body).into_owned()
    }

    /// The sum of the `/metrics` samples of `name` whose labels include every `labels` pair.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics().await, name, labels)
    }

    /// Gives `team` a monthly budget of `limit_usd` through the admin API; returns its id.
    pub async fn set_budget(&self, team: &str, limit_usd: &str) -> String {
        let reply = self
            .http
            .json(
                Method::POST,
                &format!("{}/admin/v1/budgets", self.base()),
                &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
                serde_json::json!({"team": team, "period": "month", "limit_usd": limit_usd}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        reply.json()["id"]
            .as_str()
            .expect("a budget id")
            .to_string()
    }
}

/// A gateway on a fresh port against `database_url` and `upstream`, migrated on start.
pub async fn start_gateway(database_url: &str, upstream: &str) -> Running {
    app::start(test_config(database_url, upstream))
        .await
        .expect("gateway starts")
}

/// A config adjustment for [`Harness::start_custom`]: tollgate exports its own telemetry (and
/// forwards its OTLP intake) to `receiver` over OTLP/HTTP; its periodic metric export is left
/// to shutdown, so tests read `/metrics` or wait for what they sent.
pub fn exporting_to(
    receiver: &tollgate_telemetry::testing::Receiver,
) -> impl FnOnce(&mut Config) + use<> {
    let port = receiver.http_port;
    move |c: &mut Config| {
        c.telemetry.enabled = Some(true);
        c.telemetry.endpoint = Some(format!("http://127.0.0.1:{port}"));
        c.telemetry.export_interval_ms = 600_000;
        c.telemetry.export_timeout_ms = 5_000;
    }
}

pub fn test_config(database_url: &str, upstream: &str) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        ..Config::default()
    };
    config.upstream.url = upstream.into();
    config.store.database_url = database_url.into();
    config.store.migrate_on_start = Some(true);
    config.store.key_refresh_ms = 100;
    config.secrets.upstream_key = Some(UPSTREAM_KEY.into());
    // One spool per gateway process, as in production; two replicas must not share one.
    let spool = std::env::temp_dir().join(format!(
        "tollgate-test-{}.spool",
        tollgate_core::keys::NewSecret::generate(tollgate_core::SecretKind::TeamKey).id
    ));
    config.ledger.spool_path = spool.display().to_string();
    config.ledger.flush_ms = 5;
    config.secrets.admin_token = Some(ADMIN_TOKEN.into());
    config
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Creates `team` if it does not exist, then a key for it, via `addr`'s admin API.
pub async fn issue_key(http: &HttpClient, addr: SocketAddr, team: &str) -> String {
    let base = format!("http://{addr}");
    let admin = [("authorization", format!("Bearer {ADMIN_TOKEN}"))];
    let created = http
        .json(
            Method::POST,
            &format!("{base}/admin/v1/teams"),
            &admin,
            serde_json::json!({"name": team, "cost_centre": "CC-1"}),
        )
        .await;
    assert!(
        created.status == StatusCode::CREATED || created.status == StatusCode::CONFLICT,
        "team create: {created:?}"
    );
    let key = http
        .json(
            Method::POST,
            &format!("{base}/admin/v1/teams/{team}/keys"),
            &admin,
            serde_json::json!({"name": "test"}),
        )
        .await;
    assert_eq!(key.status, StatusCode::CREATED, "key create: {key:?}");
    key.json()["secret"]
        .as_str()
        .expect("secret in response")
        .to_string()
}

/// A whole response, read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts an OpenAI-shaped error with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "body: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "message: {v}"
        );
        assert!(
            v["error"]["type"].as_str().is_some_and(|t| !t.is_empty()),
            "type: {v}"
        );
        assert_eq!(
            self.headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
    }
}

/// A plain HTTP/1.1 client for tests (the same hyper the gateway is built on).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

impl HttpClient {
    pub fn new() -> HttpClient {
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let response = self.start(method, url, headers, body).await;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(30), body.collect())
            .await
            .expect("body within 30 s")
            .expect("body reads")
            .to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Sends and returns as soon as headers arrive, leaving the body to the caller.
    pub async fn start(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> http::Response<hyper::body::Incoming> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(body.into())).expect("valid request");
        tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .expect("response within 30 s")
            .expect("request succeeds")
    }

    pub async fn json(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: serde_json::Value,
    ) -> Reply {
        let mut all = headers.to_vec();
        all.push(("content-type", "application/json".into()));
        self.send(method, url, &all, body.to_string()).await
    }
}

/// `Authorization: Bearer <key>` as a header pair.
pub fn bearer(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

/// The sum of the samples of `name` in Prometheus text `text` whose labels include every
/// `labels` pair (`name` exactly: `_count`, `_sum` and `_bucket` are names of their own).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|l| l == format!("{k}=\"{v}\"")))
                .then(|| value.trim().parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// Waits for `condition` to hold, checking every 20 ms, up to `timeout`. For conditions in
/// another process or database that offer nothing to wait on; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
