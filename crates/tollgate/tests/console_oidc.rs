//! The console's OpenID Connect sign-in against a real provider: node-oidc-provider
//! (`tests/clients/oidc/provider.mjs`, installed by `tests/clients/setup.sh`). Each test starts
//! its own provider on a free port, has [`Oidc::start`] build the authorization request, walks
//! the provider's login and consent forms as a browser would (cookies kept, redirects
//! followed) and hands the redirect back to [`Oidc::finish`]. Needs `node` (20+) on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use http::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use tollgate::console::oidc::{Oidc, OidcError, Person};
use tollgate_core::config::{OidcConfig, OidcRole};
use tollgate_proxy::body::read_limited;
use tollgate_store::Role;

/// The console's public URL in these tests; nothing listens there: the test reads the
/// provider's redirect to it instead of following it.
const PUBLIC_URL: &str = "http://127.0.0.1:9";
const CALLBACK: &str = "http://127.0.0.1:9/console/oidc/callback";

/// The provider, with the console's side of the tests.
struct Provider(tollgate_tests::oidc::Provider);

impl Provider {
    async fn start(port: u16, env: &[(&str, &str)]) -> Provider {
        Provider(tollgate_tests::oidc::Provider::start(port, CALLBACK, env).await)
    }

    async fn stop(self) {
        self.0.stop().await;
    }

    fn config(&self) -> OidcConfig {
        let role = |value: &str, role: &str, team: Option<&str>| OidcRole {
            value: value.into(),
            role: role.into(),
            team: team.map(Into::into),
        };
        OidcConfig {
            issuer: self.0.issuer.clone(),
            client_id: "tollgate-console".into(),
            label: "Sign in with the test provider".into(),
            scopes: vec!["email".into(), "profile".into(), "groups".into()],
            claim: "groups".into(),
            roles: vec![
                role("platform-admins", "admin", None),
                role("search-admins", "team_admin", Some("search")),
                role("finance", "finance", None),
            ],
        }
    }

    fn oidc(&self, secret: Option<&str>) -> Oidc {
        Oidc::new(&self.config(), secret.map(Into::into), PUBLIC_URL)
    }
}

/// A browser as far as the provider's forms need one: a cookie jar (by name and path), and
/// redirects followed until one leads to the console's callback.
struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    /// (name, path, value)
    cookies: Vec<(String, String, String)>,
}

/// What the person does at the provider.
enum Act<'a> {
    LogInAs(&'a str),
    Cancel,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            client: Client::builder(TokioExecutor::new()).build_http(),
            cookies: Vec::new(),
        }
    }

    /// From the authorization URL to the callback's query string.
    async fn sign_in(&mut self, authorize_url: &str, act: Act<'_>) -> String {
        let mut url = authorize_url.to_string();
        let mut form: Option<String> = None;
        for _ in 0..12 {
            let (status, location, body) = self.visit(&url, form.take()).await;
            if let Some(location) = location {
                if let Some(query) = location.strip_prefix(&format!("{CALLBACK}?")) {
                    return query.to_string();
                }
                url = absolute(&url, &location);
                continue;
            }
            assert_eq!(status, StatusCode::OK, "{url}: {body}");
            if let Act::Cancel = act {
                url = absolute(&url, &attribute(&body, "href=\"", "/abort"));
                continue;
            }
            url = absolute(&url, &attribute(&body, "action=\"", ""));
            form = Some(match act {
                Act::LogInAs(login) if body.contains("name=\"login\"") => {
                    format!("prompt=login&login={login}&password=any")
                }
                _ => "prompt=consent".to_string(),
            });
        }
        panic!("no redirect to the callback after 12 steps (last: {url})");
    }

    /// One GET (or form POST): status, Location, body.
    async fn visit(
        &mut self,
        url: &str,
        form: Option<String>,
    ) -> (StatusCode, Option<String>, String) {
        let path = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("/");
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .filter(|(_, p, _)| path.starts_with(p.as_str()))
            .map(|(n, _, v)| format!("{n}={v}"))
            .collect();
        let mut request = Request::builder()
            .method(if form.is_some() {
                Method::POST
            } else {
                Method::GET
            })
            .uri(url)
            .header(COOKIE, cookie.join("; "));
        if form.is_some() {
            request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let request = request
            .body(Full::new(Bytes::from(form.unwrap_or_default())))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        for set in response.headers().get_all(SET_COOKIE) {
            self.keep(set.to_str().unwrap());
        }
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_string());
        let body = read_limited(response.into_body(), 1 << 20).await.unwrap();
        (
            status,
            location,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// Stores (or, when emptied, forgets) a `Set-Cookie`.
    fn keep(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let path = parts
            .find_map(|p| {
                p.split_once('=')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("path"))
                    .map(|(_, v)| v.to_string())
            })
            .unwrap_or_else(|| "/".into());
        self.cookies.retain(|(n, p, _)| !(n == name && *p == path));
        if !value.is_empty() {
            self.cookies.push((name.into(), path, value.into()));
        }
    }
}

/// The first `prefix…"` attribute value in `html` that contains `containing`.
fn attribute(html: &str, prefix: &str, containing: &str) -> String {
    html.split(prefix)
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(value, _)| value))
        .find(|value| value.contains(containing))
        .unwrap_or_else(|| panic!("no {prefix}…{containing}\" in the page:\n{html}"))
        .replace("&amp;", "&")
}

/// `location` resolved against the page it came from (the provider sends paths).
fn absolute(from: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let (scheme, rest) = from.split_once("://").unwrap();
    let host = rest.split('/').next().unwrap();
    format!("{scheme}://{host}{location}")
}

/// A whole sign-in: start, the provider's forms, finish.
async fn sign_in(oidc: &Oidc, act: Act<'_>) -> Result<Person, OidcError> {
    let (url, pending) = oidc.start().await.unwrap();
    let query = Browser::new().sign_in(&url, act).await;
    oidc.finish(&pending, &query).await
}

#[tokio::test]
async fn a_team_admin_signs_in_and_the_answer_cannot_be_tampered_with_or_replayed() {
    let provider = Provider::start(0, &[]).await;
    let oidc = provider.oidc(None);
    let (url, pending) = oidc.start().await.unwrap();
    assert!(
        url.starts_with(&format!("{}/auth?response_type=code&", provider.0.issuer)),
        "{url}"
    );
    let query = Browser::new().sign_in(&url, Act::LogInAs("ada")).await;
    assert!(
        query.contains("code=") && query.contains(&pending.state),
        "{query}"
    );

    let tampered = query.replace(&pending.state, "someone-elses-state");
    let error = oidc.finish(&pending, &tampered).await.unwrap_err();
    assert!(matches!(error, OidcError::StateMismatch), "{error}");

    let person = oidc.finish(&pending, &query).await.unwrap();
    assert_eq!(
        person,
        Person {
            subject: "ada".into(),
            display: "ada@example.com".into(),
            role: Role::TeamAdmin,
            team: Some("search".into()),
        }
    );

    // The same code again: the provider refuses it (codes are single-use).
    let error = oidc.finish(&pending, &query).await.unwrap_err();
    assert!(
        matches!(&error, OidcError::TokenRefused { error, .. } if error == "invalid_grant"),
        "{error}"
    );
    assert!(error.to_string().contains("start again"), "{error}");
    provider.stop().await;
}

#[tokio::test]
async fn someone_whose_groups_map_to_no_role_is_told_which_groups_they_have() {
    let provider = Provider::start(0, &[]).await;
    let oidc = provider.oidc(None);
    let error = sign_in(&oidc, Act::LogInAs("nobody")).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "Your groups (interns) map to no tollgate role; ask an admin to add one of them to \
         [console.oidc] roles."
    );
    // The same provider and client: finance signs in.
    let person = sign_in(&oidc, Act::LogInAs("fin")).await.unwrap();
    assert_eq!((person.role, person.team), (Role::Finance, None));

    // Cancelling at the provider comes back as the provider's own error.
    let error = sign_in(&oidc, Act::Cancel).await.unwrap_err();
    assert!(
        matches!(&error, OidcError::Provider { error, .. } if error == "access_denied"),
        "{error}"
    );
    provider.stop().await;
}

#[tokio::test]
async fn a_confidential_client_authenticates_with_its_secret_and_takes_es256_tokens() {
    let provider = Provider::start(
        0,
        &[
            ("OIDC_CLIENT_SECRET", "s3cret/with:odd&chars"),
            ("OIDC_ID_TOKEN_ALG", "ES256"),
        ],
    )
    .await;
    let person = sign_in(
        &provider.oidc(Some("s3cret/with:odd&chars")),
        Act::LogInAs("root"),
    )
    .await
    .unwrap();
    assert_eq!(person.role, Role::Admin);
    assert_eq!(person.team, None);

    let error = sign_in(&provider.oidc(Some("wrong")), Act::LogInAs("root"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, OidcError::TokenRefused { error, .. } if error == "invalid_client"),
        "{error}"
    );
    provider.stop().await;
}

#[tokio::test]
async fn keys_rotated_at_the_provider_are_fetched_again() {
    let first = Provider::start(0, &[]).await;
    let port = first.0.port;
    let oidc = first.oidc(None);
    assert_eq!(
        sign_in(&oidc, Act::LogInAs("ada")).await.unwrap().subject,
        "ada"
    );
    first.stop().await;

    // A restart on the same address generates new keys (new `kid`s): the cached key set no
    // longer has the one the next ID token names.
    let second = Provider::start(port, &[]).await;
    assert_eq!(second.0.issuer, format!("http://127.0.0.1:{port}"));
    let person = sign_in(&oidc, Act::LogInAs("fin")).await.unwrap();
    assert_eq!(person.role, Role::Finance);
    second.stop().await;
}
