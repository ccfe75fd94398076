//! Budget windows in the deployment's time zone: a day starts at local midnight, a week on
//! Monday, a month on the 1st. Daylight-saving changes make some days 23 or 25 hours long; the
//! window follows the wall clock, as finance expects.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::Period;

/// Where a window starts and when it resets (`None`: a `total` budget never resets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub resets_at_ms: Option<i64>,
}

/// Window arithmetic in one time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    tz: Tz,
}

impl Default for Calendar {
    fn default() -> Calendar {
        Calendar { tz: Tz::UTC }
    }
}

impl Calendar {
    /// A calendar for an IANA zone name (`UTC`, `Europe/Berlin`, `America/New_York`).
    pub fn new(zone: &str) -> Option<Calendar> {
        zone.parse::<Tz>().ok().map(|tz| Calendar { tz })
    }

    pub fn zone(&self) -> &'static str {
        self.tz.name()
    }

    /// The window of `period` containing `at_ms`, moved to `reset_at_ms` if an admin reset the
    /// budget after the period began (and not after `at_ms`).
    pub fn window(&self, period: Period, reset_at_ms: i64, at_ms: i64) -> Window {
        let (start, resets) = self.period_bounds(period, at_ms);
        if reset_at_ms > start && reset_at_ms <= at_ms {
            Window {
                start_ms: reset_at_ms,
                resets_at_ms: resets,
            }
        } else {
            Window {
                start_ms: start,
                resets_at_ms: resets,
            }
        }
    }

    /// The start of `period` containing `at_ms`, ignoring resets (0 for `total`).
    pub fn period_start(&self, period: Period, at_ms: i64) -> i64 {
        self.period_bounds(period, at_ms).0
    }

    fn period_bounds(&self, period: Period, at_ms: i64) -> (i64, Option<i64>) {
        let local = self.local_date(at_ms);
        let (start, next) = match period {
            Period::Total => return (0, None),
            Period::Day => (local, local.checked_add_days(Days::new(1))),
            Period::Week => {
                let monday = local
                    .checked_sub_days(Days::new(u64::from(local.weekday().num_days_from_monday())))
                    .unwrap_or(local);
                (monday, monday.checked_add_days(Days::new(7)))
            }
            Period::Month => {
                let first = local.with_day(1).unwrap_or(local);
                (first, first.checked_add_months(Months::new(1)))
            }
        };
        (self.midnight_ms(start), next.map(|d| self.midnight_ms(d)))
    }

    fn local_date(&self, at_ms: i64) -> NaiveDate {
        let utc = DateTime::<Utc>::from_timestamp_millis(at_ms).unwrap_or_default();
        utc.with_timezone(&self.tz).date_naive()
    }

    /// The first instant of `date` in the zone (a day that starts inside a DST gap starts at
    /// the first minute that exists). A date the zone skipped altogether (Samoa went from 29
    /// to 31 December 2011) starts where the next date does, so the day before it ends there
    /// rather than at a made-up instant in its own middle.
    fn midnight_ms(&self, date: NaiveDate) -> i64 {
        let midnight: NaiveDateTime = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        // A gap is at most a day long: a day and its next day's first three hours are enough.
        for minutes in 0..=(24 + 3) * 60 {
            let wall = midnight + chrono::Duration::minutes(minutes);
            if let Some(instant) = self.tz.from_local_datetime(&wall).earliest() {
                return instant.timestamp_millis();
            }
        }
        midnight.and_utc().timestamp_millis()
    }

    /// A time for people: `2026-12-01 00:00 Europe/Berlin`.
    pub fn describe(&self, at_ms: i64) -> String {
        let utc = DateTime::<Utc>::from_timestamp_millis(at_ms).unwrap_or_default();
        format!(
            "{} {}",
            utc.with_timezone(&self.tz).format("%Y-%m-%d %H:%M"),
            self.tz.name()
        )
    }
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
    fn days_weeks_and_months_start_at_local_midnight() {
        let berlin = Calendar::new("Europe/Berlin").unwrap();
        // 23:30 UTC on 30 Nov is already 1 Dec in Berlin.
        let at = ms("2026-11-30T23:30:00Z");
        let day = berlin.window(Period::Day, 0, at);
        assert_eq!(day.start_ms, ms("2026-11-30T23:00:00Z"));
        assert_eq!(day.resets_at_ms, Some(ms("2026-12-01T23:00:00Z")));
        let month = berlin.window(Period::Month, 0, at);
        assert_eq!(month.start_ms, ms("2026-11-30T23:00:00Z"));
        assert_eq!(month.resets_at_ms, Some(ms("2026-12-31T23:00:00Z")));
        // 1 Dec 2026 is a Tuesday: the week began on Monday 30 Nov, local time.
        let week = berlin.window(Period::Week, 0, at);
        assert_eq!(week.start_ms, ms("2026-11-29T23:00:00Z"));
        assert_eq!(week.resets_at_ms, Some(ms("2026-12-06T23:00:00Z")));

        let utc = Calendar::default();
        assert_eq!(
            utc.window(Period::Month, 0, at).start_ms,
            ms("2026-11-01T00:00:00Z")
        );
        assert_eq!(
            utc.window(Period::Total, 0, at),
            Window {
                start_ms: 0,
                resets_at_ms: None
            }
        );
    }

    #[test]
    fn a_dst_day_follows_the_wall_clock() {
        let ny = Calendar::new("America/New_York").unwrap();
        // 8 Mar 2026: clocks go forward, the day is 23 hours long.
        let day = ny.window(Period::Day, 0, ms("2026-03-08T12:00:00Z"));
        assert_eq!(day.start_ms, ms("2026-03-08T05:00:00Z"));
        assert_eq!(day.resets_at_ms, Some(ms("2026-03-09T04:00:00Z")));
    }

    #[test]
    fn a_skipped_date_ends_the_day_before_at_the_next_midnight() {
        let apia = Calendar::new("Pacific/Apia").unwrap();
        // 29 Dec 2011 (UTC-10) was followed by 31 Dec (UTC+14): 30 Dec never happened there.
        let on_29th = apia.window(Period::Day, i64::MIN, ms("2011-12-29T12:00:00-10:00"));
        assert_eq!(on_29th.start_ms, ms("2011-12-29T00:00:00-10:00"));
        assert_eq!(on_29th.resets_at_ms, Some(ms("2011-12-31T00:00:00+14:00")));
        let on_31st = apia.window(Period::Day, i64::MIN, ms("2011-12-31T12:00:00+14:00"));
        assert_eq!(on_31st.start_ms, ms("2011-12-31T00:00:00+14:00"));
    }

    #[test]
    fn a_reset_starts_a_new_window_until_the_period_ends() {
        let utc = Calendar::default();
        let reset = ms("2026-11-20T10:00:00Z");
        let before = utc.window(Period::Month, reset, ms("2026-11-20T09:00:00Z"));
        assert_eq!(before.start_ms, ms("2026-11-01T00:00:00Z"));
        let after = utc.window(Period::Month, reset, ms("2026-11-25T09:00:00Z"));
        assert_eq!(after.start_ms, reset);
        let next_month = utc.window(Period::Month, reset, ms("2026-12-02T00:00:00Z"));
        assert_eq!(next_month.start_ms, ms("2026-12-01T00:00:00Z"));
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(Calendar::new("Mars/Olympus").is_none());
        assert_eq!(Calendar::new("Asia/Tokyo").unwrap().zone(), "Asia/Tokyo");
    }
}
