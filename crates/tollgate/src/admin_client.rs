//! A client for the admin API, for the CLI's `--server` mode (`tollgate team list --server
//! https://tollgate.example.com --token tga-…`): JSON in and out, and the API's own error
//! message on failure. HTTP/1.1 over plain TCP or TLS (the same
//! rustls roots the gateway trusts upstream).

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tollgate_proxy::body::read_limited;

/// No admin call takes longer than this unless the server is in trouble; a report over a
/// big ledger is the slow one.
const TIMEOUT: Duration = Duration::from_secs(300);
/// The largest answer read: a month's CSV report grouped by session can be big, not this big.
const MAX_BODY: u64 = 1 << 30;

/// Why an admin API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("'{0}' is not a server URL like https://tollgate.example.com")]
    Url(String),
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} did not answer within {TIMEOUT:?}")]
    Timeout { url: String },
    /// The control plane refused: its message (which names every bad field), status and code.
    #[error("{message} ({} {code})", status.as_u16())]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("{url} answered {status} with a body that is not the admin API's JSON")]
    NotJson { url: String, status: StatusCode },
}

/// The client for `--server`, which needs a token.
pub fn connect(server: &str, token: Option<&str>) -> anyhow::Result<AdminClient> {
    let token = token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        anyhow::anyhow!("--server needs an admin token: --token tga-… or TOLLGATE_ADMIN_TOKEN")
    })?;
    Ok(AdminClient::new(server, token)?)
}

pub struct AdminClient {
    base: String,
    token: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl AdminClient {
    /// `server` is the gateway's (or admin listener's) base URL, possibly under a path prefix
    /// of a reverse proxy; paths start at `/admin/v1`. The admin API's own URL (the base with
    /// `/admin/v1`, as the docs print it) is taken as its base. A query, a fragment or a user
    /// and password in the URL are refused: each would be dropped or mangled when a path is
    /// appended, and the token is how the CLI authenticates.
    pub fn new(server: &str, token: &str) -> Result<AdminClient, ClientError> {
        let trimmed = server.trim_end_matches('/');
        let base = trimmed
            .strip_suffix("/admin/v1")
            .unwrap_or(trimmed)
            .to_string();
        let usable = base.parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.authority().is_some_and(|a| !a.as_str().contains('@'))
                && uri.query().is_none()
        }) && !base.contains(['#', '?']);
        if !usable {
            return Err(ClientError::Url(server.to_string()));
        }
        let tls = tollgate_proxy::upstream::tls_client_config(None)
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(AdminClient {
            base,
            token: token.to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// `method path` with an optional JSON body: the body of a 2xx answer, the API's error
    /// otherwise.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Bytes, ClientError> {
        let url = &format!("{}{path}", self.base);
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(url)
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("tollgate-cli/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(bytes))
            .map_err(|_| ClientError::Url(url.to_string()))?;
        let exchange = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| ClientError::Unreachable {
                        url: url.to_string(),
                        reason: causes(&e),
                    })?;
            let status = response.status();
            let body = read_limited(response.into_body(), MAX_BODY)
                .await
                .map_err(|e| ClientError::Unreachable {
                    url: url.to_string(),
                    reason: e.message,
                })?;
            Ok::<_, ClientError>((status, body))
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.to_string(),
            })??;
        if status.is_success() {
            return Ok(body);
        }
        let error: Value = serde_json::from_slice(&body).map_err(|_| ClientError::NotJson {
            url: url.to_string(),
            status,
        })?;
        Err(ClientError::Api {
            status,
            code: error["error"]["code"]
                .as_str()
                .unwrap_or("error")
                .to_string(),
            message: error["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_string(),
        })
    }
}

/// An error with its causes: hyper's own message ("client error (Connect)") says nothing a
/// user can act on; the causes say "Connection refused" or which certificate was wrong.
pub(crate) fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Everything but RFC 3986's unreserved characters: what a path segment or query value may
/// carry as it is.
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a path segment or query value (ids, names and cursors may hold anything).
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, RESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_a_url_cannot_carry() {
        assert_eq!(encode("team-1.a_b~"), "team-1.a_b~");
        assert_eq!(encode("a b/c&d+é"), "a%20b%2Fc%26d%2B%C3%A9");
    }

    #[test]
    fn refuses_what_is_not_a_server_url() {
        for bad in [
            "tollgate.example.com",
            "ftp://x",
            "http://",
            "http://127.0.0.1:8080?x=1",
            "http://127.0.0.1:8080/#top",
            "http://admin:pw@127.0.0.1:8080",
        ] {
            assert!(
                matches!(AdminClient::new(bad, "t"), Err(ClientError::Url(_))),
                "{bad}"
            );
        }
        assert!(AdminClient::new("http://127.0.0.1:8080/", "t").is_ok());
        for base in [
            "http://127.0.0.1:8080/admin/v1",
            "http://127.0.0.1:8080/admin/v1/",
        ] {
            let client = AdminClient::new(base, "t").unwrap();
            assert_eq!(client.base, "http://127.0.0.1:8080", "{base}");
        }
        let prefixed = AdminClient::new("https://corp.example/tollgate/", "t").unwrap();
        assert_eq!(prefixed.base, "https://corp.example/tollgate");
    }
}
