//! The `tollgate` binary's library: wiring (`app`), routing, the admin API, the CLI and the demo.
//! Integration tests start gateways through [`app::start`] exactly as `tollgate serve` does.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config_load;
pub mod demo;
pub mod manage;
pub mod router;
pub mod validate;

/// Resolves on Ctrl-C or SIGTERM: the signals an operator or an orchestrator sends to stop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
