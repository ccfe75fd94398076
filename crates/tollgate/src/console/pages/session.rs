//! A session (a Codex run, or any client's `session-id`): its calls over time, tokens by kind,
//! cost, tool calls, the loop flag, what each turn cost, and what Codex's hooks and telemetry
//! reported of it.

use std::collections::BTreeMap;

use maud::{Markup, html};
use serde_json::Value;

use tollgate_core::ApiError;

use super::super::chart;
use super::super::html::{
    self, Section, count, duration, int, path_segment, team_href, trusted, usd, when,
};
use super::super::{Console, Ctx, Outcome};

/// The loop rule of `[telemetry]` (the same one the gateway flags live sessions with).
pub struct LoopRule {
    pub calls: u32,
    pub window_ms: i64,
    pub tools: Vec<String>,
    pub breakers: Vec<String>,
}

impl LoopRule {
    /// The first moment `calls` loop-tool calls fell within the window with no breaker-tool
    /// call among them: (when, how many), or `None`.
    pub fn flagged(&self, calls: &[Value]) -> Option<(i64, usize)> {
        let mut recent: Vec<i64> = Vec::new();
        for call in calls {
            let at = int(&call["started_at_ms"]);
            let tools = call["tool_calls"].as_object();
            let used = |set: &[String]| -> i64 {
                tools
                    .map(|t| {
                        t.iter()
                            .filter(|(name, _)| set.iter().any(|s| s == *name))
                            .map(|(_, n)| n.as_i64().unwrap_or(0))
                            .sum()
                    })
                    .unwrap_or(0)
            };
            if used(&self.breakers) > 0 {
                recent.clear();
                continue;
            }
            for _ in 0..used(&self.tools).min(10_000) {
                recent.push(at);
            }
            recent.retain(|t| at - *t <= self.window_ms);
            if recent.len() >= self.calls.max(1) as usize {
                return Some((at, recent.len()));
            }
        }
        None
    }
}

pub async fn page(console: &Console, ctx: &Ctx, team: &str, id: &str) -> Outcome {
    match build(console, ctx, team, id).await {
        Ok(body) => Outcome::page(format!("Session {id}"), Section::Teams, body),
        Err(error) => Outcome::problem(&error),
    }
}

async fn build(console: &Console, ctx: &Ctx, team: &str, id: &str) -> Result<Markup, ApiError> {
    let base = format!(
        "/admin/v1/teams/{}/sessions/{}",
        path_segment(team),
        path_segment(id)
    );
    let session = console.get(ctx, &base, None).await?;
    let calls = console.get(ctx, &format!("{base}/calls"), None).await?;
    let list: Vec<Value> = calls["data"].as_array().cloned().unwrap_or_default();
    let flagged = console.loop_rule().flagged(&list);

    // Turns, in the order they began.
    let mut turns: Vec<(String, i64, i64)> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for call in &list {
        let turn = match &call["turn_id"] {
            Value::Null => "(no turn id)".to_string(),
            v => html::text(v),
        };
        let slot = *index.entry(turn.clone()).or_insert_with(|| {
            turns.push((turn, 0, 0));
            turns.len() - 1
        });
        if let Some(t) = turns.get_mut(slot) {
            t.1 += 1;
            t.2 += int(&call["cost_nanos"]);
        }
    }
    let per_call: Vec<(String, i64)> = list
        .iter()
        .map(|c| {
            let at = chrono::DateTime::from_timestamp_millis(int(&c["started_at_ms"]))
                .map(|t| t.format("%H:%M:%S").to_string())
                .unwrap_or_default();
            (
                format!("{at} {}", html::text(&c["model_served"])),
                int(&c["cost_nanos"]),
            )
        })
        .collect();
    let team_id = html::text(&session["team_id"]);
    let codex = &session["codex"];
    let tools = session["tool_calls"].as_object();

    Ok(html! {
        p.muted { "Team " a href=(team_href(&team_id)) { (team_id) } " · from " (when(int(&session["first_seen_ms"]))) " to " (when(int(&session["last_seen_ms"]))) }
        div.grid {
            div.card { div.muted { "Cost" } div.big #session-cost data-nanos=(int(&session["cost_nano_usd"])) { (usd(int(&session["cost_nano_usd"]))) } }
            div.card { div.muted { "Calls" } div.big { (count(int(&session["requests"]))) } }
            div.card {
                div.muted { "Outcome" }
                div.big { (match &session["outcome"] { Value::Null => "—".to_string(), v => html::text(v) }) }
                @if let Some(passed) = session["gate"]["passed"].as_bool() {
                    div.muted { "quality gate " (if passed { "passed" } else { "failed" }) }
                }
            }
            div.card #loop {
                div.muted { "Loop" }
                @match flagged {
                    Some((at, n)) => { div.big { span.badge.danger { "looping" } } div.muted { (n) " shell-like calls without progress by " (when(at)) } },
                    None => { div.big { span.badge.ok { "no loop" } } },
                }
            }
        }
        section.panel {
            h2 { "Tokens" }
            table { tbody {
                tr { th { "Input" } td.num { (count(int(&session["input_tokens"]))) } }
                tr { th { "of which cached" } td.num { (count(int(&session["cached_input_tokens"]))) } }
                tr { th { "Output" } td.num { (count(int(&session["output_tokens"]))) } }
                tr { th { "of which reasoning" } td.num { (count(int(&session["reasoning_tokens"]))) } }
            } }
        }
        @if !per_call.is_empty() {
            section.panel {
                h2 { "Calls over time" }
                (trusted(chart::bars(&per_call.iter().take(40).cloned().collect::<Vec<_>>(), "Cost of each call, in order")))
                @if per_call.len() > 40 { p.muted { "The first 40 of " (per_call.len()) " calls are drawn; the table below lists them all." } }
            }
        }
        section.panel #turns {
            h2 { "Turns" }
            table {
                thead { tr { th { "Turn" } th.num { "Calls" } th.num { "Cost" } } }
                tbody { @for (turn, n, cost) in &turns { tr { td { code { (turn) } } td.num { (n) } td.num { (usd(*cost)) } } } }
            }
        }
        section.panel #tools {
            h2 { "Tool calls" }
            @match tools.filter(|t| !t.is_empty()) {
                None => { p.muted { "No tool calls." } },
                Some(tools) => {
                    table { tbody { @for (name, n) in tools { tr { td { code { (name) } } td.num { (html::text(n)) } } } } }
                },
            }
        }
        @if codex.is_object() {
            section.panel #codex {
                h2 { "What Codex reported" }
                table { tbody {
                    tr { th { "Time to resolution" } td { @if let Some(ms) = codex["duration_ms"].as_i64() { (duration(ms)) } @else { "still running" } } }
                    tr { th { "Turns" } td { (html::text(&codex["turns"])) } }
                    tr { th { "API errors" } td { (html::text(&codex["api_errors"])) } }
                } }
            }
        }
        section.panel #calls {
            h2 { "Calls" }
            table {
                thead { tr { th { "Started" } th { "Model" } th.hide-phone { "Endpoint" } th { "Status" } th.num.hide-phone { "Tokens in / out" } th.num { "Cost" } } }
                tbody {
                    @for c in &list {
                        tr {
                            td { (when(int(&c["started_at_ms"]))) }
                            td { (html::text(&c["model_served"])) }
                            td.hide-phone { (html::text(&c["endpoint"])) }
                            td { (html::text(&c["status"])) }
                            td.num.hide-phone { (count(int(&c["input_tokens"]))) " / " (count(int(&c["output_tokens"]))) }
                            td.num { (usd(int(&c["cost_nanos"]))) }
                        }
                    }
                }
            }
            @if calls["has_more"].as_bool() == Some(true) { p.muted { "Only the first " (list.len()) " calls are listed." } }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_loop_is_flagged_only_without_progress_inside_the_window() {
        let rule = LoopRule {
            calls: 3,
            window_ms: 1_000,
            tools: vec!["shell".into()],
            breakers: vec!["apply_patch".into()],
        };
        let call = |at: i64, tool: &str| json!({"started_at_ms": at, "tool_calls": {tool: 1}});
        let looping = [call(0, "shell"), call(100, "shell"), call(200, "shell")];
        assert_eq!(rule.flagged(&looping), Some((200, 3)));
        let progress = [
            call(0, "shell"),
            call(100, "apply_patch"),
            call(200, "shell"),
        ];
        assert_eq!(rule.flagged(&progress), None);
        let slow = [call(0, "shell"), call(2_000, "shell"), call(4_000, "shell")];
        assert_eq!(rule.flagged(&slow), None);
    }
}
