//! Session trajectory signals: what an agent session is *doing*, from the tool calls the meter
//! already counts. Two signals, each at most once per session:
//! - **loop**: at least `loop_exec_calls` shell-like tool calls within `loop_window_secs` and no
//!   progress tool (`apply_patch`) among them — an agent running commands without ever changing
//!   the code. Optionally the session is then refused.
//! - **cost**: the session's cost crossed `session_cost_alert_usd`.
//!
//! The clock is the settled event's `finished_at_ms`, never the wall clock, so a scripted
//! sequence of events replays deterministically. State lives in memory per replica, keyed by
//! (team id, session id); sessions idle for an hour are evicted, which bounds memory and lifts
//! a refusal after an hour of silence.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};

use dashmap::DashMap;
use tollgate_core::config::TelemetryConfig;
use tollgate_core::{LedgerEvent, Money};

/// Sessions not seen for this long are forgotten.
pub const IDLE_EVICT_MS: i64 = 3_600_000;
/// Eviction sweeps run at most this often (by event time).
const SWEEP_EVERY_MS: i64 = 60_000;

/// Something worth an event, produced by [`Trajectories::observe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSignal {
    /// Loop-tool calls counted in the window when the threshold was reached.
    Loop {
        calls: u32,
        window_secs: u64,
        refused: bool,
    },
    /// The session's cost so far, and the threshold it crossed.
    Cost { cost: Money, threshold: Money },
}

#[derive(Debug, Clone)]
struct Settings {
    loop_calls: u32,
    window_ms: i64,
    loop_tools: Vec<String>,
    breaker_tools: Vec<String>,
    refuse: bool,
    cost_alert: Option<Money>,
}

#[derive(Debug, Default)]
struct Session {
    /// (event time, loop-tool calls in that event), oldest first, inside the window.
    loop_calls: VecDeque<(i64, u32)>,
    in_window: u32,
    cost: Money,
    last_seen_ms: i64,
    loop_flagged: bool,
    cost_flagged: bool,
    refusal: Option<String>,
}

/// Per-session trajectory state for the whole process.
#[derive(Debug)]
pub struct Trajectories {
    settings: Settings,
    sessions: DashMap<(String, String), Session>,
    last_sweep_ms: AtomicI64,
}

impl Trajectories {
    pub fn new(cfg: &TelemetryConfig) -> Trajectories {
        Trajectories {
            settings: Settings {
                loop_calls: cfg.loop_exec_calls.max(1),
                window_ms: i64::try_from(cfg.loop_window_secs.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
                loop_tools: cfg.loop_tools.clone(),
                breaker_tools: cfg.loop_breaker_tools.clone(),
                refuse: cfg.loop_refuse,
                cost_alert: cfg.session_cost_alert(),
            },
            sessions: DashMap::new(),
            last_sweep_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// Feeds one settled call; returns the signals it triggered (usually none). Calls without a
    /// session id are ignored.
    pub fn observe(&self, event: &LedgerEvent) -> Vec<SessionSignal> {
        let now = event.finished_at_ms;
        self.sweep(now);
        let Some(session_id) = &event.session_id else {
            return Vec::new();
        };
        let s = &self.settings;
        let count = |tools: &[String]| -> u32 {
            event
                .tool_calls
                .iter()
                .filter(|t| tools.contains(&t.name))
                .map(|t| t.count)
                .sum()
        };
        let (loops, breakers) = (count(&s.loop_tools), count(&s.breaker_tools));
        let mut signals = Vec::new();
        let mut session = self
            .sessions
            .entry((event.team_id.clone(), session_id.clone()))
            .or_default();
        session.last_seen_ms = session.last_seen_ms.max(now);

        if !session.loop_flagged {
            if loops > 0 {
                session.loop_calls.push_back((now, loops));
                session.in_window = session.in_window.saturating_add(loops);
            }
            while let Some(&(t, n)) = session.loop_calls.front() {
                if t > now.saturating_sub(s.window_ms) {
                    break;
                }
                session.loop_calls.pop_front();
                session.in_window -= n;
            }
            // Progress resets the window. A response that both runs commands and applies a
            // patch counts as progress: false alarms cost more trust than late ones.
            if breakers > 0 {
                session.loop_calls.clear();
                session.in_window = 0;
            }
            if session.in_window >= s.loop_calls {
                session.loop_flagged = true;
                let window_secs = u64::try_from(s.window_ms / 1000).unwrap_or(0);
                if s.refuse {
                    session.refusal = Some(format!(
                        "tollgate stopped session {session_id}: {} shell tool calls in the last {} \
                         minutes without a patch applied look like a loop. Start a new session \
                         (or ask an administrator to raise telemetry.loop_exec_calls).",
                        session.in_window,
                        window_secs.div_ceil(60)
                    ));
                }
                signals.push(SessionSignal::Loop {
                    calls: session.in_window,
                    window_secs,
                    refused: s.refuse,
                });
                session.loop_calls = VecDeque::new();
            }
        }

        let before = session.cost;
        session.cost = session.cost.saturating_add(event.cost);
        if let Some(threshold) = s.cost_alert
            && !session.cost_flagged
            && before < threshold
            && session.cost >= threshold
        {
            session.cost_flagged = true;
            signals.push(SessionSignal::Cost {
                cost: session.cost,
                threshold,
            });
        }
        signals
    }

    /// The message to refuse a request with, if this session was stopped.
    pub fn session_refused(&self, team_id: &str, session_id: &str) -> Option<String> {
        if !self.settings.refuse {
            return None;
        }
        self.sessions
            .get(&(team_id.to_string(), session_id.to_string()))
            .and_then(|s| s.refusal.clone())
    }

    /// Sessions currently tracked.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Forgets sessions idle for an hour, at most once a minute of event time.
    fn sweep(&self, now: i64) {
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY_MS
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.sessions
            .retain(|_, s| now.saturating_sub(s.last_seen_ms) <= IDLE_EVICT_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::{ToolCount, Usage};

    const T0: i64 = 1_800_000_000_000;

    fn event(session: &str, at_ms: i64, tools: &[(&str, u32)], cost: i64) -> LedgerEvent {
        LedgerEvent {
            request_id: format!("req_{at_ms}"),
            started_at_ms: at_ms - 500,
            finished_at_ms: at_ms,
            team_id: "team_1".into(),
            key_id: "key_1".into(),
            cost_centre: Some("cc-7".into()),
            user: None,
            session_id: Some(session.into()),
            turn_id: None,
            endpoint: "responses".into(),
            model_requested: Some("gpt-5".into()),
            model_served: Some("gpt-5-2025-08-07".into()),
            status: 200,
            usage: Usage::default(),
            cost: Money(cost),
            price_id: None,
            estimated: false,
            unpriced: false,
            service_tier: None,
            ttfb_ms: Some(100),
            latency_ms: 500,
            tool_calls: tools
                .iter()
                .map(|(n, c)| ToolCount {
                    name: n.to_string(),
                    count: *c,
                })
                .collect(),
            outcome: Default::default(),
            unmetered: false,
            units: Default::default(),
            response_id: None,
        }
    }

    fn config(refuse: bool) -> TelemetryConfig {
        TelemetryConfig {
            loop_refuse: refuse,
            session_cost_alert_usd: Some("1".into()),
            ..TelemetryConfig::default()
        }
    }

    #[test]
    fn codex_like_exec_loop_fires_once_and_refuses() {
        let t = Trajectories::new(&config(true));
        let mut signals = Vec::new();
        // A turn every 5 s, one exec_command each, never a patch: 60 calls in 300 s.
        for i in 0..60 {
            signals.extend(t.observe(&event("s1", T0 + i * 5_000, &[("exec_command", 1)], 0)));
            if i < 49 {
                assert_eq!(t.session_refused("team_1", "s1"), None, "call {i}");
            }
        }
        assert_eq!(
            signals,
            vec![SessionSignal::Loop {
                calls: 50,
                window_secs: 600,
                refused: true
            }]
        );
        let message = t.session_refused("team_1", "s1").unwrap();
        assert!(
            message.contains("s1") && message.contains("loop"),
            "{message}"
        );
        assert_eq!(
            t.session_refused("team_2", "s1"),
            None,
            "other team's session"
        );
    }

    #[test]
    fn exec_calls_interleaved_with_patches_do_not_fire() {
        let t = Trajectories::new(&config(true));
        for i in 0..200 {
            let tools: &[(&str, u32)] = if i % 10 == 9 {
                &[("exec_command", 2), ("apply_patch", 1)]
            } else {
                &[("exec_command", 3)]
            };
            assert!(
                t.observe(&event("s2", T0 + i * 2_000, tools, 0)).is_empty(),
                "call {i}"
            );
        }
        assert_eq!(t.session_refused("team_1", "s2"), None);
    }

    #[test]
    fn a_slow_session_spread_beyond_the_window_does_not_fire() {
        let t = Trajectories::new(&config(false));
        // 100 exec calls, one every 15 s: at most 40 fall inside any 600 s window.
        for i in 0..100 {
            let e = event("s3", T0 + i * 15_000, &[("shell", 1)], 0);
            assert!(t.observe(&e).is_empty(), "call {i}");
        }
    }

    #[test]
    fn flagged_without_refusal_only_reports() {
        let t = Trajectories::new(&config(false));
        let signals = t.observe(&event("s4", T0, &[("local_shell", 50)], 0));
        assert!(matches!(
            signals.as_slice(),
            [SessionSignal::Loop { refused: false, .. }]
        ));
        assert_eq!(t.session_refused("team_1", "s4"), None);
    }

    #[test]
    fn session_cost_crossing_fires_once() {
        let t = Trajectories::new(&config(false));
        let half = 500_000_000;
        assert!(t.observe(&event("s5", T0, &[], half - 1)).is_empty());
        assert!(
            t.observe(&event("s5", T0 + 1, &[], 1)).is_empty(),
            "not yet $1"
        );
        let crossed = t.observe(&event("s5", T0 + 2, &[], half));
        assert_eq!(
            crossed,
            vec![SessionSignal::Cost {
                cost: Money(2 * half),
                threshold: Money(1_000_000_000)
            }]
        );
        assert!(
            t.observe(&event("s5", T0 + 3, &[], half)).is_empty(),
            "once"
        );
    }

    #[test]
    fn idle_sessions_are_evicted() {
        let t = Trajectories::new(&config(true));
        t.observe(&event("old", T0, &[("shell", 50)], 0));
        assert!(t.session_refused("team_1", "old").is_some());
        t.observe(&event("new", T0 + IDLE_EVICT_MS + SWEEP_EVERY_MS, &[], 0));
        assert_eq!(t.len(), 1);
        assert_eq!(t.session_refused("team_1", "old"), None);
    }
}
