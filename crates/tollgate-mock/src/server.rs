//! The accept loop: hyper 1 connections (HTTP/1.1 with upgrades, and h2c) with TCP_NODELAY,
//! drained on shutdown, WebSocket sessions included.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::route;
use crate::state::State;

/// Serves until `shutdown` resolves, then stops accepting, asks every open connection to
/// finish gracefully (in-flight responses complete) and waits for them. WebSocket sessions
/// have left their HTTP connection behind: they finish their response in flight, close with
/// 1001 and are waited for too.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(Builder::new(TokioExecutor::new()));
    // Connections hold a receiver; `closed()` on the sender tells when the last one ended.
    let (drain_tx, drain_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning on the error.
                    tracing::debug!(error = %e, "mock upstream accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        // Streams are many small writes: send each one now, not after Nagle's delay.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "mock upstream could not set TCP_NODELAY");
        }
        let builder = Arc::clone(&builder);
        let state = Arc::clone(&state);
        let mut drain = drain_rx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| route::handle(Arc::clone(&state), req));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "mock upstream connection ended with an error");
                    }
                }
                _ = drain.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = drain_tx.send(());
    state.ws_shutdown.send_replace(true);
    drop(drain_rx);
    drain_tx.closed().await;
    // Every session holds a receiver until it ends.
    state.ws_shutdown.closed().await;
}
