//! The spend ledger: one row per settled call, written in batches off the hot path, spooled to a
//! local file when the database cannot take it, and replayed idempotently when it can.
//!
//! ```text
//! proxy ─ LedgerSink::record ─► bounded channel ─► LedgerWriter (batch ≤ batch_rows / flush_ms)
//!            │ full / closed                          │ one transaction per batch:
//!            ▼                                        │   INSERT … ON CONFLICT DO NOTHING RETURNING
//!         spool file ◄──────── batch failed ──────────┤   + rollups of exactly the inserted rows
//!            └── rotated to .replaying, replayed ────►┘
//! ```
//!
//! The ledger is the truth: `ledger_daily`, `sessions` and `session_tools` are maintained in the
//! same transaction as the rows, counting only rows actually inserted, so a replay changes nothing.
//! On PostgreSQL two batches are in flight at once (`writer.rs`), each sent as column arrays in
//! messages small enough never to wait on Nagle's algorithm (`params.rs`).

mod attempt;
mod budget_spend;
mod calendar;
mod codec;
mod handle;
mod insert;
mod params;
mod partitions;
mod read;
mod retention;
mod rollup;
mod spool;
mod turn_costs;
mod writer;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

pub use calendar::utc_day;
pub use handle::{Ledger, LedgerOptions, LedgerStats};
pub use insert::BatchOutcome;
pub use read::{LedgerRow, SessionSummary, Totals};
pub(crate) use read::{TOTALS_COLUMNS, daily_sums, ledger_sums, session_from, totals_at};
pub use turn_costs::{MAX_TURN_IDS, ResponseCost, TurnCost};
pub use writer::LedgerWriter;

use calendar::Month;

/// Interned names past this many are forgotten (and looked up again as needed), bounding memory
/// if a client sends a new user name on every request.
const MAX_CACHED_NAMES: usize = 100_000;

/// What a [`Store`](crate::Store) remembers about the ledger tables: month partitions known to
/// exist and `ledger_names` ids. Both only ever grow in the database, so they never go stale.
#[derive(Debug, Default)]
pub(crate) struct LedgerCache {
    partitions: Mutex<HashSet<Month>>,
    names: Mutex<HashMap<String, i32>>,
}

impl LedgerCache {
    fn knows_partition(&self, month: Month) -> bool {
        lock(&self.partitions).contains(&month)
    }

    fn remember_partition(&self, month: Month) {
        lock(&self.partitions).insert(month);
    }

    fn forget_partition(&self, month: Month) {
        lock(&self.partitions).remove(&month);
    }

    /// Ids of the cached names, and the names not cached.
    fn lookup_names<'a>(&self, wanted: BTreeSet<&'a str>) -> (HashMap<String, i32>, Vec<&'a str>) {
        let names = lock(&self.names);
        let mut ids = HashMap::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for name in wanted {
            match names.get(name) {
                Some(id) => {
                    ids.insert(name.to_owned(), *id);
                }
                None => missing.push(name),
            }
        }
        (ids, missing)
    }

    fn remember_names(&self, new: Vec<(String, i32)>) {
        if new.is_empty() {
            return;
        }
        let mut names = lock(&self.names);
        if names.len() + new.len() > MAX_CACHED_NAMES {
            names.clear();
        }
        names.extend(new);
    }
}

/// A poisoned cache lock only means another thread panicked mid-insert into a set or map, which
/// leaves it valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
