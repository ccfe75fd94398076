//! Money: an integer count of nano-US-dollars (1e-9 USD).
//!
//! OpenAI quotes rates in USD per 1M tokens with at most three decimals, so every rate is a
//! whole number of nano-USD per token ($0.001 / 1M tokens = 1 nano-USD per token). Costs are
//! computed in integers and rounded once per request; sums over the ledger are then exact.

use serde::{Deserialize, Serialize};

/// Nano-USD. `i64` holds ±9.2 billion dollars, beyond any report tollgate will sum.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(pub i64);

pub const NANOS_PER_USD: i64 = 1_000_000_000;

impl Money {
    pub const ZERO: Money = Money(0);

    pub fn nanos(self) -> i64 {
        self.0
    }

    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    /// Exact decimal USD with all nine decimals trimmed of trailing zeros but keeping at least
    /// two: `1.5` → "1.50", 1 nano → "0.000000001". No float is involved.
    pub fn to_usd_string(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / NANOS_PER_USD as u64;
        let frac = format!("{:09}", abs % NANOS_PER_USD as u64);
        let trimmed = frac.trim_end_matches('0');
        let frac = if trimmed.len() < 2 {
            &frac[..2]
        } else {
            trimmed
        };
        format!("{sign}{whole}.{frac}")
    }

    /// Exact decimal USD with all nine decimals, always: 1.5 → "1.500000000". Every row of a
    /// report's money column has the same width, and no amount is rounded.
    pub fn to_usd_fixed(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let nanos = NANOS_PER_USD as u64;
        format!("{sign}{}.{:09}", abs / nanos, abs % nanos)
    }

    /// Parses a decimal USD string with at most nine decimals ("0.005", "30", "1.25").
    pub fn parse_usd(text: &str) -> Option<Money> {
        let text = text.trim();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() && frac.is_empty() || frac.len() > 9 {
            return None;
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let frac_nanos: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().ok()?
        };
        let nanos = whole.checked_mul(NANOS_PER_USD)?.checked_add(frac_nanos)?;
        Some(Money(if negative { -nanos } else { nanos }))
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${}", self.to_usd_string())
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Money::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_exactly() {
        assert_eq!(Money(1_500_000_000).to_usd_string(), "1.50");
        assert_eq!(Money(1).to_usd_string(), "0.000000001");
        assert_eq!(Money(123_456_789_012).to_usd_string(), "123.456789012");
        assert_eq!(Money(-5_000_000).to_usd_string(), "-0.005");
        assert_eq!(Money(0).to_usd_string(), "0.00");
        assert_eq!(Money(0).to_usd_fixed(), "0.000000000");
        assert_eq!(Money(2_727_056_500).to_usd_fixed(), "2.727056500");
        assert_eq!(Money(-60_800).to_usd_fixed(), "-0.000060800");
        for s in ["0.005", "30", "1.25", "0.000000001", "-2.5", ".5"] {
            let m = Money::parse_usd(s).unwrap();
            assert_eq!(Money::parse_usd(&m.to_usd_string()), Some(m), "{s}");
        }
        assert_eq!(Money::parse_usd("0.0000000001"), None);
        assert_eq!(Money::parse_usd("1e3"), None);
        assert_eq!(Money::parse_usd(""), None);
    }
}
