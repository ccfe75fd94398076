//! `[intake] exports_per_minute`, per key, with governor's GCRA limiter (as the proxy's rate
//! limits in `tollgate_core::ratelimit`): a runaway exporter is told to back off (429 with
//! `Retry-After`, which OTLP exporters honour) before its body is even read. Per process, like
//! every tollgate rate limit.

use std::num::NonZeroU32;
use std::sync::Arc;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use http::StatusCode;

use super::reply::Refusal;

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;

pub struct PerKey {
    rate: NonZeroU32,
    limiters: DashMap<String, Arc<Limiter>>,
    /// One clock for every limiter: creating one calibrates it, too slow per request.
    clock: DefaultClock,
}

impl PerKey {
    pub fn new(exports_per_minute: u32) -> PerKey {
        PerKey {
            rate: NonZeroU32::new(exports_per_minute).unwrap_or(NonZeroU32::MIN),
            limiters: DashMap::new(),
            clock: DefaultClock::default(),
        }
    }

    /// Admits one export of key `key_id`, or the 429 that tells it when to retry.
    pub fn check(&self, key_id: &str) -> Result<(), Refusal> {
        let limiter = match self.limiters.get(key_id) {
            Some(limiter) => Arc::clone(limiter.value()),
            None => Arc::clone(
                self.limiters
                    .entry(key_id.to_string())
                    .or_insert_with(|| {
                        Arc::new(RateLimiter::direct_with_clock(
                            Quota::per_minute(self.rate),
                            self.clock.clone(),
                        ))
                    })
                    .value(),
            ),
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            Refusal {
                retry_after_secs: Some(secs),
                ..Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "rate limit reached: {} exports per minute per key ([intake] \
                         exports_per_minute); retry in {secs}s",
                        self.rate
                    ),
                )
            }
        })
    }
}
