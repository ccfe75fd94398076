//! Reading Codex's own telemetry: which spans, log events and metric points say something about
//! a session, and what. Pure functions over the decoded OTLP messages (their rows have no team
//! yet: the observer adds it), so the observer stays a loop and this stays testable. What Codex 0.169 sends (recorded with `codex exec` and an OTLP
//! receiver; names from codex-rs/otel):
//!
//! | signal | Codex sends | session id in | tollgate reads |
//! |---|---|---|---|
//! | span `session_loop` | one per session, open while it runs | `thread_id` | duration |
//! | span `session_task.turn` | one per turn | `thread.id` (a string) | duration, `turn.id`, `codex.turn.token_usage.*` |
//! | log `codex.tool_decision` | one per tool call | `conversation.id` | `tool_name`, `decision`, `call_id` |
//! | log `codex.api_request` | one per HTTP request | `conversation.id` | `http.response.status_code`, `error.message` |
//! | log `codex.websocket_connect` / `codex.websocket_request` | one per handshake / request | `conversation.id` | `success`, `http.response.status_code` |
//! | log `codex.sse_event` | one per streamed event | `conversation.id` | `error.message` (a failed stream) |
//! | metric `codex.turn.token_usage` | a delta histogram per `token_type` | (none) | each point's sum |
//!
//! Other spans carry an integer `thread.id` (the OS thread): only string values are session ids.

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value as Any};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, Metric, metric};
use opentelemetry_proto::tonic::trace::v1::Span;

use tollgate_store::{CodexTokens, SessionSignal, SignalKind};

use crate::hooks_http::tool_label;

/// Session, turn and tool names longer than this are not Codex's.
const MAX_ID_BYTES: usize = 256;
/// Most tokens one turn can count (Codex's contexts are under a million; a turn makes a few
/// dozen requests): larger values are clamped, so no sum over a session can overflow.
const MAX_TURN_TOKENS: i64 = 1_000_000_000;
/// Longest span taken at its word: 31 days.
const MAX_DURATION_MS: i64 = 31 * 24 * 3600 * 1000;

fn value<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    values(attributes, key).next()
}

/// Every value of `key`: Codex's turn span has two `thread.id`s, the OS thread's number (from
/// its tracing layer) and the session id.
fn values<'a>(attributes: &'a [KeyValue], key: &str) -> impl Iterator<Item = &'a Any> {
    attributes
        .iter()
        .filter(move |kv| kv.key == key)
        .filter_map(|kv| kv.value.as_ref()?.value.as_ref())
}

/// A string attribute that can be an id or a label: non-empty, bounded, no control characters.
fn text<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    values(attributes, key).find_map(|value| match value {
        Any::StringValue(s)
            if !s.is_empty() && s.len() <= MAX_ID_BYTES && !s.chars().any(char::is_control) =>
        {
            Some(s.as_str())
        }
        _ => None,
    })
}

/// An integer attribute; Codex records some counts as strings.
fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match value(attributes, key)? {
        Any::IntValue(n) => Some(*n),
        Any::StringValue(s) => s.parse().ok(),
        Any::DoubleValue(f) if f.is_finite() => Some(f.round() as i64),
        _ => None,
    }
}

fn flag(attributes: &[KeyValue], key: &str) -> Option<bool> {
    match value(attributes, key)? {
        Any::BoolValue(b) => Some(*b),
        Any::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn ms(unix_nano: u64) -> i64 {
    i64::try_from(unix_nano / 1_000_000).unwrap_or(i64::MAX)
}

/// What a span says of its session, if it is one Codex's `session_loop` or turn spans.
pub fn span(span: &Span) -> Option<SessionSignal> {
    let (kind, session_key) = match span.name.as_str() {
        "session_loop" => (SignalKind::Session, "thread_id"),
        "session_task.turn" => (SignalKind::Turn, "thread.id"),
        _ => return None,
    };
    let session_id = text(&span.attributes, session_key)?.to_string();
    let duration_ms = ms(span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano))
    .min(MAX_DURATION_MS);
    let turn = matches!(kind, SignalKind::Turn);
    let tokens = turn.then(|| {
        let count = |what: &str| {
            int(&span.attributes, &format!("codex.turn.token_usage.{what}"))
                .unwrap_or(0)
                .clamp(0, MAX_TURN_TOKENS)
        };
        CodexTokens {
            input: count("input_tokens"),
            cached_input: count("cached_input_tokens"),
            output: count("output_tokens"),
            reasoning: count("reasoning_output_tokens"),
        }
    });
    Some(SessionSignal {
        team_id: String::new(),
        session_id,
        kind,
        source_id: hex::encode(&span.span_id),
        turn_id: turn
            .then(|| text(&span.attributes, "turn.id").map(str::to_string))
            .flatten(),
        duration_ms: Some(duration_ms),
        tokens,
        at_ms: ms(span.end_time_unix_nano),
    })
}

/// What a log event says of its session: a tool decision or a failed API request.
pub fn log(record: &LogRecord) -> Option<SessionSignal> {
    let a = &record.attributes;
    let event = text(a, "event.name")?;
    let time = if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    let status = || match int(a, "http.response.status_code") {
        Some(code @ 100..=599) => code.to_string(),
        _ => "none".to_string(),
    };
    let failed = flag(a, "success") == Some(false);
    let kind = match event {
        "codex.tool_decision" => SignalKind::ToolDecision {
            tool: tool_label(text(a, "tool_name").unwrap_or("other")).to_string(),
            decision: decision_label(text(a, "decision").unwrap_or("other")).to_string(),
        },
        "codex.api_request" => {
            let ok = int(a, "http.response.status_code").is_some_and(|c| (200..300).contains(&c))
                && text(a, "error.message").is_none();
            if ok {
                return None;
            }
            SignalKind::ApiError {
                transport: "http".into(),
                status: status(),
            }
        }
        "codex.websocket_connect" | "codex.websocket_request" if failed => SignalKind::ApiError {
            transport: "websocket".into(),
            status: status(),
        },
        "codex.sse_event" if text(a, "error.message").is_some() => SignalKind::ApiError {
            transport: "http".into(),
            status: "stream".into(),
        },
        _ => return None,
    };
    let source_id = match (&kind, text(a, "call_id")) {
        (SignalKind::ToolDecision { .. }, Some(call)) => call.to_string(),
        _ => format!("{event}@{time}"),
    };
    Some(SessionSignal {
        team_id: String::new(),
        session_id: text(a, "conversation.id")?.to_string(),
        kind,
        source_id,
        turn_id: None,
        duration_ms: None,
        tokens: None,
        at_ms: ms(time),
    })
}

/// Codex's own token counts in a `codex.turn.token_usage` metric: `(token type, tokens)` per
/// delta point. `total` (the sum of the others) and unknown types are skipped, and so are
/// cumulative points, which would count every earlier turn again.
pub fn token_usage(metric: &Metric) -> Vec<(&'static str, u64)> {
    if metric.name != "codex.turn.token_usage" {
        return Vec::new();
    }
    let Some(metric::Data::Histogram(histogram)) = &metric.data else {
        return Vec::new();
    };
    if histogram.aggregation_temporality != AggregationTemporality::Delta as i32 {
        return Vec::new();
    }
    histogram
        .data_points
        .iter()
        .filter_map(|point| {
            let kind = match text(&point.attributes, "token_type")? {
                "input" => "input",
                "cached_input" => "cached_input",
                "cache_write_input" => "cache_write_input",
                "output" => "output",
                "reasoning_output" => "reasoning_output",
                _ => return None,
            };
            let sum = point.sum?;
            // A token count is a whole number of tokens; anything else is not Codex's.
            (0.0..1e15)
                .contains(&sum)
                .then(|| (kind, sum.round() as u64))
        })
        .collect()
}

/// A decision as a label: `[a-z_]{1,32}` (`approved`, `approved_for_session`, `denied`,
/// `abort`, …), else `other`.
fn decision_label(text: &str) -> &str {
    let fits =
        (1..=32).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if fits { text } else { "other" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::metrics::v1::{Histogram, HistogramDataPoint};

    fn kv(key: &str, value: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    fn s(key: &str, value: &str) -> KeyValue {
        kv(key, Any::StringValue(value.into()))
    }

    #[test]
    fn a_turn_span_gives_its_session_turn_duration_and_codex_tokens() {
        let turn = Span {
            name: "session_task.turn".into(),
            span_id: vec![0xab; 8],
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_487_800_000,
            attributes: vec![
                kv("thread.id", Any::IntValue(3)),
                s("thread.id", "sess-1"),
                s("turn.id", "turn-1"),
                kv("codex.turn.token_usage.input_tokens", Any::IntValue(6934)),
                kv(
                    "codex.turn.token_usage.cached_input_tokens",
                    Any::IntValue(3467),
                ),
                s("codex.turn.token_usage.output_tokens", "56"),
                kv(
                    "codex.turn.token_usage.reasoning_output_tokens",
                    Any::IntValue(16),
                ),
            ],
            ..Span::default()
        };
        let read = span(&turn).unwrap();
        assert_eq!(read.session_id, "sess-1");
        assert_eq!(read.kind, SignalKind::Turn);
        assert_eq!(read.turn_id.as_deref(), Some("turn-1"));
        assert_eq!(read.duration_ms, Some(487));
        assert_eq!(read.source_id, "abababababababab");
        assert_eq!(
            read.tokens,
            Some(CodexTokens {
                input: 6934,
                cached_input: 3467,
                output: 56,
                reasoning: 16
            })
        );
        // Absurd values are clamped: a session's sums stay far from overflowing.
        let absurd = Span {
            start_time_unix_nano: u64::MAX,
            end_time_unix_nano: 0,
            attributes: vec![
                s("thread.id", "sess-1"),
                kv(
                    "codex.turn.token_usage.input_tokens",
                    Any::IntValue(i64::MAX),
                ),
                kv("codex.turn.token_usage.output_tokens", Any::IntValue(-5)),
            ],
            ..turn.clone()
        };
        let read = span(&absurd).unwrap();
        assert_eq!(read.duration_ms, Some(0));
        let tokens = read.tokens.unwrap();
        assert_eq!((tokens.input, tokens.output), (MAX_TURN_TOKENS, 0));
        let long = Span {
            start_time_unix_nano: 0,
            end_time_unix_nano: u64::MAX,
            ..turn.clone()
        };
        assert_eq!(span(&long).unwrap().duration_ms, Some(MAX_DURATION_MS));
        // Any other span, and a turn whose thread.id is the OS thread's number, say nothing.
        let os_thread = Span {
            attributes: vec![kv("thread.id", Any::IntValue(3))],
            ..turn.clone()
        };
        assert_eq!(span(&os_thread), None);
        let other = Span {
            name: "run_turn".into(),
            ..turn
        };
        assert_eq!(span(&other), None);
    }

    #[test]
    fn api_request_logs_count_only_failures_with_a_bounded_status() {
        let log = |attributes| LogRecord {
            time_unix_nano: 5_000_000,
            attributes,
            ..LogRecord::default()
        };
        let ok = log(vec![
            s("event.name", "codex.api_request"),
            s("conversation.id", "c"),
            kv("http.response.status_code", Any::IntValue(200)),
        ]);
        assert_eq!(super::log(&ok), None);
        let refused = log(vec![
            s("event.name", "codex.api_request"),
            s("conversation.id", "c"),
            kv("http.response.status_code", Any::IntValue(429)),
            s("error.message", "usage limit"),
        ]);
        let read = super::log(&refused).unwrap();
        assert_eq!(
            read.kind,
            SignalKind::ApiError {
                transport: "http".into(),
                status: "429".into()
            }
        );
        assert_eq!(read.source_id, "codex.api_request@5000000");
        let odd = log(vec![
            s("event.name", "codex.websocket_request"),
            s("conversation.id", "c"),
            s("success", "false"),
            kv("http.response.status_code", Any::IntValue(123_456)),
        ]);
        assert_eq!(
            super::log(&odd).unwrap().kind,
            SignalKind::ApiError {
                transport: "websocket".into(),
                status: "none".into()
            }
        );
        let decision = log(vec![
            s("event.name", "codex.tool_decision"),
            s("conversation.id", "c"),
            s("tool_name", "exec command; drop table"),
            s("decision", "approved"),
            s("call_id", "call_1"),
        ]);
        let read = super::log(&decision).unwrap();
        assert_eq!(
            read.kind,
            SignalKind::ToolDecision {
                tool: "other".into(),
                decision: "approved".into()
            }
        );
        assert_eq!(read.source_id, "call_1");
    }

    #[test]
    fn token_usage_reads_delta_points_and_skips_the_total() {
        let point = |kind: &str, sum: f64| HistogramDataPoint {
            attributes: vec![s("token_type", kind)],
            count: 1,
            sum: Some(sum),
            ..HistogramDataPoint::default()
        };
        let mut metric = Metric {
            name: "codex.turn.token_usage".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![
                    point("input", 6934.0),
                    point("output", 56.0),
                    point("total", 6990.0),
                    point("future", 1.0),
                    point("reasoning_output", f64::NAN),
                ],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })),
            ..Metric::default()
        };
        assert_eq!(token_usage(&metric), vec![("input", 6934), ("output", 56)]);
        if let Some(metric::Data::Histogram(h)) = &mut metric.data {
            h.aggregation_temporality = AggregationTemporality::Cumulative as i32;
        }
        assert!(token_usage(&metric).is_empty());
    }
}
