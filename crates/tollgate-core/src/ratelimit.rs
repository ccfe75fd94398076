//! Requests and tokens per minute, per team and per key, with governor's GCRA limiters.
//!
//! Limits are enforced per gateway process: N replicas admit up to N × the configured rate
//! (documented; a global limiter would put a database or Redis round trip on every request).
//! Tokens are charged at admission from a cheap estimate of the input and corrected upward at
//! settle when the call used more; an overestimate is not refunded (GCRA cannot give cells back).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::api_error::ApiError;

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// A rate limit as the admin set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitDef {
    pub team_id: String,
    /// `None`: the limit covers the whole team.
    pub key_id: Option<String>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    Team(String),
    Key(String),
    /// A team past a budget's soft threshold.
    Throttle(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Unit {
    Requests,
    Tokens,
}

/// The most constraining limit of one unit, for `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Standing {
    limit: u32,
    remaining: u32,
    reset: Duration,
}

/// What admission charged, so settle can correct the token count.
pub struct RateCharge {
    tokens: Vec<(Arc<Limiter>, u32)>,
    charged: u32,
    /// `x-ratelimit-*` headers for the response.
    pub headers: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for RateCharge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateCharge")
            .field("charged", &self.charged)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl RateCharge {
    /// Charges tokens the call used beyond the estimate.
    pub fn settle(&self, actual_tokens: u64) {
        let extra = u32::try_from(actual_tokens.saturating_sub(u64::from(self.charged)))
            .unwrap_or(u32::MAX);
        if extra == 0 {
            return;
        }
        for (limiter, quota) in &self.tokens {
            if let Some(n) = NonZeroU32::new(extra.min(*quota)) {
                // Past the limit the next call waits; this one already ran.
                let _ = limiter.check_n(n);
            }
        }
    }
}

/// Every rate limit this process enforces.
#[derive(Default)]
pub struct RateLimits {
    defs: RwLock<Arc<HashMap<(Scope, Unit), u32>>>,
    limiters: DashMap<(Scope, Unit), (u32, Arc<Limiter>)>,
    /// Requests per minute for a team past a soft threshold.
    throttle_rpm: Option<u32>,
    /// Calls refused since start.
    refused: std::sync::atomic::AtomicU64,
    /// One clock for every limiter: creating a quanta clock calibrates it, far too slow to do
    /// per call.
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(throttle_rpm: Option<u32>) -> RateLimits {
        RateLimits {
            throttle_rpm: throttle_rpm.filter(|r| *r > 0),
            ..RateLimits::default()
        }
    }

    /// Replaces the configured limits (from the database). A changed rate starts a fresh
    /// limiter; an unchanged one keeps its state.
    pub fn set_limits(&self, limits: &[RateLimitDef]) {
        let mut defs = HashMap::new();
        for def in limits {
            let scope = match &def.key_id {
                Some(key) => Scope::Key(key.clone()),
                None => Scope::Team(def.team_id.clone()),
            };
            if let Some(rpm) = def.requests_per_minute.filter(|r| *r > 0) {
                defs.insert((scope.clone(), Unit::Requests), rpm);
            }
            if let Some(tpm) = def.tokens_per_minute.filter(|t| *t > 0) {
                defs.insert((scope, Unit::Tokens), tpm);
            }
        }
        self.limiters
            .retain(|k, (rate, _)| matches!(k.0, Scope::Throttle(_)) || defs.get(k) == Some(rate));
        *self.defs.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(defs);
    }

    fn limiter(&self, scope: Scope, unit: Unit, rate: u32) -> Arc<Limiter> {
        let entry = self
            .limiters
            .entry((scope, unit))
            .or_insert_with(|| (rate, Arc::new(new_limiter(rate, &self.clock))));
        Arc::clone(&entry.1)
    }

    /// Admits one call of `team_id`/`key_id` estimated at `tokens` input tokens, or refuses it
    /// with a 429 `rate_limit_exceeded` carrying `Retry-After`. `Ok(None)`: no limit applies.
    pub fn check(
        &self,
        team_id: &str,
        key_id: &str,
        throttled: bool,
        tokens: u32,
    ) -> Result<Option<RateCharge>, ApiError> {
        let result = self.check_all(team_id, key_id, throttled, tokens);
        if result.is_err() {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    /// Calls refused by a rate limit since this process started.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn check_all(
        &self,
        team_id: &str,
        key_id: &str,
        throttled: bool,
        tokens: u32,
    ) -> Result<Option<RateCharge>, ApiError> {
        let defs = Arc::clone(&self.defs.read().unwrap_or_else(|e| e.into_inner()));
        // The common case, without building scope keys: nothing is limited.
        if defs.is_empty() && !(throttled && self.throttle_rpm.is_some()) {
            return Ok(None);
        }
        let mut applicable: Vec<(Scope, Unit, u32)> = Vec::new();
        for scope in [Scope::Team(team_id.into()), Scope::Key(key_id.into())] {
            for unit in [Unit::Requests, Unit::Tokens] {
                if let Some(rate) = defs.get(&(scope.clone(), unit)) {
                    applicable.push((scope.clone(), unit, *rate));
                }
            }
        }
        if throttled && let Some(rpm) = self.throttle_rpm {
            applicable.push((Scope::Throttle(team_id.into()), Unit::Requests, rpm));
        }
        if applicable.is_empty() {
            return Ok(None);
        }
        let clock = &self.clock;
        let mut standing: HashMap<Unit, Standing> = HashMap::new();
        let mut charge = RateCharge {
            tokens: Vec::new(),
            charged: tokens,
            headers: Vec::new(),
        };
        for (scope, unit, rate) in applicable {
            let throttle = matches!(scope, Scope::Throttle(_));
            let limiter = self.limiter(scope, unit, rate);
            let cells = match unit {
                Unit::Requests => 1,
                // A call larger than the whole minute's allowance takes all of it.
                Unit::Tokens => tokens.clamp(1, rate),
            };
            let n = NonZeroU32::new(cells).unwrap_or(NonZeroU32::MIN);
            match limiter.check_n(n) {
                Ok(Ok(snapshot)) => {
                    let remaining = snapshot.remaining_burst_capacity();
                    let s = Standing {
                        limit: rate,
                        remaining,
                        reset: per_cell(rate) * (rate - remaining.min(rate)),
                    };
                    let e = standing.entry(unit).or_insert(s);
                    if s.remaining < e.remaining {
                        *e = s;
                    }
                    if unit == Unit::Tokens {
                        charge.tokens.push((limiter, rate));
                    }
                }
                Ok(Err(not_until)) => {
                    let wait = not_until.wait_time_from(clock.now());
                    return Err(refuse(unit, rate, wait, throttle));
                }
                Err(_) => return Err(refuse(unit, rate, per_cell(rate) * rate, throttle)),
            }
        }
        for (unit, s) in standing {
            let suffix = match unit {
                Unit::Requests => "requests",
                Unit::Tokens => "tokens",
            };
            charge.headers.extend(headers(suffix, s));
        }
        Ok(Some(charge))
    }
}

fn new_limiter(rate: u32, clock: &DefaultClock) -> Limiter {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct_with_clock(Quota::per_minute(rate), clock.clone())
        .with_middleware::<StateInformationMiddleware>()
}

fn per_cell(rate: u32) -> Duration {
    Duration::from_secs(60) / rate.max(1)
}

fn headers(suffix: &'static str, s: Standing) -> [(&'static str, String); 3] {
    let (limit, remaining, reset) = match suffix {
        "requests" => (
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ),
        _ => (
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ),
    };
    [
        (limit, s.limit.to_string()),
        (remaining, s.remaining.to_string()),
        (reset, openai_duration(s.reset)),
    ]
}

/// OpenAI's duration format in rate-limit headers: `20ms`, `1s`, `6m0s`.
pub fn openai_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs() + u64::from(d.subsec_millis() > 0);
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{}s", secs / 60, secs % 60)
    }
}

fn refuse(unit: Unit, rate: u32, wait: Duration, throttle: bool) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let what = match unit {
        Unit::Requests => "requests",
        Unit::Tokens => "tokens",
    };
    let why = if throttle {
        " (the team is past its budget's soft threshold and is throttled)"
    } else {
        ""
    };
    // OpenAI's own rate-limit errors carry the unit as their type.
    let mut error = ApiError::new(
        429,
        what,
        "rate_limit_exceeded",
        format!("Rate limit reached: {rate} {what} per minute{why}. Please try again in {secs}s."),
    );
    error.headers.push(("retry-after", secs.to_string()));
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(team: &str, key: Option<&str>, rpm: Option<u32>, tpm: Option<u32>) -> RateLimitDef {
        RateLimitDef {
            team_id: team.into(),
            key_id: key.map(Into::into),
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        }
    }

    #[test]
    fn requests_over_the_limit_get_retry_after() {
        let limits = RateLimits::new(None);
        limits.set_limits(&[def("t1", None, Some(2), None)]);
        let first = limits.check("t1", "k1", false, 10).unwrap().unwrap();
        assert!(
            first
                .headers
                .contains(&("x-ratelimit-limit-requests", "2".into()))
        );
        assert!(
            first
                .headers
                .contains(&("x-ratelimit-remaining-requests", "1".into()))
        );
        limits.check("t1", "k2", false, 10).unwrap().unwrap();
        let refused = limits.check("t1", "k1", false, 10).unwrap_err();
        assert_eq!(refused.status, 429);
        assert_eq!(refused.code, "rate_limit_exceeded");
        let retry: u64 = refused
            .headers
            .iter()
            .find(|(n, _)| *n == "retry-after")
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
        // Another team is not affected.
        assert!(limits.check("t2", "k3", false, 10).unwrap().is_none());
    }

    #[test]
    fn tokens_are_charged_and_corrected_upward() {
        let limits = RateLimits::new(None);
        limits.set_limits(&[def("t1", Some("k1"), None, Some(1000))]);
        let charge = limits.check("t1", "k1", false, 100).unwrap().unwrap();
        assert!(
            charge
                .headers
                .contains(&("x-ratelimit-remaining-tokens", "900".into()))
        );
        charge.settle(950);
        let next = limits.check("t1", "k1", false, 50).unwrap().unwrap();
        assert!(
            next.headers
                .contains(&("x-ratelimit-remaining-tokens", "0".into())),
            "{:?}",
            next.headers
        );
        assert!(limits.check("t1", "k1", false, 1).is_err());
    }

    #[test]
    fn a_soft_threshold_throttles_the_team() {
        let limits = RateLimits::new(Some(1));
        assert!(limits.check("t1", "k1", false, 1).unwrap().is_none());
        limits.check("t1", "k1", true, 1).unwrap().unwrap();
        let refused = limits.check("t1", "k1", true, 1).unwrap_err();
        assert!(
            refused.message.contains("soft threshold"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn durations_read_like_openai_headers() {
        assert_eq!(openai_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(openai_duration(Duration::from_millis(1500)), "2s");
        assert_eq!(openai_duration(Duration::from_secs(360)), "6m0s");
    }
}
