//! Turning exchanges into numbers: HDR histograms per window, error counts that stay visible,
//! and medians across runs.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::client::{Done, Failure};
use crate::error::BenchError;

/// Longest latency the histograms track (anything slower is clamped, and is a timeout anyway).
const MAX_MICROS: u64 = 600_000_000;

/// Errors of one window, by kind, with the first message as an example.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    pub status: u64,
    pub transport: u64,
    pub timeout: u64,
    pub example: Option<String>,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.status + self.transport + self.timeout
    }

    pub fn add(&mut self, failure: &Failure) {
        match failure {
            Failure::Status(_) => self.status += 1,
            Failure::Transport(_) => self.transport += 1,
            Failure::Timeout => self.timeout += 1,
        }
        if self.example.is_none() {
            self.example = Some(failure.to_string());
        }
    }

    pub fn merge(&mut self, other: &Errors) {
        self.status += other.status;
        self.transport += other.transport;
        self.timeout += other.timeout;
        if self.example.is_none() {
            self.example.clone_from(&other.example);
        }
    }
}

/// Latencies (µs) of one window.
pub struct Recorder {
    total: Histogram<u64>,
    ttfb: Histogram<u64>,
    pub ok: u64,
    pub errors: Errors,
}

impl Recorder {
    pub fn new() -> Result<Recorder, BenchError> {
        let histogram = || Histogram::new_with_bounds(1, MAX_MICROS, 3);
        Ok(Recorder {
            total: histogram()?,
            ttfb: histogram()?,
            ok: 0,
            errors: Errors::default(),
        })
    }

    pub fn record(&mut self, outcome: &Result<Done, Failure>) {
        match outcome {
            Ok(done) => {
                self.ok += 1;
                self.total.saturating_record(micros(done.total));
                self.ttfb.saturating_record(micros(done.ttfb));
            }
            Err(failure) => self.errors.add(failure),
        }
    }

    /// Adds `other`'s latencies and errors to these.
    pub fn merge(&mut self, other: &Recorder) -> Result<(), BenchError> {
        let internal = |e: hdrhistogram::AdditionError| BenchError::Internal(e.to_string());
        self.total.add(&other.total).map_err(internal)?;
        self.ttfb.add(&other.ttfb).map_err(internal)?;
        self.ok += other.ok;
        self.errors.merge(&other.errors);
        Ok(())
    }

    pub fn summary(&self) -> Latency {
        let q = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            p50: q(&self.total, 0.5),
            p90: q(&self.total, 0.9),
            p99: q(&self.total, 0.99),
            ttfb_p50: q(&self.ttfb, 0.5),
            ttfb_p99: q(&self.ttfb, 0.99),
            ok: self.ok,
            errors: self.errors.clone(),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// One window's latency percentiles, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub ttfb_p50: f64,
    pub ttfb_p99: f64,
    pub ok: u64,
    pub errors: Errors,
}

/// The median of the values present (`None` when there are none).
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values
        .into_iter()
        .flatten()
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_missing() {
        assert_eq!(median([Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(
            median([Some(4.0), None, Some(1.0), Some(2.0), Some(3.0)]),
            Some(2.5)
        );
        assert_eq!(median([None]), None);
    }

    #[test]
    fn percentiles_come_from_recorded_latencies() {
        let mut r = Recorder::new().unwrap();
        for ms in 1..=100u64 {
            r.record(&Ok(Done {
                ttfb: Duration::from_millis(ms / 2),
                total: Duration::from_millis(ms),
            }));
        }
        r.record(&Err(Failure::Status(502)));
        let s = r.summary();
        assert!(
            (s.p50 - 50.0).abs() < 0.1 && (s.p99 - 99.0).abs() < 0.1,
            "{s:?}"
        );
        assert_eq!((s.ok, s.errors.total(), s.errors.status), (100, 1, 1));
    }
}
