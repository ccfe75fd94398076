//! tollgate's shared vocabulary: key format and hashing, the in-memory key cache, OpenAI-shaped
//! API errors and configuration types. No I/O lives here, so every other crate can depend on it.

pub mod api_error;
pub mod batch;
pub mod budget;
pub mod config;
pub mod key_cache;
pub mod keys;
pub mod ledger;
pub mod models;
pub mod money;
pub mod pricing;
pub mod ratelimit;
pub mod time;
pub mod usage;

pub use api_error::ApiError;
pub use key_cache::{AuthError, KeyCache, KeyRecord, TeamInfo};
pub use keys::{KeyHash, ParsedKey, SecretKind};
pub use ledger::{CallOutcome, LedgerEvent, LedgerSink, ToolCount};
pub use models::ModelAllowList;
pub use money::Money;
pub use pricing::{ImagePrice, PriceEntry, PriceTable, Priced, ToolPrice, UnpricedPolicy};
pub use usage::{ImageCount, ToolUse, Units, Usage};
