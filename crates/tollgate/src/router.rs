//! Top-level routing: `/v1/*` to the proxy, `/admin/v1/*` to the admin API, health probes.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use tollgate_core::{ApiError, KeyCache};
use tollgate_proxy::route::is_api_path;
use tollgate_proxy::{Gateway, ProxyBody, error_response, json_response};
use tollgate_store::Store;

use crate::admin::Admin;

pub struct Router {
    gateway: Arc<Gateway>,
    admin: Admin,
    store: Store,
    keys: Arc<KeyCache>,
    /// False when `/admin/v1` has a listener of its own and must not be served on the main one.
    admin_on_main: bool,
    /// Prometheus text at `[telemetry] metrics_path`, when set.
    metrics: Option<Metrics>,
}

/// `GET /metrics`: the same instruments OTLP exports, as Prometheus text. Unauthenticated, like
/// every scrape endpoint: it carries team names and sums, never keys, sessions or prompts.
pub struct Metrics {
    pub path: String,
    pub telemetry: tollgate_telemetry::Telemetry,
}

impl Metrics {
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
        Router {
            gateway,
            admin: Admin::new(store.clone(), Arc::clone(&keys), budgets),
            store,
            keys,
            admin_on_main,
            metrics,
        }
    }

    /// The main listener.
    pub async fn route(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let path = request.uri().path();
        if is_api_path(path) {
            return self.gateway.handle(request).await;
        }
        if self.admin_on_main && is_admin_path(path) {
            return self.admin.handle(request).await;
        }
        self.common(request).await
    }

    /// The separate admin listener, when configured.
    pub async fn route_admin_listener(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        if is_admin_path(request.uri().path()) {
            return self.admin.handle(request).await;
        }
        self.common(request).await
    }

    async fn common(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        if let Some(metrics) = &self.metrics
            && request.uri().path() == metrics.path
        {
            return metrics.response();
        }
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
