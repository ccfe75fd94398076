//! The upstream leg of the Responses WebSocket transport: a connection of its own (TCP, then
//! rustls offering HTTP/1.1 only, since an upgrade needs it), the WebSocket handshake with
//! tollgate's credential in place of the client's, and the upstream's answer handed back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, Uri};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::either::Either;

use tollgate_core::ApiError;

use super::Upstream;
use crate::headers::{OPENAI_ORGANIZATION, OPENAI_PROJECT};

/// The upstream's WebSocket, over plain TCP or TLS.
pub type UpstreamSocket = WebSocketStream<Either<TcpStream, TlsStream<TcpStream>>>;

/// Where the upstream's WebSocket endpoint is, and how to reach it.
#[derive(Clone)]
pub(crate) struct SocketTarget {
    host: String,
    port: u16,
    /// `ws` or `wss`.
    scheme: &'static str,
    /// TLS for a `https` upstream, offering HTTP/1.1 only.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
}

impl SocketTarget {
    pub(crate) fn new(
        uri: &Uri,
        tls: &rustls::ClientConfig,
        connect_timeout: Duration,
    ) -> Option<SocketTarget> {
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let secure = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tls = if secure {
            let mut config = tls.clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(host.to_string()).ok()?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Some(SocketTarget {
            host: host.to_string(),
            port,
            scheme: if secure { "wss" } else { "ws" },
            tls,
            connect_timeout,
        })
    }
}

/// Why no upstream socket was opened.
#[derive(Debug)]
pub enum SocketRefused {
    /// The upstream answered the handshake with something other than 101 (a 401, a 426, a
    /// 429 …): the client gets that answer as it is.
    Answered(Response<Bytes>),
    /// It could not be reached, or broke off: the client gets tollgate's error.
    Unanswered(ApiError),
}

impl Upstream {
    /// Opens the upstream WebSocket for a client's `path_and_query` (`/v1/responses…`), sending
    /// `headers` (the client's, hop-by-hop and credentials already removed) with tollgate's key.
    /// Returns the socket and the headers of the upstream's 101.
    pub async fn open_socket(
        &self,
        path_and_query: &str,
        mut headers: HeaderMap,
        config: WebSocketConfig,
    ) -> Result<(UpstreamSocket, HeaderMap), SocketRefused> {
        let target = &self.socket;
        let rest = path_and_query.strip_prefix("/v1").unwrap_or(path_and_query);
        let url = format!(
            "{}://{}{}{}",
            target.scheme,
            self.origin_authority(),
            self.base_path,
            rest
        );
        let uri: Uri = url.parse().map_err(|_| {
            SocketRefused::Unanswered(ApiError::new(
                400,
                "invalid_request_error",
                "invalid_url",
                "The request path is not a valid URL.",
            ))
        })?;
        for name in [
            header::HOST,
            header::SEC_WEBSOCKET_KEY,
            header::SEC_WEBSOCKET_VERSION,
            header::SEC_WEBSOCKET_EXTENSIONS,
            header::SEC_WEBSOCKET_ACCEPT,
            header::CONTENT_LENGTH,
        ] {
            headers.remove(name);
        }
        if let Some(auth) = &self.authorization {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        if let Some(organization) = &self.organization {
            headers.insert(OPENAI_ORGANIZATION, organization.clone());
        }
        if let Some(project) = &self.project {
            headers.insert(OPENAI_PROJECT, project.clone());
        }
        let authority = HeaderValue::from_str(&self.origin_authority()).map_err(|_| {
            SocketRefused::Unanswered(ApiError::internal("the upstream host is not a header"))
        })?;
        headers.insert(header::HOST, authority);
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        let key = HeaderValue::from_str(&generate_key())
            .map_err(|_| SocketRefused::Unanswered(ApiError::internal("websocket key")))?;
        headers.insert(header::SEC_WEBSOCKET_KEY, key);
        let mut request = Request::new(());
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;

        let connect = async {
            let tcp = tokio::time::timeout(
                target.connect_timeout,
                TcpStream::connect((target.host.as_str(), target.port)),
            )
            .await
            .map_err(|_| unreachable("connection timed out"))?
            .map_err(|e| unreachable(&e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            match &target.tls {
                None => Ok(Either::Left(tcp)),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(Either::Right)
                    .map_err(|e| unreachable(&format!("TLS: {e}"))),
            }
        };
        let handshake = async {
            let stream = connect.await?;
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(refused)
        };
        let (socket, response) = tokio::time::timeout(self.response_timeout, handshake)
            .await
            .map_err(|_| {
                SocketRefused::Unanswered(ApiError::upstream_timeout(
                    self.response_timeout.as_secs(),
                ))
            })??;
        Ok((socket, response.into_parts().0.headers))
    }

    /// `host[:port]` of the upstream.
    fn origin_authority(&self) -> String {
        let origin = self.origin.as_str();
        origin
            .split_once("://")
            .map_or(origin, |(_, authority)| authority)
            .to_string()
    }
}

fn unreachable(detail: &str) -> SocketRefused {
    SocketRefused::Unanswered(ApiError::upstream_unavailable(format!(
        "connection failed ({detail})"
    )))
}

/// The upstream's refusal of the handshake as the client will get it.
fn refused(error: WsError) -> SocketRefused {
    match error {
        WsError::Http(response) => {
            let (mut parts, body) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.remove(header::TRANSFER_ENCODING);
            parts.headers.remove(HeaderName::from_static("connection"));
            let body = Bytes::from(body.unwrap_or_default());
            SocketRefused::Answered(Response::from_parts(parts, body))
        }
        other => SocketRefused::Unanswered(ApiError::upstream_unavailable(format!(
            "the WebSocket handshake failed ({other})"
        ))),
    }
}
