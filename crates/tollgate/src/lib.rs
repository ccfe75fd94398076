//! The `tollgate` binary's library: wiring (`app`), routing, the admin API, the CLI and the demo.
//! Integration tests start gateways through [`app::start`] exactly as `tollgate serve` does.

pub mod admin;
pub mod admin_client;
pub mod app;
pub mod budget_events;
pub mod cli;
pub mod config_load;
pub mod demo;
pub mod manage;
pub mod remote;
pub mod report_cli;
pub mod router;
pub mod validate;

/// Resolves on Ctrl-C (SIGINT) or SIGTERM: the signals an operator or an orchestrator sends to
/// stop. The handlers are installed when this is *called*, not when the future is first
/// polled, so a signal that arrives right after start-up is never lost to the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(int) => {},
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
