//! The `tollgate` binary's library: wiring (`app`), routing, the control plane (`control`) with
//! its two shells (the admin API over HTTP, `admin_http`, and the CLI's `commands` over a
//! `plane`), and the demo.
//! Integration tests start gateways through [`app::start`] exactly as `tollgate serve` does.

pub mod admin_client;
pub mod admin_http;
pub mod app;
pub mod batch_book;
pub mod budget_events;
pub mod cli;
pub mod codex_signals;
pub mod commands;
pub mod config_load;
pub mod console;
pub mod control;
pub mod demo;
pub mod hook;
pub mod hooks_http;
pub mod intake;
pub mod plane;
pub mod print;
pub mod router;
pub mod team_post;
pub mod turn_costs;
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
