//! The price table: what one OpenAI call costs, exactly, in integer nano-USD.
//!
//! Rates are read from `config/prices.toml` as decimal strings of USD per 1M tokens (or per
//! image, 1M characters, minute of audio, tool call) and held as integer **nano-USD** per the
//! same thing (`"0.005"` → 5_000_000), so every published rate, down to nine decimals, is exact.
//! Multipliers (long context, service tier) are exact ratios. No float is involved anywhere.
//!
//! ## Which entry prices a call
//! A model name is looked up exactly (trimmed, case-sensitive) among entry names and aliases;
//! failing that, a dated snapshot suffix `-YYYY-MM-DD` is stripped (`gpt-5-2025-08-07` →
//! `gpt-5`) and the family is looked up. Each name has a timeline of entries; the one in force
//! is the entry with the latest `effective_from` (a UTC day) at or before the call's time, so a
//! past call always re-prices the same. A name with no entry in force is unknown: the caller
//! applies the `[unpriced]` policy.
//!
//! ## What a call bills
//! Tokens always: [`Usage`] counts them. Beyond plain text tokens a call may bill [`Units`]:
//! image and audio tokens (a *subset* of the input or output count, billed at the entry's
//! `image_input`, `audio_input`, `image_output`, `audio_output` rate, or at the text rate of
//! their side when the entry has none), images at a per-image price by size and quality,
//! characters of input per 1M characters, audio per minute (counted in milliseconds, billed per
//! millisecond), and built-in tool calls at the `per_call` price of the `[[tool]]` entry in
//! force. A non-empty unit the table has no rate for (an image size the entry does not list, a
//! tool with no entry, characters for a model without a per-character rate) makes the call
//! unpriceable, like an unknown model: it is never billed zero silently.
//!
//! A `[[tool]]` entry with a `models` list applies only to calls priced by an entry whose name
//! (or the call's own model string) is listed, and wins over an entry without `models` for
//! those models; among the entries that apply, the latest `effective_from` at or before the
//! call's time is in force.
//!
//! ## The arithmetic and its one rounding
//! Token rates are nano-USD per 1M tokens. `r_in`, `r_out` are the text rates (`r_in` is 0
//! when the entry has no `input` — only per-image, per-character and per-minute entries may
//! omit it — and `r_out` is 0 when it has no `output`); `r_cached` is `r_in` when the entry has
//! no cached rate; `r_img_in`, `r_aud_in`, `r_img_out`, `r_aud_out` fall back to `r_in` /
//! `r_out`. The input tokens are split as
//!
//! ```text
//! cached   = min(cached_input, input)                    all kinds, at r_cached
//! img_in   = min(input_image_tokens, input − cached)
//! aud_in   = min(input_audio_tokens, input − cached − img_in)
//! text_in  = input − cached − img_in − aud_in
//! img_out  = min(output_image_tokens, output)
//! aud_out  = min(output_audio_tokens, output − img_out)
//! text_out = output − img_out − aud_out                   reasoning is in here, never added again
//! ```
//!
//! (usage does not say which kind was cached: cached tokens are taken from the text first, so
//! image and audio tokens, usually the dearer kinds, bill at their own rate). With the
//! long-context ratios `a_in/b_in` and `a_out/b_out` (1/1 unless the request's input tokens
//! exceed the entry's threshold; they apply to tokens only) and the service tier's ratio
//! `t_n/t_d` (which applies to the whole call):
//!
//! ```text
//! T_in  = text_in·r_in + cached·r_cached + img_in·r_img_in + aud_in·r_aud_in
//! T_out = text_out·r_out + img_out·r_img_out + aud_out·r_aud_out
//! F     = images·r_image + Σ tool calls·r_call                  (nano-USD per image / call)
//! U     = 3·characters·r_char + 50·audio_ms·r_min + 3_000_000·F
//!         (r_char nano-USD per 1M characters, r_min nano-USD per minute = 60_000 ms)
//! N = ( 3·T_in·a_in·b_out  +  3·T_out·a_out·b_in  +  U·b_in·b_out ) · t_n
//! D = 3_000_000 · b_in · b_out · t_d
//! cost = ⌊(N + D/2) / D⌋ nano-USD
//! ```
//!
//! 3_000_000 is the least common multiple of the per-1M (1_000_000) and per-minute (60_000 ms)
//! denominators, so every part is exact over D. Everything is multiplied first over this one
//! common denominator and divided **once per call, rounding half up** (D is even, so `D/2` is
//! exact): a call never carries more than half a nano-USD of rounding, and any report is an
//! exact sum of per-call integers. The products are `i128`; a call so large that its cost
//! overflows `i128` or `i64` costs `Money(i64::MAX)`. The `[unpriced]` fallback prices text
//! tokens only, with the same formula.

mod cost;
mod parse;
#[cfg(test)]
mod tests;
mod units;

use std::collections::HashMap;

pub use units::Ratio;

use crate::money::Money;
use crate::usage::{Units, Usage};
use cost::{Extras, TokenRates};

/// Every price the gateway knows, by model name and time. Built by [`PriceTable::from_toml`].
#[derive(Debug, Clone)]
pub struct PriceTable {
    entries: Vec<PriceEntry>,
    /// Name or alias → indices into `entries`, ordered by `effective_from`.
    timelines: HashMap<String, Vec<usize>>,
    /// Service tier → multiplier. A tier not listed bills at 1/1.
    tiers: HashMap<String, Ratio>,
    unpriced: Unpriced,
    tools: Vec<ToolPrice>,
    /// Tool name → indices into `tools`, ordered by `effective_from`.
    tool_timelines: HashMap<String, Vec<usize>>,
}

/// One `[[model]]` entry: the rates of a model (and its aliases) from a day on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceEntry {
    pub name: String,
    /// Names billed exactly like `name` (e.g. `gpt-5.1` and `gpt-5-codex` beside `gpt-5`).
    pub aliases: Vec<String>,
    /// UTC day, `YYYY-MM-DD`, from whose midnight this entry is in force.
    pub effective_from: String,
    /// Nano-USD per 1M input tokens. 0 when the entry has no `input` (only per-image,
    /// per-character and per-minute entries may omit it): their input tokens bill nothing.
    pub input: u64,
    /// Nano-USD per 1M cached input tokens. `None`: cached tokens bill at `input`.
    pub cached_input: Option<u64>,
    /// Nano-USD per 1M output tokens. `None` (embeddings): output bills nothing.
    pub output: Option<u64>,
    pub long_context: Option<LongContext>,
    /// Nano-USD per 1M image input tokens. `None`: they bill at `input`.
    pub image_input: Option<u64>,
    /// Nano-USD per 1M image output tokens. `None`: they bill at `output`.
    pub image_output: Option<u64>,
    /// Nano-USD per 1M audio input tokens. `None`: they bill at `input`.
    pub audio_input: Option<u64>,
    /// Nano-USD per 1M audio output tokens. `None`: they bill at `output`.
    pub audio_output: Option<u64>,
    /// Prices per image by size and quality (dall-e-2/-3); empty for other models.
    pub per_image: Vec<ImagePrice>,
    /// Nano-USD per 1M characters of input (tts-1).
    pub per_1m_characters: Option<u64>,
    /// Nano-USD per minute of audio (whisper-1), billed per millisecond.
    pub per_minute: Option<u64>,
    effective_from_ms: i64,
}

/// The price of one image at a size and quality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePrice {
    /// As the request names it: `1024x1024`.
    pub size: String,
    /// `standard`, `hd`, …; "standard" for models without qualities.
    pub quality: String,
    /// Nano-USD per image.
    pub nanos: u64,
}

/// One `[[tool]]` entry: the per-call price of a built-in tool from a day on, for every model
/// or only for those in `models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPrice {
    /// The tool type as OpenAI names it (`web_search_preview`), matched exactly.
    pub name: String,
    /// UTC day, `YYYY-MM-DD`, from whose midnight this entry is in force.
    pub effective_from: String,
    /// Nano-USD per call.
    pub per_call: u64,
    /// Model names this entry is limited to; empty: every model.
    pub models: Vec<String>,
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

    /// Nano-USD per image of `size` and `quality` (an empty quality is "standard"), if listed.
    pub fn per_image(&self, size: &str, quality: &str) -> Option<u64> {
        let (size, quality) = (size.trim(), standard_if_empty(quality));
        self.per_image
            .iter()
            .find(|p| p.size == size && p.quality == quality)
            .map(|p| p.nanos)
    }

    /// Whether images bill per image (dall-e-2/-3) rather than as tokens.
    pub fn bills_per_image(&self) -> bool {
        !self.per_image.is_empty()
    }

    /// Whether input bills per character (tts-1).
    pub fn bills_characters(&self) -> bool {
        self.per_1m_characters.is_some()
    }

    /// Whether audio bills per minute (whisper-1).
    pub fn bills_minutes(&self) -> bool {
        self.per_minute.is_some()
    }

    fn token_rates(&self) -> TokenRates {
        let output = self.output.unwrap_or(0);
        TokenRates {
            input: self.input,
            cached_input: self.cached_input.unwrap_or(self.input),
            output,
            image_input: self.image_input.unwrap_or(self.input),
            audio_input: self.audio_input.unwrap_or(self.input),
            image_output: self.image_output.unwrap_or(output),
            audio_output: self.audio_output.unwrap_or(output),
        }
    }
}

impl ToolPrice {
    /// `name@effective_from`, e.g. `web_search@2025-01-01`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.effective_from)
    }

    /// `effective_from` as epoch milliseconds (midnight UTC).
    pub fn effective_from_ms(&self) -> i64 {
        self.effective_from_ms
    }
}

impl Rates {
    /// Text-token rates only: the fallback has no image, audio or per-unit prices.
    fn token_rates(self) -> TokenRates {
        let output = self.output.unwrap_or(0);
        let cached_input = self.cached_input.unwrap_or(self.input);
        TokenRates {
            input: self.input,
            cached_input,
            output,
            image_input: self.input,
            audio_input: self.input,
            image_output: output,
            audio_output: output,
        }
    }
}

/// A quality left empty is the only quality of models without qualities.
fn standard_if_empty(quality: &str) -> &str {
    match quality.trim() {
        "" => "standard",
        q => q,
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

    /// Prices a call that bills text tokens only. `service_tier` is the tier the *response*
    /// reports. `None`: the model is unknown and the caller applies
    /// [`PriceTable::unpriced_policy`]. The same as [`PriceTable::price_call`] with no units.
    pub fn price(
        &self,
        model: &str,
        at_ms: i64,
        usage: &Usage,
        service_tier: Option<&str>,
    ) -> Option<Priced> {
        self.price_call(model, at_ms, usage, &Units::default(), service_tier)
    }

    /// Prices a call with everything it bills. `None` when the model has no entry in force OR
    /// any non-empty part of `units` has no rate (an image size/quality the entry does not
    /// list, a tool with no `[[tool]]` entry in force, characters for a model without a
    /// per-character rate, …): the caller then applies the `[unpriced]` policy, as for an
    /// unknown model.
    pub fn price_call(
        &self,
        model: &str,
        at_ms: i64,
        usage: &Usage,
        units: &Units,
        service_tier: Option<&str>,
    ) -> Option<Priced> {
        let entry = self.resolve(model, at_ms)?;
        let extras = self.extras(entry, model, at_ms, units)?;
        let tier = self.tier_ratio(service_tier);
        let long = entry
            .long_context
            .filter(|lc| usage.input > lc.above_input_tokens);
        Some(Priced {
            cost: cost::cost(&entry.token_rates(), long, usage, units, &extras, tier),
            price_id: entry.id(),
            long_context: long.is_some(),
        })
    }

    /// Whether [`PriceTable::price_call`] could price this model with these units at `at_ms`
    /// (admission uses it to refuse before forwarding): the same lookup, no arithmetic.
    pub fn can_price(&self, model: &str, at_ms: i64, units: &Units) -> bool {
        self.resolve(model, at_ms)
            .is_some_and(|entry| self.extras(entry, model, at_ms, units).is_some())
    }

    /// The `[[tool]]` entry in force for `tool` on a call of `model` at `at_ms`: an entry
    /// listing the model (by its price entry's name or as called) wins over one for every model.
    pub fn tool_price(&self, tool: &str, model: &str, at_ms: i64) -> Option<&ToolPrice> {
        let entry_name = self.resolve(model, at_ms).map(|e| e.name.as_str());
        self.tool_in_force(tool, entry_name, model, at_ms)
    }

    /// Prices a call of an unknown model at the fallback rates; `None` if the policy is reject.
    pub fn price_unpriced(&self, usage: &Usage, service_tier: Option<&str>) -> Option<Priced> {
        match &self.unpriced {
            Unpriced::Reject => None,
            Unpriced::Fallback(rates) => Some(Priced {
                cost: cost::cost(
                    &rates.token_rates(),
                    None,
                    usage,
                    &Units::default(),
                    &Extras::default(),
                    self.tier_ratio(service_tier),
                ),
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

    /// Every `[[tool]]` entry, in file order.
    pub fn tools(&self) -> &[ToolPrice] {
        &self.tools
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

    /// What `units` add to the entry's token price; `None` if a non-empty unit has no rate.
    fn extras(&self, entry: &PriceEntry, model: &str, at_ms: i64, units: &Units) -> Option<Extras> {
        let mut fixed = Vec::new();
        if let Some(images) = units.images.as_ref().filter(|i| i.count > 0) {
            fixed.push((
                images.count,
                entry.per_image(&images.size, &images.quality)?,
            ));
        }
        for tool in units.tool_calls.iter().filter(|t| t.calls > 0) {
            let price = self.tool_in_force(&tool.tool, Some(&entry.name), model, at_ms)?;
            fixed.push((tool.calls, price.per_call));
        }
        let per_unit = |count: u64, rate: Option<u64>| match count {
            0 => Some(0),
            _ => rate,
        };
        Some(Extras {
            fixed,
            per_1m_characters: per_unit(units.characters, entry.per_1m_characters)?,
            per_minute: per_unit(units.audio_ms, entry.per_minute)?,
        })
    }

    /// The latest entry in force for `tool` listing `entry_name` or `model`, else the latest
    /// one for every model.
    fn tool_in_force(
        &self,
        tool: &str,
        entry_name: Option<&str>,
        model: &str,
        at_ms: i64,
    ) -> Option<&ToolPrice> {
        let model = model.trim();
        let listed = |t: &&ToolPrice| {
            t.models
                .iter()
                .any(|m| m == model || Some(m.as_str()) == entry_name)
        };
        let in_force = || {
            self.tool_timelines
                .get(tool.trim())
                .into_iter()
                .flatten()
                .rev()
                .filter_map(|&i| self.tools.get(i))
                .filter(|t| t.effective_from_ms <= at_ms)
        };
        in_force()
            .find(listed)
            .or_else(|| in_force().find(|t| t.models.is_empty()))
    }

    /// `default`, `auto`, an unlisted tier or none at all: 1/1.
    fn tier_ratio(&self, service_tier: Option<&str>) -> Ratio {
        service_tier
            .and_then(|t| self.tiers.get(t.trim()))
            .copied()
            .unwrap_or(Ratio::ONE)
    }
}
