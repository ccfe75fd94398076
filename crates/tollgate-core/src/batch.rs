//! A Batch API job tollgate follows: whom its request lines are billed to and what its creation
//! reserved. Written by the creation call (first as an intent, before the upstream sees it) and
//! read back by the follower that settles the batch once it ends, in this process or after a
//! restart.

use crate::money::Money;

/// One batch as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    /// tollgate's request id of the `POST /v1/batches` call (the intent's key).
    pub request_id: String,
    /// The upstream's batch id; `None` while the creation is in flight (an intent).
    pub batch_id: Option<String>,
    pub team_id: String,
    pub key_id: String,
    pub cost_centre: Option<String>,
    pub user: Option<String>,
    pub session_id: Option<String>,
    /// The JSONL file of requests the batch runs.
    pub input_file_id: String,
    /// The batch's `endpoint` (`/v1/responses`, `/v1/chat/completions`, …): how its output
    /// lines' bodies are read.
    pub endpoint: String,
    /// The upper bound of the batch's cost, reserved against budgets until it settles.
    pub reserved: Money,
    /// When the creation call began: lines are priced by the entries in force then.
    pub created_at_ms: i64,
}

/// What a settled batch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchSettlement {
    /// Request lines billed (one ledger row each).
    pub lines: u64,
    pub cost: Money,
    pub settled_at_ms: i64,
}
