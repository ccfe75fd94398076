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

use tollgate_core::budget::{Budgets, BudgetsOptions};
use tollgate_core::config::Config;
use tollgate_core::ratelimit::RateLimits;
use tollgate_core::{KeyCache, KeyHash};
use tollgate_proxy::batch::{Batches, Follower};
use tollgate_proxy::server::{self, ServerOptions};
use tollgate_proxy::socket::Sockets;
use tollgate_proxy::{Admission, BodyDeadline, Gateway, Settler, Upstream};
use tollgate_store::ledger::{Ledger, LedgerOptions};
use tollgate_store::{AdminBootstrap, BudgetSync, KeySync, SchemaState, Store, StoreLeases};

use tollgate_telemetry::Telemetry;

use crate::batch_book::StoreBatchBook;
use crate::budget_events::{self, EventCounts};
use crate::codex_signals::CodexSignals;
use crate::intake::Intake;
use crate::router::Metrics;

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
    #[error("telemetry: {0}")]
    Telemetry(#[from] tollgate_telemetry::TelemetryError),
    #[error(
        "the database {db} has no tollgate schema yet: run `tollgate migrate` once with the same \
         DATABASE_URL (or start this once with `tollgate serve --migrate`)"
    )]
    NoSchema { db: String },
    #[error(
        "the database {db} has the schema of an older release (migration {applied}; this one \
         needs {latest}): run `tollgate migrate` with the same DATABASE_URL (or start this once \
         with `tollgate serve --migrate`)"
    )]
    OldSchema {
        db: String,
        applied: i64,
        latest: i64,
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
    pub ledger: Ledger,
    pub budgets: Arc<Budgets>,
    pub budget_events: Arc<EventCounts>,
    pub rates: Arc<RateLimits>,
    pub telemetry: Telemetry,
    settler: Arc<Settler>,
    /// Responses WebSocket connections, closed after the listeners drain.
    sockets: Arc<Sockets>,
    drain_timeout: Duration,
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
        self.sockets.drain(self.drain_timeout).await;
        self.settler.drain().await;
        self.ledger.shutdown().await;
        self.tasks.close();
        self.tasks.wait().await;
        // Last: the final metrics, spans and cost events of the drained calls go out.
        self.telemetry.shutdown().await;
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

/// Opens the configured database: migrated first when `store.migrate_on_start` says so (SQLite
/// by default), otherwise checked to carry this release's schema, so an unmigrated Postgres
/// database gets one sentence saying what to run rather than a missing-table error.
pub async fn open_store(config: &Config) -> Result<Store, StartError> {
    let store = Store::connect(&config.store.database_url).await?;
    if config.migrate_on_start() {
        store.migrate().await?;
        return Ok(store);
    }
    let db = tollgate_core::config::redact_url(&config.store.database_url);
    match store.schema_state().await? {
        SchemaState::Current => Ok(store),
        SchemaState::Empty { .. } => Err(StartError::NoSchema { db }),
        SchemaState::Behind { applied, latest } => Err(StartError::OldSchema {
            db,
            applied,
            latest,
        }),
    }
}

/// Starts a gateway from a validated config.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let prices = crate::config_load::load_prices(&config).map_err(|problems| {
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        StartError::Prices(all.join("; "))
    })?;
    let calendar = config.budgets.calendar();
    let store = open_store(&config).await?.with_budget_calendar(calendar);
    let generated_admin_token = match store
        .ensure_admin_token(config.secrets.admin_token.as_deref())
        .await?
    {
        AdminBootstrap::Generated(token) => Some(token),
        AdminBootstrap::EnvTokenRevoked { revoked_at_ms } => {
            // Still start: the gateway serves teams without it, and other admin tokens work.
            tracing::warn!(
                revoked_at = %tollgate_store::rfc3339(&calendar, revoked_at_ms),
                "TOLLGATE_ADMIN_TOKEN was revoked and stays revoked: it opens nothing. Set a new \
                 token in TOLLGATE_ADMIN_TOKEN (it replaces the revoked one) or use another admin token"
            );
            None
        }
        AdminBootstrap::EnvToken | AdminBootstrap::Existing => None,
    };

    let keys = Arc::new(KeyCache::new());
    let mut sync = KeySync::new(store.clone(), Arc::clone(&keys));
    sync.sync_once().await?;

    let telemetry = Telemetry::start(&config.telemetry)?;
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let servers = TaskTracker::new();

    // Leases are per process start: a restarted process never inherits a dead one's claims.
    let replica_id = format!("{}-{:08x}", hostname(), rand::random::<u32>());
    let budgets = Arc::new(Budgets::new(
        BudgetsOptions {
            calendar,
            replica_id: replica_id.clone(),
            lease_ttl_ms: i64::try_from(config.budgets.lease_ttl_ms).unwrap_or(i64::MAX),
            max_slice: config.budgets.max_slice(),
            slice_divisor: i64::from(config.budgets.slice_divisor),
            fail_policy: config.budgets.fail_policy(),
        },
        Arc::new(StoreLeases(store.clone())),
    ));
    let rates = Arc::new(RateLimits::new(config.budgets.soft_throttle_rpm));
    let budget_events = Arc::new(EventCounts::default());
    let on_event = budget_events::handler(
        store.clone(),
        calendar,
        config.budgets.webhook_url.clone(),
        tasks.clone(),
        Arc::clone(&budget_events),
        telemetry.clone(),
    );
    let mut budget_sync = BudgetSync::new(
        store.clone(),
        Arc::clone(&budgets),
        Arc::clone(&rates),
        on_event,
    );
    budget_sync.sync_once().await?;
    if config.budgets.fail_policy() == tollgate_core::budget::FailPolicy::Open {
        tracing::warn!(
            "budgets.fail_policy = fail_open: while the database is unreachable, calls are admitted past spent leases and budgets can be overspent"
        );
    }

    let (ledger, writer) = Ledger::new(
        store.clone(),
        LedgerOptions {
            replica_id: Some(replica_id.clone()),
            ..ledger_options(&config)
        },
    );
    tasks.spawn(writer.run());
    let settler =
        Arc::new(Settler::new(Arc::new(prices), ledger.sink()).with_telemetry(telemetry.clone()));
    let stats = ledger.clone();
    telemetry.ledger_gauges(move || {
        let s = stats.stats();
        (s.queued, s.spool_bytes)
    });

    let upstream = Upstream::new(&config.upstream, config.secrets.upstream_key.as_deref())?;
    // A batch's reservation is held by one process at a time, renewed on every poll and taken
    // over by another process three polls after its holder stops.
    let hold_ms =
        i64::try_from(config.batches.poll_interval_ms.saturating_mul(3)).unwrap_or(i64::MAX);
    let batches = Arc::new(Batches::new(Arc::new(StoreBatchBook {
        store: store.clone(),
        ledger: ledger.clone(),
        holder: replica_id.clone(),
        hold_ms,
    })));
    let gateway = Arc::new(Gateway {
        keys: Arc::clone(&keys),
        upstream,
        max_body_bytes: config.limits.max_body_bytes,
        body_deadline: BodyDeadline {
            total: Duration::from_millis(config.limits.body_read_timeout_ms),
            idle: Duration::from_millis(config.limits.body_idle_timeout_ms),
        },
        proxy: config.proxy.clone(),
        settler: Arc::clone(&settler),
        admission: Arc::new(Admission {
            budgets: Arc::clone(&budgets),
            rates: Arc::clone(&rates),
            config: config.budgets.clone(),
        }),
        batches: Arc::clone(&batches),
        sockets: Arc::default(),
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
    let metrics = (!config.telemetry.metrics_path.is_empty()).then(|| Metrics {
        path: config.telemetry.metrics_path.clone(),
        telemetry: telemetry.clone(),
        token: config.secrets.metrics_token.as_deref().map(KeyHash::of),
    });
    let intake = if config.intake.enabled {
        // Codex's own telemetry is joined to its sessions on the way through.
        let signals = CodexSignals::start(store.clone(), telemetry.clone(), &tasks, cancel.clone());
        Some(Arc::new(Intake::start(
            &config,
            Arc::clone(&keys),
            telemetry.clone(),
            signals,
            &tasks,
            cancel.clone(),
        )?))
    } else {
        None
    };
    let router = Arc::new(
        Router::new(
            Arc::clone(&gateway),
            store.clone(),
            Arc::clone(&keys),
            admin_on_main,
            metrics,
        )
        .with_intake(intake)
        .with_console(&config),
    );
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
    tasks.spawn(budget_sync.run(
        Duration::from_millis(config.budgets.sync_ms),
        cancel.clone().cancelled_owned(),
    ));
    let follower = Follower {
        upstream: gateway.upstream.clone(),
        batches,
        budgets: Arc::clone(&budgets),
        settler: Arc::clone(&settler),
        poll_interval: Duration::from_millis(config.batches.poll_interval_ms),
        max_line_bytes: usize::try_from(config.limits.max_body_bytes).unwrap_or(usize::MAX),
    };
    tasks.spawn(follower.run(cancel.clone()));
    tasks.spawn(record_refusals(
        store.clone(),
        telemetry.clone(),
        cancel.clone(),
    ));
    tasks.spawn(budget_gauges(
        store.clone(),
        Arc::clone(&budgets),
        telemetry.clone(),
        cancel.clone(),
    ));

    Ok(Running {
        addr,
        admin_addr,
        generated_admin_token,
        store,
        keys,
        ledger,
        budgets,
        budget_events,
        rates,
        telemetry,
        settler,
        sockets: Arc::clone(&gateway.sockets),
        drain_timeout: Duration::from_millis(config.limits.drain_timeout_ms),
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

/// Adds what this gateway refused to `refusals_daily` every few seconds, and once more at
/// shutdown. Counts that cannot be written are kept for the next round, so none is lost to a
/// database hiccup.
async fn record_refusals(store: Store, telemetry: Telemetry, cancel: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    let mut unsaved: Vec<(String, String, u64)> = Vec::new();
    loop {
        let stopping = tokio::select! {
            _ = every.tick() => false,
            () = cancel.cancelled() => true,
        };
        unsaved.extend(telemetry.take_refusals());
        if !unsaved.is_empty() {
            let day = tollgate_store::ledger::utc_day(tollgate_core::time::now_ms());
            match store.add_refusals(&day, &unsaved).await {
                Ok(()) => unsaved.clear(),
                Err(error) => {
                    tracing::warn!(%error, "cannot record refusals yet; will retry");
                    // A long outage must not grow this without bound.
                    unsaved.truncate(10_000);
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// Reports each budget's used ratio (settled spend / limit) as `tollgate_budget_used_ratio`,
/// every second, labelled with its team's name and cost centre.
async fn budget_gauges(
    store: Store,
    budgets: Arc<Budgets>,
    telemetry: Telemetry,
    cancel: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut known: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = cancel.cancelled() => return,
        }
        let views = budgets.views();
        if views.is_empty() && known.is_empty() {
            continue;
        }
        let Ok(teams) = store.list_teams().await else {
            continue;
        };
        let mut now_known = Vec::with_capacity(views.len());
        for (def, view) in views {
            let Some(team) = teams.iter().find(|t| t.id == def.team_id) else {
                continue;
            };
            // A ratio for a dashboard, not money: the float is fine here.
            #[allow(clippy::cast_precision_loss)]
            let ratio = view.spent_db as f64 / def.limit.nanos().max(1) as f64;
            telemetry.budget_used(
                &def.id,
                &team.name,
                team.cost_centre.as_deref().unwrap_or(""),
                def.scope(),
                def.period.as_str(),
                ratio,
            );
            now_known.push(def.id);
        }
        for gone in known.iter().filter(|id| !now_known.contains(id)) {
            telemetry.budget_forget(gone);
        }
        known = now_known;
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tollgate".into())
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
