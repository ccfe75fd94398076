//! What is measured: the request scenarios (both APIs, streamed or not, Codex-sized) and the
//! targets they are sent to (direct to the mock, through nginx, through tollgate).

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

/// A recorded Codex CLI request body (~38 KB, `stream: true`).
const CODEX_BODY: &[u8] = include_bytes!("../../../tests/fixtures/codex/turn-request-1.json");
/// The headers Codex sent with it (the credential and length are replaced per request).
const CODEX_HEADERS: &str = include_str!("../../../tests/fixtures/codex/turn-request-headers.json");

/// Streamed answers are this many text deltas (`x-mock-deltas`), i.e. ~20 SSE chunks of text.
pub const STREAM_DELTAS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Scenario {
    ChatJson,
    ChatStream,
    ResponsesStream,
    ResponsesJson,
    Codex,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::ChatJson,
        Scenario::ChatStream,
        Scenario::ResponsesStream,
        Scenario::ResponsesJson,
        Scenario::Codex,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Scenario::ChatJson => "Chat, non-streamed",
            Scenario::ChatStream => "Chat, streamed (20 chunks)",
            Scenario::ResponsesStream => "Responses, streamed (20 deltas)",
            Scenario::ResponsesJson => "Responses, non-streamed",
            Scenario::Codex => "Codex-sized (38 KB body, streamed)",
        }
    }

    pub fn streamed(self) -> bool {
        matches!(
            self,
            Scenario::ChatStream | Scenario::ResponsesStream | Scenario::Codex
        )
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
            Scenario::ResponsesStream => small(
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
    Tollgate,
}

impl TargetKind {
    pub const ALL: [TargetKind; 3] = [TargetKind::Direct, TargetKind::Nginx, TargetKind::Tollgate];

    pub fn label(self) -> &'static str {
        match self {
            TargetKind::Direct => "direct (mock)",
            TargetKind::Nginx => "nginx",
            TargetKind::Tollgate => "tollgate",
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
}
