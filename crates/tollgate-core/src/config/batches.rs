//! `[batches]`: how tollgate follows Batch API jobs until they settle.

use serde::Deserialize;

use super::{ConfigProblem, problem};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchesConfig {
    /// How often the batches tollgate follows are polled upstream (`GET /v1/batches/{id}`). A
    /// batch is charged within this interval (plus reading its output file) of ending; until
    /// then its upper-bound cost stays reserved against its budgets.
    pub poll_interval_ms: u64,
}

impl Default for BatchesConfig {
    fn default() -> BatchesConfig {
        BatchesConfig {
            poll_interval_ms: 60_000,
        }
    }
}

impl BatchesConfig {
    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        if self.poll_interval_ms == 0 {
            return vec![problem(
                "batches.poll_interval_ms",
                "must be greater than 0",
            )];
        }
        Vec::new()
    }
}
