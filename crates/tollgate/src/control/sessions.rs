//! `/admin/v1/teams/{team}/sessions` (a team's most expensive sessions in a period),
//! `/admin/v1/teams/{team}/sessions/{id}` and `/admin/v1/sessions/{id}` (one team's session:
//! requests, tokens, cost, tool calls by name, what Codex's hooks reported of it: outcome,
//! last quality gate, task type, duration; and what Codex's own telemetry said: time to
//! resolution, turns, Codex's token counts, tool decisions, API errors) and
//! `/admin/v1/requests/{id}` (one call's ledger row), read from the ledger's rollups.

use serde_json::{Value, json};

use tollgate_core::budget::Calendar;
use tollgate_store::{LedgerRow, SessionHooks, SessionSignals, SessionSummary, parse_instant};

use super::page::{Listed, Query, numbered};
use super::reply::{Answer, json, not_found, ok, store_error};
use super::routes::check_team;
use super::{Call, Control};
use crate::validate::FieldErrors;

impl Control {
    pub(super) async fn top_sessions(&self, call: &Call<'_>) -> Answer {
        let query = Query::parse(call.query, &["from", "to", "limit", "after"])?;
        let mut errors = FieldErrors::default();
        let page = query.page(&mut errors);
        let mut instant = |field: &'static str, unbounded: i64| match query.get(field) {
            None => unbounded,
            Some(text) => parse_instant(text, &Calendar::default()).unwrap_or_else(|| {
                errors.push(
                    field,
                    format!("'{text}' is not an RFC 3339 time or a YYYY-MM-DD date"),
                );
                unbounded
            }),
        };
        let from_ms = instant("from", i64::MIN);
        let to_ms = instant("to", i64::MAX);
        if from_ms >= to_ms {
            errors.push("to", "must be after from");
        }
        errors.into_result()?;
        let after = page.numbered_cursor()?;
        let team = self.own_team(call, call.param(0)).await?;
        let rows = self
            .store
            .top_sessions(&team.id, from_ms, to_ms, after, page.fetch())
            .await
            .map_err(store_error)?;
        let listed = Listed::from_fetched(rows, &page, |s| numbered(s.cost_nanos, &s.session_id));
        ok(listed.map(|s| session_view(&s, false)).to_json())
    }

    /// `GET /admin/v1/sessions/{id}[?team=]`. A session id is the client's choice, so the same
    /// id can be a session in several teams: the team comes from `?team=`, else a team_admin's
    /// own team, else the only team that has the id (several: 409, naming them).
    pub(super) async fn get_session(&self, call: &Call<'_>) -> Answer {
        let query = Query::parse(call.query, &["team"])?;
        let team_id = self.team_filter(call, &query).await?;
        self.show_session(team_id.as_deref(), call.param(0)).await
    }

    /// `GET /admin/v1/teams/{team}/sessions/{id}`.
    pub(super) async fn get_team_session(&self, call: &Call<'_>) -> Answer {
        let team = self.own_team(call, call.param(0)).await?;
        self.show_session(Some(&team.id), call.param(1)).await
    }

    /// `GET /admin/v1/teams/{team}/sessions/{id}/calls[?limit=]`: the session's ledger rows,
    /// oldest first (its first `limit`, default 500, at most 5000): what each call cost, when,
    /// with which model and tools.
    pub(super) async fn team_session_calls(&self, call: &Call<'_>) -> Answer {
        let query = Query::parse(call.query, &["limit"])?;
        let limit = match query.get("limit") {
            None => 500,
            Some(text) => match text.parse::<i64>() {
                Ok(n) if (1..=5000).contains(&n) => n,
                _ => {
                    let mut errors = FieldErrors::default();
                    errors.push(
                        "limit",
                        format!("'{text}' is not a whole number from 1 to 5000"),
                    );
                    errors.into_result()?;
                    500
                }
            },
        };
        let team = self.own_team(call, call.param(0)).await?;
        let id = call.param(1);
        let rows = self
            .store
            .session_calls(&team.id, id, limit + 1)
            .await
            .map_err(store_error)?;
        if rows.is_empty() {
            return Err(not_found("session", id));
        }
        let has_more = rows.len() as i64 > limit;
        let data: Vec<Value> = rows.iter().take(limit as usize).map(request_view).collect();
        ok(json!({"object": "list", "data": data, "has_more": has_more}))
    }

    /// A team's session, or 404 — also when only another team has a session of that id: what
    /// other teams' clients send is none of this team's business.
    async fn show_session(&self, team_id: Option<&str>, id: &str) -> Answer {
        let session = self
            .store
            .find_session(team_id, id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("session", id))?;
        let hooks = self
            .store
            .session_hooks(&session.team_id, &session.session_id)
            .await
            .map_err(store_error)?;
        let signals = self
            .store
            .session_signals(&session.team_id, &session.session_id)
            .await
            .map_err(store_error)?;
        let mut view = session_view(&session, true);
        add_hooks(&mut view, &session, &hooks);
        view["codex"] = codex_view(&signals);
        ok(view)
    }

    pub(super) async fn get_request(&self, call: &Call<'_>) -> Answer {
        let id = call.param(0);
        let row = self
            .store
            .ledger_row(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("request", id))?;
        check_team(call.principal, &row.team_id)?;
        ok(request_view(&row))
    }
}

/// A session as the API shows it; `tool_calls` (`{"tool": count}`) only for one session.
pub fn session_view(s: &SessionSummary, with_tools: bool) -> Value {
    let mut value = json!({
        "object": "session",
        "id": s.session_id,
        "team_id": s.team_id,
        "first_seen_ms": s.first_seen_ms,
        "last_seen_ms": s.last_seen_ms,
        "requests": s.requests,
        "input_tokens": s.input_tokens,
        "cached_input_tokens": s.cached_input_tokens,
        "output_tokens": s.output_tokens,
        "reasoning_tokens": s.reasoning_tokens,
        "cost_usd": s.cost_usd,
        "cost_nano_usd": s.cost_nanos,
    });
    if with_tools {
        value["tool_calls"] = json(&s.tools);
    }
    value
}

/// What the team's Codex hooks (`tollgate hook`) reported of one session: the last Stop's
/// `outcome`, the last quality `gate`, how many `hook_events`, the `task_type`; and
/// `duration_ms`, from the session's first metered call to its last call or hook event,
/// whichever is later (idle time included: it is wall-clock, not work).
fn add_hooks(view: &mut Value, s: &SessionSummary, hooks: &SessionHooks) {
    let last_ms = hooks
        .last_at_ms
        .map_or(s.last_seen_ms, |at| at.max(s.last_seen_ms));
    view["outcome"] = json(&hooks.outcome);
    view["gate"] = hooks.gate.as_ref().map_or(
        Value::Null,
        |g| json!({"passed": g.passed, "duration_ms": g.duration_ms}),
    );
    view["hook_events"] = hooks.events.into();
    view["task_type"] = json(&hooks.task_type);
    view["duration_ms"] = (last_ms - s.first_seen_ms).max(0).into();
}

/// What Codex's own telemetry (through the OTLP intake) said of one session, or `null` when
/// it sent none: `duration_ms` is its time to resolution (its `session_loop` spans; `null` while
/// it runs), then its turns, their summed duration, Codex's own token counts, tool decisions
/// (`{"tool": {"decision": count}}`) and failed model API requests.
fn codex_view(s: &SessionSignals) -> Value {
    if s.rows == 0 {
        return Value::Null;
    }
    json!({
        "duration_ms": s.session_ms,
        "turns": s.turns,
        "turn_duration_ms": s.turn_ms,
        "tokens": {
            "input": s.tokens.input,
            "cached_input": s.tokens.cached_input,
            "output": s.tokens.output,
            "reasoning": s.tokens.reasoning,
        },
        "tool_decisions": json(&s.tool_decisions),
        "api_errors": s.api_errors,
    })
}

/// A ledger row as the admin API shows it: the row's fields, with tool calls as a
/// `{"tool": count}` object.
fn request_view(row: &LedgerRow) -> Value {
    let mut value = json(row);
    let tools: serde_json::Map<String, Value> = row
        .tool_calls
        .iter()
        .map(|t| (t.name.clone(), t.count.into()))
        .collect();
    value["tool_calls"] = Value::Object(tools);
    value
}
