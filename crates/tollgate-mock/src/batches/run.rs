//! Running a batch's lines through the mock's own handlers and writing its output and error
//! files the way OpenAI does.

use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{BatchUsage, Counts};
use crate::route::{Ctx, Reply};
use crate::state::{State, lock};
use crate::wire::{Id, now_secs, write_json};
use crate::{chat, completions, embeddings, moderations, responses};

/// How a batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Cancelled,
    Expired,
}

/// The non-blank lines of a JSONL file.
pub(super) fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
}

/// The `model` of the first line's body, which OpenAI reports as the batch's model.
pub(super) fn first_model(data: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Body {
        model: Option<String>,
    }
    #[derive(Deserialize)]
    struct First {
        body: Body,
    }
    let first = lines(data).next()?;
    serde_json::from_slice::<First>(first).ok()?.body.model
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(default)]
    custom_id: Option<String>,
    url: String,
    #[serde(borrow)]
    body: &'a RawValue,
}

#[derive(Serialize)]
struct OutputLine<'a> {
    id: Id,
    custom_id: Option<&'a str>,
    response: Option<LineResponse>,
    error: Option<LineError<'a>>,
}

#[derive(Serialize)]
struct LineResponse {
    status_code: u16,
    request_id: Id,
    /// The handler's JSON verbatim, field order included.
    body: Box<RawValue>,
}

#[derive(Serialize)]
struct LineError<'a> {
    code: &'static str,
    message: &'a str,
}

/// The lines run so far, split into the two files.
#[derive(Default)]
struct Written {
    output: Vec<u8>,
    errors: Vec<u8>,
    counts: Counts,
    usage: BatchUsage,
}

/// Runs the first `limit` lines (all when `None`) of batch `id`, stores its output and error
/// files and ends it with `outcome`. Does nothing for an unknown batch.
pub(crate) fn finish(state: &State, id: &str, outcome: Outcome, limit: Option<usize>) {
    let Some((endpoint, input_file_id)) = lock(&state.batches)
        .get_mut(id)
        .map(|b| (b.endpoint.clone(), b.input_file_id.clone()))
    else {
        return;
    };
    let input = lock(&state.files)
        .get(&input_file_id)
        .map_or_else(Bytes::new, |f| f.data.clone());
    let mut written = Written::default();
    for line in lines(&input).take(limit.unwrap_or(usize::MAX)) {
        run_line(state, &endpoint, line, &mut written);
    }
    let mut files = lock(&state.files);
    let output_file_id = (!written.output.is_empty()).then(|| {
        let name = format!("{id}_output.jsonl");
        let data = Bytes::from(std::mem::take(&mut written.output));
        files.add(state.next_id(), &name, "batch_output", data).id
    });
    let error_file_id = (!written.errors.is_empty()).then(|| {
        let name = format!("{id}_error.jsonl");
        let data = Bytes::from(std::mem::take(&mut written.errors));
        files.add(state.next_id(), &name, "batch_output", data).id
    });
    drop(files);
    let mut batches = lock(&state.batches);
    let Some(batch) = batches.get_mut(id) else {
        return;
    };
    let now = now_secs();
    batch.output_file_id = output_file_id;
    batch.error_file_id = error_file_id;
    batch.request_counts.completed = written.counts.completed;
    batch.request_counts.failed = written.counts.failed;
    batch.usage = written.usage;
    batch.finalizing_at = Some(now);
    match outcome {
        Outcome::Completed => {
            batch.status = "completed";
            batch.completed_at = Some(now);
        }
        Outcome::Cancelled => {
            batch.status = "cancelled";
            batch.cancelling_at.get_or_insert(now);
            batch.cancelled_at = Some(now);
        }
        Outcome::Expired => {
            batch.status = "expired";
            batch.expired_at = Some(now);
        }
    }
}

fn run_line(state: &State, endpoint: &str, line: &[u8], written: &mut Written) {
    let line_id = Id::new("batch_req_", state.next_id());
    let parsed: Line<'_> = match serde_json::from_slice(line) {
        Ok(parsed) => parsed,
        Err(e) => {
            let message = format!("This line is not a valid batch request: {e}");
            return error_line(written, line_id, None, "invalid_json_line", &message);
        }
    };
    let custom_id = parsed.custom_id.as_deref();
    if parsed.url != endpoint {
        let message = format!(
            "The URL provided for this request ({}) does not match the batch endpoint ({endpoint}).",
            parsed.url
        );
        return error_line(written, line_id, custom_id, "invalid_url", &message);
    }
    let body = parsed.body.get().as_bytes();
    let ctx = Ctx::internal(state, body.len());
    let reply = match endpoint {
        "/v1/responses" => responses::handle(&ctx, body),
        "/v1/chat/completions" => chat::handle(&ctx, body),
        "/v1/completions" => completions::handle(&ctx, body),
        "/v1/embeddings" => embeddings::handle(&ctx, body),
        _ => moderations::handle(&ctx, body),
    };
    let (status, json) = match reply {
        Reply::Json(status, json) => (status, json),
        Reply::Raw(..) | Reply::Stream(_) => {
            let message = "Batch requests cannot be streamed; remove 'stream' from the body.";
            return error_line(written, line_id, custom_id, "invalid_request", message);
        }
    };
    let parsed: Value = serde_json::from_slice(&json).unwrap_or(Value::Null);
    let body = String::from_utf8(json.to_vec())
        .ok()
        .and_then(|text| RawValue::from_string(text).ok())
        .unwrap_or_else(|| RawValue::NULL.to_owned());
    let ok = status == StatusCode::OK;
    if ok {
        add_usage(&mut written.usage, &parsed);
        written.counts.completed += 1;
    } else {
        written.counts.failed += 1;
    }
    let out = OutputLine {
        id: line_id,
        custom_id,
        response: Some(LineResponse {
            status_code: status.as_u16(),
            request_id: Id::new("req_", ctx.id),
            body,
        }),
        error: None,
    };
    // As OpenAI does: a request the endpoint refused goes to the error file, with its answer.
    let file = if ok {
        &mut written.output
    } else {
        &mut written.errors
    };
    write_json(file, &out);
    file.push(b'\n');
}

fn error_line(
    written: &mut Written,
    id: Id,
    custom_id: Option<&str>,
    code: &'static str,
    message: &str,
) {
    written.counts.failed += 1;
    let out = OutputLine {
        id,
        custom_id,
        response: None,
        error: Some(LineError { code, message }),
    };
    write_json(&mut written.errors, &out);
    written.errors.push(b'\n');
}

/// Adds one answer's usage, in whichever of the endpoints' spellings it comes.
fn add_usage(sum: &mut BatchUsage, body: &Value) {
    let Some(usage) = body.get("usage") else {
        return;
    };
    let n = |keys: &[&str]| -> u64 {
        keys.iter()
            .find_map(|k| usage.pointer(k).and_then(Value::as_u64))
            .unwrap_or(0)
    };
    let input = n(&["/input_tokens", "/prompt_tokens"]);
    let output = n(&["/output_tokens", "/completion_tokens"]);
    sum.input_tokens += input;
    sum.output_tokens += output;
    sum.input_tokens_details.cached_tokens += n(&[
        "/input_tokens_details/cached_tokens",
        "/prompt_tokens_details/cached_tokens",
    ]);
    sum.output_tokens_details.reasoning_tokens += n(&[
        "/output_tokens_details/reasoning_tokens",
        "/completion_tokens_details/reasoning_tokens",
    ]);
    sum.total_tokens += n(&["/total_tokens"]).max(input + output);
}
