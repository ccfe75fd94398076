//! tollgate's shared vocabulary: key format and hashing, the in-memory key cache, OpenAI-shaped
//! API errors and configuration types. No I/O lives here, so every other crate can depend on it.

pub mod api_error;
pub mod config;
pub mod key_cache;
pub mod keys;
pub mod time;

pub use api_error::ApiError;
pub use key_cache::{AuthError, KeyCache, KeyRecord, TeamInfo};
pub use keys::{KeyHash, ParsedKey, SecretKind};
