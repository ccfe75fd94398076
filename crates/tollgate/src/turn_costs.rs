//! `POST /v1/analytics/codex/turn-costs`: Codex's question "what did these turns cost?",
//! answered from the ledger, so Codex's `codex.turn.cost_microusd` metric and `codex.turn_cost`
//! log event carry tollgate's price of each turn.
//!
//! Codex (with metrics exported over OTLP) sends `{"turn_ids":[…]}` (at most 100) with the
//! provider's key, and reads back (one entry per distinct id, in the request's order):
//! ```json
//! {"turns":[{"turn_id":"…","status":"priced","total_usd":"0.0123","event_count":2,
//!            "responses":[{"response_id":"resp_…","total_usd":"0.01"},…],"model":"gpt-5.5"},
//!           {"turn_id":"…","status":"pending"}]}
//! ```
//! A turn is `priced` when the team has ledger rows of it and the newest of them finished more
//! than [`SETTLED_AFTER_MS`] (2 s) ago; otherwise `pending`, with nothing else. Each replica's
//! ledger writer flushes settled calls every `ledger.flush_ms` (50 ms by default), so a row that
//! finished a moment ago may still be in another replica's queue; 2 s covers the flush and clock
//! differences between replicas. `responses` lists every row of the turn (a row without an
//! upstream response id under tollgate's request id) and `event_count` counts them: Codex takes
//! a turn as priced only once they cover every response it saw, so a row held back longer (a
//! spooled batch while the database was down) makes Codex poll again (every 150 s, 5 times)
//! rather than take a short total. `model` is left out when it has characters Codex refuses.
//!
//! Unknown turn ids, and turn ids whose rows belong to another team, answer `pending` and
//! nothing else: Codex probes with a random id at start and keeps the feature only on a 2xx, and
//! one team learns nothing of another's turns. The key is checked against the in-memory key
//! cache as the proxy checks it; the query is one indexed read, off the proxy's hot path.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use http::header::CONTENT_ENCODING;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;

use tollgate_core::{ApiError, KeyCache};
use tollgate_proxy::body::read_limited;
use tollgate_proxy::{ProxyBody, error_response, json_response};
use tollgate_store::Store;
use tollgate_store::ledger::{MAX_TURN_IDS, TurnCost};

/// The path, under the provider's `base_url` (`…/v1`).
pub const PATH: &str = "/v1/analytics/codex/turn-costs";
/// A turn is priced once its newest row finished this long ago.
pub const SETTLED_AFTER_MS: i64 = 2_000;
/// 100 ids of 128 bytes, JSON-quoted, fit many times over.
const MAX_BODY: u64 = 64 * 1024;
/// Codex's turn ids are UUIDs; anything far longer is not one.
const MAX_TURN_ID_BYTES: usize = 128;

pub struct TurnCosts {
    store: Store,
    keys: Arc<KeyCache>,
}

impl TurnCosts {
    pub fn new(store: Store, keys: Arc<KeyCache>) -> TurnCosts {
        TurnCosts { store, keys }
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        match self.answer(request).await {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(error) => error_response(&error),
        }
    }

    /// Method (405), key (401), body (400/413/415), then the ledger (503 when unreachable).
    async fn answer(&self, request: Request<Incoming>) -> Result<Vec<u8>, ApiError> {
        let key = crate::team_post::authenticate(&self.keys, PATH, &request)?;
        let now_ms = tollgate_core::time::now_ms();
        let encoding = request.headers().get(CONTENT_ENCODING).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        });
        if let Some(encoding) = encoding.filter(|e| !e.is_empty() && e != "identity") {
            return Err(ApiError::new(
                415,
                "invalid_request_error",
                "unsupported_content_encoding",
                format!(
                    "Content-Encoding '{encoding}' is not supported here; send the JSON as it is."
                ),
            ));
        }
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
        let turn_ids = parse(&body)?;
        let turns = self
            .store
            .turn_costs(&key.team.id, &turn_ids)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "cannot read turn costs from the ledger");
                ApiError::new(
                    503,
                    "server_error",
                    "store_unavailable",
                    "Turn costs cannot be read while the database is unreachable; try again.",
                )
            })?;
        Ok(render(&turn_ids, &turns, now_ms))
    }
}

/// The distinct turn ids of a `{"turn_ids":[…]}` body, in the order first given.
fn parse(body: &[u8]) -> Result<Vec<String>, ApiError> {
    let invalid = |code: &'static str, message: String| {
        ApiError::new(400, "invalid_request_error", code, message).with_param("turn_ids")
    };
    let value: Value = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    let Some(ids) = value.get("turn_ids") else {
        return Err(invalid(
            "missing_required_parameter",
            "Missing required parameter: 'turn_ids' (an array of turn id strings).".into(),
        ));
    };
    let Some(ids) = ids.as_array() else {
        return Err(invalid(
            "invalid_type",
            "Invalid 'turn_ids': expected an array of strings.".into(),
        ));
    };
    if ids.len() > MAX_TURN_IDS {
        return Err(invalid(
            "array_above_max_length",
            format!(
                "Invalid 'turn_ids': at most {MAX_TURN_IDS} ids per request, got {}.",
                ids.len()
            ),
        ));
    }
    let mut seen = HashSet::with_capacity(ids.len());
    let mut distinct = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let Some(id) = id.as_str() else {
            return Err(invalid(
                "invalid_type",
                format!("Invalid 'turn_ids[{i}]': expected a string."),
            ));
        };
        if id.len() > MAX_TURN_ID_BYTES {
            return Err(invalid(
                "string_above_max_length",
                format!(
                    "Invalid 'turn_ids[{i}]': at most {MAX_TURN_ID_BYTES} bytes, got {}.",
                    id.len()
                ),
            ));
        }
        if seen.insert(id) {
            distinct.push(id.to_owned());
        }
    }
    Ok(distinct)
}

#[derive(Serialize)]
struct Answer<'a> {
    turns: Vec<Turn<'a>>,
}

#[derive(Serialize)]
struct Turn<'a> {
    turn_id: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_usd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    responses: Option<Vec<ResponseCost<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
}

#[derive(Serialize)]
struct ResponseCost<'a> {
    response_id: &'a str,
    total_usd: String,
}

/// The reply: one entry per requested id, in the request's order.
fn render(turn_ids: &[String], turns: &HashMap<String, TurnCost>, now_ms: i64) -> Vec<u8> {
    let turns = turn_ids
        .iter()
        .map(|id| match turns.get(id) {
            Some(cost) if now_ms - cost.last_finished_at_ms > SETTLED_AFTER_MS => Turn {
                turn_id: id,
                status: "priced",
                total_usd: Some(cost.total.to_usd_string()),
                event_count: Some(cost.responses.len() as u64),
                responses: Some(
                    cost.responses
                        .iter()
                        .map(|r| ResponseCost {
                            response_id: &r.response_id,
                            total_usd: r.cost.to_usd_string(),
                        })
                        .collect(),
                ),
                model: cost.model.as_deref().filter(|m| codex_accepts_model(m)),
            },
            _ => Turn {
                turn_id: id,
                status: "pending",
                total_usd: None,
                event_count: None,
                responses: None,
                model: None,
            },
        })
        .collect();
    // A struct of strings and integers always serialises.
    serde_json::to_vec(&Answer { turns }).unwrap_or_default()
}

/// Codex drops the metric of a turn whose model is not `[A-Za-z0-9._/-]+`.
fn codex_accepts_model(model: &str) -> bool {
    !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tollgate_core::Money;
    use tollgate_store::ledger::ResponseCost as Row;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bodies_are_checked_and_ids_deduplicated_in_order() {
        let ok = parse(br#"{"turn_ids":["b","a","b"],"extra":1}"#).unwrap();
        assert_eq!(ok, ids(&["b", "a"]));
        assert_eq!(parse(br#"{"turn_ids":[]}"#).unwrap(), ids(&[]));
        let code = |body: &[u8]| parse(body).unwrap_err().code;
        assert_eq!(code(b"{"), "invalid_json");
        assert_eq!(code(b"{}"), "missing_required_parameter");
        assert_eq!(code(br#"{"turn_ids":"a"}"#), "invalid_type");
        assert_eq!(code(br#"{"turn_ids":["a",7]}"#), "invalid_type");
        let long = json!({"turn_ids": ["x".repeat(129)]}).to_string();
        assert_eq!(code(long.as_bytes()), "string_above_max_length");
        let at_limit = json!({"turn_ids": ["x".repeat(128)]}).to_string();
        assert!(parse(at_limit.as_bytes()).is_ok());
        let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        let many = json!({ "turn_ids": many }).to_string();
        assert_eq!(code(many.as_bytes()), "array_above_max_length");
    }

    #[test]
    fn settled_turns_are_priced_and_the_rest_pending() {
        let cost = TurnCost {
            turn_id: "t1".into(),
            responses: vec![
                Row {
                    response_id: "resp_1".into(),
                    cost: Money(1_000_000_000),
                },
                Row {
                    response_id: "req_2".into(),
                    cost: Money(250_000_001),
                },
            ],
            total: Money(1_250_000_001),
            model: Some("gpt-5.5".into()),
            last_finished_at_ms: 10_000,
        };
        let turns = HashMap::from([("t1".to_string(), cost)]);
        let answer = |now_ms| -> Value {
            serde_json::from_slice(&render(&ids(&["x", "t1"]), &turns, now_ms)).unwrap()
        };
        assert_eq!(
            answer(12_001),
            json!({"turns": [
                {"turn_id": "x", "status": "pending"},
                {"turn_id": "t1", "status": "priced", "total_usd": "1.250000001",
                 "event_count": 2, "model": "gpt-5.5",
                 "responses": [{"response_id": "resp_1", "total_usd": "1.00"},
                               {"response_id": "req_2", "total_usd": "0.250000001"}]}
            ]})
        );
        assert_eq!(
            answer(12_000)["turns"][1],
            json!({"turn_id": "t1", "status": "pending"})
        );
    }

    #[test]
    fn models_codex_would_refuse_are_left_out() {
        assert!(codex_accepts_model("gpt-5.5"));
        assert!(codex_accepts_model("org/model_v1-2.0"));
        assert!(!codex_accepts_model("ft:gpt-4o-mini:acme::id"));
        assert!(!codex_accepts_model("gpt 5"));
        assert!(!codex_accepts_model(""));
        assert!(!codex_accepts_model("gpt-5é"));
    }
}
