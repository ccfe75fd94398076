//! Ledger events for tests: realistic Codex-shaped rows, the fixture spread over teams, days,
//! models and sessions, expected totals computed in Rust, and a bounded condition wait.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use tollgate_core::{CallOutcome, LedgerEvent, Money, ToolCount, Usage};
use tollgate_store::Totals;

/// 2026-01-01 12:00:00 UTC.
pub const DAY1_NOON_MS: i64 = 1_767_268_800_000;
pub const DAY_MS: i64 = 86_400_000;

/// A Codex-like call: UUID session and turn ids, a 30-character request id, usage, a price id.
pub fn event(request_id: &str, started_at_ms: i64) -> LedgerEvent {
    LedgerEvent {
        request_id: request_id.to_owned(),
        started_at_ms,
        finished_at_ms: started_at_ms + 4_321,
        team_id: "tm_k3j9x0a1b2c3".to_owned(),
        key_id: "q8w7e6r5t4y3".to_owned(),
        cost_centre: Some("CC-100".to_owned()),
        user: Some("codex_exec".to_owned()),
        session_id: Some("019ab6a2-7c1e-7d33-9e2a-5f0c1d2e3f4a".to_owned()),
        turn_id: Some("019ab6a2-8d2f-7a44-8b3c-6a1d2e3f4a5b".to_owned()),
        endpoint: "responses".to_owned(),
        model_requested: Some("gpt-5-codex".to_owned()),
        model_served: Some("gpt-5-codex".to_owned()),
        status: 200,
        usage: Usage {
            input: 41_234,
            cached_input: 38_016,
            output: 812,
            reasoning: 512,
        },
        cost: Money(12_345_678),
        price_id: Some("gpt-5-codex@2025-09-15".to_owned()),
        estimated: false,
        unpriced: false,
        service_tier: Some("default".to_owned()),
        ttfb_ms: Some(610),
        latency_ms: 4_321,
        tool_calls: vec![tool("exec_command", 3), tool("apply_patch", 1)],
        outcome: Default::default(),
        unmetered: false,
        units: Default::default(),
        // As long as OpenAI's (`resp_` and 48 hex digits).
        response_id: Some(format!(
            "resp_{:0>48}",
            request_id.trim_start_matches("req_")
        )),
    }
}

pub fn tool(name: &str, count: u32) -> ToolCount {
    ToolCount {
        name: name.to_owned(),
        count,
    }
}

/// `req_` and 26 characters, like a ULID-based id.
pub fn request_id(prefix: &str, n: usize) -> String {
    format!("req_{prefix}{n:0>width$}", width = 26 - prefix.len())
}

pub const TEAMS: [&str; 3] = ["tm_aaaaaaaaaaaa", "tm_bbbbbbbbbbbb", "tm_cccccccccccc"];
pub const SESSIONS: [&str; 2] = [
    "019ab6a2-0000-7000-8000-000000000001",
    "019ab6a2-0000-7000-8000-000000000002",
];

/// 60 calls over 3 teams, 2 UTC days, 2 models and 2 sessions, with tool calls on some, odd
/// nano-dollar costs, a few estimated, unpriced, failed or unmetered, and a few with no served
/// model.
pub fn fixture() -> Vec<LedgerEvent> {
    (0..60)
        .map(|i| {
            let started = DAY1_NOON_MS + (i as i64 % 2) * DAY_MS + i as i64 * 1_000;
            let mut e = event(&request_id("fix", i), started);
            e.team_id = TEAMS[i % 3].to_owned();
            e.key_id = format!("key{}", i % 3);
            e.cost_centre = (i % 3 == 0).then(|| "CC-1".to_owned());
            e.session_id = Some(SESSIONS[(i / 3) % 2].to_owned());
            e.turn_id = Some(format!("turn-{}", i / 6));
            let model = ["gpt-5-codex", "gpt-5-mini"][(i / 2) % 2];
            e.model_requested = Some(model.to_owned());
            e.model_served = (i % 10 != 9).then(|| format!("{model}-2025-08-07"));
            e.usage = Usage {
                input: 1_000 + i as u64,
                cached_input: 500,
                output: 100 + i as u64,
                reasoning: (i % 4) as u64 * 10,
            };
            e.cost = Money(1_234_567 + i as i64 * 1_001);
            e.estimated = i % 7 == 0;
            e.unpriced = i % 11 == 0;
            // A few refused, cut off or unmetered calls, which reports count apart.
            e.status = if i % 13 == 4 { 429 } else { 200 };
            if i % 17 == 6 {
                e.outcome = CallOutcome::UpstreamCut;
            }
            e.unmetered = i % 19 == 8;
            e.ttfb_ms = (i % 5 != 0).then_some(100 + i as i64);
            e.tool_calls = if i % 4 == 0 {
                vec![
                    tool("exec_command", (i % 5) as u32 + 1),
                    tool("apply_patch", 1),
                ]
            } else if i % 4 == 1 {
                vec![tool("exec_command", 2)]
            } else {
                vec![]
            };
            e
        })
        .collect()
}

pub fn expected_totals<'a>(events: impl IntoIterator<Item = &'a LedgerEvent>) -> Totals {
    let mut t = Totals::default();
    for e in events {
        t.requests += 1;
        t.input_tokens += e.usage.input as i64;
        t.cached_input_tokens += e.usage.cached_input as i64;
        t.output_tokens += e.usage.output as i64;
        t.reasoning_tokens += e.usage.reasoning as i64;
        t.cost = Money(t.cost.nanos() + e.cost.nanos());
        t.estimated_requests += i64::from(e.estimated);
        t.failed_requests += i64::from(e.status >= 400 || e.outcome != CallOutcome::Complete);
        t.unpriced_requests += i64::from(e.unpriced);
        t.unmetered_requests += i64::from(e.unmetered);
    }
    t
}

/// Tool calls by (team, session) and name.
pub fn expected_tools<'a>(
    events: impl IntoIterator<Item = &'a LedgerEvent>,
) -> BTreeMap<(String, String), BTreeMap<String, i64>> {
    let mut tools: BTreeMap<(String, String), BTreeMap<String, i64>> = BTreeMap::new();
    for e in events {
        if let Some(session) = &e.session_id {
            for t in &e.tool_calls {
                *tools
                    .entry((e.team_id.clone(), session.clone()))
                    .or_default()
                    .entry(t.name.clone())
                    .or_default() += i64::from(t.count);
            }
        }
    }
    tools
}

/// Polls `condition` until it holds, failing the test after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
