//! One line of a batch's output file → one priced ledger row, exactly as a direct call of the
//! same usage would be priced (same parsers, same one rounding per request), at the batch tier,
//! by the price entry in force when the batch was created.

use serde::Deserialize;
use serde_json::Value;

use tollgate_core::batch::BatchRecord;
use tollgate_core::pricing::{PriceTable, UnpricedPolicy};
use tollgate_core::{CallOutcome, LedgerEvent, Money};

use crate::admission::BATCH_TIER;
use crate::meter::observe::{self, Observed};
use crate::settle::{Asked, tool_uses};

/// The ledger's endpoint label for one settled batch request line.
pub const BATCH_LINE_LABEL: &str = "batch";

/// A line of the output file, as far as billing goes.
#[derive(Deserialize)]
struct OutputLine {
    custom_id: Option<String>,
    response: Option<LineResponse>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct LineResponse {
    status_code: u16,
    body: Option<Value>,
}

/// Why a line could not be read (the batch is then not settled from this file).
#[derive(Debug, thiserror::Error)]
#[error("output line {line}: {reason}")]
pub struct BadLine {
    pub line: u64,
    pub reason: String,
}

/// The ledger row of output line `number`, or `None` for a line OpenAI does not bill (an
/// error, or a status other than 2xx): such lines get no row.
pub fn line_event(
    batch: &BatchRecord,
    batch_id: &str,
    ended_at_ms: i64,
    number: u64,
    line: &[u8],
    prices: &PriceTable,
) -> Result<Option<LedgerEvent>, BadLine> {
    let bad = |reason: String| BadLine {
        line: number,
        reason,
    };
    let parsed: OutputLine = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
    let custom_id = parsed.custom_id.ok_or_else(|| bad("no custom_id".into()))?;
    let Some(response) = parsed.response.filter(|_| parsed.error.is_none()) else {
        return Ok(None);
    };
    if !(200..300).contains(&response.status_code) {
        return Ok(None);
    }
    let body = response.body.unwrap_or(Value::Null);
    let body = serde_json::to_vec(&body).map_err(|e| bad(e.to_string()))?;
    let mut seen = Observed::default();
    let read = match batch.endpoint.as_str() {
        "/v1/responses" => observe::response_json(&body, &mut seen),
        "/v1/embeddings" => observe::embeddings_json(&body, &mut seen),
        _ => observe::chat_json(&body, &mut seen),
    };
    if !read {
        return Err(bad("its response body is not a response object".into()));
    }
    let usage = seen.usage.unwrap_or_else(|| {
        tracing::warn!(%batch_id, %custom_id, "batch line without usage recorded at 0 tokens");
        Default::default()
    });
    let model = seen.model.clone().unwrap_or_default();
    let tier = Some(BATCH_TIER);
    // Built-in tool calls are priced as the plain tool: the line's request is not kept.
    let mut units = seen.units.clone();
    units.tool_calls = tool_uses(&seen.builtin, &Asked::default());
    let priced = prices.price_call(&model, batch.created_at_ms, &usage, &units, tier);
    let (cost, price_id, unpriced) = match priced {
        Some(p) => (p.cost, Some(p.price_id), false),
        None => match (
            prices.unpriced_policy(),
            prices.price_unpriced(&usage, tier),
        ) {
            (UnpricedPolicy::Fallback, Some(p)) => (p.cost, Some(p.price_id), true),
            // Admitted with a price, served by a model without one: visible, never guessed.
            _ => (Money::ZERO, None, true),
        },
    };
    Ok(Some(LedgerEvent {
        // Deterministic, as is the time: a second settlement (after a crash, or by another
        // replica) writes the same keys, which the ledger ignores.
        request_id: format!("{batch_id}:{custom_id}"),
        started_at_ms: ended_at_ms,
        finished_at_ms: ended_at_ms,
        team_id: batch.team_id.clone(),
        key_id: batch.key_id.clone(),
        cost_centre: batch.cost_centre.clone(),
        user: batch.user.clone(),
        session_id: batch.session_id.clone(),
        turn_id: None,
        endpoint: BATCH_LINE_LABEL.to_string(),
        model_requested: None,
        model_served: seen.model,
        status: response.status_code,
        usage,
        units,
        cost,
        price_id,
        estimated: false,
        unpriced,
        service_tier: Some(BATCH_TIER.to_string()),
        ttfb_ms: None,
        latency_ms: (ended_at_ms - batch.created_at_ms).max(0),
        tool_calls: seen.tools,
        outcome: CallOutcome::Complete,
        unmetered: false,
        response_id: seen.response_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::Usage;

    const PRICES: &str = r#"
[[model]]
name = "gpt-4.1-mini"
effective_from = "2025-01-01"
input = "0.40"
cached_input = "0.10"
output = "1.60"

[[model]]
name = "gpt-4.1-mini"
effective_from = "2030-01-01"
input = "4.00"
output = "16.00"

[[model]]
name = "text-embedding-3-small"
effective_from = "2025-01-01"
input = "0.02"
"#;

    fn batch(endpoint: &str) -> BatchRecord {
        BatchRecord {
            request_id: "req_1".into(),
            batch_id: Some("batch_1".into()),
            team_id: "tm_1".into(),
            key_id: "key_1".into(),
            cost_centre: Some("CC".into()),
            user: Some("ci".into()),
            session_id: Some("s-1".into()),
            input_file_id: "file-1".into(),
            endpoint: endpoint.into(),
            reserved: Money(1),
            // 2026-12-01: the 2025 prices are in force, whenever the batch ends.
            created_at_ms: 1_796_083_200_000,
        }
    }

    #[test]
    fn a_chat_line_is_priced_at_half_the_rates_in_force_at_creation() {
        let prices = PriceTable::from_toml(PRICES).unwrap();
        let line = br#"{"id":"batch_req_1","custom_id":"a","response":{"status_code":200,"request_id":"r","body":{"id":"chatcmpl-1","model":"gpt-4.1-mini-2025-04-14","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":1000,"completion_tokens":500,"prompt_tokens_details":{"cached_tokens":200}}}},"error":null}"#;
        let ended = 1_900_000_000_000; // after the 2030 price change
        let event = line_event(
            &batch("/v1/chat/completions"),
            "batch_1",
            ended,
            1,
            line,
            &prices,
        )
        .unwrap()
        .unwrap();
        // (800 × 0.40 + 200 × 0.10 + 500 × 1.60) USD / 1M = 0.00114 USD = 1_140_000 nanos at
        // the default tier; half at the batch tier.
        assert_eq!(event.cost, Money(570_000));
        assert_eq!(event.request_id, "batch_1:a");
        assert_eq!(event.started_at_ms, ended);
        assert_eq!(event.endpoint, "batch");
        assert_eq!(event.service_tier.as_deref(), Some("batch"));
        assert_eq!(event.price_id.as_deref(), Some("gpt-4.1-mini@2025-01-01"));
        assert_eq!(
            event.usage,
            Usage {
                input: 1000,
                cached_input: 200,
                output: 500,
                reasoning: 0
            }
        );
        assert_eq!(
            (event.session_id.as_deref(), event.cost_centre.as_deref()),
            (Some("s-1"), Some("CC"))
        );
    }

    #[test]
    fn responses_and_embeddings_lines_read_their_own_usage_shapes() {
        let prices = PriceTable::from_toml(PRICES).unwrap();
        let responses = br#"{"custom_id":"r","response":{"status_code":200,"body":{"id":"resp_1","model":"gpt-4.1-mini","output":[],"usage":{"input_tokens":10,"output_tokens":20,"output_tokens_details":{"reasoning_tokens":5}}}},"error":null}"#;
        let event = line_event(&batch("/v1/responses"), "b", 0, 1, responses, &prices)
            .unwrap()
            .unwrap();
        assert_eq!(
            (event.usage.input, event.usage.output, event.usage.reasoning),
            (10, 20, 5)
        );
        // (10 × 0.40 + 20 × 1.60) USD / 1M = 36_000 nanos, halved.
        assert_eq!(event.cost, Money(18_000));
        let embeddings = br#"{"custom_id":"e","response":{"status_code":200,"body":{"object":"list","model":"text-embedding-3-small","data":[],"usage":{"prompt_tokens":1000,"total_tokens":1000}}},"error":null}"#;
        let event = line_event(&batch("/v1/embeddings"), "b", 0, 2, embeddings, &prices)
            .unwrap()
            .unwrap();
        assert_eq!((event.usage.input, event.cost), (1000, Money(10_000)));
    }

    #[test]
    fn failed_lines_get_no_row_and_garbage_is_an_error() {
        let prices = PriceTable::from_toml(PRICES).unwrap();
        let b = batch("/v1/chat/completions");
        let errored = br#"{"custom_id":"x","response":null,"error":{"code":"batch_cancelled","message":"cancelled"}}"#;
        assert_eq!(line_event(&b, "b", 0, 1, errored, &prices).unwrap(), None);
        let refused = br#"{"custom_id":"y","response":{"status_code":400,"body":{"error":{"message":"bad"}}},"error":null}"#;
        assert_eq!(line_event(&b, "b", 0, 2, refused, &prices).unwrap(), None);
        let err = line_event(&b, "b", 0, 3, b"{\"custom_id\":", &prices).unwrap_err();
        assert_eq!(err.line, 3);
    }
}
