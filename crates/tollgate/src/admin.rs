//! The admin API on `/admin/v1`: teams and keys for now, shaped for the full API to grow into.
//!
//! Authenticated with an admin token (`tga-…` or the operator's `TOLLGATE_ADMIN_TOKEN`) as a
//! Bearer; a team key never opens it. Not on the hot path, so it reads the store directly, and
//! it updates this process's key cache at once so a new key works on the next request.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_DISPOSITION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use tollgate_core::budget::{Budgets, Calendar};
use tollgate_core::{ApiError, KeyCache, KeyRecord};
use tollgate_proxy::body::read_limited;
use tollgate_proxy::{ProxyBody, error_response, json_response};
use tollgate_store::{AdminPrincipal, LedgerRow, Role, Store, StoreError, Team};

use crate::validate::{
    FieldErrors, check_models, valid_cost_centre, valid_key_name, valid_team_name,
};

pub mod budgets;
pub mod reports;

const MAX_ADMIN_BODY: u64 = 1024 * 1024;

pub struct Admin {
    store: Store,
    keys: Arc<KeyCache>,
    /// This process's budget engine: changes apply here at once, elsewhere on the next sync.
    budgets: Arc<Budgets>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTeam {
    name: Option<String>,
    cost_centre: Option<String>,
    /// Models the team's keys may call (`gpt-5*` matches a prefix); absent: all.
    allowed_models: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: Option<String>,
    /// Unix seconds after which the key stops working.
    expires_at: Option<i64>,
    /// Models this key may call, within the team's; absent: all.
    allowed_models: Option<Vec<String>>,
}

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

    async fn dispatch(&self, request: Request<Incoming>) -> Result<Reply, ApiError> {
        let principal = self.authenticate(&request).await?;
        if principal.role != Role::Admin {
            return Err(ApiError::new(
                403,
                "permission_error",
                "forbidden",
                "This admin token's role may not use this endpoint.",
            ));
        }
        let method = request.method().clone();
        let path = request.uri().path().trim_end_matches('/').to_string();
        let team_filter = query_param(request.uri().query(), "team");
        let segments: Vec<&str> = path
            .trim_start_matches("/admin/v1")
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let reply = match (&method, segments.as_slice()) {
            (&Method::GET, ["reports", "spend"]) => {
                return reports::spend(&self.store, request.uri().query(), None).await;
            }
            (&Method::GET, ["reports", "reconcile"]) => {
                return reports::reconcile(&self.store, request.uri().query()).await;
            }
            (&Method::GET, ["teams"]) => {
                let teams = self.store.list_teams().await.map_err(store_error)?;
                Ok((StatusCode::OK, list(teams)))
            }
            (&Method::POST, ["teams"]) => {
                let body: CreateTeam = read_json(request).await?;
                self.create_team(body).await
            }
            (&Method::GET, ["teams", team]) => Ok((StatusCode::OK, json(self.team(team).await?))),
            (&Method::GET, ["teams", team, "keys"]) => {
                let team = self.team(team).await?;
                let keys = self
                    .store
                    .list_keys(Some(&team.id))
                    .await
                    .map_err(store_error)?;
                Ok((StatusCode::OK, list(keys)))
            }
            (&Method::POST, ["teams", team, "keys"]) => {
                let team = self.team(team).await?;
                let body: CreateKey = read_json(request).await?;
                self.create_key(team, body).await
            }
            (&Method::GET, ["keys"]) => {
                let keys = self.store.list_keys(None).await.map_err(store_error)?;
                Ok((StatusCode::OK, list(keys)))
            }
            (&Method::GET, ["keys", id]) => match self.store.key(id).await.map_err(store_error)? {
                Some(key) => Ok((StatusCode::OK, json(key))),
                None => Err(not_found("key", id)),
            },
            (&Method::DELETE, ["keys", id]) => self.revoke_key(id).await,
            (&Method::POST, ["budgets"]) => {
                let body: budgets::CreateBudget = read_json(request).await?;
                self.create_budget(body).await
            }
            (&Method::GET, ["budgets"]) => {
                let team = match team_filter {
                    Some(t) => Some(self.team(&t).await?.id),
                    None => None,
                };
                let all = self
                    .store
                    .list_budgets(team.as_deref())
                    .await
                    .map_err(store_error)?;
                let mut data = Vec::with_capacity(all.len());
                for budget in &all {
                    data.push(
                        budgets::show(&self.store, budget, self.calendar())
                            .await
                            .map_err(store_error)?,
                    );
                }
                Ok((StatusCode::OK, list(data)))
            }
            (&Method::GET, ["budgets", id]) => {
                let budget = self.budget(id).await?;
                let view = budgets::show(&self.store, &budget, self.calendar())
                    .await
                    .map_err(store_error)?;
                Ok((StatusCode::OK, view))
            }
            (&Method::PATCH, ["budgets", id]) => {
                let current = self.budget(id).await?;
                let body: budgets::UpdateBudget = read_json(request).await?;
                let spec = budgets::update_spec(&current, &body)?;
                let updated = self
                    .store
                    .update_budget(id, &spec, body.reset)
                    .await
                    .map_err(store_error)?
                    .ok_or_else(|| not_found("budget", id))?;
                self.reload_budgets().await?;
                let view = budgets::show(&self.store, &updated, self.calendar())
                    .await
                    .map_err(store_error)?;
                Ok((StatusCode::OK, view))
            }
            (&Method::DELETE, ["budgets", id]) => {
                if !self.store.delete_budget(id).await.map_err(store_error)? {
                    return Err(not_found("budget", id));
                }
                self.reload_budgets().await?;
                Ok((
                    StatusCode::OK,
                    serde_json::json!({"object": "budget", "id": id, "deleted": true}),
                ))
            }
            (&Method::PUT, ["rate-limits"]) => {
                let body: budgets::SetRateLimit = read_json(request).await?;
                let (team, key) = self
                    .scope(body.team.as_deref(), body.key.as_deref())
                    .await?;
                let def = budgets::rate_limit_def(&body, &team.id, key.as_deref())?;
                self.store.set_rate_limit(&def).await.map_err(store_error)?;
                Ok((StatusCode::OK, budgets::rate_limit_view(&def)))
            }
            (&Method::GET, ["rate-limits"]) => {
                let team = match team_filter {
                    Some(t) => Some(self.team(&t).await?.id),
                    None => None,
                };
                let limits = self
                    .store
                    .list_rate_limits(team.as_deref())
                    .await
                    .map_err(store_error)?;
                let data: Vec<_> = limits.iter().map(budgets::rate_limit_view).collect();
                Ok((StatusCode::OK, list(data)))
            }
            (&Method::GET, ["requests", id]) => {
                match self.store.ledger_row(id).await.map_err(store_error)? {
                    Some(row) => Ok((StatusCode::OK, request_view(&row))),
                    None => Err(not_found("request", id)),
                }
            }
            _ => Err(ApiError::unknown_url(method.as_str(), &path)),
        };
        reply.map(|(status, body)| Reply::Json(status, body))
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
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("No admin token was provided"))?;
        let token = header.strip_prefix("Bearer ").unwrap_or(header).trim();
        self.store
            .admin_for_token(token)
            .await
            .map_err(store_error)?
            .ok_or_else(|| unauthorized("The admin token is not valid"))
    }

    fn calendar(&self) -> Calendar {
        self.budgets.options().calendar
    }

    async fn budget(&self, id: &str) -> Result<tollgate_core::budget::BudgetDef, ApiError> {
        self.store
            .budget(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("budget", id))
    }

    /// Applies budget changes to this process at once (others follow within a sync interval).
    async fn reload_budgets(&self) -> Result<(), ApiError> {
        let all = self.store.list_budgets(None).await.map_err(store_error)?;
        self.budgets.set_budgets(all);
        Ok(())
    }

    /// Resolves `team` (id or name) and an optional `key` id that must belong to it.
    async fn scope(
        &self,
        team: Option<&str>,
        key: Option<&str>,
    ) -> Result<(Team, Option<String>), ApiError> {
        let Some(team) = team else {
            let mut errors = FieldErrors::default();
            errors.push("team", "is required (a team id or name)");
            errors.into_result()?;
            return Err(not_found("team", ""));
        };
        let team = self.team(team).await?;
        let Some(key) = key else {
            return Ok((team, None));
        };
        match self.store.key(key).await.map_err(store_error)? {
            Some(k) if k.team_id == team.id => Ok((team, Some(k.id))),
            Some(_) => {
                let mut errors = FieldErrors::default();
                errors.push(
                    "key",
                    format!("key '{key}' does not belong to team '{}'", team.name),
                );
                errors.into_result()?;
                Err(not_found("key", key))
            }
            None => Err(not_found("key", key)),
        }
    }

    async fn create_budget(
        &self,
        body: budgets::CreateBudget,
    ) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let (team, key) = self
            .scope(body.team.as_deref(), body.key.as_deref())
            .await?;
        let spec = budgets::create_spec(&body, &team.id, key.as_deref())?;
        let budget = self
            .store
            .create_budget(&spec, self.calendar())
            .await
            .map_err(store_error)?;
        self.reload_budgets().await?;
        let view = budgets::show(&self.store, &budget, self.calendar())
            .await
            .map_err(store_error)?;
        Ok((budgets::CREATED, view))
    }

    async fn team(&self, id_or_name: &str) -> Result<Team, ApiError> {
        self.store
            .team(id_or_name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("team", id_or_name))
    }

    async fn create_team(
        &self,
        body: CreateTeam,
    ) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let mut errors = FieldErrors::default();
        let name = errors.check("name", body.name.as_deref(), valid_team_name);
        if let Some(cc) = body.cost_centre.as_deref() {
            errors.check("cost_centre", Some(cc), valid_cost_centre);
        }
        let allowed = check_models(&mut errors, body.allowed_models.as_deref());
        errors.into_result()?;
        let team = self
            .store
            .create_team_with(
                name.unwrap_or_default(),
                body.cost_centre.as_deref(),
                allowed.as_deref(),
            )
            .await
            .map_err(store_error)?;
        Ok((StatusCode::CREATED, json(team)))
    }

    async fn create_key(
        &self,
        team: Team,
        body: CreateKey,
    ) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let mut errors = FieldErrors::default();
        let name = body.name.unwrap_or_else(|| "default".into());
        errors.check("name", Some(name.as_str()), valid_key_name);
        let now = tollgate_core::time::now_ms();
        let expires_at_ms = body.expires_at.map(|s| s.saturating_mul(1000));
        if expires_at_ms.is_some_and(|at| at <= now) {
            errors.push("expires_at", "must be in the future (unix seconds)");
        }
        let allowed = check_models(&mut errors, body.allowed_models.as_deref());
        errors.into_result()?;
        let issued = self
            .store
            .create_key_with(&team.id, &name, expires_at_ms, allowed.as_deref())
            .await
            .map_err(store_error)?;
        // Cache it here at once: the caller may use the key on the very next request.
        if let Some(record) = self
            .store
            .key_record(&issued.key.id)
            .await
            .map_err(store_error)?
        {
            self.keys.upsert(record);
        }
        let mut value = json(&issued.key);
        value["secret"] = serde_json::Value::String(issued.secret);
        Ok((StatusCode::CREATED, value))
    }

    async fn revoke_key(&self, id: &str) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let key = self
            .store
            .revoke_key(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("key", id))?;
        if let Some(cached) = self.keys.get(id) {
            self.keys.upsert(KeyRecord {
                revoked_at_ms: key.revoked_at_ms,
                ..(*cached).clone()
            });
        }
        Ok((StatusCode::OK, json(key)))
    }
}

/// What a route answers: JSON (almost all of them) or a CSV file (reports).
pub enum Reply {
    Json(StatusCode, serde_json::Value),
    Csv { filename: String, body: String },
}

impl Reply {
    fn into_response(self) -> Response<ProxyBody> {
        match self {
            Reply::Json(status, body) => json_response(status, body.to_string().into_bytes()),
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

async fn read_json<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
) -> Result<T, ApiError> {
    let body: Bytes = read_limited(request.into_body(), MAX_ADMIN_BODY).await?;
    serde_json::from_slice(&body).map_err(ApiError::invalid_json)
}

/// A ledger row as the admin API shows it: the row's fields, with tool calls as a
/// `{"tool": count}` object.
fn request_view(row: &LedgerRow) -> serde_json::Value {
    let mut value = json(row);
    let tools: serde_json::Map<String, serde_json::Value> = row
        .tool_calls
        .iter()
        .map(|t| (t.name.clone(), t.count.into()))
        .collect();
    value["tool_calls"] = serde_json::Value::Object(tools);
    value
}

/// One `name=value` from a query string (values here are ids and names: no escaping needed).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

fn json(value: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

fn list<T: serde::Serialize>(items: Vec<T>) -> serde_json::Value {
    serde_json::json!({"object": "list", "data": items})
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
