//! One settled call, as the meter hands it to the ledger: the row finance's reports sum.
//!
//! The proxy produces these and passes them to a [`LedgerSink`] without waiting; the store's
//! ledger writer batches them into the database (spooling to disk when it cannot), idempotent
//! on `request_id`.

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::usage::Usage;

/// Everything recorded about one proxied call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEvent {
    /// tollgate's request id (`req_…`), returned to the client as `x-request-id`; the
    /// idempotency key of the row.
    pub request_id: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub team_id: String,
    pub key_id: String,
    /// The team's cost centre when the call was made (it may change later; the bill does not).
    pub cost_centre: Option<String>,
    /// `x-tollgate-user` if sent, else the `originator` header (e.g. `codex_exec`).
    pub user: Option<String>,
    /// `session-id`, else `thread-id`; length-limited.
    pub session_id: Option<String>,
    /// Codex's turn id from `x-codex-turn-metadata`, when present.
    pub turn_id: Option<String>,
    /// Endpoint label: `responses`, `chat.completions`, `completions`, `embeddings`, `models`, `other`.
    pub endpoint: String,
    pub model_requested: Option<String>,
    pub model_served: Option<String>,
    /// HTTP status returned to the client.
    pub status: u16,
    pub usage: Usage,
    pub cost: Money,
    /// The price entry used (`<model family>@<effective_from>`), so a report can show which
    /// rates applied without copying them into the row.
    pub price_id: Option<String>,
    /// Usage was estimated with the tokenizer because the upstream never reported it.
    pub estimated: bool,
    /// The model had no price entry and the fallback rate was charged.
    pub unpriced: bool,
    /// The `service_tier` the upstream reported (`default`, `flex`, `priority`, …).
    pub service_tier: Option<String>,
    /// Time to the first byte of the upstream's response body, if any arrived.
    pub ttfb_ms: Option<i64>,
    pub latency_ms: i64,
    /// Tool calls the model made in this response, by tool name (`exec_command`, `apply_patch`, …).
    pub tool_calls: Vec<ToolCount>,
}

/// How many times one tool was called in a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCount {
    pub name: String,
    pub count: u32,
}

/// Where settled calls go. `record` must not block or fail: a sink that cannot reach its
/// database keeps the event elsewhere (a spool file) rather than lose it or stall a stream.
pub trait LedgerSink: Send + Sync + 'static {
    fn record(&self, event: LedgerEvent);
}
