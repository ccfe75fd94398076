//! What is measured: the request scenarios (both APIs, streamed or not, paced like a model,
//! Codex-sized) and the targets they are sent to (direct to the mock, through nginx, through
//! tollgate on SQLite and on PostgreSQL).

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

/// A recorded Codex CLI request body (~38 KB, `stream: true`).
const CODEX_BODY: &[u8] = include_bytes!("../../../tests/fixtures/codex/turn-request-1.json");
/// The headers Codex sent with it (the credential and length are replaced per request).
const CODEX_HEADERS: &str = include_str!("../../../tests/fixtures/codex/turn-request-headers.json");

/// Streamed answers are this many text deltas (`x-mock-deltas`), i.e. ~20 SSE chunks of text.
pub const STREAM_DELTAS: usize = 20;
/// SSE events in a streamed Responses answer besides its text deltas (created, in_progress,
/// item added/done, part added/done, text done, completed).
pub const OTHER_EVENTS: u64 = 8;
/// The paced scenario's pause between SSE events (`x-mock-chunk-delay-ms`), about a fast
/// model's token rate: each event is its own write and wake-up through the proxy.
pub const PACED_DELAY_MS: u64 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Scenario {
    ChatJson,
    ChatStream,
    ResponsesStream,
    ResponsesJson,
    Codex,
    /// Last: its ~1,000 open streams leave the allocator holding memory, which would read as
    /// the next scenario's peak RSS.
    ResponsesPaced,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::ChatJson,
        Scenario::ChatStream,
        Scenario::ResponsesStream,
        Scenario::ResponsesJson,
        Scenario::Codex,
        Scenario::ResponsesPaced,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Scenario::ChatJson => "Chat, non-streamed",
            Scenario::ChatStream => "Chat, streamed (20 chunks)",
            Scenario::ResponsesStream => "Responses, streamed (20 deltas)",
            Scenario::ResponsesPaced => "Responses, streamed, paced (20 ms between events)",
            Scenario::ResponsesJson => "Responses, non-streamed",
            Scenario::Codex => "Codex-sized (38 KB body, streamed)",
        }
    }

    pub fn streamed(self) -> bool {
        matches!(
            self,
            Scenario::ChatStream
                | Scenario::ResponsesStream
                | Scenario::ResponsesPaced
                | Scenario::Codex
        )
    }

    /// How long the mock alone spends pausing in one answer (none but the paced scenario).
    pub fn pacing_ms(self) -> u64 {
        match self {
            // The pause sits between events: none before the first.
            Scenario::ResponsesPaced => (STREAM_DELTAS as u64 + OTHER_EVENTS - 1) * PACED_DELAY_MS,
            _ => 0,
        }
    }

    /// Whether the closed-loop saturation run means anything. A paced call holds a worker for
    /// its whole pacing, so 64 workers measure the mock's pauses, not the proxy: skipped.
    pub fn saturates(self) -> bool {
        self.pacing_ms() == 0
    }

    /// The request, identical for every target but for the `Authorization` value.
    pub fn request(self) -> RequestSpec {
        let small = |path: &'static str, body: &'static str| RequestSpec {
            path,
            body: Bytes::from_static(body.as_bytes()),
            headers: vec![json_content_type()],
        };
        let mut spec = match self {
            Scenario::ChatJson => small(
                "/v1/chat/completions",
                r#"{"model":"gpt-5.5","messages":[{"role":"user","content":"Say hello in one sentence."}]}"#,
            ),
            Scenario::ChatStream => small(
                "/v1/chat/completions",
                r#"{"model":"gpt-5.5","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello in one sentence."}]}"#,
            ),
            Scenario::ResponsesStream | Scenario::ResponsesPaced => small(
                "/v1/responses",
                r#"{"model":"gpt-5.5","stream":true,"input":"Say hello in one sentence."}"#,
            ),
            Scenario::ResponsesJson => small(
                "/v1/responses",
                r#"{"model":"gpt-5.5","input":"Say hello in one sentence."}"#,
            ),
            Scenario::Codex => RequestSpec {
                path: "/v1/responses",
                body: Bytes::from_static(CODEX_BODY),
                headers: codex_headers(),
            },
        };
        spec.headers.push((
            HeaderName::from_static("x-mock-deltas"),
            HeaderValue::from(STREAM_DELTAS),
        ));
        if self == Scenario::ResponsesPaced {
            spec.headers.push((
                HeaderName::from_static("x-mock-chunk-delay-ms"),
                HeaderValue::from(PACED_DELAY_MS),
            ));
        }
        spec
    }
}

/// One request to send: path (under the target's origin), body and extra headers.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub path: &'static str,
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

fn json_content_type() -> (HeaderName, HeaderValue) {
    (
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )
}

/// Codex's recorded headers minus the ones the client computes (credential, length, host).
fn codex_headers() -> Vec<(HeaderName, HeaderValue)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(CODEX_HEADERS) else {
        return vec![json_content_type()];
    };
    map.iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "authorization" | "content-length" | "host" | "connection"
            )
        })
        .filter_map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            let value = HeaderValue::from_str(value.as_str()?).ok()?;
            Some((name, value))
        })
        .collect()
}

/// Where the load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum TargetKind {
    Direct,
    Nginx,
    /// tollgate on a fresh SQLite file.
    Tollgate,
    /// The same binary on a fresh PostgreSQL database over TCP.
    TollgatePg,
}

impl TargetKind {
    pub const ALL: [TargetKind; 4] = [
        TargetKind::Direct,
        TargetKind::Nginx,
        TargetKind::Tollgate,
        TargetKind::TollgatePg,
    ];
    /// The gateways under test, each judged against nginx.
    pub const TOLLGATES: [TargetKind; 2] = [TargetKind::Tollgate, TargetKind::TollgatePg];

    pub fn label(self) -> &'static str {
        match self {
            TargetKind::Direct => "direct (mock)",
            TargetKind::Nginx => "nginx",
            TargetKind::Tollgate => "tollgate (SQLite)",
            TargetKind::TollgatePg => "tollgate (PostgreSQL)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codex_scenario_carries_the_recorded_headers_but_no_credential() {
        let spec = Scenario::Codex.request();
        assert!(spec.body.len() > 30_000);
        let names: Vec<&str> = spec.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"session-id") && names.contains(&"content-type"));
        assert!(!names.contains(&"authorization") && !names.contains(&"content-length"));
    }

    #[test]
    fn only_the_paced_scenario_asks_the_mock_to_pause_and_skips_saturation() {
        let paces = |s: Scenario| {
            s.request()
                .headers
                .iter()
                .any(|(n, _)| n.as_str() == "x-mock-chunk-delay-ms")
        };
        for s in Scenario::ALL {
            assert_eq!(paces(s), s == Scenario::ResponsesPaced, "{s:?}");
            assert_eq!(s.saturates(), s != Scenario::ResponsesPaced, "{s:?}");
        }
        assert_eq!(Scenario::ResponsesPaced.pacing_ms(), 27 * PACED_DELAY_MS);
    }
}
