//! The upstream leg: pooled HTTP/1.1 connections over rustls, each driven by the call that
//! holds it ([`pool`]), the real upstream key swapped in for the team key, and the response
//! timeout. The Responses WebSocket transport opens connections of its own ([`socket`]).

pub mod pool;
pub mod socket;

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use tollgate_core::config::UpstreamConfig;
use tollgate_core::{ApiError, CallOutcome};

use crate::body::{BodyTimedOut, DeadlineBody, Relay, body_error};
use crate::headers::{OPENAI_ORGANIZATION, OPENAI_PROJECT};
pub use pool::PooledBody;
use pool::{Pool, PoolError};

/// Why the upstream client could not be built (bad CA file, bad key characters, bad URL).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("upstream.url '{0}' is not a valid URL")]
    Url(String),
    #[error("upstream.ca_file '{path}': {reason}")]
    CaFile { path: String, reason: String },
    #[error("the upstream key contains characters not allowed in an HTTP header")]
    Key,
    #[error(
        "upstream.organization or upstream.project contains characters not allowed in an HTTP header"
    )]
    Header,
    #[error("TLS roots: {0}")]
    Tls(String),
}

/// A ready upstream: client, where to send, and with what credential.
#[derive(Clone)]
pub struct Upstream {
    pool: Arc<Pool>,
    /// `scheme://authority` of the upstream.
    origin: String,
    /// Path prefix that replaces the client's `/v1` (e.g. `/v1`, or `/openai/v1` behind a proxy).
    base_path: String,
    authorization: Option<HeaderValue>,
    organization: Option<HeaderValue>,
    project: Option<HeaderValue>,
    response_timeout: Duration,
    stream_idle_timeout: Duration,
    socket: socket::SocketTarget,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, key: Option<&str>) -> Result<Upstream, UpstreamSetupError> {
        let uri: Uri = config
            .url
            .parse()
            .map_err(|_| UpstreamSetupError::Url(config.url.clone()))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(UpstreamSetupError::Url(config.url.clone()));
        };
        let origin = format!("{scheme}://{authority}");
        let base_path = uri.path().trim_end_matches('/').to_string();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let tls = tls_client_config(config.ca_file.as_deref())?;
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let socket = socket::SocketTarget::new(&uri, &tls, connect_timeout)
            .ok_or_else(|| UpstreamSetupError::Url(config.url.clone()))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let pool = Pool::new(
            connector,
            config.pool_max_idle_per_host,
            Duration::from_millis(config.pool_idle_timeout_ms),
        );

        let authorization = key
            .map(|k| {
                HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| UpstreamSetupError::Key)
            })
            .transpose()?
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        let header_value = |v: &Option<String>| {
            v.as_deref()
                .map(|v| HeaderValue::from_str(v).map_err(|_| UpstreamSetupError::Header))
                .transpose()
        };
        Ok(Upstream {
            pool: Arc::new(pool),
            origin,
            base_path,
            authorization,
            organization: header_value(&config.organization)?,
            project: header_value(&config.project)?,
            response_timeout: Duration::from_millis(config.response_timeout_ms),
            stream_idle_timeout: Duration::from_millis(config.stream_idle_timeout_ms),
            socket,
        })
    }

    /// Longest silence tolerated in a response body before the stream is closed.
    pub fn stream_idle_timeout(&self) -> Duration {
        self.stream_idle_timeout
    }

    /// The upstream URI for a client path (`/v1/...`) and query.
    pub fn uri_for(&self, path_and_query: &str) -> Result<Uri, ApiError> {
        let rest = path_and_query.strip_prefix("/v1").unwrap_or(path_and_query);
        let mut s = String::with_capacity(self.origin.len() + self.base_path.len() + rest.len());
        s.push_str(&self.origin);
        s.push_str(&self.base_path);
        s.push_str(rest);
        s.parse().map_err(|_| {
            ApiError::new(
                400,
                "invalid_request_error",
                "invalid_url",
                "The request path is not a valid URL.",
            )
        })
    }

    /// Sends a prepared request: client credentials already stripped; tollgate's upstream key
    /// (and organisation and project, when configured) set here.
    pub async fn send(
        &self,
        mut request: Request<UpstreamBody>,
        body_limit: u64,
    ) -> Result<Response<PooledBody>, Unanswered> {
        let headers = request.headers_mut();
        headers.remove(header::HOST);
        if let Some(auth) = &self.authorization {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        if let Some(organization) = &self.organization {
            headers.insert(OPENAI_ORGANIZATION, organization.clone());
        }
        if let Some(project) = &self.project {
            headers.insert(OPENAI_PROJECT, project.clone());
        }
        match tokio::time::timeout(self.response_timeout, self.pool.send(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(Unanswered::from_pool_error(e, body_limit)),
            Err(_) => Err(Unanswered {
                error: ApiError::upstream_timeout(self.response_timeout.as_secs()),
                outcome: CallOutcome::UpstreamTimeout,
                reached_upstream: true,
            }),
        }
    }
}

/// What the gateway sends upstream: a body it read (to inspect, decode or rewrite) or the
/// client's body streamed through under the size limit and the body deadlines.
pub type UpstreamBody = Relay<Limited<DeadlineBody<Incoming>>>;

/// A call the upstream gave no response to: the client's error, how the call ended, and
/// whether the upstream may have had the whole request (and so bills it).
#[derive(Debug)]
pub struct Unanswered {
    pub error: ApiError,
    pub outcome: CallOutcome,
    pub reached_upstream: bool,
}

impl Unanswered {
    /// Nothing left tollgate: the call is refused before it reaches the upstream.
    pub fn not_sent(error: ApiError) -> Unanswered {
        Unanswered {
            error,
            outcome: CallOutcome::Complete,
            reached_upstream: false,
        }
    }

    fn from_pool_error(error: PoolError, body_limit: u64) -> Unanswered {
        let e = match error {
            PoolError::Connect(cause) => {
                return Unanswered {
                    error: ApiError::upstream_unavailable(format!(
                        "connection failed ({})",
                        innermost(&*cause)
                    )),
                    outcome: CallOutcome::UpstreamUnreachable,
                    reached_upstream: false,
                };
            }
            PoolError::Closed => {
                return Unanswered {
                    error: ApiError::upstream_unavailable(
                        "the connection closed before the request was sent",
                    ),
                    outcome: CallOutcome::UpstreamUnreachable,
                    reached_upstream: false,
                };
            }
            PoolError::Http(e) => e,
        };
        let mut source: &(dyn std::error::Error + 'static) = &e;
        loop {
            // The client's own body failed (too large, too slow): the upstream got part of a
            // request, which it does not bill.
            if source.is::<http_body_util::LengthLimitError>() || source.is::<BodyTimedOut>() {
                return Unanswered::not_sent(body_error(source, body_limit));
            }
            match source.source() {
                Some(next) => source = next,
                None => break,
            }
        }
        // hyper's "the request body failed", with its cause: the only body tollgate streams
        // is the client's, which broke off (the client left mid-upload, or sent a malformed
        // chunk). The client's doing, not the upstream's.
        if e.is_user()
            && let Some(cause) = std::error::Error::source(&e)
        {
            return Unanswered::not_sent(body_error(cause, body_limit));
        }
        // The connection broke after the request went out: the upstream may well have run it.
        Unanswered {
            error: ApiError::upstream_unavailable(source),
            outcome: CallOutcome::UpstreamCut,
            reached_upstream: true,
        }
    }
}

/// The deepest cause of an error (the one that names what actually failed).
fn innermost<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut source = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source
}

pub fn tls_client_config(
    ca_file: Option<&str>,
) -> Result<rustls::ClientConfig, UpstreamSetupError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // System roots too (corporate CAs); a bad or missing system store must not stop the gateway.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let ca_error = |reason: String| UpstreamSetupError::CaFile {
            path: path.into(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
        let mut added = 0;
        for cert in certs {
            roots
                .add(cert.map_err(|e| ca_error(e.to_string()))?)
                .map_err(|e| ca_error(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_error("no PEM certificates found".into()));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamSetupError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
