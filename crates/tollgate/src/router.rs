//! Top-level routing: `/otlp/v1/*` to the OTLP intake (clients' own telemetry), `/v1/*` to the
//! proxy (but Codex's turn-cost query, answered here from the ledger), `/tollgate/v1/hooks`
//! (Codex hook events), `/admin/v1/*` to the admin API, health probes.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use tollgate_core::keys::BearerError;
use tollgate_core::{ApiError, KeyCache, KeyHash};
use tollgate_proxy::route::is_api_path;
use tollgate_proxy::{Gateway, ProxyBody, error_response, json_response};
use tollgate_store::{Role, Store};

use crate::admin_http::AdminHttp;
use crate::console::{self, Console};
use crate::control::{Control, Live};
use crate::hooks_http::{self, HookIntake};
use crate::intake::{self, Intake};
use crate::turn_costs::{self, TurnCosts};

pub struct Router {
    gateway: Arc<Gateway>,
    admin: AdminHttp,
    turn_costs: TurnCosts,
    /// `POST /tollgate/v1/hooks`: Codex hook events from `tollgate hook`.
    hooks: HookIntake,
    store: Store,
    keys: Arc<KeyCache>,
    /// False when `/admin/v1` has a listener of its own and must not be served on the main one.
    admin_on_main: bool,
    /// Prometheus text at `[telemetry] metrics_path`, when set.
    metrics: Option<Metrics>,
    /// `/otlp/v1/*`, unless `[intake] enabled = false`.
    intake: Option<Arc<Intake>>,
    /// `/console`, on the listener that serves `/admin/v1`, unless `[console] enabled = false`.
    console: Option<Console>,
}

/// `GET /metrics`: the same instruments OTLP exports, as Prometheus text. It carries every
/// team's name and spend (never keys, sessions or prompts), so it is not for anyone who can
/// reach the gateway: on the admin listener (`TOLLGATE_ADMIN_LISTEN`, a private port) it is
/// open, on the main listener it takes `Authorization: Bearer` with the metrics token
/// (`TOLLGATE_METRICS_TOKEN`) or an `admin` or `finance` admin token.
pub struct Metrics {
    pub path: String,
    pub telemetry: tollgate_telemetry::Telemetry,
    /// `TOLLGATE_METRICS_TOKEN`, as its hash: only hashes are compared, so how long a compare
    /// takes says nothing about the token.
    pub token: Option<KeyHash>,
}

impl Metrics {
    /// Who may scrape on the main listener: the metrics token, or an admin token of a role
    /// that may see every team's spend anyway.
    async fn allowed(&self, request: &Request<Incoming>, store: &Store) -> Result<(), ApiError> {
        let refuse = |why: &str| {
            ApiError::new(
                401,
                "invalid_request_error",
                "invalid_metrics_token",
                format!(
                    "{why}. {} on this listener takes 'Authorization: Bearer <token>' with the \
                     metrics token (TOLLGATE_METRICS_TOKEN) or an admin or finance admin token; \
                     or scrape it without a token on the admin listener (TOLLGATE_ADMIN_LISTEN).",
                    self.path
                ),
            )
        };
        let header = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = tollgate_core::keys::bearer_token(header).map_err(|e| match e {
            BearerError::Missing => refuse("No token was provided"),
            BearerError::NotBearer => refuse("The Authorization header has no Bearer scheme"),
        })?;
        if self.token.as_ref() == Some(&KeyHash::of(token)) {
            return Ok(());
        }
        match store.admin_for_token(token).await {
            Ok(Some(admin)) if matches!(admin.role, Role::Admin | Role::Finance) => Ok(()),
            Ok(Some(_)) => Err(refuse(
                "A team_admin token sees one team, and these metrics show every team",
            )),
            Ok(None) => Err(refuse("The token is not valid")),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a /metrics token against the store");
                Err(ApiError::new(
                    503,
                    "server_error",
                    "store_unavailable",
                    "The token cannot be checked while the database is unreachable.",
                ))
            }
        }
    }

    fn response(&self) -> Response<ProxyBody> {
        let mut response = Response::new(ProxyBody::full(self.telemetry.prometheus_text()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(tollgate_telemetry::prometheus::CONTENT_TYPE),
        );
        response
    }
}

impl Router {
    pub fn new(
        gateway: Arc<Gateway>,
        store: Store,
        keys: Arc<KeyCache>,
        admin_on_main: bool,
        metrics: Option<Metrics>,
    ) -> Router {
        let budgets = Arc::clone(&gateway.admission.budgets);
        let live = Live {
            keys: Arc::clone(&keys),
            budgets,
        };
        let hooks = HookIntake::new(
            store.clone(),
            Arc::clone(&keys),
            gateway.settler.telemetry.clone(),
        );
        Router {
            gateway,
            admin: AdminHttp::new(Control::new(store.clone(), Some(live))),
            turn_costs: TurnCosts::new(store.clone(), Arc::clone(&keys)),
            hooks,
            store,
            keys,
            admin_on_main,
            metrics,
            intake: None,
            console: None,
        }
    }

    /// Serves the web console at `/console` beside the admin API, unless switched off.
    pub fn with_console(mut self, config: &tollgate_core::config::Config) -> Router {
        if config.console.enabled {
            let live = Live {
                keys: Arc::clone(&self.keys),
                budgets: Arc::clone(&self.gateway.admission.budgets),
            };
            self.console = Some(Console::new(config, self.store.clone(), live));
        }
        self
    }

    /// Serves the OTLP intake at `/otlp/v1/*` on the main listener.
    pub fn with_intake(mut self, intake: Option<Arc<Intake>>) -> Router {
        self.intake = intake;
        self
    }

    /// The main listener.
    pub async fn route(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let path = request.uri().path();
        if let Some(intake) = &self.intake
            && let Some(signal) = intake::signal_of(path)
        {
            return intake.handle(signal, request).await;
        }
        if path == turn_costs::PATH {
            return self.turn_costs.handle(request).await;
        }
        if path == hooks_http::PATH {
            return self.hooks.handle(request).await;
        }
        if is_api_path(path) {
            return self.gateway.handle(request).await;
        }
        if self.admin_on_main && is_admin_path(path) {
            return self.admin.handle(request).await;
        }
        if self.admin_on_main
            && let Some(console) = self.console_at(path)
        {
            return console.handle(request).await;
        }
        if let Some(metrics) = self.metrics_at(path) {
            return match metrics.allowed(&request, &self.store).await {
                Ok(()) => metrics.response(),
                Err(refused) => error_response(&refused),
            };
        }
        self.common(request).await
    }

    /// The separate admin listener, when configured: a private port, so `/metrics` is open.
    pub async fn route_admin_listener(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let path = request.uri().path();
        if is_admin_path(path) {
            return self.admin.handle(request).await;
        }
        if let Some(console) = self.console_at(path) {
            return console.handle(request).await;
        }
        if let Some(metrics) = self.metrics_at(path) {
            return metrics.response();
        }
        self.common(request).await
    }

    fn console_at(&self, path: &str) -> Option<&Console> {
        self.console
            .as_ref()
            .filter(|_| console::is_console_path(path))
    }

    fn metrics_at(&self, path: &str) -> Option<&Metrics> {
        self.metrics.as_ref().filter(|m| m.path == path)
    }

    async fn common(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        match request.uri().path() {
            "/healthz" => json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec()),
            "/readyz" => self.readiness().await,
            path => error_response(&ApiError::unknown_url(request.method().as_str(), path)),
        }
    }

    /// Ready when the store answers; the key cache was loaded before the listener opened.
    async fn readiness(&self) -> Response<ProxyBody> {
        let (status, store) = match self.store.ping().await {
            Ok(()) => (StatusCode::OK, "ok".to_string()),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
        let ready = status == StatusCode::OK;
        let body = serde_json::json!({"status": if ready { "ready" } else { "not_ready" }, "store": store, "keys_cached": self.keys.len()});
        json_response(status, body.to_string().into_bytes())
    }
}

fn is_admin_path(path: &str) -> bool {
    path == "/admin/v1" || path.starts_with("/admin/v1/")
}
