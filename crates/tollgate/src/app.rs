//! Wiring a gateway process: store → key cache → upstream → listeners, and shutting it down.
//!
//! Every background task is spawned on the app's `TaskTracker`, so shutdown can wait for all of
//! them; nothing is spawned bare.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tollgate_core::KeyCache;
use tollgate_core::config::Config;
use tollgate_proxy::server::{self, ServerOptions};
use tollgate_proxy::{Gateway, Upstream};
use tollgate_store::{KeySync, Store};

use crate::router::Router;

/// Why a gateway could not start. Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] tollgate_store::StoreError),
    #[error("upstream: {0}")]
    Upstream(#[from] tollgate_proxy::UpstreamSetupError),
    #[error("{0}")]
    Tls(#[from] tollgate_proxy::server::TlsSetupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// A running gateway: its addresses and the handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// A bootstrap admin token generated on this start (no `TOLLGATE_ADMIN_TOKEN`, none stored yet).
    pub generated_admin_token: Option<String>,
    pub store: Store,
    pub keys: Arc<KeyCache>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Running {
    /// Stops accepting, drains in-flight requests, stops background tasks.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.store.close().await;
    }

    /// Resolves when shutdown has been requested (e.g. by a signal handler elsewhere).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Starts a gateway from a validated config.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let store = Store::connect(&config.store.database_url).await?;
    if config.migrate_on_start() {
        store.migrate().await?;
    }
    let generated_admin_token = store
        .ensure_admin_token(config.secrets.admin_token.as_deref())
        .await?;

    let keys = Arc::new(KeyCache::new());
    let mut sync = KeySync::new(store.clone(), Arc::clone(&keys));
    sync.sync_once().await?;

    let upstream = Upstream::new(&config.upstream, config.secrets.upstream_key.as_deref())?;
    let gateway = Arc::new(Gateway {
        keys: Arc::clone(&keys),
        upstream,
        max_body_bytes: config.limits.max_body_bytes,
    });

    let tls = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(cert), Some(key)) => Some(server::tls_acceptor(cert, key)?),
        _ => None,
    };
    let options = ServerOptions {
        max_header_bytes: config.limits.max_header_bytes,
        header_read_timeout: Duration::from_millis(config.limits.header_read_timeout_ms),
        drain_timeout: Duration::from_millis(config.limits.drain_timeout_ms),
        tls,
    };

    let listener = bind(&config.listen).await?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen.clone(),
        source,
    })?;
    let admin_listener = match &config.admin_listen {
        Some(admin) => Some(bind(admin).await?),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let admin_separate = admin_listener.is_some();
    let router = Arc::new(Router::new(
        Arc::clone(&gateway),
        store.clone(),
        Arc::clone(&keys),
        !admin_separate,
    ));

    let main_router = Arc::clone(&router);
    tracker.spawn(server::serve(
        listener,
        options.clone(),
        move |req| {
            let router = Arc::clone(&main_router);
            async move { router.route(req).await }
        },
        cancel.clone().cancelled_owned(),
    ));
    if let Some(admin_listener) = admin_listener {
        let admin_router = Arc::clone(&router);
        tracker.spawn(server::serve(
            admin_listener,
            options,
            move |req| {
                let router = Arc::clone(&admin_router);
                async move { router.route_admin_listener(req).await }
            },
            cancel.clone().cancelled_owned(),
        ));
    }
    tracker.spawn(sync.run(
        Duration::from_millis(config.store.key_refresh_ms),
        cancel.clone().cancelled_owned(),
    ));

    Ok(Running {
        addr,
        admin_addr,
        generated_admin_token,
        store,
        keys,
        cancel,
        tracker,
    })
}

async fn bind(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_string(),
            source,
        })
}
