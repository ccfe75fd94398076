//! `[console]`: the web console at `/console` for team admins and finance, served on the admin
//! listener (the main one when none is set), and its optional OpenID Connect sign-in.

use serde::Deserialize;

use super::{ConfigProblem, problem};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve `/console` (`TOLLGATE_CONSOLE_ENABLED`). Off: those paths answer 404.
    pub enabled: bool,
    /// A signed-in session ends after this long without a page view.
    pub idle_timeout_minutes: u64,
    /// A signed-in session ends this long after sign-in, however busy.
    pub absolute_timeout_hours: u64,
    /// The address people reach the console at, e.g. `https://tollgate.example.com`
    /// (`TOLLGATE_PUBLIC_URL`). It makes the OpenID Connect redirect URI
    /// (`<public_url>/console/oidc/callback`), and an `https://` one marks the session cookie
    /// `Secure` even when TLS ends at a load balancer in front of tollgate.
    pub public_url: Option<String>,
    /// OpenID Connect sign-in; unset: admin tokens only.
    pub oidc: Option<OidcConfig>,
    /// Environment values `apply_env` could not use, reported by `validate` (not a setting).
    #[serde(skip)]
    pub env_problems: Vec<ConfigProblem>,
}

/// Sign-in with an OpenID provider (authorization code flow with PKCE). The client secret,
/// when the provider issued one, comes from `TOLLGATE_OIDC_CLIENT_SECRET`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL; `<issuer>/.well-known/openid-configuration` is read at first use.
    pub issuer: String,
    pub client_id: String,
    /// The button's label on the sign-in page.
    #[serde(default = "default_oidc_label")]
    pub label: String,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim holding the values `roles` map (a string or an array of strings).
    #[serde(default = "default_claim")]
    pub claim: String,
    /// Claim value → role (and team, for `team_admin`). A person whose claim matches none is
    /// refused; one that matches several gets the first in this list.
    #[serde(default)]
    pub roles: Vec<OidcRole>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcRole {
    /// The claim value, e.g. the group `platform-admins`.
    pub value: String,
    /// `admin`, `finance` or `team_admin`.
    pub role: String,
    /// The team's name, for `team_admin`.
    pub team: Option<String>,
}

fn default_oidc_label() -> String {
    "Sign in with single sign-on".to_string()
}

fn default_scopes() -> Vec<String> {
    vec!["email".to_string(), "profile".to_string()]
}

fn default_claim() -> String {
    "groups".to_string()
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            enabled: true,
            idle_timeout_minutes: 30,
            absolute_timeout_hours: 12,
            public_url: None,
            oidc: None,
            env_problems: Vec::new(),
        }
    }
}

impl ConsoleConfig {
    /// Applies `TOLLGATE_CONSOLE_ENABLED` and `TOLLGATE_PUBLIC_URL`.
    pub fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        if let Some(url) = env("TOLLGATE_PUBLIC_URL").filter(|v| !v.trim().is_empty()) {
            self.public_url = Some(url.trim().trim_end_matches('/').to_string());
        }
        let Some(v) = env("TOLLGATE_CONSOLE_ENABLED").filter(|v| !v.trim().is_empty()) else {
            return;
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => self.enabled = true,
            "0" | "false" | "no" | "off" => self.enabled = false,
            _ => self.env_problems.push(problem(
                "TOLLGATE_CONSOLE_ENABLED",
                format!("'{v}' is not true/false"),
            )),
        }
    }

    /// The public URL without a trailing slash.
    pub fn public_base(&self) -> Option<&str> {
        self.public_url.as_deref().map(|u| u.trim_end_matches('/'))
    }

    /// Every problem with this section, each named `console.<field>`.
    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = self.env_problems.clone();
        if self.idle_timeout_minutes == 0 {
            problems.push(problem(
                "console.idle_timeout_minutes",
                "must be greater than 0",
            ));
        }
        if self.absolute_timeout_hours == 0 {
            problems.push(problem(
                "console.absolute_timeout_hours",
                "must be greater than 0",
            ));
        }
        if let Some(url) = &self.public_url
            && !is_http_url(url)
        {
            problems.push(problem(
                "console.public_url",
                format!("'{url}' is not an http:// or https:// URL without path or query"),
            ));
        }
        let Some(oidc) = &self.oidc else {
            return problems;
        };
        if !is_http_url_with_path(&oidc.issuer) {
            problems.push(problem(
                "console.oidc.issuer",
                format!("'{}' is not an http:// or https:// URL", oidc.issuer),
            ));
        }
        if oidc.client_id.trim().is_empty() {
            problems.push(problem("console.oidc.client_id", "must not be empty"));
        }
        if oidc.claim.trim().is_empty() {
            problems.push(problem("console.oidc.claim", "must not be empty"));
        }
        if self.public_url.is_none() {
            problems.push(problem(
                "console.public_url",
                "must be set when [console.oidc] is (it makes the redirect URI \
                 <public_url>/console/oidc/callback registered with the provider)",
            ));
        }
        if oidc.roles.is_empty() {
            problems.push(problem(
                "console.oidc.roles",
                "must map at least one claim value to a role, or nobody can sign in",
            ));
        }
        for (i, role) in oidc.roles.iter().enumerate() {
            let field = format!("console.oidc.roles[{i}]");
            match (role.role.as_str(), &role.team) {
                ("admin" | "finance", None) => {}
                ("admin" | "finance", Some(_)) => problems.push(problem(
                    &field,
                    format!("role '{}' takes no team", role.role),
                )),
                ("team_admin", Some(team)) if !team.trim().is_empty() => {}
                ("team_admin", _) => {
                    problems.push(problem(&field, "role 'team_admin' needs a team"))
                }
                (other, _) => problems.push(problem(
                    &field,
                    format!("role '{other}' is not admin, finance or team_admin"),
                )),
            }
            if role.value.is_empty() {
                problems.push(problem(&field, "value must not be empty"));
            }
        }
        problems
    }
}

/// `http(s)://host[:port]` with nothing after it.
fn is_http_url(url: &str) -> bool {
    match url.split_once("://") {
        Some(("http" | "https", rest)) => {
            let rest = rest.trim_end_matches('/');
            !rest.is_empty() && !rest.contains(['/', '?', '#', ' '])
        }
        _ => false,
    }
}

/// `http(s)://host[:port][/path]` without query or fragment (issuers may have a path).
fn is_http_url_with_path(url: &str) -> bool {
    match url.split_once("://") {
        Some(("http" | "https", rest)) => {
            !rest.is_empty() && !rest.starts_with('/') && !rest.contains(['?', '#', ' '])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc() -> OidcConfig {
        OidcConfig {
            issuer: "http://127.0.0.1:9000".into(),
            client_id: "tollgate".into(),
            label: default_oidc_label(),
            scopes: default_scopes(),
            claim: default_claim(),
            roles: vec![OidcRole {
                value: "search-admins".into(),
                role: "team_admin".into(),
                team: Some("search".into()),
            }],
        }
    }

    #[test]
    fn defaults_are_valid_and_oidc_needs_a_public_url_and_sane_roles() {
        assert!(ConsoleConfig::default().validate().is_empty());
        let mut console = ConsoleConfig {
            oidc: Some(oidc()),
            ..ConsoleConfig::default()
        };
        let fields: Vec<String> = console.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["console.public_url"]);
        console.public_url = Some("https://tollgate.example.com".into());
        assert!(console.validate().is_empty());
        if let Some(o) = console.oidc.as_mut() {
            o.roles.push(OidcRole {
                value: "x".into(),
                role: "team_admin".into(),
                team: None,
            });
            o.roles.push(OidcRole {
                value: "y".into(),
                role: "root".into(),
                team: None,
            });
        }
        let messages: Vec<String> = console.validate().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            messages,
            [
                "console.oidc.roles[1]: role 'team_admin' needs a team",
                "console.oidc.roles[2]: role 'root' is not admin, finance or team_admin"
            ]
        );
        console.public_url = Some("https://x.example.com/console".into());
        assert_eq!(console.validate()[0].field, "console.public_url");
    }

    #[test]
    fn env_sets_the_public_url_and_switches_the_console_off() {
        let mut console = ConsoleConfig::default();
        console.apply_env(&|k: &str| match k {
            "TOLLGATE_PUBLIC_URL" => Some("https://t.example.com/".into()),
            "TOLLGATE_CONSOLE_ENABLED" => Some("off".into()),
            _ => None,
        });
        assert_eq!(console.public_base(), Some("https://t.example.com"));
        assert!(!console.enabled);
        console.apply_env(&|k: &str| (k == "TOLLGATE_CONSOLE_ENABLED").then(|| "maybe".into()));
        assert_eq!(console.validate()[0].field, "TOLLGATE_CONSOLE_ENABLED");
    }
}
