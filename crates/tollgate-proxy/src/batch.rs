//! OpenAI's Batch API, metered. A batch bills after its creation call has returned, line by
//! line, at the batch tier; so tollgate meters it in two steps:
//!
//! ```text
//! POST /v1/batches ─► gate, then a 1-nano reservation: an exhausted budget refuses here
//!                  ─► stream the input file from the upstream, line by line: each line's model
//!                     allowed and priced, its upper-bound cost at the batch tier   (create.rs)
//!                  ─► reserve the sum; write an intent row (the BatchBook); forward; record
//!                     the batch id before the client sees the answer
//! Follower (background, every [batches] poll_interval_ms)                      (follow.rs)
//!                  ─► GET /v1/batches/{id} until it ends; stream its output file; one ledger
//!                     row per request line (`<batch_id>:<custom_id>`, at the time the batch
//!                     ended, so a second settlement is a no-op); mark it settled; release the
//!                     reservation with the actual total                         (output.rs)
//! ```
//! The proxy does not touch the database: the app implements [`BatchBook`] with the store.

pub mod create;
pub mod follow;
pub mod lines;
pub mod output;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tollgate_core::batch::{BatchRecord, BatchSettlement};
use tollgate_core::budget::Reservation;

pub use follow::Follower;

/// What a [`BatchBook`] call returns: the store's answer or why it failed, in words.
pub type BookFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Where batches are recorded (implemented by the app with the store), so that a batch
/// created here is settled exactly once, by this process or any other, after any restart.
pub trait BatchBook: Send + Sync + 'static {
    /// Records a creation about to be forwarded (an intent: `batch_id` unset).
    fn record(&self, record: BatchRecord) -> BookFuture<'_, ()>;
    /// Gives an intent its batch id. `false`: it was not an intent any more, or the id is taken.
    fn created(&self, request_id: String, batch_id: String) -> BookFuture<'_, bool>;
    /// Claims or renews this process's hold on a pending batch's reservation: one process at a
    /// time holds it, so replicas do not each hold a running batch's money. `false`: another
    /// live process holds it.
    fn hold(&self, batch_id: String) -> BookFuture<'_, bool>;
    /// Marks an intent that produced no batch.
    fn abandon(&self, request_id: String) -> BookFuture<'_, ()>;
    /// Intents without a batch id written before `before_ms`.
    fn intents(&self, before_ms: i64) -> BookFuture<'_, Vec<BatchRecord>>;
    /// Batches running upstream, not yet settled.
    fn unsettled(&self) -> BookFuture<'_, Vec<BatchRecord>>;
    /// Marks a batch settled once every ledger row recorded so far is durable (in the database
    /// or the spool). `false`: someone settled it first.
    fn settle(&self, batch_id: String, settlement: BatchSettlement) -> BookFuture<'_, bool>;
}

/// Batches this process is creating or following, shared by the creation calls and the
/// follower.
pub struct Batches {
    pub book: Arc<dyn BatchBook>,
    /// The budget reservation of each batch followed, by batch id (`None`: no budget applies,
    /// or a restarted process's budget refused to hold it again).
    held: Mutex<HashMap<String, Option<Reservation>>>,
    /// Creations in flight here, by request id: their intents are not reconciled from under
    /// them.
    creating: Mutex<HashSet<String>>,
}

impl Batches {
    pub fn new(book: Arc<dyn BatchBook>) -> Batches {
        Batches {
            book,
            held: Mutex::default(),
            creating: Mutex::default(),
        }
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, Option<Reservation>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn creating(&self) -> MutexGuard<'_, HashSet<String>> {
        self.creating.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `reservation` for `batch_id` until it settles.
    fn hold(&self, batch_id: &str, reservation: Option<Reservation>) {
        self.held().insert(batch_id.to_string(), reservation);
    }

    fn is_held(&self, batch_id: &str) -> bool {
        self.held().contains_key(batch_id)
    }

    /// Releases `batch_id`'s reservation, charging `actual`.
    fn release(&self, batch_id: &str, actual: tollgate_core::Money) {
        let taken = self.held().remove(batch_id);
        if let Some(Some(reservation)) = taken {
            reservation.settle(actual);
        }
    }

    /// Releases (charging nothing here) reservations of batches no longer unsettled: another
    /// replica settled them.
    fn forget_all_but(&self, unsettled: &HashSet<&str>) {
        self.held().retain(|id, _| unsettled.contains(id.as_str()));
    }

    /// Batches this process holds a reservation for (tests, status).
    pub fn followed(&self) -> usize {
        self.held().len()
    }
}

/// Marks a creation in flight for as long as it lives (a client that leaves drops it).
struct Creating<'a> {
    batches: &'a Batches,
    request_id: String,
}

impl<'a> Creating<'a> {
    fn new(batches: &'a Batches, request_id: &str) -> Creating<'a> {
        batches.creating().insert(request_id.to_string());
        Creating {
            batches,
            request_id: request_id.to_string(),
        }
    }
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        self.batches.creating().remove(&self.request_id);
    }
}
