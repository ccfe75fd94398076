//! Small pieces of the OpenAI wire format shared by every endpoint: ids, SSE framing, errors.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde::{Serialize, Serializer};

/// An OpenAI-style id such as `resp_00000000000000a1`, written without allocating.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Id {
    pub prefix: &'static str,
    pub n: u64,
}

impl Id {
    pub fn new(prefix: &'static str, n: u64) -> Self {
        Self { prefix, n }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:016x}", self.prefix, self.n)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Serializes as `{}` (e.g. `metadata`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

/// Serializes as `[]` (e.g. `annotations`, `tools`).
pub(crate) type EmptyList = [u8; 0];
pub(crate) const EMPTY: EmptyList = [];

/// Seconds since the Unix epoch, for `created` / `created_at`.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Appends JSON for `value`. Our wire types are plain structs with string keys, which
/// serde_json cannot fail on, so there is no error to report.
pub(crate) fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    let _ = serde_json::to_writer(&mut *out, value);
}

/// How a streamed event is put on the wire: as SSE over HTTP, or as the bare JSON that fills
/// one WebSocket text frame (the Responses WebSocket transport sends exactly what SSE puts
/// after `data: `).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Sse,
    Bare,
}

/// Appends one named event (`name` is the SSE `event:` line; the JSON carries it as `type`).
pub(crate) fn event(out: &mut Vec<u8>, framing: Framing, name: &str, value: &impl Serialize) {
    match framing {
        Framing::Sse => sse_event(out, name, value),
        Framing::Bare => write_json(out, value),
    }
}

/// `event: <name>\ndata: <json>\n\n` — the Responses API framing.
pub(crate) fn sse_event(out: &mut Vec<u8>, name: &str, value: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    write_json(out, value);
    out.extend_from_slice(b"\n\n");
}

/// `data: <json>\n\n` — the Chat Completions / Completions framing.
pub(crate) fn sse_data(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(b"data: ");
    write_json(out, value);
    out.extend_from_slice(b"\n\n");
}

/// The terminator of Chat Completions / Completions streams.
pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";

/// An OpenAI-shaped error: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

pub(crate) fn error_json(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
    error_json_param(message, kind, None, code)
}

/// [`error_json`] with the `param` at fault.
pub(crate) fn error_json_param(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + message.len());
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param,
            code,
        },
    };
    write_json(&mut out, &body);
    out
}

/// The error a configured failure status answers with, shaped as OpenAI's for that status.
pub(crate) fn failure_json(status: StatusCode) -> Vec<u8> {
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    let code = match status.as_u16() {
        429 => Some("rate_limit_exceeded"),
        503 => Some("server_is_overloaded"),
        _ => None,
    };
    let message = format!(
        "Mock upstream failure: status {} requested (fail_status / x-mock-status).",
        status.as_u16()
    );
    error_json(&message, kind, code)
}

/// Standard base64 with padding; small enough not to warrant a dependency.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * k)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
