//! The listener: plain TCP or rustls TLS, HTTP/1.1 and HTTP/2 (h2c by prior knowledge, h2 by
//! ALPN) on one port, header-size and header-time limits, and a graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::BoxError;
use crate::first_byte::FirstByteDeadline;

/// Limits applied to every client connection.
#[derive(Clone)]
pub struct ServerOptions {
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown starts.
    pub drain_timeout: Duration,
    pub tls: Option<TlsAcceptor>,
}

/// Why the TLS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("tls.cert_file '{0}': {1}")]
    Cert(String, String),
    #[error("tls.key_file '{0}': {1}")]
    Key(String, String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Builds a TLS acceptor from PEM files, offering h2 and http/1.1 by ALPN.
pub fn tls_acceptor(cert_file: &str, key_file: &str) -> Result<TlsAcceptor, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsSetupError::Cert(cert_file.into(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsSetupError::Cert(
            cert_file.into(),
            "no PEM certificates found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| TlsSetupError::Key(key_file.into(), e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `handler` on `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish for up to `drain_timeout`.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    options: ServerOptions,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    // Connections are tracked so that, past the drain deadline, they are closed *here* — their
    // bodies dropped and their calls settled — before the caller flushes the ledger, rather
    // than whenever the runtime is torn down.
    let connections = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: log and keep serving the rest.
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req| {
            let fut = handler(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let builder = Arc::clone(&builder);
        let stop = hard_stop.clone();
        match &options.tls {
            None => {
                let io = TokioIo::new(FirstByteDeadline::new(stream, options.header_read_timeout));
                let conn = graceful.watch(
                    builder
                        .serve_connection_with_upgrades(io, service)
                        .into_owned(),
                );
                connections.spawn(async move {
                    tokio::select! {
                        result = conn => if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        },
                        () = stop.cancelled() => {}
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                let handshake_timeout = options.header_read_timeout;
                connections.spawn(async move {
                    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            return tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    };
                    let io = TokioIo::new(FirstByteDeadline::new(tls, handshake_timeout));
                    let conn = watcher.watch(
                        builder
                            .serve_connection_with_upgrades(io, service)
                            .into_owned(),
                    );
                    tokio::select! {
                        result = conn => if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        },
                        () = stop.cancelled() => {}
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(options.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout_s = options.drain_timeout.as_secs(),
            "drain deadline passed; closing remaining connections"
        );
    }
    hard_stop.cancel();
    connections.close();
    connections.wait().await;
}
