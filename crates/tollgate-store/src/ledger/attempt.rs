//! One write of events to the database, as the writer runs it (on PostgreSQL two at a time): the
//! batch's transaction under `write_timeout`, the row-by-row retry when the database refuses the
//! batch as invalid (refused rows go to the `.rejected` file), and the counters. What cannot be
//! written is handed back for the writer to spool.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::timeout;
use tollgate_core::LedgerEvent;
use tollgate_core::time::now_ms;

use super::handle::{LedgerOptions, Shared};
use super::insert::BatchOutcome;
use super::spool::to_line;
use crate::error::StoreError;
use crate::store::{Backend, Store};

/// What one write needs; cheap to clone into each write in flight.
#[derive(Clone)]
pub(super) struct Attempt {
    store: Store,
    shared: Arc<Shared>,
    write_timeout: Duration,
    replica_id: Option<Arc<str>>,
}

/// How a write ended.
pub(super) struct Written {
    /// Leading events done with (inserted, already there, or rejected); the rest could not be
    /// written.
    pub(super) done: usize,
    /// Why the database counts as down, if it does now.
    pub(super) down: Option<String>,
}

/// Transactions the database rolled back (a deadlock, a serialization failure) are tried again
/// at once, up to this many times, rather than spooled until the next ping.
const RETRIES: usize = 2;

/// Why a transaction did not commit.
enum Failure {
    /// The database refused the rows themselves; retrying will not help.
    Invalid(String),
    /// The database rolled the transaction back and asks for it to be tried again (PostgreSQL
    /// class 40).
    RolledBack(String),
    /// The database is unreachable, slow or otherwise failing; retry later.
    Unavailable(String),
}

impl Attempt {
    pub(super) fn new(store: Store, shared: Arc<Shared>, options: &LedgerOptions) -> Attempt {
        Attempt {
            store,
            shared,
            write_timeout: options.write_timeout,
            replica_id: options.replica_id.as_deref().map(Arc::from),
        }
    }

    /// Writes events, falling back to one row per transaction if the database refuses the batch
    /// as invalid. `live`: the events were settled by this process (not replayed from a spool),
    /// so their cost is consumed from its budget leases.
    pub(super) async fn write(&self, events: &[LedgerEvent], live: bool) -> Written {
        let error = match self.insert(events, live).await {
            Ok(()) => return written(events.len(), None),
            Err(Failure::Unavailable(error) | Failure::RolledBack(error)) => {
                return written(0, Some(error));
            }
            Err(Failure::Invalid(error)) => error,
        };
        tracing::warn!(%error, rows = events.len(), "ledger batch refused; writing its rows one at a time");
        for (i, event) in events.iter().enumerate() {
            match self.insert(std::slice::from_ref(event), live).await {
                Ok(()) => {}
                Err(Failure::Invalid(error)) => {
                    self.shared.spool.reject(&to_line(event), &error);
                }
                Err(Failure::Unavailable(error) | Failure::RolledBack(error)) => {
                    return written(i, Some(error));
                }
            }
        }
        written(events.len(), None)
    }

    async fn insert(&self, events: &[LedgerEvent], live: bool) -> Result<(), Failure> {
        let mut tries = 0;
        loop {
            match self.try_insert(events, live).await {
                Err(Failure::RolledBack(error)) if tries < RETRIES => {
                    tracing::info!(%error, "ledger batch rolled back; trying it again");
                    tries += 1;
                }
                Err(Failure::RolledBack(error)) => return Err(Failure::Unavailable(error)),
                result => return result,
            }
        }
    }

    async fn try_insert(&self, events: &[LedgerEvent], live: bool) -> Result<(), Failure> {
        let shared = &self.shared;
        let replica = self.replica_id.as_deref().filter(|_| live);
        match timeout(
            self.write_timeout,
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
                let code = sql_state(&error);
                let backend = self.store.backend();
                Err(if is_invalid_data(&code, backend) {
                    Failure::Invalid(error.to_string())
                } else if backend == Backend::Postgres && code.starts_with("40") {
                    Failure::RolledBack(error.to_string())
                } else {
                    Failure::Unavailable(error.to_string())
                })
            }
            Err(_elapsed) => {
                shared.write_errors.fetch_add(1, Ordering::Relaxed);
                Err(Failure::Unavailable("write timed out".to_owned()))
            }
        }
    }
}

fn written(done: usize, down: Option<String>) -> Written {
    Written { done, down }
}

/// The database's error code (SQLSTATE on PostgreSQL, the extended result code on SQLite), or ""
/// for errors that are not the database's.
fn sql_state(error: &StoreError) -> String {
    match error {
        StoreError::Db(sqlx::Error::Database(db)) => db.code().unwrap_or_default().into_owned(),
        _ => String::new(),
    }
}

/// Errors the database raises about the rows themselves (PostgreSQL classes 22 data exception and
/// 23 integrity violation; SQLite TOOBIG, CONSTRAINT, MISMATCH), as opposed to its availability.
fn is_invalid_data(code: &str, backend: Backend) -> bool {
    match backend {
        Backend::Postgres => code.starts_with("22") || code.starts_with("23"),
        Backend::Sqlite => code
            .parse::<i32>()
            .is_ok_and(|code| matches!(code & 0xff, 18..=20)),
    }
}
