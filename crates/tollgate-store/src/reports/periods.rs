//! Report time in a time zone: parsing `from`/`to` (an instant, or a date meaning local midnight),
//! a month's bounds, and the local day and month buckets a range splits into.
//!
//! The ledger stores epoch milliseconds and neither database can be trusted with time zones
//! (SQLite has none), so local buckets are computed here and handed to SQL as a comparison tree
//! on `started_at_ms` giving a bucket number (see [`bucket_sql`]).

use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use tollgate_core::budget::{Calendar, Period};

use crate::error::{Result, StoreError};

/// More buckets than this (27 years of days) is a mistake, not a report, and would build a
/// multi-megabyte statement.
const MAX_BUCKETS: usize = 10_000;

fn tz(calendar: &Calendar) -> Tz {
    // The name came from a `Tz`, so it always parses back.
    calendar.zone().parse().unwrap_or(Tz::UTC)
}

fn local_date(calendar: &Calendar, at_ms: i64) -> NaiveDate {
    let utc = DateTime::<Utc>::from_timestamp_millis(at_ms).unwrap_or_default();
    utc.with_timezone(&tz(calendar)).date_naive()
}

/// The local day of an instant, `YYYY-MM-DD`.
pub fn local_day(calendar: &Calendar, at_ms: i64) -> String {
    local_date(calendar, at_ms).format("%Y-%m-%d").to_string()
}

/// The local month of an instant, `YYYY-MM`.
pub fn local_month(calendar: &Calendar, at_ms: i64) -> String {
    local_date(calendar, at_ms).format("%Y-%m").to_string()
}

/// An instant as RFC 3339 in the calendar's zone: `2026-11-01T00:00:00+01:00`.
pub fn rfc3339(calendar: &Calendar, at_ms: i64) -> String {
    let utc = DateTime::<Utc>::from_timestamp_millis(at_ms).unwrap_or_default();
    utc.with_timezone(&tz(calendar))
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The first instant of `date` in the calendar's zone. Local noon exists on every date a zone
/// has (DST moves the small hours), so the day containing it is that date, and the calendar
/// knows where it starts. A date the zone skipped (Samoa's 30 December 2011) starts where the
/// next one does.
fn start_of(calendar: &Calendar, date: NaiveDate) -> Option<i64> {
    let noon = date.and_time(NaiveTime::from_hms_opt(12, 0, 0)?);
    match tz(calendar).from_local_datetime(&noon).earliest() {
        Some(instant) => Some(calendar.period_start(Period::Day, instant.timestamp_millis())),
        None => start_of(calendar, date.succ_opt()?),
    }
}

/// `from`/`to` as finance writes them: an RFC 3339 instant (`2026-11-30T23:00:00Z`,
/// `2026-12-01T00:00:00+01:00`) or a date (`2026-12-01`), which means local midnight.
pub fn parse_instant(text: &str, calendar: &Calendar) -> Option<i64> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.timestamp_millis());
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    start_of(calendar, date)
}

/// `[start, end)` of a month given as `YYYY-MM`, in the calendar's zone.
pub fn month_bounds(month: &str, calendar: &Calendar) -> Option<(i64, i64)> {
    let (year, month) = month.split_once('-')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    let first = NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)?;
    let start = start_of(calendar, first)?;
    let end = next_boundary(calendar, Period::Month, start)?;
    Some((start, end))
}

/// Where the local day or month after the one containing `at_ms` starts.
fn next_boundary(calendar: &Calendar, period: Period, at_ms: i64) -> Option<i64> {
    // No reset: `i64::MIN` is never after the period start.
    calendar.window(period, i64::MIN, at_ms).resets_at_ms
}

/// The local days (or months) `[from_ms, to_ms)` touches: each bucket's first instant within the
/// range and its label. The first bucket starts at `from_ms` even if that is mid-day.
pub(crate) fn buckets(
    calendar: &Calendar,
    period: Period,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, String)>> {
    let label = |at| match period {
        Period::Month => local_month(calendar, at),
        _ => local_day(calendar, at),
    };
    let mut out = vec![(from_ms, label(from_ms))];
    let mut at = from_ms;
    while let Some(next) = next_boundary(calendar, period, at).filter(|n| *n > at && *n < to_ms) {
        if out.len() == MAX_BUCKETS {
            // Grouping by month is the way out only for days.
            let or_months = if matches!(period, Period::Month) {
                ""
            } else {
                " or group by month"
            };
            return Err(StoreError::Invalid(format!(
                "the range spans more than {MAX_BUCKETS} {}s; narrow it{or_months}",
                period.as_str()
            )));
        }
        out.push((next, label(next)));
        at = next;
    }
    Ok(out)
}

/// An SQL expression giving the number of the bucket `column` falls in (0 for the first of
/// `starts`, which must be ascending): a balanced tree of `CASE WHEN column < start`, so each
/// row costs log2(buckets) comparisons, not one per bucket. Only integers are inlined.
pub(crate) fn bucket_sql(column: &str, starts: &[i64]) -> String {
    fn tree(column: &str, starts: &[i64], first: usize) -> String {
        if starts.len() <= 1 {
            return first.to_string();
        }
        let mid = starts.len() / 2;
        format!(
            "CASE WHEN {column} < {} THEN {} ELSE {} END",
            starts[mid],
            tree(column, &starts[..mid], first),
            tree(column, &starts[mid..], first + mid)
        )
    }
    tree(column, starts, 0)
}

/// Whether the zone is UTC all year, so its days are `ledger_daily`'s days.
pub(crate) fn is_utc(calendar: &Calendar) -> bool {
    matches!(
        calendar.zone(),
        "UTC"
            | "Etc/UTC"
            | "Etc/UCT"
            | "UCT"
            | "Etc/Universal"
            | "Universal"
            | "Etc/Zulu"
            | "Zulu"
            | "GMT"
            | "Etc/GMT"
            | "Etc/GMT0"
            | "Etc/GMT+0"
            | "Etc/GMT-0"
            | "GMT0"
            | "GMT+0"
            | "GMT-0"
            | "Etc/Greenwich"
            | "Greenwich"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn a_date_the_zone_skipped_has_no_day_of_its_own() {
        // Samoa went from 29 to 31 December 2011: the 29th ends where the 31st begins, and a
        // report by day labels every day after it correctly.
        let apia = Calendar::new("Pacific/Apia").unwrap();
        let (from, to) = (
            parse_instant("2011-12-29", &apia).unwrap(),
            parse_instant("2012-01-02", &apia).unwrap(),
        );
        let days = buckets(&apia, Period::Day, from, to).unwrap();
        let labels: Vec<&str> = days.iter().map(|(_, day)| day.as_str()).collect();
        assert_eq!(labels, ["2011-12-29", "2011-12-31", "2012-01-01"]);
        assert_eq!(days[1].0, ms("2011-12-31T00:00:00+14:00"));
        assert_eq!(parse_instant("2011-12-30", &apia), Some(days[1].0));
    }

    #[test]
    fn dates_are_local_midnight_and_instants_are_exact() {
        let berlin = Calendar::new("Europe/Berlin").unwrap();
        assert_eq!(
            parse_instant("2026-12-01", &berlin),
            Some(ms("2026-11-30T23:00:00Z"))
        );
        assert_eq!(
            parse_instant("2026-12-01", &Calendar::default()),
            Some(ms("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            parse_instant("2026-12-01T00:00:00+01:00", &Calendar::default()),
            Some(ms("2026-11-30T23:00:00Z"))
        );
        for bad in [
            "",
            "2026-13-01",
            "2026-11-31",
            "yesterday",
            "2026-12-01T25:00:00Z",
        ] {
            assert_eq!(parse_instant(bad, &berlin), None, "{bad}");
        }
        // Kiribati is UTC+14: its midnight is the previous UTC day.
        let kiritimati = Calendar::new("Pacific/Kiritimati").unwrap();
        assert_eq!(
            parse_instant("2026-12-01", &kiritimati),
            Some(ms("2026-11-30T10:00:00Z"))
        );
    }

    #[test]
    fn months_are_bounded_by_local_midnights() {
        let berlin = Calendar::new("Europe/Berlin").unwrap();
        assert_eq!(
            month_bounds("2026-11", &berlin),
            Some((ms("2026-10-31T23:00:00Z"), ms("2026-11-30T23:00:00Z")))
        );
        assert_eq!(
            month_bounds("2026-12", &Calendar::default()),
            Some((ms("2026-12-01T00:00:00Z"), ms("2027-01-01T00:00:00Z")))
        );
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "november"] {
            assert_eq!(month_bounds(bad, &berlin), None, "{bad}");
        }
    }

    #[test]
    fn buckets_follow_the_local_calendar_across_dst() {
        let berlin = Calendar::new("Europe/Berlin").unwrap();
        // Clocks go back on 25 Oct 2026: that day is 25 hours long.
        let days = buckets(
            &berlin,
            Period::Day,
            ms("2026-10-24T12:00:00Z"),
            ms("2026-10-26T23:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            days,
            vec![
                (ms("2026-10-24T12:00:00Z"), "2026-10-24".to_owned()),
                (ms("2026-10-24T22:00:00Z"), "2026-10-25".to_owned()),
                (ms("2026-10-25T23:00:00Z"), "2026-10-26".to_owned()),
            ]
        );
        let months = buckets(
            &berlin,
            Period::Month,
            ms("2026-10-31T23:00:00Z"),
            ms("2027-01-01T00:00:00Z"),
        )
        .unwrap();
        let labels: Vec<&str> = months.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["2026-11", "2026-12", "2027-01"]);
        let too_many = buckets(&berlin, Period::Day, 0, ms("2100-01-01T00:00:00Z"));
        assert!(matches!(too_many, Err(StoreError::Invalid(_))));
    }

    #[test]
    fn bucket_sql_is_a_balanced_comparison_tree() {
        assert_eq!(
            bucket_sql("t", &[0, 10, 20]),
            "CASE WHEN t < 10 THEN 0 ELSE CASE WHEN t < 20 THEN 1 ELSE 2 END END"
        );
        assert_eq!(bucket_sql("t", &[0]), "0");
        let berlin = Calendar::new("Europe/Berlin").unwrap();
        assert_eq!(
            rfc3339(&berlin, ms("2026-10-31T23:00:00Z")),
            "2026-11-01T00:00:00+01:00"
        );
        assert_eq!(rfc3339(&Calendar::default(), 1), "1970-01-01T00:00:00.001Z");
        assert!(is_utc(&Calendar::default()));
        assert!(!is_utc(&Calendar::new("Europe/London").unwrap()));
    }
}
