//! `POST /tollgate/v1/hooks`: Codex hook events, as `tollgate hook` reports them, stored under the
//! team of the key that sent them and counted, so a session's outcome (turn completed, quality
//! gate passed) sits beside what it cost.
//!
//! The body is the hook's own stdin JSON (only the fields below are read; anything else, such as
//! a tool's input and output, is ignored and never stored) plus what `tollgate hook` adds:
//! ```json
//! {"hook_event_name":"Stop","session_id":"…","turn_id":"…","tool_name":"Bash",
//!  "task_type":"bugfix","gate":{"passed":false,"duration_ms":8123,"exit_code":1}}
//! ```
//! `session_id` and `hook_event_name` are required. A `Stop` event's outcome is `gate_failed`
//! when its gate exited non-zero, `failed` when the gate gave no verdict (timed out or could not
//! start: `exit_code` null), else `completed`. Metrics: `tollgate.codex.tasks` (Stop),
//! `tollgate.codex.gate_runs` (any event with a gate), `tollgate.codex.tool_events`
//! (PostToolUse) — labels bounded: `task_type` and `tool` fall back to `other`.
//!
//! The key is checked against the in-memory key cache as the proxy checks it (401 otherwise); a
//! key writes only into its own team's sessions. One insert, off the proxy's hot path.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use tollgate_core::{ApiError, KeyCache};
use tollgate_proxy::body::read_limited;
use tollgate_proxy::{ProxyBody, error_response, json_response};
use tollgate_store::{SessionEvent, Store};
use tollgate_telemetry::Telemetry;

/// The path on the main listener.
pub const PATH: &str = "/tollgate/v1/hooks";
/// A hook event without tool input and output is a few hundred bytes.
const MAX_BODY: u64 = 64 * 1024;
/// Session, turn and tool names longer than this are not Codex's.
const MAX_ID_BYTES: usize = 256;

pub struct HookIntake {
    store: Store,
    keys: Arc<KeyCache>,
    telemetry: Option<Telemetry>,
}

/// What one request reports, checked.
#[derive(Debug, PartialEq, Eq)]
struct Reported {
    session_id: String,
    turn_id: Option<String>,
    event: String,
    tool_name: Option<String>,
    task_type: Option<String>,
    gate: Option<Gate>,
}

#[derive(Debug, PartialEq, Eq)]
struct Gate {
    passed: bool,
    duration_ms: Option<i64>,
    /// `None`: the gate timed out or could not start.
    exit_code: Option<i64>,
}

impl HookIntake {
    pub fn new(store: Store, keys: Arc<KeyCache>, telemetry: Option<Telemetry>) -> HookIntake {
        HookIntake {
            store,
            keys,
            telemetry,
        }
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        match self.answer(request).await {
            Ok(body) => json_response(StatusCode::OK, body.to_string().into_bytes()),
            Err(error) => error_response(&error),
        }
    }

    /// Method (405), key (401), body (400/413), then the store (503 when unreachable).
    async fn answer(&self, request: Request<Incoming>) -> Result<Value, ApiError> {
        let key = crate::team_post::authenticate(&self.keys, PATH, &request)?;
        let now_ms = tollgate_core::time::now_ms();
        let body =
            read_limited(request.into_body(), MAX_BODY)
                .await
                .map_err(|error| match error.status {
                    413 => ApiError::new(
                        413,
                        "invalid_request_error",
                        "request_too_large",
                        format!("The request body exceeds {MAX_BODY} bytes."),
                    ),
                    _ => error,
                })?;
        let reported = parse(&body)?;
        let outcome = outcome(&reported);
        let stored = SessionEvent {
            team_id: key.team.id.clone(),
            session_id: reported.session_id.clone(),
            turn_id: reported.turn_id.clone(),
            event: reported.event.clone(),
            tool_name: reported.tool_name.clone(),
            gate_passed: reported.gate.as_ref().map(|g| g.passed),
            gate_ms: reported.gate.as_ref().and_then(|g| g.duration_ms),
            task_type: reported.task_type.clone(),
            outcome: outcome.map(str::to_string),
            at_ms: now_ms,
        };
        self.store
            .record_session_event(&stored)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "cannot store a Codex hook event");
                ApiError::new(
                    503,
                    "server_error",
                    "store_unavailable",
                    "Hook events cannot be stored while the database is unreachable.",
                )
            })?;
        if let Some(telemetry) = &self.telemetry {
            let team = key.team.name.as_str();
            let cost_centre = key.team.cost_centre.as_deref().unwrap_or_default();
            if let Some(outcome) = outcome {
                let task_type = reported.task_type.as_deref().unwrap_or("other");
                telemetry.codex_task(team, cost_centre, outcome, task_type);
            }
            if let Some(gate) = &reported.gate {
                telemetry.codex_gate_run(team, cost_centre, gate.passed);
            }
            if reported.event == "post_tool_use" {
                let tool = reported.tool_name.as_deref().map_or("other", tool_label);
                telemetry.codex_tool_event(team, cost_centre, tool);
            }
        }
        Ok(json!({
            "object": "session_event",
            "session_id": reported.session_id,
            "event": reported.event,
            "outcome": outcome,
        }))
    }
}

/// A Stop's outcome; other events have none.
fn outcome(r: &Reported) -> Option<&'static str> {
    if r.event != "stop" {
        return None;
    }
    Some(match &r.gate {
        Some(Gate {
            exit_code: None, ..
        }) => "failed",
        Some(Gate { passed: false, .. }) => "gate_failed",
        _ => "completed",
    })
}

fn parse(body: &[u8]) -> Result<Reported, ApiError> {
    let invalid = |param: &'static str, code: &'static str, message: String| {
        ApiError::new(400, "invalid_request_error", code, message).with_param(param)
    };
    let value: Value = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::new(
            400,
            "invalid_request_error",
            "invalid_type",
            "The body must be a JSON object: the hook's event.",
        ));
    };
    let text = |field: &'static str| -> Result<Option<String>, ApiError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) if s.len() > MAX_ID_BYTES || s.chars().any(char::is_control) => {
                Err(invalid(
                    field,
                    "invalid_value",
                    format!(
                        "Invalid '{field}': at most {MAX_ID_BYTES} bytes, no control characters."
                    ),
                ))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(
                field,
                "invalid_type",
                format!("Invalid '{field}': expected a string."),
            )),
        }
    };
    let required = |field: &'static str| {
        text(field)?.ok_or_else(|| {
            invalid(
                field,
                "missing_required_parameter",
                format!("Missing required parameter: '{field}'."),
            )
        })
    };
    let session_id = required("session_id")?;
    let name = required("hook_event_name")?;
    let event = snake_case(&name).ok_or_else(|| {
        invalid(
            "hook_event_name",
            "invalid_value",
            format!("Invalid 'hook_event_name': '{name}' is not a Codex hook event name."),
        )
    })?;
    // `task_type` is both stored and a metric label: clamped the same way for both.
    let task_type = match object.get("task_type") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(task_type_label(s).to_string()),
        Some(_) => {
            return Err(invalid(
                "task_type",
                "invalid_type",
                "Invalid 'task_type': expected a string.".into(),
            ));
        }
    };
    let gate = match object.get("gate") {
        None | Some(Value::Null) => None,
        Some(Value::Object(gate)) => Some(parse_gate(gate).map_err(|message| {
            invalid(
                "gate",
                "invalid_value",
                format!("Invalid 'gate': {message}"),
            )
        })?),
        Some(_) => {
            return Err(invalid(
                "gate",
                "invalid_type",
                "Invalid 'gate': expected an object {passed, duration_ms, exit_code}.".into(),
            ));
        }
    };
    Ok(Reported {
        session_id,
        turn_id: text("turn_id")?,
        event,
        tool_name: text("tool_name")?,
        task_type,
        gate,
    })
}

fn parse_gate(gate: &Map<String, Value>) -> Result<Gate, &'static str> {
    let passed = gate
        .get("passed")
        .and_then(Value::as_bool)
        .ok_or("'passed' must be true or false.")?;
    let number = |field: &str| match gate.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(()),
    };
    let duration_ms = match number("duration_ms") {
        Ok(Some(ms)) if ms < 0 => Err(()),
        other => other,
    }
    .map_err(|()| "'duration_ms' must be a non-negative integer.")?;
    let exit_code = number("exit_code").map_err(|()| "'exit_code' must be an integer or null.")?;
    Ok(Gate {
        passed,
        duration_ms,
        exit_code,
    })
}

/// `PostToolUse` → `post_tool_use`; `None` unless 1 to 64 ASCII letters.
fn snake_case(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    Some(out)
}

/// A task type as a label: `[a-z0-9_-]{1,32}`, else `other`.
pub fn task_type_label(text: &str) -> &str {
    let fits = (1..=32).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
    if fits { text } else { "other" }
}

/// A tool name as a label: `[A-Za-z0-9_.:-]{1,64}` (Codex's `Bash`, `apply_patch`,
/// `mcp__server__tool`), else `other`.
pub(crate) fn tool_label(text: &str) -> &str {
    let fits = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if fits { text } else { "other" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codex_stop_and_tool_events_parse_and_ignore_the_rest() {
        let stop = parse(
            br#"{"session_id":"s1","turn_id":"t1","hook_event_name":"Stop","cwd":"/w",
                 "transcript_path":null,"model":"gpt-5.5","permission_mode":"default",
                 "stop_hook_active":false,"last_assistant_message":"done",
                 "task_type":"bugfix","gate":{"passed":false,"duration_ms":12,"exit_code":1}}"#,
        )
        .unwrap();
        assert_eq!(stop.event, "stop");
        assert_eq!(stop.turn_id.as_deref(), Some("t1"));
        assert_eq!(stop.task_type.as_deref(), Some("bugfix"));
        assert_eq!(outcome(&stop), Some("gate_failed"));
        let tool = parse(
            br#"{"session_id":"s1","turn_id":"t1","hook_event_name":"PostToolUse",
                 "tool_name":"Bash","tool_input":{"command":"ls"},"tool_response":"x",
                 "tool_use_id":"c1"}"#,
        )
        .unwrap();
        assert_eq!(
            (tool.event.as_str(), outcome(&tool)),
            ("post_tool_use", None)
        );
        assert_eq!(tool.tool_name.as_deref(), Some("Bash"));
    }

    #[test]
    fn stop_outcomes_follow_the_gate() {
        let stop = |gate: &str| {
            let body = format!(r#"{{"session_id":"s","hook_event_name":"Stop","gate":{gate}}}"#);
            outcome(&parse(body.as_bytes()).unwrap())
        };
        assert_eq!(stop("null"), Some("completed"));
        assert_eq!(stop(r#"{"passed":true,"exit_code":0}"#), Some("completed"));
        assert_eq!(
            stop(r#"{"passed":false,"exit_code":2}"#),
            Some("gate_failed")
        );
        assert_eq!(stop(r#"{"passed":false,"exit_code":null}"#), Some("failed"));
    }

    #[test]
    fn bad_bodies_are_400s_naming_the_field() {
        let code = |body: &[u8]| {
            let e = parse(body).unwrap_err();
            (e.code, e.param)
        };
        assert_eq!(code(b"{").0, "invalid_json");
        assert_eq!(code(b"[]").0, "invalid_type");
        let missing = code(br#"{"hook_event_name":"Stop"}"#);
        assert_eq!(missing.0, "missing_required_parameter");
        assert_eq!(missing.1, Some("session_id"));
        assert_eq!(
            code(br#"{"session_id":"s","hook_event_name":"no such"}"#).0,
            "invalid_value"
        );
        assert_eq!(
            code(br#"{"session_id":7,"hook_event_name":"Stop"}"#).0,
            "invalid_type"
        );
        assert_eq!(
            code(br#"{"session_id":"s","hook_event_name":"Stop","gate":{"passed":"yes"}}"#).0,
            "invalid_value"
        );
        let long = format!(
            r#"{{"session_id":"{}","hook_event_name":"Stop"}}"#,
            "x".repeat(257)
        );
        assert_eq!(code(long.as_bytes()).0, "invalid_value");
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(task_type_label("bugfix"), "bugfix");
        assert_eq!(task_type_label("feature-2_x"), "feature-2_x");
        assert_eq!(task_type_label("BugFix"), "other");
        assert_eq!(task_type_label(""), "other");
        assert_eq!(task_type_label(&"a".repeat(33)), "other");
        assert_eq!(
            tool_label("mcp__github__create_issue"),
            "mcp__github__create_issue"
        );
        assert_eq!(tool_label("rm -rf"), "other");
        assert_eq!(snake_case("SubagentStop").as_deref(), Some("subagent_stop"));
        assert_eq!(snake_case("Stop!"), None);
    }
}
