//! One settled call, as the meter hands it to the ledger: the row finance's reports sum.
//!
//! The proxy produces these and passes them to a [`LedgerSink`] without waiting; the store's
//! ledger writer batches them into the database (spooling to disk when it cannot), idempotent
//! on `request_id`.

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::usage::{Units, Usage};

/// Everything recorded about one proxied call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEvent {
    /// tollgate's request id (`req_…`), returned to the client as `x-request-id`; the
    /// idempotency key of the row.
    pub request_id: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub team_id: String,
    pub key_id: String,
    /// The team's cost centre when the call was made (it may change later; the bill does not).
    pub cost_centre: Option<String>,
    /// `x-tollgate-user` if sent, else the `originator` header (e.g. `codex_exec`).
    pub user: Option<String>,
    /// `session-id`, else `thread-id`; length-limited.
    pub session_id: Option<String>,
    /// Codex's turn id from `x-codex-turn-metadata`, when present.
    pub turn_id: Option<String>,
    /// Endpoint label: `responses`, `chat.completions`, `completions`, `embeddings`, `models`,
    /// `files`, `batches` (a batch's creation), `batch` (one settled request line of a batch),
    /// `other`, ….
    pub endpoint: String,
    pub model_requested: Option<String>,
    pub model_served: Option<String>,
    /// HTTP status returned to the client.
    pub status: u16,
    pub usage: Usage,
    /// What the call billed beyond text tokens (image and audio tokens, images, characters,
    /// audio, built-in tool calls); empty for most calls.
    #[serde(default)]
    pub units: Units,
    pub cost: Money,
    /// The price entry used (`<model family>@<effective_from>`), so a report can show which
    /// rates applied without copying them into the row.
    pub price_id: Option<String>,
    /// Usage was estimated with the tokenizer because the upstream never reported it.
    pub estimated: bool,
    /// The model had no price entry and the fallback rate was charged.
    pub unpriced: bool,
    /// The `service_tier` the upstream reported (`default`, `flex`, `priority`, …).
    pub service_tier: Option<String>,
    /// Time to the first byte of the upstream's response body, if any arrived.
    pub ttfb_ms: Option<i64>,
    pub latency_ms: i64,
    /// Tool calls the model made in this response, by tool name (`exec_command`, `apply_patch`, …).
    pub tool_calls: Vec<ToolCount>,
    /// How the call ended (absent in spool files written before it existed: complete).
    #[serde(default)]
    pub outcome: CallOutcome,
    /// An endpoint tollgate cannot price, forwarded because the operator allowed it
    /// (`proxy.unmetered`): its cost is unknown, not zero.
    #[serde(default)]
    pub unmetered: bool,
    /// The upstream's id of the response (`resp_…`, `chatcmpl-…`), when it sent one: what
    /// Codex's turn-cost query matches its responses against, and what the provider's support
    /// asks for. Absent in spool files written before it existed.
    #[serde(default)]
    pub response_id: Option<String>,
}

/// How a forwarded call ended, as far as tollgate could see. Anything but `Complete` means the
/// usage on the row may be an estimate of what the upstream billed (see `estimated`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The response reached its end.
    #[default]
    Complete,
    /// The upstream broke the response body off (cut, reset, idle timeout).
    UpstreamCut,
    /// The client went away while the body was streaming.
    ClientGone,
    /// The client went away before the upstream's response headers arrived; the upstream had
    /// the request and bills it.
    ClientGoneBeforeHeaders,
    /// The upstream took the request but sent no response headers in time (504).
    UpstreamTimeout,
    /// The upstream could not be reached: nothing was sent, nothing is billed (502).
    UpstreamUnreachable,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 6] = [
        CallOutcome::Complete,
        CallOutcome::UpstreamCut,
        CallOutcome::ClientGone,
        CallOutcome::ClientGoneBeforeHeaders,
        CallOutcome::UpstreamTimeout,
        CallOutcome::UpstreamUnreachable,
    ];

    /// The stable label reports and the admin API show.
    pub fn label(self) -> &'static str {
        match self {
            CallOutcome::Complete => "complete",
            CallOutcome::UpstreamCut => "upstream_cut",
            CallOutcome::ClientGone => "client_gone",
            CallOutcome::ClientGoneBeforeHeaders => "client_gone_before_headers",
            CallOutcome::UpstreamTimeout => "upstream_timeout",
            CallOutcome::UpstreamUnreachable => "upstream_unreachable",
        }
    }

    /// The code stored in `ledger.outcome`.
    pub fn code(self) -> i16 {
        match self {
            CallOutcome::Complete => 0,
            CallOutcome::UpstreamCut => 1,
            CallOutcome::ClientGone => 2,
            CallOutcome::ClientGoneBeforeHeaders => 3,
            CallOutcome::UpstreamTimeout => 4,
            CallOutcome::UpstreamUnreachable => 5,
        }
    }

    /// The outcome stored as `code`; an unknown code reads as complete.
    pub fn from_code(code: i64) -> CallOutcome {
        CallOutcome::ALL
            .into_iter()
            .find(|o| i64::from(o.code()) == code)
            .unwrap_or_default()
    }
}

/// How many times one tool was called in a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCount {
    pub name: String,
    pub count: u32,
}

/// Where settled calls go. `record` must not block or fail: a sink that cannot reach its
/// database keeps the event elsewhere (a spool file) rather than lose it or stall a stream.
pub trait LedgerSink: Send + Sync + 'static {
    fn record(&self, event: LedgerEvent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_line_from_before_response_ids_reads_without_one() {
        let old = r#"{"request_id":"req_1","started_at_ms":1,"finished_at_ms":2,"team_id":"tm_a",
            "key_id":"k","cost_centre":null,"user":null,"session_id":null,"turn_id":"t1",
            "endpoint":"responses","model_requested":null,"model_served":null,"status":200,
            "usage":{"input":1,"cached_input":0,"output":1,"reasoning":0},"cost":5,
            "price_id":null,"estimated":false,"unpriced":false,"service_tier":null,
            "ttfb_ms":null,"latency_ms":1,"tool_calls":[]}"#;
        let mut event: LedgerEvent = serde_json::from_str(old).unwrap();
        assert_eq!(event.response_id, None);
        event.response_id = Some("resp_0a1b".to_owned());
        let line = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<LedgerEvent>(&line).unwrap(), event);
    }
}
