//! tollgate's control-plane store: teams, team keys and admin tokens in PostgreSQL or SQLite, the
//! background sync that keeps the proxy's in-memory key cache fresh, and the spend ledger with its
//! batching writer, spool and rollups.
//!
//! One set of `$1`-placeholder SQL runs on both backends through sqlx's `Any` driver. Its types are
//! the lowest common denominator, so ids are TEXT, times are epoch milliseconds and flags are 0/1
//! integers. Every change to a team or key bumps the single-row `revision` counter in the same
//! transaction; [`KeySync`] polls for rows newer than the last revision it saw.

mod admin;
mod audit;
mod batches;
mod budget_sync;
mod budgets;
mod error;
mod key_sync;
mod keys;
pub mod ledger;
mod poll;
mod refusals;
mod reports;
mod session_signals;
mod sessions;
mod store;
mod teams;
#[cfg(feature = "test-support")]
pub mod testdb;

pub use admin::{AdminBootstrap, AdminPrincipal, AdminToken, Role};
pub use audit::{Actor, AuditEntry};
pub use batches::StoredBatch;
pub use budget_sync::BudgetSync;
pub use budgets::{BudgetSpec, BudgetStatus, StoreLeases};
pub use error::{Result, StoreError};
pub use key_sync::KeySync;
pub use keys::{ApiKey, IssuedKey, KeyChanges};
pub use ledger::{
    BatchOutcome, Ledger, LedgerOptions, LedgerRow, LedgerStats, LedgerWriter, SessionSummary,
    Totals,
};
pub use refusals::RefusalCount;
pub use reports::{
    DailyDifference, Dimension, Reconciliation, Report, ReportQuery, ReportRow, SessionDifference,
    SessionTotals, Source, local_day, local_month, month_bounds, parse_instant, rfc3339,
};
pub use session_signals::{CodexTokens, SessionSignal, SessionSignals, SignalKind};
pub use sessions::{GateRun, SessionEvent, SessionHooks};
pub use store::{Backend, SchemaState, Store};
pub use teams::{Team, TeamUpdate};
