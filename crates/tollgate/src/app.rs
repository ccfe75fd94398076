//! Wiring a gateway process: store → key cache → prices and ledger → upstream → listeners, and
//! shutting it down in the order that loses nothing.
//!
//! Every background task is spawned on one of the app's `TaskTracker`s, so shutdown can wait
//! for all of them; nothing is spawned bare.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tollgate_core::KeyCache;
use tollgate_core::config::Config;
use tollgate_proxy::server::{self, ServerOptions};
use tollgate_proxy::{Gateway, Settler, Upstream};
use tollgate_store::ledger::{Ledger, LedgerOptions};
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
    #[error("price table: {0}")]
    Prices(String),
}

/// A running gateway: its addresses and the handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// A bootstrap admin token generated on this start (no `TOLLGATE_ADMIN_TOKEN`, none stored yet).
    pub generated_admin_token: Option<String>,
    pub store: Store,
    pub keys: Arc<KeyCache>,
    pub ledger: Ledger,
    settler: Arc<Settler>,
    cancel: CancellationToken,
    /// The listeners, drained first on shutdown.
    servers: TaskTracker,
    /// Everything else (key sync, ledger writer).
    tasks: TaskTracker,
}

impl Running {
    /// Stops accepting and drains in-flight requests (their calls settle into the ledger), then
    /// writes the ledger's queue to the database (or the spool), then stops background tasks.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.servers.close();
        self.servers.wait().await;
        self.settler.drain().await;
        self.ledger.shutdown().await;
        self.tasks.close();
        self.tasks.wait().await;
        self.store.close().await;
    }

    /// Returns once every call settled so far is in the database (or the spool).
    pub async fn flush_ledger(&self) {
        self.ledger.flush().await;
    }

    /// Resolves when shutdown has been requested (e.g. by a signal handler elsewhere).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Starts a gateway from a validated config.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let prices = crate::config_load::load_prices(&config).map_err(|problems| {
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        StartError::Prices(all.join("; "))
    })?;
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

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let servers = TaskTracker::new();

    let (ledger, writer) = Ledger::new(store.clone(), ledger_options(&config));
    tasks.spawn(writer.run());
    let settler = Arc::new(Settler::new(Arc::new(prices), ledger.sink()));

    let upstream = Upstream::new(&config.upstream, config.secrets.upstream_key.as_deref())?;
    let gateway = Arc::new(Gateway {
        keys: Arc::clone(&keys),
        upstream,
        max_body_bytes: config.limits.max_body_bytes,
        settler: Arc::clone(&settler),
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

    let admin_on_main = admin_listener.is_none();
    let router = Arc::new(Router::new(
        Arc::clone(&gateway),
        store.clone(),
        Arc::clone(&keys),
        admin_on_main,
    ));
    let main_router = Arc::clone(&router);
    let route_main = move |req| {
        let router = Arc::clone(&main_router);
        async move { router.route(req).await }
    };
    servers.spawn(server::serve(
        listener,
        options.clone(),
        route_main,
        cancel.clone().cancelled_owned(),
    ));
    if let Some(admin_listener) = admin_listener {
        let admin_router = Arc::clone(&router);
        let route_admin = move |req| {
            let router = Arc::clone(&admin_router);
            async move { router.route_admin_listener(req).await }
        };
        servers.spawn(server::serve(
            admin_listener,
            options,
            route_admin,
            cancel.clone().cancelled_owned(),
        ));
    }
    if let Some(days) = config.ledger.retention_days {
        tasks.spawn(enforce_retention(store.clone(), days, cancel.clone()));
    }
    tasks.spawn(sync.run(
        Duration::from_millis(config.store.key_refresh_ms),
        cancel.clone().cancelled_owned(),
    ));

    Ok(Running {
        addr,
        admin_addr,
        generated_admin_token,
        store,
        keys,
        ledger,
        settler,
        cancel,
        servers,
        tasks,
    })
}

fn ledger_options(config: &Config) -> LedgerOptions {
    LedgerOptions {
        capacity: config.ledger.queue_capacity,
        batch_rows: config.ledger.batch_rows,
        flush_interval: Duration::from_millis(config.ledger.flush_ms),
        ..LedgerOptions::new(&config.ledger.spool_path)
    }
}

async fn bind(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Applies the ledger retention period at start and then hourly. Every replica may run it:
/// dropping a partition or deleting a row twice is a no-op.
async fn enforce_retention(store: Store, days: u32, cancel: CancellationToken) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = hourly.tick() => {}
            () = cancel.cancelled() => return,
        }
        let cutoff = tollgate_core::time::now_ms() - i64::from(days) * 86_400_000;
        match store.apply_ledger_retention(cutoff).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, days, "ledger retention applied"),
            Err(e) => tracing::warn!(error = %e, "ledger retention failed; will retry in an hour"),
        }
    }
}
