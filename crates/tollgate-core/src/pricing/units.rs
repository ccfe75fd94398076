//! The exact little languages of the price file: decimal rates, ratios, UTC days and dated
//! snapshot suffixes. Each parser returns an operator-facing message on error.

use std::fmt;

/// Nano-USD in one USD: a rate of "1" USD per 1M tokens is 1_000_000_000 nano-USD per 1M tokens.
const NANOS_PER_USD: u64 = 1_000_000_000;

/// Decimals a rate may carry: nine, so the smallest rate is 1 nano-USD per 1M tokens (or per
/// image, minute, call …).
const MAX_DECIMALS: usize = 9;

/// Largest numerator or denominator of a ratio. Keeps the request arithmetic far inside `i128`.
pub const MAX_RATIO_PART: u64 = 1_000_000;

/// The unit of a token rate, as the messages of [`parse_usd`] name it.
pub const PER_1M_TOKENS: &str = "USD per 1M tokens";

/// Parses a decimal string of USD `per` something ("2.50" USD per 1M tokens, "0.04" USD per
/// image) into integer nano-USD per the same thing ("0.005" → 5_000_000). No float is involved;
/// `per` only words the error messages.
pub fn parse_usd(text: &str, per: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!(
            "'{text}' is negative; a rate is zero or more {per}"
        ));
    }
    let (whole, frac, has_point) = match t.split_once('.') {
        Some((whole, frac)) => (whole, frac, true),
        None => (t, "", false),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || (has_point && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(format!(
            "'{text}' is not a decimal number of {per} like \"2.50\""
        ));
    }
    if frac.len() > MAX_DECIMALS {
        return Err(format!(
            "'{text}' has {} decimals; at most {MAX_DECIMALS} (1 nano-{per})",
            frac.len()
        ));
    }
    let too_large = || format!("'{text}' is too large a rate");
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    let frac_nanos: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<MAX_DECIMALS$}")
            .parse()
            .map_err(|_| too_large())?
    };
    whole
        .checked_mul(NANOS_PER_USD)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(too_large)
}

/// An exact multiplier `numer/denom`, both in `1..=MAX_RATIO_PART`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    numer: u64,
    denom: u64,
}

impl Ratio {
    pub const ONE: Ratio = Ratio { numer: 1, denom: 1 };

    /// `None` unless both parts are in `1..=1_000_000`.
    pub fn new(numer: u64, denom: u64) -> Option<Ratio> {
        let ok = |n: u64| (1..=MAX_RATIO_PART).contains(&n);
        (ok(numer) && ok(denom)).then_some(Ratio { numer, denom })
    }

    pub fn numer(self) -> u64 {
        self.numer
    }

    pub fn denom(self) -> u64 {
        self.denom
    }

    /// Parses "3/2", or a whole number "2" meaning 2/1.
    pub fn parse(text: &str) -> Result<Ratio, String> {
        let t = text.trim();
        let (numer, denom) = t.split_once('/').unwrap_or((t, "1"));
        let part = |s: &str| {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse::<u64>().ok()
            } else {
                None
            }
        };
        part(numer)
            .zip(part(denom))
            .and_then(|(n, d)| Ratio::new(n, d))
            .ok_or_else(|| {
                format!(
                    "'{text}' is not a ratio like \"3/2\": numerator and denominator must be whole \
                     numbers from 1 to {MAX_RATIO_PART}"
                )
            })
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.numer, self.denom)
    }
}

/// Parses a UTC day "YYYY-MM-DD" (years 1970–9999) into epoch milliseconds at its midnight.
pub fn parse_day(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not a date like \"2025-01-01\" (YYYY-MM-DD, UTC)");
    let b = text.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| {
        text.get(range)
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or_else(bad)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1970..=9999).contains(&year) {
        return Err(format!("'{text}': the year must be from 1970 to 9999"));
    }
    let date = i32::try_from(year)
        .ok()
        .and_then(|year| chrono::NaiveDate::from_ymd_opt(year, month, day))
        .ok_or_else(|| format!("'{text}' is not a day of the calendar"))?;
    Ok(date
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis())
}

/// `gpt-5-2025-08-07` → `Some("gpt-5")`: the family of a dated snapshot name, if it is one.
pub fn strip_snapshot_suffix(name: &str) -> Option<&str> {
    const SUFFIX: usize = "-YYYY-MM-DD".len();
    let b = name.as_bytes();
    let cut = b.len().checked_sub(SUFFIX).filter(|&cut| cut > 0)?;
    let suffix = &b[cut..];
    let is_date = suffix.iter().enumerate().all(|(i, c)| match i {
        0 | 5 | 8 => *c == b'-',
        _ => c.is_ascii_digit(),
    });
    if is_date { name.get(..cut) } else { None }
}
