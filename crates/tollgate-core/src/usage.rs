//! Token usage of one call, as the upstream reported it (or as tollgate estimated it).

use serde::{Deserialize, Serialize};

/// Tokens by kind. `cached_input` is part of `input`; `reasoning` is part of `output` — the
/// same convention as OpenAI's usage objects, so nothing is counted twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    pub reasoning: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }

    /// Input tokens billed at the full input rate.
    pub fn uncached_input(&self) -> u64 {
        self.input.saturating_sub(self.cached_input)
    }
}
