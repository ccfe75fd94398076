//! UTC calendar arithmetic on epoch milliseconds: the `YYYY-MM-DD` day a row rolls up into and the
//! month partition it lands in.

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime};

/// The UTC day of an epoch-milliseconds instant, as `YYYY-MM-DD` (the `ledger_daily.day` key).
pub fn utc_day(ms: i64) -> String {
    // Formatted by hand: the ledger writer calls this per row, and `format!` with integer
    // arguments does not parse a pattern the way chrono's `format("%Y-%m-%d")` does.
    let date = utc_date(ms);
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

/// The UTC date of an instant; instants beyond chrono's ±262,000 years clamp to its ends.
fn utc_date(ms: i64) -> NaiveDate {
    match DateTime::from_timestamp_millis(ms) {
        Some(at) => at.date_naive(),
        None if ms < 0 => NaiveDate::MIN,
        None => NaiveDate::MAX,
    }
}

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Month {
    /// The first day of the month.
    first: NaiveDate,
}

impl Month {
    pub(crate) fn of_ms(ms: i64) -> Month {
        let date = utc_date(ms);
        Month {
            first: date.with_day(1).unwrap_or(date),
        }
    }

    /// The month after this one (the last month chrono knows is its own successor).
    pub(crate) fn next(self) -> Month {
        Month {
            first: self
                .first
                .checked_add_months(Months::new(1))
                .unwrap_or(self.first),
        }
    }

    /// Months since January of year 0; differences count months.
    pub(crate) fn index(self) -> i64 {
        i64::from(self.first.year()) * 12 + i64::from(self.first.month0())
    }

    /// Epoch milliseconds at 00:00 UTC on the first of the month.
    pub(crate) fn start_ms(self) -> i64 {
        self.first
            .and_time(NaiveTime::MIN)
            .and_utc()
            .timestamp_millis()
    }

    /// The month a partition name (`ledger_y2026m11`) stands for.
    pub(crate) fn from_partition_name(name: &str) -> Option<Month> {
        let rest = name.strip_prefix("ledger_y")?;
        let (year, month) = rest.split_once('m')?;
        let first = NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)?;
        Some(Month { first })
    }

    /// `ledger_y2026m11`: the partition holding this month's rows.
    pub(crate) fn partition_name(self) -> String {
        format!("ledger_y{:04}m{:02}", self.first.year(), self.first.month())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(-1), "1969-12-31");
        assert_eq!(utc_day(1_764_072_000_000), "2025-11-25");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(utc_day(4_102_444_799_999), "2099-12-31");
        assert_eq!(utc_day(i64::MIN), "-262143-01-01");
    }

    #[test]
    fn months_know_their_bounds_and_successor() {
        let nov = Month::of_ms(1_764_072_000_000);
        assert_eq!(nov.partition_name(), "ledger_y2025m11");
        assert_eq!(nov.start_ms(), 1_761_955_200_000);
        let dec = nov.next();
        assert_eq!(dec.partition_name(), "ledger_y2025m12");
        assert_eq!(dec.next().partition_name(), "ledger_y2026m01");
        assert_eq!(dec.next().index() - nov.index(), 2);
        assert_eq!(Month::of_ms(dec.start_ms() - 1), nov);
        assert_eq!(Month::of_ms(dec.start_ms()), dec);
        assert_eq!(Month::from_partition_name("ledger_y2025m12"), Some(dec));
        assert_eq!(Month::from_partition_name("ledger_y2025m13"), None);
        assert_eq!(Month::from_partition_name("ledger_default"), None);
    }
}
