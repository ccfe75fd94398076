//! Who a call is for, beyond the key: the user or originator, the Codex session and turn, and
//! tollgate's own request id. Read from headers the clients already send.

use std::time::Instant;

use http::HeaderMap;
use rand::Rng;
use serde::Deserialize;

/// Longest session id, user or turn id kept; longer values are cut, not rejected.
const MAX_LEN: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    pub user: Option<String>,
    pub session_id: Option<String>,
    pub turn_id: Option<String>,
}

impl Attribution {
    pub fn from_headers(headers: &HeaderMap) -> Attribution {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(clean)
        };
        Attribution {
            user: get("x-tollgate-user").or_else(|| get("originator")),
            session_id: get("session-id")
                .or_else(|| get("thread-id"))
                .or_else(|| get("session_id")),
            turn_id: headers
                .get("x-codex-turn-metadata")
                .and_then(|v| serde_json::from_slice::<TurnMetadata>(v.as_bytes()).ok())
                .and_then(|m| m.turn_id)
                .as_deref()
                .and_then(clean),
        }
    }
}

#[derive(Deserialize)]
struct TurnMetadata {
    turn_id: Option<String>,
}

/// Trimmed, printable, at most `MAX_LEN` bytes; empty becomes `None`.
pub(crate) fn clean(value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().any(char::is_control) {
        return None;
    }
    let mut end = value.len().min(MAX_LEN);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Some(value[..end].to_string())
}

/// When a call began, and tollgate's id for it (the ledger row's key, sent back to the client).
#[derive(Debug, Clone)]
pub struct Started {
    pub request_id: String,
    pub at: Instant,
    pub at_ms: i64,
}

impl Started {
    pub fn now() -> Started {
        let at = Instant::now();
        let at_ms = tollgate_core::time::now_ms();
        Started {
            request_id: new_request_id(at_ms),
            at,
            at_ms,
        }
    }
}

/// A new request id: `req_` + 12 hex digits of milliseconds (so ids sort by time and index
/// well) + 20 random hex digits.
pub fn new_request_id(now_ms: i64) -> String {
    let random: u128 = rand::rng().random();
    format!(
        "req_{:012x}{:020x}",
        now_ms.max(0) as u64 & 0xffff_ffff_ffff,
        random & ((1u128 << 80) - 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn reads_codex_headers() {
        let mut h = HeaderMap::new();
        h.insert("originator", HeaderValue::from_static("codex_exec"));
        h.insert("thread-id", HeaderValue::from_static("thr-1"));
        h.insert(
            "x-codex-turn-metadata",
            HeaderValue::from_static(r#"{"session_id":"s","turn_id":"turn-9","model":"gpt-5.5"}"#),
        );
        let a = Attribution::from_headers(&h);
        assert_eq!(
            (
                a.user.as_deref(),
                a.session_id.as_deref(),
                a.turn_id.as_deref()
            ),
            (Some("codex_exec"), Some("thr-1"), Some("turn-9"))
        );
        h.insert(
            "session-id",
            HeaderValue::from_str(&"s".repeat(500)).unwrap(),
        );
        h.insert("x-tollgate-user", HeaderValue::from_static("alice"));
        let a = Attribution::from_headers(&h);
        assert_eq!(a.session_id.map(|s| s.len()), Some(MAX_LEN));
        assert_eq!(a.user.as_deref(), Some("alice"));
    }

    #[test]
    fn request_ids_are_unique_and_time_ordered() {
        let a = new_request_id(1_000);
        let b = new_request_id(2_000);
        assert!(a.starts_with("req_") && a.len() == 36 && a < b, "{a} {b}");
        assert_ne!(new_request_id(1_000), new_request_id(1_000));
    }
}
