//! The admin API on `/admin/v1`: teams, keys, budgets, rate limits, sessions, reports, the audit
//! log and admin tokens. Routes and who may call them are in [`routes::ROUTES`]; the OpenAPI
//! document (`admin/openapi.json`, served at `/admin/v1/openapi.json`) describes every one.
//!
//! Authenticated with an admin token (`tga-…` or the operator's `TOLLGATE_ADMIN_TOKEN`) as a
//! Bearer; a team key never opens it. Roles: `admin` (everything), `team_admin` (its own team's
//! resources), `finance` (read reports, budgets and teams). Every change that succeeds is written
//! to the audit log. Not on the hot path, so it reads the store directly, and it updates this
//! process's key cache at once so a new key works on the next request.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use tollgate_core::budget::{Budgets, Calendar};
use tollgate_core::keys::BearerError;
use tollgate_core::{ApiError, KeyCache};
use tollgate_proxy::body::read_limited;
use tollgate_proxy::{ProxyBody, error_response, json_response};
use tollgate_store::{AdminPrincipal, Store, StoreError};

use routes::{Op, Route};

mod audit;
pub mod budgets;
mod keys;
mod limits;
mod page;
pub mod reports;
pub mod routes;
mod sessions;
mod teams;
mod tokens;

pub use routes::ROUTES;
/// Both CLI modes print sessions in the API's shape.
pub use sessions::session_view;

const MAX_ADMIN_BODY: u64 = 1024 * 1024;

/// The OpenAPI 3.1 document for all of `/admin/v1`, kept true by `tests/openapi.rs`.
pub const OPENAPI_JSON: &str = include_str!("admin/openapi.json");

pub struct Admin {
    store: Store,
    keys: Arc<KeyCache>,
    /// This process's budget engine: changes apply here at once, elsewhere on the next sync.
    budgets: Arc<Budgets>,
}

/// One authenticated call, without its body: who, which route, its path parameters (in
/// pattern order, percent-decoded) and its query string.
pub(crate) struct Call {
    pub principal: AdminPrincipal,
    pub route: &'static Route,
    pub params: Vec<String>,
    pub query: Option<String>,
}

impl Call {
    /// The `i`-th path parameter (the route table guarantees it exists).
    fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// The team a `team_admin` is fenced into (`None`: every team).
    fn fence(&self) -> Option<&str> {
        routes::fence(&self.principal)
    }
}

type Answer = Result<Reply, ApiError>;

impl Admin {
    pub fn new(store: Store, keys: Arc<KeyCache>, budgets: Arc<Budgets>) -> Admin {
        Admin {
            store,
            keys,
            budgets,
        }
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        match self.dispatch(request).await {
            Ok(reply) => reply.into_response(),
            Err(error) => error_response(&error),
        }
    }

    /// Route (404/405), then token (401), then role (403); the handler checks the team.
    async fn dispatch(&self, request: Request<Incoming>) -> Answer {
        let path = request.uri().path().to_string();
        let (route, params) = routes::find(request.method(), &path)?;
        if route.op == Op::OpenApi {
            return Ok(openapi());
        }
        let principal = self.authenticate(&request).await?;
        routes::check_role(route, &principal)?;
        let call = Call {
            principal,
            route,
            params,
            query: request.uri().query().map(str::to_string),
        };
        self.serve(&call, request.into_body()).await
    }

    async fn serve(&self, call: &Call, body: Incoming) -> Answer {
        let query = call.query.as_deref();
        match call.route.op {
            Op::OpenApi => Ok(openapi()),
            Op::ListTeams => self.list_teams(call).await,
            Op::CreateTeam => self.create_team(call, body).await,
            Op::GetTeam => self.get_team(call).await,
            Op::UpdateTeam => self.update_team(call, body).await,
            Op::ListTeamKeys => self.list_team_keys(call).await,
            Op::IssueKey => self.issue_key(call, body).await,
            Op::TopSessions => self.top_sessions(call).await,
            Op::GetTeamSession => self.get_team_session(call).await,
            Op::ListKeys => self.list_keys(call).await,
            Op::GetKey => self.get_key(call).await,
            Op::RevokeKey => self.revoke_key(call).await,
            Op::RotateKey => self.rotate_key(call, body).await,
            Op::ListBudgets => self.list_budgets(call).await,
            Op::CreateBudget => self.create_budget(call, body).await,
            Op::GetBudget => self.get_budget(call).await,
            Op::UpdateBudget => self.update_budget(call, body).await,
            Op::DeleteBudget => self.delete_budget(call).await,
            Op::ListRateLimits => self.list_rate_limits(call).await,
            Op::SetRateLimit => self.set_rate_limit(call, body).await,
            Op::GetSession => self.get_session(call).await,
            Op::GetRequest => self.get_request(call).await,
            // A team_admin's reports are restricted to its team; admin and finance see all.
            Op::SpendReport => {
                reports::spend(&self.store, query, call.fence().map(str::to_string)).await
            }
            Op::Reconcile => reports::reconcile(&self.store, query).await,
            Op::ListAudit => self.list_audit(call).await,
            Op::ListAdminTokens => self.list_admin_tokens(call).await,
            Op::CreateAdminToken => self.create_admin_token(call, body).await,
            Op::RevokeAdminToken => self.revoke_admin_token(call).await,
        }
    }

    async fn authenticate(&self, request: &Request<Incoming>) -> Result<AdminPrincipal, ApiError> {
        let unauthorized = |why: &str| {
            ApiError::new(
                401,
                "invalid_request_error",
                "invalid_admin_token",
                format!(
                    "{why}. The admin API takes an admin token as 'Authorization: Bearer <token>'."
                ),
            )
        };
        let header = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = tollgate_core::keys::bearer_token(header).map_err(|e| match e {
            BearerError::Missing => unauthorized("No admin token was provided"),
            BearerError::NotBearer => unauthorized("The Authorization header has no Bearer scheme"),
        })?;
        self.store
            .admin_for_token(token)
            .await
            .map_err(store_error)?
            .ok_or_else(|| unauthorized("The admin token is not valid"))
    }

    fn calendar(&self) -> Calendar {
        self.budgets.options().calendar
    }
}

fn openapi() -> Reply {
    Reply::Document(OPENAPI_JSON)
}

/// What a route answers: JSON (almost all of them), a CSV file (reports), or a JSON document
/// served byte for byte as written (the OpenAPI document, so its order and layout survive).
pub enum Reply {
    Json(StatusCode, serde_json::Value),
    Csv { filename: String, body: String },
    Document(&'static str),
}

impl Reply {
    fn into_response(self) -> Response<ProxyBody> {
        match self {
            Reply::Json(status, body) => json_response(status, body.to_string().into_bytes()),
            Reply::Document(text) => json_response(StatusCode::OK, text.as_bytes().to_vec()),
            Reply::Csv { filename, body } => {
                let mut response = Response::new(ProxyBody::full(body));
                let headers = response.headers_mut();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                );
                if let Ok(value) =
                    HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
                {
                    headers.insert(CONTENT_DISPOSITION, value);
                }
                response
            }
        }
    }
}

fn ok(body: serde_json::Value) -> Answer {
    Ok(Reply::Json(StatusCode::OK, body))
}

fn created(body: serde_json::Value) -> Answer {
    Ok(Reply::Json(StatusCode::CREATED, body))
}

async fn read_json<T: serde::de::DeserializeOwned>(body: Incoming) -> Result<T, ApiError> {
    let body: Bytes = read_limited(body, MAX_ADMIN_BODY).await?;
    serde_json::from_slice(&body).map_err(ApiError::invalid_json)
}

/// Like [`read_json`], but an empty body means every field's default.
async fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(
    body: Incoming,
) -> Result<T, ApiError> {
    let body: Bytes = read_limited(body, MAX_ADMIN_BODY).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(ApiError::invalid_json)
}

fn json(value: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new(
        404,
        "invalid_request_error",
        "not_found",
        format!("No {what} '{id}'."),
    )
}

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(what) => ApiError::new(409, "invalid_request_error", "conflict", what),
        StoreError::NotFound(what) => {
            ApiError::new(404, "invalid_request_error", "not_found", what)
        }
        StoreError::Invalid(what) => {
            ApiError::new(422, "invalid_request_error", "invalid_fields", what)
        }
        other => {
            tracing::error!(error = %other, "admin API store error");
            ApiError::new(
                503,
                "server_error",
                "store_unavailable",
                "The control-plane database is unavailable; try again.",
            )
        }
    }
}
