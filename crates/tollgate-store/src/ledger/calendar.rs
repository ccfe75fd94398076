//! UTC calendar arithmetic on epoch milliseconds: the `YYYY-MM-DD` day a row rolls up into and the
//! month partition it lands in. Howard Hinnant's civil-date algorithms, so no date crate is needed.

const MS_PER_DAY: i64 = 86_400_000;

/// The UTC day of an epoch-milliseconds instant, as `YYYY-MM-DD` (the `ledger_daily.day` key).
pub fn utc_day(ms: i64) -> String {
    let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    format!("{year:04}-{month:02}-{day:02}")
}

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Month {
    year: i64,
    /// 1–12.
    month: u32,
}

impl Month {
    pub(crate) fn of_ms(ms: i64) -> Month {
        let (year, month, _) = civil_from_days(ms.div_euclid(MS_PER_DAY));
        Month { year, month }
    }

    pub(crate) fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Months since January of year 0; differences count months.
    pub(crate) fn index(self) -> i64 {
        self.year * 12 + i64::from(self.month) - 1
    }

    /// Epoch milliseconds at 00:00 UTC on the first of the month.
    pub(crate) fn start_ms(self) -> i64 {
        days_from_civil(self.year, self.month, 1) * MS_PER_DAY
    }

    /// The month a partition name (`ledger_y2026m11`) stands for.
    pub(crate) fn from_partition_name(name: &str) -> Option<Month> {
        let rest = name.strip_prefix("ledger_y")?;
        let (year, month) = rest.split_once('m')?;
        let (year, month): (i64, u32) = (year.parse().ok()?, month.parse().ok()?);
        (1..=12).contains(&month).then_some(Month { year, month })
    }

    /// `ledger_y2026m11`: the partition holding this month's rows.
    pub(crate) fn partition_name(self) -> String {
        format!("ledger_y{:04}m{:02}", self.year, self.month)
    }
}

/// (year, month 1–12, day 1–31) of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction (1..=31, 1..=12).
    (year, month as u32, day as u32)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let (month, day) = (i64::from(month), i64::from(day));
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_and_round_trip() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(-1), "1969-12-31");
        assert_eq!(utc_day(1_764_072_000_000), "2025-11-25");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(utc_day(4_102_444_799_999), "2099-12-31");
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
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
    }
}
