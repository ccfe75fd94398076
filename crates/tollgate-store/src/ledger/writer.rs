//! The ledger writer: the [`LedgerSink`] the proxy records into (never blocks, never fails), the
//! task that batches events into the database, and the spool replay.
//!
//! The hot path only does a `try_send` into a bounded channel; when the channel is full or the
//! writer is gone, the event goes to the spool file instead. The writer task takes up to
//! `batch_rows` events (or whatever arrived within `flush_interval`) and writes them in one
//! transaction. A batch the database cannot take is spooled, and the writer stops trying the
//! database until a ping every `retry_interval` succeeds; then it replays the spool a chunk at a
//! time between live batches.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{MissedTickBehavior, timeout};
use tollgate_core::time::now_ms;
use tollgate_core::{LedgerEvent, LedgerSink};

use super::insert::BatchOutcome;
use super::spool::{ReplayReader, Spool, to_line};
use crate::error::StoreError;
use crate::store::{Backend, Store};

/// How long a ping may take before a down database is considered still down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Spool chunks replayed before the writer looks at the channel again.
const REPLAY_CHUNKS_PER_TURN: usize = 8;

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
enum Msg {
    Event(LedgerEvent),
    /// Acknowledged once every earlier event is in the database or the spool.
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// State the sink and the writer task share.
#[derive(Debug)]
struct Shared {
    spool: Spool,
    rows_written: AtomicU64,
    duplicates: AtomicU64,
    batches: AtomicU64,
    last_write_ms: AtomicI64,
    write_errors: AtomicU64,
    spooled: AtomicU64,
    replayed: AtomicU64,
}

impl Shared {
    fn spool(&self, events: &[LedgerEvent]) {
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

/// The handle: a [`LedgerSink`] for the proxy, plus flush, shutdown and stats.
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
        let writer = LedgerWriter {
            store,
            rx,
            shared: shared.clone(),
            batch: Vec::with_capacity(options.batch_rows.max(1)),
            options,
            db_down: false,
            replay: None,
            replay_offset: 0,
            replay_more: false,
        };
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

/// The task that writes batches and replays the spool; see [`Ledger::new`].
pub struct LedgerWriter {
    store: Store,
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    options: LedgerOptions,
    batch: Vec<LedgerEvent>,
    /// A write failed and no ping has succeeded since: batches go straight to the spool.
    db_down: bool,
    replay: Option<ReplayReader>,
    /// Bytes of the rotated file already in the database.
    replay_offset: u64,
    /// The last replay turn stopped with more to do.
    replay_more: bool,
}

/// Why a write did not happen.
enum Failure {
    /// The database refused the rows themselves; retrying will not help.
    Invalid(String),
    /// The database is unreachable, slow or otherwise failing; retry later.
    Unavailable,
}

impl LedgerWriter {
    pub async fn run(mut self) {
        // Not immediately: a batch is cut by size, by `flush`, or once a period has passed.
        let period = self.options.flush_interval;
        let mut flush_tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        flush_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first tick is immediate, so a spool left by a previous process is replayed at once.
        let mut retry_tick = tokio::time::interval(self.options.retry_interval);
        retry_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(Msg::Event(event)) => {
                        self.batch.push(event);
                        if self.batch.len() >= self.options.batch_rows.max(1) {
                            self.write_batch().await;
                        }
                    }
                    Some(Msg::Flush(ack)) => {
                        self.write_batch().await;
                        self.shared.spool.sync();
                        let _ = ack.send(());
                    }
                    Some(Msg::Shutdown(ack)) => {
                        self.drain().await;
                        let _ = ack.send(());
                        return;
                    }
                    None => {
                        self.drain().await;
                        return;
                    }
                },
                _ = flush_tick.tick() => {
                    self.write_batch().await;
                    self.shared.spool.sync();
                }
                _ = retry_tick.tick() => self.maintain().await,
                () = std::future::ready(()), if self.replay_more => self.replay_some().await,
            }
        }
    }

    /// Closes the channel and writes everything still in it.
    async fn drain(&mut self) {
        self.rx.close();
        let mut acks = Vec::new();
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Event(event) => {
                    self.batch.push(event);
                    if self.batch.len() >= self.options.batch_rows.max(1) {
                        self.write_batch().await;
                    }
                }
                Msg::Flush(ack) | Msg::Shutdown(ack) => acks.push(ack),
            }
        }
        self.write_batch().await;
        self.shared.spool.sync();
        for ack in acks {
            let _ = ack.send(());
        }
    }

    /// Writes the pending batch to the database, or to the spool if the database cannot take it.
    async fn write_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let events = std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(self.options.batch_rows.max(1)),
        );
        let written = if self.db_down {
            0
        } else {
            self.write_to_db(&events).await
        };
        if written < events.len() {
            self.shared.spool(&events[written..]);
            self.shared.spool.sync();
        }
    }

    /// Writes events, falling back to one row per transaction if the database refuses the batch
    /// as invalid (refused rows are rejected). Returns how many leading events are done with; the
    /// rest could not be written because the database is unavailable.
    async fn write_to_db(&mut self, events: &[LedgerEvent]) -> usize {
        match self.insert(events).await {
            Ok(()) => events.len(),
            Err(Failure::Unavailable) => 0,
            Err(Failure::Invalid(error)) => {
                tracing::warn!(%error, rows = events.len(), "ledger batch refused; writing its rows one at a time");
                for (i, event) in events.iter().enumerate() {
                    match self.insert(std::slice::from_ref(event)).await {
                        Ok(()) => {}
                        Err(Failure::Invalid(error)) => {
                            self.shared.spool.reject(&to_line(event), &error);
                        }
                        Err(Failure::Unavailable) => return i,
                    }
                }
                events.len()
            }
        }
    }

    async fn insert(&mut self, events: &[LedgerEvent]) -> Result<(), Failure> {
        let shared = &self.shared;
        match timeout(
            self.options.write_timeout,
            self.store.insert_ledger_batch(events),
        )
        .await
        {
            Ok(Ok(BatchOutcome {
                inserted,
                duplicates,
            })) => {
                shared.rows_written.fetch_add(inserted, Ordering::Relaxed);
                shared.duplicates.fetch_add(duplicates, Ordering::Relaxed);
                shared.batches.fetch_add(1, Ordering::Relaxed);
                shared.last_write_ms.store(now_ms(), Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(error)) => {
                shared.write_errors.fetch_add(1, Ordering::Relaxed);
                if is_invalid_data(&error, self.store.backend()) {
                    Err(Failure::Invalid(error.to_string()))
                } else {
                    self.mark_down(&error.to_string());
                    Err(Failure::Unavailable)
                }
            }
            Err(_elapsed) => {
                shared.write_errors.fetch_add(1, Ordering::Relaxed);
                self.mark_down("write timed out");
                Err(Failure::Unavailable)
            }
        }
    }

    fn mark_down(&mut self, error: &str) {
        if !self.db_down {
            tracing::warn!(
                error,
                spool = %self.options.spool_path.display(),
                "ledger database unavailable; spooling events until it answers"
            );
        }
        self.db_down = true;
    }

    /// Every `retry_interval`: ping a down database; once it is up, make sure this and next
    /// month's partitions exist and replay the spool.
    async fn maintain(&mut self) {
        if self.db_down {
            match timeout(PROBE_TIMEOUT, self.store.ping()).await {
                Ok(Ok(())) => {
                    tracing::info!("ledger database answers again; replaying the spool");
                    self.db_down = false;
                }
                _ => return,
            }
        }
        let partitions = timeout(
            self.options.write_timeout,
            self.store.ensure_ledger_partitions([]),
        )
        .await;
        match partitions {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return self.mark_down(&error.to_string()),
            Err(_elapsed) => return self.mark_down("creating partitions timed out"),
        }
        self.replay_some().await;
    }

    /// Replays up to a few chunks of the spool, then lets live batches through again.
    async fn replay_some(&mut self) {
        self.replay_more = false;
        if self.db_down {
            return;
        }
        for _ in 0..REPLAY_CHUNKS_PER_TURN {
            if self.replay.is_none() {
                match self.shared.spool.rotate() {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => {
                        tracing::error!(%error, "cannot rotate the ledger spool for replay");
                        return;
                    }
                }
                let path = self.shared.spool.replaying_path();
                match ReplayReader::open(path, self.replay_offset) {
                    Ok(reader) => self.replay = Some(reader),
                    Err(error) => {
                        tracing::error!(%error, path = %path.display(), "cannot open the ledger spool for replay");
                        return;
                    }
                }
            }
            let Some(reader) = self.replay.as_mut() else {
                return;
            };
            let len = reader.len();
            let chunk = match reader.next_chunk(self.replay_offset, self.options.batch_rows.max(1))
            {
                Ok(chunk) => chunk,
                Err(error) => {
                    tracing::error!(%error, "cannot read the ledger spool for replay");
                    self.replay = None;
                    return;
                }
            };
            if !chunk.events.is_empty() {
                let written = self.write_to_db(&chunk.events).await;
                if written < chunk.events.len() {
                    // Unavailable again: this chunk is read again from its start next time.
                    self.replay = None;
                    return;
                }
                self.shared
                    .replayed
                    .fetch_add(chunk.events.len() as u64, Ordering::Relaxed);
            }
            for line in &chunk.bad_lines {
                self.shared
                    .spool
                    .reject(line, "spool line is not a ledger event");
            }
            self.replay_offset = chunk.end;
            self.shared
                .spool
                .set_replay_bytes(len.saturating_sub(chunk.end));
            if chunk.eof {
                self.replay = None;
                self.replay_offset = 0;
                if let Err(error) = self.shared.spool.finish_replay() {
                    tracing::error!(%error, "cannot delete the replayed ledger spool; it will be replayed again (harmlessly)");
                    return;
                }
                tracing::info!("ledger spool replayed");
                if self.shared.spool.live_bytes() == 0 {
                    return;
                }
            }
        }
        self.replay_more = true;
    }
}

/// Errors the database raises about the rows themselves (PostgreSQL classes 22 data exception and
/// 23 integrity violation; SQLite TOOBIG, CONSTRAINT, MISMATCH), as opposed to its availability.
fn is_invalid_data(error: &StoreError, backend: Backend) -> bool {
    let StoreError::Db(sqlx::Error::Database(db)) = error else {
        return false;
    };
    let Some(code) = db.code() else {
        return false;
    };
    match backend {
        Backend::Postgres => code.starts_with("22") || code.starts_with("23"),
        Backend::Sqlite => code
            .parse::<i32>()
            .is_ok_and(|code| matches!(code & 0xff, 18..=20)),
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
