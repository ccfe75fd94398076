//! The control plane: every operation on teams, keys, budgets, rate limits, sessions, request
//! rows, reports, the audit log and admin tokens, in one place. It takes an actor (an admin
//! token's holder, or the local operator who holds `DATABASE_URL`), checks what the actor's role
//! reaches, carries the operation out on the store and writes the audit log.
//!
//! Operations are named by the admin API's routes ([`routes::ROUTES`]): the HTTP shell
//! (`admin_http`) and the CLI in both modes (`plane`) hand a method, path, query and JSON body
//! to [`Control::run`] and get the same [`Reply`] back, so an operation behaves the same
//! whichever surface asked for it. The OpenAPI document
//! (`control/openapi.json`, served at `/admin/v1/openapi.json`) describes every one.
//!
//! Roles: `admin` (everything), `team_admin` (its own team's resources), `finance` (reads:
//! reports, budgets, teams, sessions and single request rows, which carry no prompts).

use std::sync::Arc;

use http::Method;

use tollgate_core::budget::{Budgets, Calendar};
use tollgate_core::{ApiError, KeyCache};
use tollgate_store::{AdminPrincipal, Role, Store};

use reply::{Answer, openapi};
use routes::{Op, Route};

mod audit;
pub mod budgets;
mod keys;
mod limits;
pub mod page;
pub mod reply;
pub mod reports;
pub mod routes;
mod sessions;
mod teams;
mod tokens;

pub use reply::Reply;
pub use routes::ROUTES;

/// The OpenAPI 3.1 document for all of `/admin/v1`, kept true by `tests/openapi.rs`.
pub const OPENAPI_JSON: &str = include_str!("control/openapi.json");

/// Who carries out an operation: an admin token's holder, or [`operator`].
pub type Actor = AdminPrincipal;

/// The local operator: whoever runs `tollgate team …` without `--server` holds the database's
/// credentials, so they act with an admin's reach. Their changes are audited under the id
/// `operator` and the login name the shell gives, so the audit log shows every change,
/// whichever way it was made.
pub fn operator() -> Actor {
    let login = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_string());
    AdminPrincipal {
        token_id: "operator".to_string(),
        name: format!("local operator ({login})"),
        role: Role::Admin,
        team_id: None,
    }
}

/// The in-memory state of a process that serves traffic. A change made through this process
/// applies to it at once (a new key works on the next request); other replicas follow on their
/// next sync. The CLI's local mode has none: running gateways pick its changes up within
/// `store.key_refresh_ms`.
pub struct Live {
    pub keys: Arc<KeyCache>,
    pub budgets: Arc<Budgets>,
}

pub struct Control {
    /// Opened with `[budgets] timezone` as its budget calendar.
    store: Store,
    live: Option<Live>,
}

/// A routed operation: which one, and its path parameters (in pattern order, percent-decoded).
pub struct Routed {
    pub route: &'static Route,
    pub params: Vec<String>,
}

impl Routed {
    /// Needs no actor (the OpenAPI document describes the API and reveals no data).
    pub fn is_public(&self) -> bool {
        self.route.access == routes::Access::Public
    }
}

/// One operation being carried out: who, which, its parameters, query string and body.
pub(crate) struct Call<'a> {
    pub principal: &'a Actor,
    pub route: &'static Route,
    pub params: Vec<String>,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

impl Call<'_> {
    /// The `i`-th path parameter (the route table guarantees it exists).
    fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// The team a `team_admin` is fenced into (`None`: every team).
    fn fence(&self) -> Option<&str> {
        routes::fence(self.principal)
    }
}

impl Control {
    pub fn new(store: Store, live: Option<Live>) -> Control {
        Control { store, live }
    }

    /// The operation for `method` and `path`: 404 for an unknown path, 405 (with `Allow`) for
    /// a path served under other methods.
    pub fn route(method: &Method, path: &str) -> Result<Routed, ApiError> {
        let (route, params) = routes::find(method, path)?;
        Ok(Routed { route, params })
    }

    /// Carries out `routed` as `actor`: 403 if the actor's role does not reach it; otherwise the
    /// operation's answer. Every change that succeeds is in the audit log.
    pub async fn run(
        &self,
        actor: &Actor,
        routed: Routed,
        query: Option<&str>,
        body: &[u8],
    ) -> Answer {
        routes::check_role(routed.route, actor)?;
        let call = Call {
            principal: actor,
            route: routed.route,
            params: routed.params,
            query,
            body,
        };
        match call.route.op {
            Op::OpenApi => Ok(openapi()),
            Op::ListTeams => self.list_teams(&call).await,
            Op::CreateTeam => self.create_team(&call).await,
            Op::GetTeam => self.get_team(&call).await,
            Op::UpdateTeam => self.update_team(&call).await,
            Op::ListTeamKeys => self.list_team_keys(&call).await,
            Op::IssueKey => self.issue_key(&call).await,
            Op::TopSessions => self.top_sessions(&call).await,
            Op::GetTeamSession => self.get_team_session(&call).await,
            Op::TeamSessionCalls => self.team_session_calls(&call).await,
            Op::ListKeys => self.list_keys(&call).await,
            Op::GetKey => self.get_key(&call).await,
            Op::RevokeKey => self.revoke_key(&call).await,
            Op::RotateKey => self.rotate_key(&call).await,
            Op::ListBudgets => self.list_budgets(&call).await,
            Op::CreateBudget => self.create_budget(&call).await,
            Op::GetBudget => self.get_budget(&call).await,
            Op::UpdateBudget => self.update_budget(&call).await,
            Op::DeleteBudget => self.delete_budget(&call).await,
            Op::ListRateLimits => self.list_rate_limits(&call).await,
            Op::SetRateLimit => self.set_rate_limit(&call).await,
            Op::GetSession => self.get_session(&call).await,
            Op::GetRequest => self.get_request(&call).await,
            // A team_admin's reports are restricted to its team; admin and finance see all.
            Op::SpendReport => {
                reports::spend(&self.store, query, call.fence().map(str::to_string)).await
            }
            Op::Reconcile => reports::reconcile(&self.store, query).await,
            Op::Refusals => reports::refusals(&self.store, query).await,
            Op::ListAudit => self.list_audit(&call).await,
            Op::ListAdminTokens => self.list_admin_tokens(&call).await,
            Op::CreateAdminToken => self.create_admin_token(&call).await,
            Op::RevokeAdminToken => self.revoke_admin_token(&call).await,
        }
    }

    /// The store, for the HTTP shell's token check.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The zone budget windows are in.
    fn calendar(&self) -> Calendar {
        self.store.budget_calendar()
    }
}
