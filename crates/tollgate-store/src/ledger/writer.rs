//! The ledger writer task: batches events from the channel into the database, spools what the
//! database cannot take, and replays the spool.
//!
//! The writer takes up to `batch_rows` events (or whatever arrived within `flush_interval`) and
//! writes them in one transaction. On PostgreSQL two batches are in flight at once, each in its
//! own transaction on its own connection: while one waits for its rollup rows or its commit, the
//! next one's rows go in, so the database works on both cores and round trips overlap (their
//! rollups lock the same rows in the same order, so the second waits for the first rather than
//! deadlocking). A batch the database cannot take is spooled, and the writer stops trying the
//! database until a ping every `retry_interval` succeeds; then it replays the spool a chunk at a
//! time between live batches, with no live batch in flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{MissedTickBehavior, timeout};
use tollgate_core::LedgerEvent;

use super::attempt::{Attempt, Written};
use super::handle::{LedgerOptions, Msg, Shared};
use super::spool::ReplayReader;
use crate::store::{Backend, Store};

/// How long a ping may take before a down database is considered still down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Spool chunks replayed before the writer looks at the channel again.
const REPLAY_CHUNKS_PER_TURN: usize = 8;
/// Live batches written at once on PostgreSQL. SQLite has one writer at a time, so there a second
/// would only wait for the first.
const POSTGRES_IN_FLIGHT: usize = 2;

/// A batch being written, and how that ended.
type InFlight = Pin<Box<dyn Future<Output = (Vec<LedgerEvent>, Written)> + Send>>;

/// The task that writes batches and replays the spool; see [`Ledger::new`](super::Ledger::new).
pub struct LedgerWriter {
    store: Store,
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    options: LedgerOptions,
    attempt: Attempt,
    batch: Vec<LedgerEvent>,
    in_flight: Vec<InFlight>,
    max_in_flight: usize,
    /// A write failed and no ping has succeeded since: batches go straight to the spool.
    db_down: bool,
    replay: Option<ReplayReader>,
    /// Bytes of the rotated file already in the database.
    replay_offset: u64,
    /// The last replay turn stopped with more to do.
    replay_more: bool,
}

impl LedgerWriter {
    pub(super) fn new(
        store: Store,
        rx: mpsc::Receiver<Msg>,
        shared: Arc<Shared>,
        options: LedgerOptions,
    ) -> LedgerWriter {
        let max_in_flight = match store.backend() {
            Backend::Postgres => POSTGRES_IN_FLIGHT,
            Backend::Sqlite => 1,
        };
        LedgerWriter {
            attempt: Attempt::new(store.clone(), shared.clone(), &options),
            store,
            rx,
            shared,
            batch: Vec::with_capacity(options.batch_rows.max(1)),
            in_flight: Vec::with_capacity(max_in_flight),
            max_in_flight,
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
                done = next_done(&mut self.in_flight), if !self.in_flight.is_empty() => {
                    self.finished(done);
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
                self.settle().await;
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
        self.settle().await;
        self.shared.spool.sync();
        for ack in acks {
            let _ = ack.send(());
        }
    }

    /// Starts writing the pending batch to the database (once fewer than `max_in_flight` are),
    /// or spools it if the database is down.
    async fn write_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let events = std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(self.options.batch_rows.max(1)),
        );
        while self.in_flight.len() >= self.max_in_flight {
            let done = next_done(&mut self.in_flight).await;
            self.finished(done);
        }
        if self.db_down {
            self.shared.spool(&events);
            self.shared.spool.sync();
            return;
        }
        let attempt = self.attempt.clone();
        self.in_flight.push(Box::pin(async move {
            let written = attempt.write(&events, true).await;
            (events, written)
        }));
    }

    /// Waits for every batch in flight.
    async fn settle(&mut self) {
        while !self.in_flight.is_empty() {
            let done = next_done(&mut self.in_flight).await;
            self.finished(done);
        }
    }

    /// Spools what a write could not put in the database.
    fn finished(&mut self, (events, written): (Vec<LedgerEvent>, Written)) {
        if let Some(error) = &written.down {
            self.mark_down(error);
        }
        if written.done < events.len() {
            self.shared.spool(&events[written.done..]);
            self.shared.spool.sync();
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
                // Live batches first: what they leave undone goes to the spool too.
                self.settle().await;
                if self.db_down {
                    self.replay = None;
                    return;
                }
                let written = self.attempt.write(&chunk.events, false).await;
                if let Some(error) = &written.down {
                    self.mark_down(error);
                }
                if written.done < chunk.events.len() {
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

/// The first write in flight to finish, removed from the list. Never ready on an empty list.
fn next_done(
    in_flight: &mut Vec<InFlight>,
) -> impl Future<Output = (Vec<LedgerEvent>, Written)> + '_ {
    std::future::poll_fn(move |cx| {
        for i in 0..in_flight.len() {
            if let Poll::Ready(done) = in_flight[i].as_mut().poll(cx) {
                drop(in_flight.swap_remove(i));
                return Poll::Ready(done);
            }
        }
        Poll::Pending
    })
}
