//! The module doc's formula: every part of a call over one common denominator, one division,
//! rounding half up.

use super::{LongContext, Ratio};
use crate::money::Money;
use crate::usage::{Units, Usage};

/// Per-1M-token (1_000_000) and per-minute (60_000 ms) denominators share this multiple.
const DENOM: i128 = 3_000_000;
/// `DENOM` over the per-1M denominators of tokens and characters.
const PER_1M: i128 = DENOM / 1_000_000;
/// `DENOM` over the milliseconds in a minute.
const PER_MINUTE: i128 = DENOM / 60_000;

/// Token rates of one call in nano-USD per 1M tokens, every fallback already applied.
#[derive(Debug, Clone, Copy)]
pub(super) struct TokenRates {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    pub image_input: u64,
    pub audio_input: u64,
    pub image_output: u64,
    pub audio_output: u64,
}

/// The rates of a call's non-token units, each found in the table.
#[derive(Debug, Clone, Default)]
pub(super) struct Extras {
    /// (count, nano-USD each): images and tool calls.
    pub fixed: Vec<(u64, u64)>,
    /// Nano-USD per 1M characters (0 when the call has none).
    pub per_1m_characters: u64,
    /// Nano-USD per minute of audio (0 when the call has none).
    pub per_minute: u64,
}

pub(super) fn cost(
    rates: &TokenRates,
    long: Option<LongContext>,
    usage: &Usage,
    units: &Units,
    extras: &Extras,
    tier: Ratio,
) -> Money {
    Money(
        exact(rates, long, usage, units, extras, tier)
            .and_then(|n| i64::try_from(n).ok())
            .unwrap_or(i64::MAX),
    )
}

fn exact(
    rates: &TokenRates,
    long: Option<LongContext>,
    usage: &Usage,
    units: &Units,
    extras: &Extras,
    tier: Ratio,
) -> Option<i128> {
    let (in_ratio, out_ratio) = long.map_or((Ratio::ONE, Ratio::ONE), |lc| (lc.input, lc.output));
    let i = i128::from;
    // Σ count·rate, or None on overflow.
    let sum = |parts: &[(u64, u64)]| {
        parts.iter().try_fold(0i128, |acc, &(count, rate)| {
            acc.checked_add(i(count).checked_mul(i(rate))?)
        })
    };

    let cached = usage.cached_input.min(usage.input);
    let uncached = usage.input - cached;
    let image_in = units.input_image_tokens.min(uncached);
    let audio_in = units.input_audio_tokens.min(uncached - image_in);
    let text_in = uncached - image_in - audio_in;
    let image_out = units.output_image_tokens.min(usage.output);
    let audio_out = units.output_audio_tokens.min(usage.output - image_out);
    let text_out = usage.output - image_out - audio_out;

    let tokens_in = sum(&[
        (text_in, rates.input),
        (cached, rates.cached_input),
        (image_in, rates.image_input),
        (audio_in, rates.audio_input),
    ])?;
    let tokens_out = sum(&[
        (text_out, rates.output),
        (image_out, rates.image_output),
        (audio_out, rates.audio_output),
    ])?;
    let characters = i(units.characters).checked_mul(i(extras.per_1m_characters))?;
    let minutes = i(units.audio_ms).checked_mul(i(extras.per_minute))?;
    let units_part = characters
        .checked_mul(PER_1M)?
        .checked_add(minutes.checked_mul(PER_MINUTE)?)?
        .checked_add(sum(&extras.fixed)?.checked_mul(DENOM)?)?;

    let (a_in, b_in) = (i(in_ratio.numer()), i(in_ratio.denom()));
    let (a_out, b_out) = (i(out_ratio.numer()), i(out_ratio.denom()));
    let numer = tokens_in
        .checked_mul(PER_1M * a_in * b_out)?
        .checked_add(tokens_out.checked_mul(PER_1M * a_out * b_in)?)?
        .checked_add(units_part.checked_mul(b_in * b_out)?)?
        .checked_mul(i(tier.numer()))?;
    // At most 3e6 · (1e6)^3 = 3e24: no overflow. Never zero: every ratio part is ≥ 1.
    let denom = DENOM * b_in * b_out * i(tier.denom());
    numer.checked_add(denom / 2)?.checked_div(denom)
}
