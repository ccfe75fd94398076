//! `[budgets]`: how budgets and rate limits are enforced (the budgets themselves live in the
//! database and are managed through the admin API).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigProblem, problem};
use crate::budget::{Calendar, FailPolicy};
use crate::money::Money;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// IANA time zone in which day, week (from Monday) and month windows start.
    pub timezone: String,
    /// When a process's lease is spent and the database is unreachable: `fail_closed`
    /// (refuse with a retryable 429, the default: a budget is a promise) or `fail_open`.
    pub fail_policy: String,
    /// A lease lapses this long after its last renewal (a crashed process's claim comes back
    /// after at most this long).
    pub lease_ttl_ms: u64,
    /// How often budgets, rate limits, spend and leases are synchronised with the database. A
    /// budget change reaches every process within this interval plus one query.
    pub sync_ms: u64,
    /// The largest slice of a budget one process claims at a time (USD, decimal string).
    pub max_slice_usd: String,
    /// A slice is at most the budget's remaining money divided by this.
    pub slice_divisor: u32,
    /// Output tokens assumed when a request sets no `max_output_tokens` / `max_tokens` (Codex
    /// sets none). A call that produces more can overspend by the difference.
    pub default_max_output_tokens: u64,
    /// Per model (exact name or `prefix*`), overriding the default above.
    pub max_output_tokens: BTreeMap<String, u64>,
    /// Input tokens assumed for the part of a Responses call's input that the upstream holds
    /// and the body only names (`previous_response_id`, `conversation`, a stored `prompt`, an
    /// `item_reference`) when reserving its cost: the body's length cannot bound it, the
    /// context window of the largest model in use does. A call that continues a longer
    /// context can overspend by the difference.
    pub stored_input_tokens: u64,
    /// Requests per minute allowed to a team past one of its budgets' soft thresholds.
    pub soft_throttle_rpm: Option<u32>,
    /// Receives a JSON POST for each budget event (soft threshold crossed, limit reached).
    pub webhook_url: Option<String>,
}

impl Default for BudgetsConfig {
    fn default() -> BudgetsConfig {
        BudgetsConfig {
            timezone: "UTC".into(),
            fail_policy: "fail_closed".into(),
            lease_ttl_ms: 10_000,
            sync_ms: 250,
            max_slice_usd: "20.00".into(),
            slice_divisor: 8,
            default_max_output_tokens: 32_768,
            max_output_tokens: BTreeMap::new(),
            stored_input_tokens: 400_000,
            soft_throttle_rpm: None,
            webhook_url: None,
        }
    }
}

impl BudgetsConfig {
    pub fn calendar(&self) -> Calendar {
        Calendar::new(&self.timezone).unwrap_or_default()
    }

    pub fn fail_policy(&self) -> FailPolicy {
        if self.fail_policy == "fail_open" {
            FailPolicy::Open
        } else {
            FailPolicy::Closed
        }
    }

    pub fn max_slice(&self) -> Money {
        Money::parse_usd(&self.max_slice_usd).unwrap_or(Money(20_000_000_000))
    }

    /// The output-token bound for `model` when the request sets none.
    pub fn output_cap(&self, model: &str) -> u64 {
        self.max_output_tokens
            .iter()
            .filter(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => model.starts_with(prefix),
                None => model == pattern.as_str(),
            })
            // The most specific (longest) pattern wins.
            .max_by_key(|(pattern, _)| pattern.len())
            .map_or(self.default_max_output_tokens, |(_, cap)| *cap)
    }

    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if Calendar::new(&self.timezone).is_none() {
            problems.push(problem(
                "budgets.timezone",
                format!(
                    "'{}' is not an IANA time zone like UTC or Europe/Berlin",
                    self.timezone
                ),
            ));
        }
        if !matches!(self.fail_policy.as_str(), "fail_open" | "fail_closed") {
            problems.push(problem(
                "budgets.fail_policy",
                "must be fail_closed or fail_open",
            ));
        }
        if self.lease_ttl_ms < 1_000 {
            problems.push(problem("budgets.lease_ttl_ms", "must be at least 1000"));
        }
        if self.sync_ms == 0 || self.sync_ms * 2 > self.lease_ttl_ms {
            problems.push(problem(
                "budgets.sync_ms",
                "must be greater than 0 and at most half of budgets.lease_ttl_ms",
            ));
        }
        if Money::parse_usd(&self.max_slice_usd).is_none_or(|m| m.nanos() <= 0) {
            problems.push(problem(
                "budgets.max_slice_usd",
                "must be a positive amount in USD like \"5.00\"",
            ));
        }
        if self.slice_divisor == 0 {
            problems.push(problem("budgets.slice_divisor", "must be at least 1"));
        }
        if self.default_max_output_tokens == 0 {
            problems.push(problem(
                "budgets.default_max_output_tokens",
                "must be greater than 0",
            ));
        }
        if let Some(url) = &self.webhook_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.push(problem(
                "budgets.webhook_url",
                format!("'{url}' is not an http:// or https:// URL"),
            ));
        }
        problems
    }
}
