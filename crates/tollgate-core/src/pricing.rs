//! The price table: what one OpenAI call costs, exactly, in integer nano-USD.
//!
//! Rates are read from `config/prices.toml` as decimal strings of USD per 1M tokens and held as
//! integer **nano-USD per 1M tokens** (`"0.005"` → 5_000_000), so every published rate, down to
//! nine decimals, is exact. Multipliers (long context, service tier) are exact ratios. No float is
//! involved anywhere.
//!
//! ## Which entry prices a call
//! A model name is looked up exactly (trimmed, case-sensitive) among entry names and aliases;
//! failing that, a dated snapshot suffix `-YYYY-MM-DD` is stripped (`gpt-5-2025-08-07` →
//! `gpt-5`) and the family is looked up. Each name has a timeline of entries; the one in force
//! is the entry with the latest `effective_from` (a UTC day) at or before the call's time, so a
//! past call always re-prices the same. A name with no entry in force is unknown: the caller
//! applies the `[unpriced]` policy.
//!
//! ## The arithmetic and its one rounding
//! Per request, with rates `r_in`, `r_cached`, `r_out` in nano-USD per 1M tokens (`r_cached` is
//! `r_in` when the entry has no cached rate, `r_out` is 0 when it has no output rate), the
//! long-context ratios `a_in/b_in` and `a_out/b_out` (1/1 unless the request's input tokens
//! exceed the entry's threshold) and the service tier's ratio `t_n/t_d`:
//!
//! ```text
//! N = ( (uncached·r_in + cached·r_cached) · a_in · b_out  +  output·r_out · a_out · b_in ) · t_n
//! D = 1_000_000 · b_in · b_out · t_d
//! cost = ⌊(N + D/2) / D⌋ nano-USD
//! ```
//!
//! `cached` is the cached input tokens (at most the input), `uncached` the rest of the input,
//! and `output` includes the reasoning tokens, which are never added again. Everything is
//! multiplied first over one common denominator and divided **once per request, rounding half
//! up** (D is even, so `D/2` is exact): a request never carries more than half a nano-USD of
//! rounding, and any report is an exact sum of per-request integers. The products are `i128`;
//! a request so large that its cost overflows `i128` or `i64` costs `Money(i64::MAX)`.

mod parse;
#[cfg(test)]
mod tests;
mod units;

use std::collections::HashMap;

pub use units::Ratio;

use crate::money::Money;
use crate::usage::Usage;

/// Every price the gateway knows, by model name and time. Built by [`PriceTable::from_toml`].
#[derive(Debug, Clone)]
pub struct PriceTable {
    entries: Vec<PriceEntry>,
    /// Name or alias → indices into `entries`, ordered by `effective_from`.
    timelines: HashMap<String, Vec<usize>>,
    /// Service tier → multiplier. A tier not listed bills at 1/1.
    tiers: HashMap<String, Ratio>,
    unpriced: Unpriced,
}

/// One `[[model]]` entry: the rates of a model (and its aliases) from a day on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceEntry {
    pub name: String,
    /// Names billed exactly like `name` (e.g. `gpt-5.1` and `gpt-5-codex` beside `gpt-5`).
    pub aliases: Vec<String>,
    /// UTC day, `YYYY-MM-DD`, from whose midnight this entry is in force.
    pub effective_from: String,
    /// Nano-USD per 1M input tokens.
    pub input: u64,
    /// Nano-USD per 1M cached input tokens. `None`: cached tokens bill at `input`.
    pub cached_input: Option<u64>,
    /// Nano-USD per 1M output tokens. `None` (embeddings): output bills nothing.
    pub output: Option<u64>,
    pub long_context: Option<LongContext>,
    effective_from_ms: i64,
}

/// Long-context pricing: when a request's input tokens exceed `above_input_tokens`, its whole
/// input (cached included) is multiplied by `input` and its whole output by `output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongContext {
    pub above_input_tokens: u64,
    pub input: Ratio,
    pub output: Ratio,
}

/// The cost of one call and the price it was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub cost: Money,
    /// The entry's id (`gpt-5.5@2026-06-01`) or [`UNPRICED_FALLBACK_ID`]. Stored on the ledger
    /// row instead of a copy of the rates.
    pub price_id: String,
    /// Whether the long-context multipliers applied.
    pub long_context: bool,
}

/// The `price_id` of a call charged at the `[unpriced]` fallback rates.
pub const UNPRICED_FALLBACK_ID: &str = "unpriced-fallback";

/// What happens to a call for a model the table cannot price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpricedPolicy {
    /// Refuse the call (HTTP 400): nothing is ever charged zero silently.
    Reject,
    /// Charge the fallback rates and flag the ledger row.
    Fallback,
}

/// The `[unpriced]` section as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unpriced {
    Reject,
    Fallback(Rates),
}

/// The three rates of a price, nano-USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rates {
    input: u64,
    cached_input: Option<u64>,
    output: Option<u64>,
}

impl PriceEntry {
    /// `name@effective_from`, e.g. `gpt-5.5@2026-06-01`: names this price version for good.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.effective_from)
    }

    /// `effective_from` as epoch milliseconds (midnight UTC).
    pub fn effective_from_ms(&self) -> i64 {
        self.effective_from_ms
    }

    fn rates(&self) -> Rates {
        Rates {
            input: self.input,
            cached_input: self.cached_input,
            output: self.output,
        }
    }
}

impl PriceTable {
    /// Parses and validates a price file. Every problem is reported, each named by its field
    /// (`model[3] (gpt-5.5).cached_input: …`).
    pub fn from_toml(text: &str) -> Result<PriceTable, Vec<crate::config::ConfigProblem>> {
        parse::parse(text)
    }

    /// The entry in force for `model` at `at_ms` (epoch ms): exact name or alias first, then the
    /// family of a dated snapshot.
    pub fn resolve(&self, model: &str, at_ms: i64) -> Option<&PriceEntry> {
        let model = model.trim();
        self.in_force(model, at_ms).or_else(|| {
            units::strip_snapshot_suffix(model).and_then(|family| self.in_force(family, at_ms))
        })
    }

    /// Prices a call. `service_tier` is the tier the *response* reports. `None`: the model is
    /// unknown and the caller applies [`PriceTable::unpriced_policy`].
    pub fn price(
        &self,
        model: &str,
        at_ms: i64,
        usage: &Usage,
        service_tier: Option<&str>,
    ) -> Option<Priced> {
        let entry = self.resolve(model, at_ms)?;
        let tier = self.tier_ratio(service_tier);
        let long = entry
            .long_context
            .filter(|lc| usage.input > lc.above_input_tokens);
        Some(Priced {
            cost: cost(entry.rates(), long, usage, tier),
            price_id: entry.id(),
            long_context: long.is_some(),
        })
    }

    /// Prices a call of an unknown model at the fallback rates; `None` if the policy is reject.
    pub fn price_unpriced(&self, usage: &Usage, service_tier: Option<&str>) -> Option<Priced> {
        match &self.unpriced {
            Unpriced::Reject => None,
            Unpriced::Fallback(rates) => Some(Priced {
                cost: cost(*rates, None, usage, self.tier_ratio(service_tier)),
                price_id: UNPRICED_FALLBACK_ID.into(),
                long_context: false,
            }),
        }
    }

    pub fn unpriced_policy(&self) -> UnpricedPolicy {
        match self.unpriced {
            Unpriced::Reject => UnpricedPolicy::Reject,
            Unpriced::Fallback(_) => UnpricedPolicy::Fallback,
        }
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// Number of `[[model]]` entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn in_force(&self, name: &str, at_ms: i64) -> Option<&PriceEntry> {
        let timeline = self.timelines.get(name)?;
        let started = timeline.partition_point(|&i| {
            self.entries
                .get(i)
                .is_some_and(|e| e.effective_from_ms <= at_ms)
        });
        let index = *timeline.get(started.checked_sub(1)?)?;
        self.entries.get(index)
    }

    /// `default`, `auto`, an unlisted tier or none at all: 1/1.
    fn tier_ratio(&self, service_tier: Option<&str>) -> Ratio {
        service_tier
            .and_then(|t| self.tiers.get(t.trim()))
            .copied()
            .unwrap_or(Ratio::ONE)
    }
}

/// The module doc's formula: one common denominator, one division, rounding half up.
fn cost(rates: Rates, long: Option<LongContext>, usage: &Usage, tier: Ratio) -> Money {
    let (in_ratio, out_ratio) = long.map_or((Ratio::ONE, Ratio::ONE), |lc| (lc.input, lc.output));
    let cached = usage.cached_input.min(usage.input);
    let uncached = usage.input - cached;
    let r_cached = rates.cached_input.unwrap_or(rates.input);
    let r_out = rates.output.unwrap_or(0);
    let i = i128::from;
    let exact = || -> Option<i128> {
        let input_part = i(uncached)
            .checked_mul(i(rates.input))?
            .checked_add(i(cached).checked_mul(i(r_cached))?)?;
        let output_part = i(usage.output).checked_mul(i(r_out))?;
        let numer = input_part
            .checked_mul(i(in_ratio.numer()) * i(out_ratio.denom()))?
            .checked_add(output_part.checked_mul(i(out_ratio.numer()) * i(in_ratio.denom()))?)?
            .checked_mul(i(tier.numer()))?;
        // At most 1e6 · (1e6)^3 = 1e24: no overflow. Never zero: every ratio part is ≥ 1.
        let denom = 1_000_000 * i(in_ratio.denom()) * i(out_ratio.denom()) * i(tier.denom());
        numer.checked_add(denom / 2)?.checked_div(denom)
    };
    Money(
        exact()
            .and_then(|n| i64::try_from(n).ok())
            .unwrap_or(i64::MAX),
    )
}
