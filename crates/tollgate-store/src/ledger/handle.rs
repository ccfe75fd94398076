//! The ledger's handle: the [`LedgerSink`] the proxy records into (never blocks, never fails),
//! flush, shutdown and stats, and the options the writer runs with.
//!
//! The hot path only does a `try_send` into a bounded channel; when the channel is full or the
//! writer is gone, the event goes to the spool file instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tollgate_core::{LedgerEvent, LedgerSink};

use super::spool::Spool;
use super::writer::LedgerWriter;
use crate::store::Store;

/// How the ledger writer batches, where it spools, and how patiently it retries.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Events the channel holds before `record` spools instead. Default 65,536.
    pub capacity: usize,
    /// Most events per batch (one transaction). Default 500.
    pub batch_rows: usize,
    /// A partial batch is written after at most this long. Default 50 ms.
    pub flush_interval: Duration,
    /// The spool file (JSON lines); `.replaying` and `.rejected` files sit beside it. One per
    /// process: two writers must not share a spool. Default `tollgate-ledger.spool`.
    pub spool_path: PathBuf,
    /// How often a down database is pinged, and the spool checked for events to replay.
    /// Default 1 s.
    pub retry_interval: Duration,
    /// A batch that takes longer is treated as failed and spooled (replay is idempotent, so one
    /// that committed after all is not counted twice). Default 10 s.
    pub write_timeout: Duration,
    /// This process's id in `budget_leases`: rows it settled consume its leases.
    pub replica_id: Option<String>,
}

impl LedgerOptions {
    pub const DEFAULT_SPOOL_FILE: &str = "tollgate-ledger.spool";

    /// The defaults, spooling to `spool_path`.
    pub fn new(spool_path: impl Into<PathBuf>) -> LedgerOptions {
        LedgerOptions {
            capacity: 65_536,
            batch_rows: 500,
            flush_interval: Duration::from_millis(50),
            spool_path: spool_path.into(),
            retry_interval: Duration::from_secs(1),
            write_timeout: Duration::from_secs(10),
            replica_id: None,
        }
    }

    /// The default spool for a database URL: beside the file for SQLite, else in the working
    /// directory.
    pub fn spool_path_for(database_url: &str) -> PathBuf {
        let file = database_url
            .strip_prefix("sqlite://")
            .or_else(|| database_url.strip_prefix("sqlite:"))
            .map(|rest| rest.split('?').next().unwrap_or(""))
            .filter(|file| !file.is_empty() && !file.starts_with(":memory:"));
        match file.and_then(|file| Path::new(file).parent()) {
            Some(dir) => dir.join(Self::DEFAULT_SPOOL_FILE),
            None => PathBuf::from(Self::DEFAULT_SPOOL_FILE),
        }
    }
}

impl Default for LedgerOptions {
    fn default() -> LedgerOptions {
        LedgerOptions::new(Self::DEFAULT_SPOOL_FILE)
    }
}

/// A snapshot of the writer's counters, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LedgerStats {
    /// Events in the channel now.
    pub queued: u64,
    /// Spool bytes not yet replayed.
    pub spool_bytes: u64,
    /// Rows inserted (duplicates not counted).
    pub rows_written: u64,
    /// Events skipped because their request id was already in the ledger.
    pub duplicates: u64,
    /// Transactions committed.
    pub batches: u64,
    /// When the last batch committed (epoch ms; 0 = never).
    pub last_write_ms: i64,
    /// Batches that failed or timed out.
    pub write_errors: u64,
    /// Events written to the spool.
    pub spooled: u64,
    /// Spooled events read back and written to the database (duplicates included).
    pub replayed: u64,
    /// Events the database refused as invalid, or spool lines that did not parse: kept in the
    /// `.rejected` file and logged.
    pub rejected: u64,
    /// Events that could not be written even to the spool: logged with their JSON, nowhere else.
    pub lost: u64,
}

#[allow(
    clippy::large_enum_variant,
    reason = "nearly every message is an Event; boxing it would add an allocation per request"
)]
pub(super) enum Msg {
    Event(LedgerEvent),
    /// Acknowledged once every earlier event is in the database or the spool.
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// State the sink and the writer task share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) spool: Spool,
    pub(super) rows_written: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) last_write_ms: AtomicI64,
    pub(super) write_errors: AtomicU64,
    pub(super) spooled: AtomicU64,
    pub(super) replayed: AtomicU64,
}

impl Shared {
    pub(super) fn spool(&self, events: &[LedgerEvent]) {
        let written = self.spool.append(events);
        self.spooled.fetch_add(written as u64, Ordering::Relaxed);
    }
}

struct Sink {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl LedgerSink for Sink {
    fn record(&self, event: LedgerEvent) {
        match self.tx.try_send(Msg::Event(event)) {
            Ok(()) => {}
            // The writer is behind: spool now; the writer fsyncs the spool on its next tick.
            Err(mpsc::error::TrySendError::Full(Msg::Event(event))) => {
                self.shared.spool(std::slice::from_ref(&event));
            }
            // The writer has shut down: nobody will fsync later, so do it now.
            Err(mpsc::error::TrySendError::Closed(Msg::Event(event))) => {
                self.shared.spool(std::slice::from_ref(&event));
                self.shared.spool.sync();
            }
            Err(_) => {}
        }
    }
}

/// The handle: a [`LedgerSink`] for the proxy, plus flush, shutdown and stats. Clones share the
/// one writer (a clone kept for stats does not keep it running after `shutdown`).
#[derive(Clone)]
pub struct Ledger {
    sink: Arc<Sink>,
}

impl Ledger {
    /// The handle and the writer task, for callers that spawn tasks through their own tracker.
    /// Until [`LedgerWriter::run`] is polled, recorded events queue and then spool.
    pub fn new(store: Store, options: LedgerOptions) -> (Ledger, LedgerWriter) {
        let (tx, rx) = mpsc::channel(options.capacity.max(1));
        let shared = Arc::new(Shared {
            spool: Spool::open(options.spool_path.clone()),
            rows_written: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            last_write_ms: AtomicI64::new(0),
            write_errors: AtomicU64::new(0),
            spooled: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
        });
        let writer = LedgerWriter::new(store, rx, shared.clone(), options);
        (
            Ledger {
                sink: Arc::new(Sink { tx, shared }),
            },
            writer,
        )
    }

    /// [`new`](Ledger::new) with the writer spawned on the current Tokio runtime.
    pub fn spawn(store: Store, options: LedgerOptions) -> Ledger {
        let (ledger, writer) = Ledger::new(store, options);
        tokio::spawn(writer.run());
        ledger
    }

    /// The sink to hand to the proxy. Cheap; every clone feeds the same writer.
    pub fn sink(&self) -> Arc<dyn LedgerSink> {
        self.sink.clone()
    }

    /// Returns once every event recorded before the call is in the database or fsynced in the
    /// spool.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.sink.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
        // Events spooled by `record` (channel full or closed) are durable after this.
        self.sink.shared.spool.sync();
    }

    /// Writes what is queued (to the database, else the spool) and stops the writer. Events
    /// recorded through sinks after this go straight to the spool, for the next start to replay.
    pub async fn shutdown(self) {
        let (ack, done) = oneshot::channel();
        if self.sink.tx.send(Msg::Shutdown(ack)).await.is_ok() {
            let _ = done.await;
        }
        self.sink.shared.spool.sync();
    }

    pub fn stats(&self) -> LedgerStats {
        let shared = &self.sink.shared;
        let tx = &self.sink.tx;
        LedgerStats {
            queued: (tx.max_capacity() - tx.capacity()) as u64,
            spool_bytes: shared.spool.pending_bytes(),
            rows_written: shared.rows_written.load(Ordering::Relaxed),
            duplicates: shared.duplicates.load(Ordering::Relaxed),
            batches: shared.batches.load(Ordering::Relaxed),
            last_write_ms: shared.last_write_ms.load(Ordering::Relaxed),
            write_errors: shared.write_errors.load(Ordering::Relaxed),
            spooled: shared.spooled.load(Ordering::Relaxed),
            replayed: shared.replayed.load(Ordering::Relaxed),
            rejected: shared.spool.rejected_lines.load(Ordering::Relaxed),
            lost: shared.spool.lost.load(Ordering::Relaxed),
        }
    }
}

impl LedgerSink for Ledger {
    fn record(&self, event: LedgerEvent) {
        self.sink.record(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_sits_beside_a_sqlite_file_else_in_the_working_directory() {
        let default = PathBuf::from(LedgerOptions::DEFAULT_SPOOL_FILE);
        assert_eq!(
            LedgerOptions::spool_path_for("sqlite:///var/lib/tollgate/t.db?mode=rwc"),
            PathBuf::from("/var/lib/tollgate/tollgate-ledger.spool")
        );
        assert_eq!(
            LedgerOptions::spool_path_for("sqlite:data/t.db"),
            PathBuf::from("data/tollgate-ledger.spool")
        );
        assert_eq!(
            LedgerOptions::spool_path_for("sqlite:t.db"),
            PathBuf::from("tollgate-ledger.spool")
        );
        assert_eq!(LedgerOptions::spool_path_for("sqlite::memory:"), default);
        assert_eq!(LedgerOptions::spool_path_for("postgres://h/db"), default);
    }
}
