//! The ledger writer task: batches events from the channel into the database, spools what the
//! database cannot take, and replays the spool.
//!
//! The writer takes up to `batch_rows` events (or whatever arrived within `flush_interval`) and
//! writes them in one transaction. A batch the database cannot take is spooled, and the writer
//! stops trying the database until a ping every `retry_interval` succeeds; then it replays the
//! spool a chunk at a time between live batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{MissedTickBehavior, timeout};
use tollgate_core::LedgerEvent;
use tollgate_core::time::now_ms;

use super::handle::{LedgerOptions, Msg, Shared};
use super::insert::BatchOutcome;
use super::spool::{ReplayReader, to_line};
use crate::error::StoreError;
use crate::store::{Backend, Store};

/// How long a ping may take before a down database is considered still down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Spool chunks replayed before the writer looks at the channel again.
const REPLAY_CHUNKS_PER_TURN: usize = 8;

/// The task that writes batches and replays the spool; see [`Ledger::new`](super::Ledger::new).
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
    pub(super) fn new(
        store: Store,
        rx: mpsc::Receiver<Msg>,
        shared: Arc<Shared>,
        options: LedgerOptions,
    ) -> LedgerWriter {
        LedgerWriter {
            store,
            rx,
            shared,
            batch: Vec::with_capacity(options.batch_rows.max(1)),
            options,
            db_down: false,
            replay: None,
            replay_offset: 0,
            replay_more: false,
        }
    }

    /// Runs until [`Ledger::shutdown`](super::Ledger::shutdown), or until every sink and the
    /// handle are dropped; either way what is queued is written (or spooled) first.
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
                msg = self.rx.recv() => {
                    let Some(msg) = msg else {
                        self.drain().await;
                        return;
                    };
                    if !self.handle(msg).await {
                        return;
                    }
                    // Fill the batch from what is already queued, so a backlog goes out in full
                    // batches rather than a partial one per tick.
                    while !self.batch.is_empty() {
                        let Ok(msg) = self.rx.try_recv() else {
                            break;
                        };
                        if !self.handle(msg).await {
                            return;
                        }
                    }
                }
                _ = flush_tick.tick() => {
                    self.write_batch().await;
                    self.shared.spool.sync();
                }
                _ = retry_tick.tick() => self.maintain().await,
                () = std::future::ready(()), if self.replay_more => self.replay_some().await,
            }
        }
    }

    /// Returns false once the writer has shut down.
    async fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Event(event) => {
                self.batch.push(event);
                if self.batch.len() >= self.options.batch_rows.max(1) {
                    self.write_batch().await;
                }
                true
            }
            Msg::Flush(ack) => {
                self.write_batch().await;
                self.shared.spool.sync();
                let _ = ack.send(());
                true
            }
            Msg::Shutdown(ack) => {
                self.drain().await;
                let _ = ack.send(());
                false
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
            self.write_to_db(&events, true).await
        };
        if written < events.len() {
            self.shared.spool(&events[written..]);
            self.shared.spool.sync();
        }
    }

    /// Writes events, falling back to one row per transaction if the database refuses the batch
    /// as invalid (refused rows are rejected). Returns how many leading events are done with; the
    /// rest could not be written because the database is unavailable.
    /// `live`: the events were settled by this process (not replayed from a spool), so their
    /// cost is consumed from its budget leases.
    async fn write_to_db(&mut self, events: &[LedgerEvent], live: bool) -> usize {
        match self.insert(events, live).await {
            Ok(()) => events.len(),
            Err(Failure::Unavailable) => 0,
            Err(Failure::Invalid(error)) => {
                tracing::warn!(%error, rows = events.len(), "ledger batch refused; writing its rows one at a time");
                for (i, event) in events.iter().enumerate() {
                    match self.insert(std::slice::from_ref(event), live).await {
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

    async fn insert(&mut self, events: &[LedgerEvent], live: bool) -> Result<(), Failure> {
        let shared = &self.shared;
        let replica = self.options.replica_id.as_deref().filter(|_| live);
        match timeout(
            self.options.write_timeout,
            self.store.insert_ledger_batch_as(events, replica),
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
                let written = self.write_to_db(&chunk.events, false).await;
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
