//! Talking to the OpenID provider over HTTP(S): its discovery document and signing keys (read at
//! first use and kept; the keys again on demand) and the token endpoint. Every call is bounded:
//! [`TIMEOUT`] for the whole exchange, [`MAX_BODY`] for the answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::Jwk;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;
use tollgate_proxy::body::read_limited;

use super::OidcError;
use crate::admin_client::causes;

/// Each call to the provider (discovery, keys, token) gets this long.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from the provider; discovery documents and key sets are a few KiB.
const MAX_BODY: u64 = 1 << 20;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The parts of the provider's discovery document the flow uses.
#[derive(Debug, Deserialize)]
pub(super) struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

pub(super) struct Provider {
    /// The configured issuer, without a trailing slash.
    issuer: String,
    /// Built once; a TLS set-up failure is reported at each sign-in rather than at start-up.
    http: Result<HttpClient, String>,
    discovery: Mutex<Option<Arc<Discovery>>>,
    keys: Mutex<Option<Arc<Vec<Jwk>>>>,
}

impl Provider {
    pub fn new(issuer: &str) -> Provider {
        Provider {
            issuer: issuer.trim_end_matches('/').to_string(),
            http: http_client(),
            discovery: Mutex::new(None),
            keys: Mutex::new(None),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The discovery document, read once (a failed read is tried again next time).
    pub async fn discovery(&self) -> Result<Arc<Discovery>, OidcError> {
        let mut cached = self.discovery.lock().await;
        if let Some(discovery) = &*cached {
            return Ok(discovery.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let discovery: Discovery = self.get_json(&url).await?;
        if discovery.issuer.trim_end_matches('/') != self.issuer {
            return Err(bad(
                &url,
                format!(
                    "it names its issuer '{}', but [console.oidc] issuer is '{}'",
                    discovery.issuer, self.issuer
                ),
            ));
        }
        if let Some(methods) = &discovery.code_challenge_methods_supported
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(bad(&url, "it does not support PKCE with S256".into()));
        }
        let discovery = Arc::new(discovery);
        *cached = Some(discovery.clone());
        Ok(discovery)
    }

    /// The provider's signing keys: the ones read before, unless `refresh`. Keys of a kind
    /// jsonwebtoken cannot read are left out rather than spoiling the set.
    pub async fn keys(
        &self,
        discovery: &Discovery,
        refresh: bool,
    ) -> Result<Arc<Vec<Jwk>>, OidcError> {
        let mut cached = self.keys.lock().await;
        if !refresh && let Some(keys) = &*cached {
            return Ok(keys.clone());
        }
        #[derive(Deserialize)]
        struct KeySet {
            keys: Vec<Value>,
        }
        let set: KeySet = self.get_json(&discovery.jwks_uri).await?;
        let keys: Vec<Jwk> = set
            .keys
            .into_iter()
            .filter_map(|key| serde_json::from_value(key).ok())
            .collect();
        let keys = Arc::new(keys);
        *cached = Some(keys.clone());
        Ok(keys)
    }

    /// Posts the token request `form` (with HTTP Basic `credentials`, if any) and returns the
    /// ID token; a refusal comes back as the provider's `error` and description.
    pub async fn token(
        &self,
        discovery: &Discovery,
        form: String,
        credentials: Option<String>,
    ) -> Result<String, OidcError> {
        let url = &discovery.token_endpoint;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        if let Some(credentials) = credentials {
            request = request.header(AUTHORIZATION, credentials);
        }
        let request = request
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| bad(url, e.to_string()))?;
        let (status, body) = self.send(url, request).await?;
        #[derive(Deserialize)]
        struct Tokens {
            id_token: Option<String>,
        }
        #[derive(Deserialize)]
        struct Refusal {
            error: String,
            error_description: Option<String>,
        }
        if status.is_success() {
            let tokens: Tokens = serde_json::from_slice(&body)
                .map_err(|e| bad(url, format!("its token answer is not JSON: {e}")))?;
            return tokens
                .id_token
                .ok_or_else(|| bad(url, "its token answer has no id_token".into()));
        }
        match serde_json::from_slice::<Refusal>(&body) {
            Ok(refusal) => Err(OidcError::TokenRefused {
                error: refusal.error,
                description: refusal.error_description,
            }),
            Err(_) => Err(bad(url, format!("the token endpoint answered {status}"))),
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(url)
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| bad(url, format!("not a usable URL: {e}")))?;
        let (status, body) = self.send(url, request).await?;
        if status != StatusCode::OK {
            return Err(bad(url, format!("it answered {status}")));
        }
        serde_json::from_slice(&body).map_err(|e| bad(url, format!("not the JSON expected: {e}")))
    }

    /// One request and its whole (capped) answer, within [`TIMEOUT`].
    async fn send(
        &self,
        url: &str,
        mut request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), OidcError> {
        let http = self
            .http
            .as_ref()
            .map_err(|e| OidcError::Setup(e.clone()))?;
        request.headers_mut().insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
        );
        let unreachable = |reason: String| OidcError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let exchange = async {
            let response = http
                .request(request)
                .await
                .map_err(|e| unreachable(causes(&e)))?;
            let status = response.status();
            let body = read_limited(response.into_body(), MAX_BODY)
                .await
                .map_err(|e| unreachable(e.message))?;
            Ok::<_, OidcError>((status, body))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| OidcError::Timeout {
                url: url.to_string(),
            })?
    }
}

fn bad(url: &str, reason: String) -> OidcError {
    OidcError::BadProvider {
        url: url.to_string(),
        reason,
    }
}

/// HTTP/1.1 over plain TCP or TLS with the roots the gateway trusts upstream (webpki's and the
/// system's).
fn http_client() -> Result<HttpClient, String> {
    let tls = tollgate_proxy::upstream::tls_client_config(None).map_err(|e| e.to_string())?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}
