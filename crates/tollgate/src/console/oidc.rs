//! Sign-in to the console with an OpenID provider: the authorization code flow with PKCE.
//!
//! [`Oidc::start`] sends the browser to the provider with a fresh `state`, `nonce` and PKCE
//! challenge, kept server-side in a [`Pending`]; [`Oidc::finish`] takes the provider's redirect
//! back, exchanges its code (with the PKCE verifier) at the token endpoint (`provider`),
//! verifies the ID token (`id_token`) and maps its claim (`[console.oidc] claim`, e.g.
//! `groups`) to a tollgate role through `[console.oidc] roles` (`claims`).

mod claims;
mod id_token;
mod provider;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tollgate_core::config::{OidcConfig, OidcRole};
use tollgate_store::Role;

use crate::admin_client::encode;
use id_token::{Expected, Rejection};
use provider::{Provider, TIMEOUT};

/// How long a sign-in may take between [`Oidc::start`] and [`Oidc::finish`].
pub const PENDING_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// One provider's sign-in. Cheap to share: the console keeps one in an `Arc`.
pub struct Oidc {
    provider: Provider,
    client_id: String,
    client_secret: Option<String>,
    redirect_uri: String,
    /// `openid` and the configured scopes, space-separated.
    scope: String,
    claim: String,
    roles: Vec<OidcRole>,
}

/// A sign-in under way: kept server-side from [`Oidc::start`] until the browser comes back.
/// The console finds it by [`Pending::state`] (or a cookie) and hands it to [`Oidc::finish`].
pub struct Pending {
    pub state: String,
    nonce: String,
    verifier: String,
    created: Instant,
}

/// Who signed in, and as what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The provider's subject (`sub`): stable for this person at this provider.
    pub subject: String,
    /// What to show: email, else preferred username, else name, else the subject.
    pub display: String,
    pub role: Role,
    /// The team's name, for `team_admin`.
    pub team: Option<String>,
}

/// Why a sign-in failed, said to the person signing in.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("Single sign-on is not available on this server ({0}); tell an admin.")]
    Setup(String),
    #[error(
        "Cannot reach the sign-in provider at {url} ({reason}); try again in a moment, and tell \
         an admin if it keeps failing."
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "The sign-in provider at {url} did not answer within {TIMEOUT:?}; try again in a moment."
    )]
    Timeout { url: String },
    #[error("The sign-in provider's answer from {url} cannot be used ({reason}); tell an admin.")]
    BadProvider { url: String, reason: String },
    #[error(
        "This sign-in took longer than {} minutes; start again from the sign-in page.",
        PENDING_LIFETIME.as_secs() / 60
    )]
    Expired,
    #[error(
        "This answer from the sign-in provider does not belong to the sign-in you started here \
         (state mismatch); start again from the sign-in page."
    )]
    StateMismatch,
    #[error(
        "This answer claims to come from {claimed}, not from the configured provider {issuer}; \
         start again from the sign-in page."
    )]
    WrongIssuer { claimed: String, issuer: String },
    #[error(
        "The sign-in provider refused: {}; start again, or ask an admin if it persists.",
        describe(error, description)
    )]
    Provider {
        error: String,
        description: Option<String>,
    },
    #[error(
        "The sign-in provider's answer carries no authorization code; start again from the \
         sign-in page."
    )]
    MissingCode,
    #[error(
        "The sign-in provider would not complete this sign-in ({}); start again from the sign-in \
         page.",
        describe(error, description)
    )]
    TokenRefused {
        error: String,
        description: Option<String>,
    },
    #[error(
        "The sign-in provider's ID token was rejected: {0}; start again, and tell an admin if it \
         keeps happening."
    )]
    TokenRejected(String),
    #[error(
        "Your sign-in carries no '{claim}' claim, so tollgate cannot give you a role; ask an \
         admin to have the provider include it (or to change [console.oidc] claim)."
    )]
    MissingClaim { claim: String },
    #[error(
        "Your {claim} ({}) map to no tollgate role; ask an admin to add one of them to \
         [console.oidc] roles.", values.join(", ")
    )]
    NoRole { claim: String, values: Vec<String> },
    #[error(
        "Your {claim} value '{value}' maps to role '{role}', which is not admin, finance or \
         team_admin (with a team); ask an admin to fix [console.oidc] roles."
    )]
    BadRole {
        claim: String,
        value: String,
        role: String,
    },
}

/// "`error`: `description`", or the error code alone.
fn describe(error: &str, description: &Option<String>) -> String {
    match description.as_deref().filter(|d| !d.trim().is_empty()) {
        Some(d) => format!("{error}: {d}"),
        None => error.to_string(),
    }
}

impl Oidc {
    /// `public_base` is the console's public URL (`[console] public_url`); the redirect URI
    /// registered with the provider is `<public_base>/console/oidc/callback`.
    pub fn new(config: &OidcConfig, client_secret: Option<String>, public_base: &str) -> Oidc {
        let mut scopes = vec!["openid"];
        for scope in config.scopes.iter().flat_map(|s| s.split_whitespace()) {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        Oidc {
            provider: Provider::new(&config.issuer),
            client_id: config.client_id.clone(),
            client_secret: client_secret.filter(|s| !s.is_empty()),
            redirect_uri: format!(
                "{}/console/oidc/callback",
                public_base.trim_end_matches('/')
            ),
            scope: scopes.join(" "),
            claim: config.claim.clone(),
            roles: config.roles.clone(),
        }
    }

    /// The redirect URI this client sends (and the provider must have registered).
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Where to send the browser, and what must be kept (server-side) until it comes back.
    pub async fn start(&self) -> Result<(String, Pending), OidcError> {
        let discovery = self.provider.discovery().await?;
        let pending = Pending::new();
        let url = authorize_url(
            &discovery.authorization_endpoint,
            &self.client_id,
            &self.redirect_uri,
            &self.scope,
            &pending,
        );
        Ok((url, pending))
    }

    /// The callback's query string (`code`, `state`, or `error`/`error_description`) checked
    /// against the pending sign-in: exchanges the code (with the PKCE verifier), verifies the
    /// ID token (signature against the provider's JWKS, iss, aud, exp, nonce) and maps the
    /// claim.
    pub async fn finish(
        &self,
        pending: &Pending,
        callback_query: &str,
    ) -> Result<Person, OidcError> {
        if pending.is_expired() {
            return Err(OidcError::Expired);
        }
        let params = parse_query(callback_query);
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        // A missing state is a mismatch too, but the provider's own error is the better
        // message when it left the state out.
        let state = param("state");
        if state.is_some_and(|s| !bool::from(s.as_bytes().ct_eq(pending.state.as_bytes()))) {
            return Err(OidcError::StateMismatch);
        }
        if let Some(error) = param("error") {
            return Err(OidcError::Provider {
                error: error.to_string(),
                description: param("error_description").map(str::to_string),
            });
        }
        if state.is_none() {
            return Err(OidcError::StateMismatch);
        }
        let code = param("code")
            .filter(|c| !c.is_empty())
            .ok_or(OidcError::MissingCode)?;
        let discovery = self.provider.discovery().await?;
        // RFC 9207: a provider that names itself must be the one this sign-in went to.
        if let Some(claimed) = param("iss")
            && claimed != discovery.issuer
        {
            return Err(OidcError::WrongIssuer {
                claimed: claimed.to_string(),
                issuer: discovery.issuer.clone(),
            });
        }
        let (form, credentials) = self.token_request(code, &pending.verifier);
        let token = self.provider.token(&discovery, form, credentials).await?;
        let expected = Expected {
            issuer: &discovery.issuer,
            client_id: &self.client_id,
            nonce: &pending.nonce,
        };
        let keys = self.provider.keys(&discovery, false).await?;
        let verified = match id_token::verify(&token, &keys, &expected) {
            Err(Rejection::UnknownKey(_)) => {
                // Key rotation: the provider signs with a key published after ours were read.
                let keys = self.provider.keys(&discovery, true).await?;
                id_token::verify(&token, &keys, &expected)
            }
            other => other,
        };
        let claims = verified.map_err(|rejection| {
            OidcError::TokenRejected(match rejection {
                Rejection::UnknownKey(Some(kid)) => {
                    format!("it is signed with a key ('{kid}') the provider does not publish")
                }
                Rejection::UnknownKey(None) => {
                    "no key the provider publishes fits its signature".to_string()
                }
                Rejection::Invalid(reason) => reason,
            })
        })?;
        claims::person(&claims, &self.claim, &self.roles)
    }

    /// The token request's form and `Authorization` header: `client_secret_basic` when there
    /// is a secret (both parts form-encoded before base64, RFC 6749 §2.3.1); otherwise a public
    /// client names itself in the form and PKCE is its proof.
    fn token_request(&self, code: &str, verifier: &str) -> (String, Option<String>) {
        let mut form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
            encode(code),
            encode(&self.redirect_uri),
            encode(verifier)
        );
        match &self.client_secret {
            Some(secret) => {
                let pair = format!("{}:{}", encode(&self.client_id), encode(secret));
                (form, Some(format!("Basic {}", STANDARD.encode(pair))))
            }
            None => {
                form.push_str(&format!("&client_id={}", encode(&self.client_id)));
                (form, None)
            }
        }
    }
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.provider.issuer())
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl Pending {
    fn new() -> Pending {
        Pending {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            created: Instant::now(),
        }
    }

    /// Older than [`PENDING_LIFETIME`]: [`Oidc::finish`] refuses it, and the console may drop it.
    pub fn is_expired(&self) -> bool {
        self.created.elapsed() > PENDING_LIFETIME
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("state", &self.state)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// 32 random bytes, base64url without padding (43 characters): a `state`, `nonce` or PKCE
/// verifier.
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The PKCE `S256` challenge of a verifier (RFC 7636 §4.2).
fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The authorization request: every parameter percent-encoded.
fn authorize_url(
    endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    pending: &Pending,
) -> String {
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    let params = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", scope),
        ("state", &pending.state),
        ("nonce", &pending.nonce),
        ("code_challenge", &challenge(&pending.verifier)),
        ("code_challenge_method", "S256"),
    ];
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{endpoint}{separator}{}", query.join("&"))
}

/// `a=1&b=x%20y` → pairs, decoded (`+` is a space, as in forms).
fn parse_query(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .trim_start_matches('?')
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OidcConfig {
        OidcConfig {
            issuer: "http://127.0.0.1:9/".into(),
            client_id: "tollgate console".into(),
            label: "SSO".into(),
            scopes: vec!["email".into(), "openid".into(), "profile  groups".into()],
            claim: "groups".into(),
            roles: vec![OidcRole {
                value: "finance".into(),
                role: "finance".into(),
                team: None,
            }],
        }
    }

    #[test]
    fn s256_challenge_matches_rfc_7636_appendix_b() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn pending_values_are_43_random_base64url_characters() {
        let (a, b) = (Pending::new(), Pending::new());
        for value in [&a.state, &a.nonce, &a.verifier] {
            assert_eq!(value.len(), 43, "{value}");
            assert!(
                value
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            );
        }
        assert_ne!(a.state, b.state);
        assert_ne!(a.state, a.nonce);
        assert_ne!(a.nonce, a.verifier);
        assert!(
            !format!("{a:?}").contains(&a.verifier),
            "Debug hides the verifier"
        );
    }

    #[test]
    fn authorize_url_carries_every_parameter_percent_encoded() {
        let oidc = Oidc::new(&config(), None, "https://tollgate.example.com/");
        assert_eq!(
            oidc.redirect_uri(),
            "https://tollgate.example.com/console/oidc/callback"
        );
        assert_eq!(oidc.scope, "openid email profile groups");
        let pending = Pending::new();
        let url = authorize_url(
            "https://idp.example.com/authorize?tenant=a",
            &oidc.client_id,
            &oidc.redirect_uri,
            &oidc.scope,
            &pending,
        );
        let (base, query) = url.split_once("?tenant=a&").unwrap();
        assert_eq!(base, "https://idp.example.com/authorize");
        let expected = format!(
            "response_type=code&client_id=tollgate%20console\
             &redirect_uri=https%3A%2F%2Ftollgate.example.com%2Fconsole%2Foidc%2Fcallback\
             &scope=openid%20email%20profile%20groups&state={}&nonce={}&code_challenge={}\
             &code_challenge_method=S256",
            pending.state,
            pending.nonce,
            challenge(&pending.verifier)
        );
        assert_eq!(query, expected);
        let params = parse_query(query);
        assert_eq!(params[1], ("client_id".into(), "tollgate console".into()));
        assert_eq!(
            params[3],
            ("scope".into(), "openid email profile groups".into())
        );
        assert!(
            !url.contains(&pending.verifier),
            "only the challenge travels"
        );
        let plain = authorize_url("https://idp/auth", "c", "r", "openid", &pending);
        assert!(plain.starts_with("https://idp/auth?response_type=code&"));
    }

    #[test]
    fn callback_query_decodes_plus_and_percent() {
        assert_eq!(
            parse_query("?error=access_denied&error_description=End-User+aborted%20it&x"),
            [
                ("error".to_string(), "access_denied".to_string()),
                ("error_description".into(), "End-User aborted it".into()),
                ("x".into(), String::new()),
            ]
        );
    }

    #[tokio::test]
    async fn finish_refuses_expired_and_foreign_answers_before_calling_the_provider() {
        // The issuer is unreachable: each of these must fail before any request.
        let oidc = Oidc::new(&config(), None, "https://tollgate.example.com");
        let pending = Pending::new();
        let query = format!("code=c&state={}", pending.state);

        let error = oidc
            .finish(&pending, "code=c&state=other")
            .await
            .unwrap_err();
        assert!(matches!(error, OidcError::StateMismatch), "{error}");
        let error = oidc.finish(&pending, "code=c").await.unwrap_err();
        assert!(matches!(error, OidcError::StateMismatch), "{error}");
        let denied = format!(
            "error=access_denied&error_description=End-User+aborted+interaction&state={}",
            pending.state
        );
        let error = oidc.finish(&pending, &denied).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "The sign-in provider refused: access_denied: End-User aborted interaction; start \
             again, or ask an admin if it persists."
        );
        let error = oidc
            .finish(&pending, &format!("state={}", pending.state))
            .await
            .unwrap_err();
        assert!(matches!(error, OidcError::MissingCode), "{error}");

        let old = Pending {
            created: Instant::now()
                .checked_sub(PENDING_LIFETIME + Duration::from_secs(1))
                .unwrap(),
            ..Pending::new()
        };
        let error = oidc
            .finish(&old, &format!("code=c&state={}", old.state))
            .await
            .unwrap_err();
        assert!(matches!(error, OidcError::Expired), "{error}");
        assert!(old.is_expired() && !pending.is_expired());

        // A well-formed answer goes to the provider, which is not there.
        let error = oidc.finish(&pending, &query).await.unwrap_err();
        assert!(matches!(error, OidcError::Unreachable { .. }), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("Cannot reach the sign-in provider at http://127.0.0.1:9/.well-known/openid-configuration"),
            "{error}"
        );
    }
}
