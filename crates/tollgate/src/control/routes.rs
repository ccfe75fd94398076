//! The admin API's route table: every method and path `/admin/v1` serves, who may call it, and
//! the operation that answers it. Dispatch looks routes up here and nowhere else, and the
//! OpenAPI test compares this table with `openapi.json`, so the two cannot drift apart.

use std::sync::LazyLock;

use http::Method;
use tollgate_core::ApiError;
use tollgate_store::{AdminPrincipal, Role};

use super::page::percent_decode;

/// Which roles may call a route. Team-scoped routes are further fenced by the handler: a
/// `team_admin` acts only on its own team's resources, and sees only them in lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed (the OpenAPI document: it describes the API, it reveals no data).
    Public,
    /// `admin` only.
    Admin,
    /// `admin`, and `finance` read-only (reads across every team).
    AdminOrFinance,
    /// `admin`, and `team_admin` for its own team.
    Team,
    /// `admin`, `finance`, and `team_admin` for its own team.
    TeamOrFinance,
}

impl Access {
    pub fn allows(self, role: Role) -> bool {
        matches!(
            (self, role),
            (Access::Public, _)
                | (_, Role::Admin)
                | (Access::Team | Access::TeamOrFinance, Role::TeamAdmin)
                | (
                    Access::AdminOrFinance | Access::TeamOrFinance,
                    Role::Finance
                )
        )
    }
}

/// What a route does; `Admin::serve` matches on it exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    OpenApi,
    ListTeams,
    CreateTeam,
    GetTeam,
    UpdateTeam,
    ListTeamKeys,
    IssueKey,
    TopSessions,
    GetTeamSession,
    TeamSessionCalls,
    ListKeys,
    GetKey,
    RevokeKey,
    RotateKey,
    ListBudgets,
    CreateBudget,
    GetBudget,
    UpdateBudget,
    DeleteBudget,
    ListRateLimits,
    SetRateLimit,
    GetSession,
    GetRequest,
    SpendReport,
    Reconcile,
    Refusals,
    ListAudit,
    ListAdminTokens,
    CreateAdminToken,
    RevokeAdminToken,
}

/// One route: `pattern` is the full path with `{name}` for a path parameter, as in OpenAPI.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub pattern: &'static str,
    pub access: Access,
    pub op: Op,
}

impl Route {
    /// Changes something (and so is written to the audit log when it succeeds).
    pub fn mutates(&self) -> bool {
        self.method != "GET"
    }

    /// `"PATCH /admin/v1/budgets/{id}"`: the audit log's action.
    pub fn action(&self) -> String {
        format!("{} {}", self.method, self.pattern)
    }
}

const fn route(method: &'static str, pattern: &'static str, access: Access, op: Op) -> Route {
    Route {
        method,
        pattern,
        access,
        op,
    }
}

use Access::{Admin, AdminOrFinance, Public, Team, TeamOrFinance};

/// Every route of `/admin/v1`.
#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    route("GET",    "/admin/v1/openapi.json",                Public,         Op::OpenApi),
    route("GET",    "/admin/v1/teams",                       TeamOrFinance,  Op::ListTeams),
    route("POST",   "/admin/v1/teams",                       Admin,          Op::CreateTeam),
    route("GET",    "/admin/v1/teams/{team}",                TeamOrFinance,  Op::GetTeam),
    route("PATCH",  "/admin/v1/teams/{team}",                Team,           Op::UpdateTeam),
    route("GET",    "/admin/v1/teams/{team}/keys",           Team,           Op::ListTeamKeys),
    route("POST",   "/admin/v1/teams/{team}/keys",           Team,           Op::IssueKey),
    route("GET",    "/admin/v1/teams/{team}/sessions",       TeamOrFinance,  Op::TopSessions),
    route("GET",    "/admin/v1/teams/{team}/sessions/{id}",  TeamOrFinance,  Op::GetTeamSession),
    route("GET",    "/admin/v1/teams/{team}/sessions/{id}/calls", TeamOrFinance, Op::TeamSessionCalls),
    route("GET",    "/admin/v1/keys",                        Team,           Op::ListKeys),
    route("GET",    "/admin/v1/keys/{id}",                   Team,           Op::GetKey),
    route("DELETE", "/admin/v1/keys/{id}",                   Team,           Op::RevokeKey),
    route("POST",   "/admin/v1/keys/{id}/rotate",            Team,           Op::RotateKey),
    route("GET",    "/admin/v1/budgets",                     TeamOrFinance,  Op::ListBudgets),
    route("POST",   "/admin/v1/budgets",                     Team,           Op::CreateBudget),
    route("GET",    "/admin/v1/budgets/{id}",                TeamOrFinance,  Op::GetBudget),
    route("PATCH",  "/admin/v1/budgets/{id}",                Team,           Op::UpdateBudget),
    route("DELETE", "/admin/v1/budgets/{id}",                Team,           Op::DeleteBudget),
    route("GET",    "/admin/v1/rate-limits",                 Team,           Op::ListRateLimits),
    route("PUT",    "/admin/v1/rate-limits",                 Team,           Op::SetRateLimit),
    // Finance traces a disputed charge to its calls: rows and sessions carry no prompts.
    route("GET",    "/admin/v1/sessions/{id}",               TeamOrFinance,  Op::GetSession),
    route("GET",    "/admin/v1/requests/{id}",               TeamOrFinance,  Op::GetRequest),
    route("GET",    "/admin/v1/reports/spend",               TeamOrFinance,  Op::SpendReport),
    route("GET",    "/admin/v1/reports/reconcile",           AdminOrFinance, Op::Reconcile),
    route("GET",    "/admin/v1/reports/refusals",            AdminOrFinance, Op::Refusals),
    route("GET",    "/admin/v1/audit",                       Admin,          Op::ListAudit),
    route("GET",    "/admin/v1/admin-tokens",                Admin,          Op::ListAdminTokens),
    route("POST",   "/admin/v1/admin-tokens",                Admin,          Op::CreateAdminToken),
    route("DELETE", "/admin/v1/admin-tokens/{id}",           Admin,          Op::RevokeAdminToken),
];

/// Every pattern of [`ROUTES`], to the routes served under it (one per method).
static TABLE: LazyLock<matchit::Router<Vec<&'static Route>>> = LazyLock::new(|| {
    let mut table = matchit::Router::new();
    let mut patterns: Vec<&'static str> = ROUTES.iter().map(|r| r.pattern).collect();
    patterns.sort_unstable();
    patterns.dedup();
    for pattern in patterns {
        let routes = ROUTES.iter().filter(|r| r.pattern == pattern).collect();
        // A conflicting pattern would be left out; the unit test below finds every route.
        if let Err(error) = table.insert(pattern, routes) {
            tracing::error!(%error, pattern, "admin route left out");
        }
    }
    table
});

/// The route for `method` and `path`, with its path parameters (percent-decoded) in order.
/// A path served under other methods is 405 with `Allow`; an unknown path (or a parameter that
/// is not valid percent-encoded UTF-8) is 404.
pub fn find(method: &Method, path: &str) -> Result<(&'static Route, Vec<String>), ApiError> {
    let unknown = || ApiError::unknown_url(method.as_str(), path);
    let matched = TABLE.at(path).map_err(|_| unknown())?;
    let params = matched
        .params
        .iter()
        .map(|(_, value)| percent_decode(value))
        .collect::<Option<Vec<String>>>()
        .ok_or_else(unknown)?;
    if let Some(route) = matched.value.iter().find(|r| r.method == method.as_str()) {
        return Ok((route, params));
    }
    let allowed: Vec<&str> = matched.value.iter().map(|r| r.method).collect();
    let mut error = ApiError::new(
        405,
        "invalid_request_error",
        "method_not_allowed",
        format!(
            "{method} is not allowed on {path}; it takes {}.",
            allowed.join(", ")
        ),
    );
    error.headers.push(("allow", allowed.join(", ")));
    Err(error)
}

/// 403: the token is valid but its role (or team) does not reach this.
pub fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(403, "permission_error", "forbidden", message)
}

/// Refuses a route the principal's role may not call at all.
pub fn check_role(route: &Route, principal: &AdminPrincipal) -> Result<(), ApiError> {
    if route.access.allows(principal.role) {
        return Ok(());
    }
    Err(forbidden(format!(
        "A {} token may not call {}.",
        principal.role.as_str(),
        route.action()
    )))
}

/// The team a `team_admin` is fenced into; `None` for roles that see every team. A team_admin
/// token without a team (the schema forbids it) is fenced into no team at all.
pub fn fence(principal: &AdminPrincipal) -> Option<&str> {
    match principal.role {
        Role::TeamAdmin => Some(principal.team_id.as_deref().unwrap_or("")),
        Role::Admin | Role::Finance => None,
    }
}

/// Refuses a `team_admin` acting on another team's resource. We answer 403 rather than 404:
/// the resource's existence is not a secret worth hiding (ids are random and unguessable, and
/// team names are listed to finance anyway), and 403 tells the caller what is wrong.
pub fn check_team(principal: &AdminPrincipal, team_id: &str) -> Result<(), ApiError> {
    match fence(principal) {
        Some(own) if own != team_id => Err(forbidden(
            "This team_admin token may only act on its own team's resources.",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_unique_and_found_by_its_own_pattern() {
        for (i, r) in ROUTES.iter().enumerate() {
            assert!(
                !ROUTES[..i]
                    .iter()
                    .any(|o| o.method == r.method && o.pattern == r.pattern),
                "{} twice",
                r.action()
            );
            let path = r.pattern.replace('{', "x").replace('}', "");
            let method = Method::from_bytes(r.method.as_bytes()).unwrap();
            let (found, _) = find(&method, &path).unwrap();
            assert_eq!(found.op, r.op, "{}", r.action());
        }
    }

    #[test]
    fn parameters_are_decoded_and_other_methods_get_405() {
        let (route, params) = find(&Method::GET, "/admin/v1/teams/a%20b/keys").unwrap();
        assert_eq!(route.op, Op::ListTeamKeys);
        assert_eq!(params, ["a b"]);
        let err = find(&Method::PUT, "/admin/v1/teams").unwrap_err();
        assert_eq!(err.status, 405);
        assert_eq!(err.headers, [("allow", "GET, POST".to_string())]);
        assert_eq!(
            find(&Method::GET, "/admin/v1/nope").unwrap_err().status,
            404
        );
    }

    #[test]
    fn roles_reach_what_the_readme_says() {
        assert!(Access::Team.allows(Role::TeamAdmin));
        assert!(!Access::Team.allows(Role::Finance));
        assert!(Access::TeamOrFinance.allows(Role::Finance));
        assert!(!Access::AdminOrFinance.allows(Role::TeamAdmin));
        assert!(!Access::Admin.allows(Role::Finance));
        assert!(Access::Public.allows(Role::Finance));
    }
}
