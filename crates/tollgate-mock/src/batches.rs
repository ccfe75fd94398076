//! `/v1/batches`: batches over an uploaded JSONL file, finished on demand so tests are
//! deterministic.
//!
//! A batch stays `in_progress` until a control endpoint ends it:
//! `POST /__mock/batches/{id}/complete` runs every line, `…/cancel-partly?lines=N` ends it
//! `cancelled` and `…/expire?lines=N` ends it `expired`, both with only the first N lines run
//! (N defaults to 0). With [`MockOptions::batch_auto_complete`](crate::MockOptions) the first
//! `GET /v1/batches/{id}` completes it.
//!
//! Each line runs through the same handler as a direct request to its `url`, with the server's
//! default knobs and the line's `body` bytes exactly as they appear in the file, so its usage
//! is what the same body sent directly (without `x-mock-*` headers) would get.

mod run;

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::route::{Call, Ctx, Reply, unknown_url};
use crate::state::{State, lock};
use crate::wire::{Id, error_json, now_secs, write_json};

pub(crate) use run::Outcome;

/// The endpoints a batch may target.
const ENDPOINTS: [&str; 5] = [
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/moderations",
];
const DEFAULT_LIST_LIMIT: usize = 20;
/// How long OpenAI keeps a batch before it expires (`expires_at`).
const WINDOW_SECS: u64 = 24 * 60 * 60;

/// `request_counts`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Counts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// The batch's summed token `usage`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct BatchUsage {
    pub input_tokens: u64,
    pub input_tokens_details: CachedDetails,
    pub output_tokens: u64,
    pub output_tokens_details: ReasoningDetails,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct CachedDetails {
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct ReasoningDetails {
    pub reasoning_tokens: u64,
}

/// The Batch object, in OpenAI's field order.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Batch {
    pub id: String,
    pub object: &'static str,
    pub endpoint: String,
    pub model: Option<String>,
    pub errors: Option<()>,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: &'static str,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: u64,
    pub in_progress_at: Option<u64>,
    pub expires_at: Option<u64>,
    pub finalizing_at: Option<u64>,
    pub completed_at: Option<u64>,
    pub failed_at: Option<u64>,
    pub expired_at: Option<u64>,
    pub cancelling_at: Option<u64>,
    pub cancelled_at: Option<u64>,
    pub request_counts: Counts,
    pub usage: BatchUsage,
    pub metadata: Option<Value>,
}

impl Batch {
    fn is_open(&self) -> bool {
        matches!(self.status, "validating" | "in_progress" | "cancelling")
    }
}

/// Every batch the server holds, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Store {
    batches: Vec<Batch>,
}

impl Store {
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Batch> {
        self.batches.iter_mut().find(|b| b.id == id)
    }
}

#[derive(Deserialize)]
struct Create {
    #[serde(default)]
    input_file_id: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    completion_window: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: &'a [&'a Batch],
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
    has_more: bool,
}

fn not_found(id: &str) -> Reply {
    Reply::not_found(&format!("No batch found with id '{id}'."), "batch_id")
}

fn json(value: &impl Serialize) -> Reply {
    let mut out = Vec::with_capacity(768);
    write_json(&mut out, value);
    Reply::ok(out)
}

/// `rest` is the path after `/v1/batches`.
pub(crate) fn route(ctx: &Ctx, call: &Call<'_>, method: &Method, rest: &str, body: &[u8]) -> Reply {
    let state = call.state;
    match (method, rest.strip_prefix('/')) {
        (&Method::POST, None) if rest.is_empty() => create(ctx, state, body),
        (&Method::GET, None) if rest.is_empty() => list(state, call.query),
        (&Method::POST, Some(tail)) if tail.ends_with("/cancel") => {
            cancel(state, tail.trim_end_matches("/cancel"))
        }
        (&Method::GET, Some(id)) if !id.contains('/') => retrieve(state, id),
        _ => unknown_url(method, &format!("/v1/batches{rest}")),
    }
}

fn create(ctx: &Ctx, state: &State, body: &[u8]) -> Reply {
    let request: Create = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Reply::bad_json(&e),
    };
    let endpoint = request.endpoint.unwrap_or_default();
    if !ENDPOINTS.contains(&endpoint.as_str()) {
        let message = format!(
            "Invalid value for 'endpoint': {endpoint:?}. Expected one of {}.",
            ENDPOINTS.join(", ")
        );
        return Reply::invalid_param(&message, "endpoint");
    }
    let window = request.completion_window.unwrap_or_default();
    if window != "24h" {
        let message = format!("Invalid value for 'completion_window': {window:?}. Expected '24h'.");
        return Reply::invalid_param(&message, "completion_window");
    }
    let Some(input_file_id) = request.input_file_id else {
        return Reply::invalid_param(
            "Missing required parameter: 'input_file_id'.",
            "input_file_id",
        );
    };
    let (total, model) = match lock(&state.files).get(&input_file_id) {
        Some(file) => (
            run::lines(&file.data).count() as u64,
            run::first_model(&file.data),
        ),
        None => {
            let message = format!("No such File object: {input_file_id}");
            return Reply::not_found(&message, "input_file_id");
        }
    };
    let created_at = now_secs();
    let batch = Batch {
        id: Id::new("batch_", ctx.id).to_string(),
        object: "batch",
        endpoint,
        model,
        errors: None,
        input_file_id,
        completion_window: window,
        status: "in_progress",
        output_file_id: None,
        error_file_id: None,
        created_at,
        in_progress_at: Some(created_at),
        expires_at: Some(created_at + WINDOW_SECS),
        finalizing_at: None,
        completed_at: None,
        failed_at: None,
        expired_at: None,
        cancelling_at: None,
        cancelled_at: None,
        request_counts: Counts {
            total,
            ..Counts::default()
        },
        usage: BatchUsage::default(),
        metadata: request.metadata,
    };
    let reply = json(&batch);
    lock(&state.batches).batches.push(batch);
    reply
}

fn retrieve(state: &State, id: &str) -> Reply {
    if state.opts.batch_auto_complete {
        let open = lock(&state.batches).get_mut(id).map(|b| b.status);
        match open {
            Some("validating" | "in_progress") => run::finish(state, id, Outcome::Completed, None),
            Some("cancelling") => run::finish(state, id, Outcome::Cancelled, Some(0)),
            _ => {}
        }
    }
    match lock(&state.batches).get_mut(id) {
        Some(batch) => json(batch),
        None => not_found(id),
    }
}

fn list(state: &State, query: Option<&str>) -> Reply {
    let mut limit = DEFAULT_LIST_LIMIT;
    let mut after = None;
    for (key, value) in query
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
    {
        match key {
            "limit" => limit = value.parse().unwrap_or(DEFAULT_LIST_LIMIT).clamp(1, 100),
            "after" => after = Some(value.to_owned()),
            _ => {}
        }
    }
    let store = lock(&state.batches);
    // Newest first; `after` is the last id of the previous page.
    let mut newest: Vec<&Batch> = store.batches.iter().rev().collect();
    if let Some(after) = after {
        let skip = newest
            .iter()
            .position(|b| b.id == after)
            .map_or(0, |i| i + 1);
        newest.drain(..skip);
    }
    let has_more = newest.len() > limit;
    newest.truncate(limit);
    json(&List {
        object: "list",
        first_id: newest.first().map(|b| b.id.as_str()),
        last_id: newest.last().map(|b| b.id.as_str()),
        data: &newest,
        has_more,
    })
}

fn cancel(state: &State, id: &str) -> Reply {
    let mut store = lock(&state.batches);
    let Some(batch) = store.get_mut(id) else {
        return not_found(id);
    };
    if !batch.is_open() {
        let message = format!("Cannot cancel a batch with status '{}'.", batch.status);
        return Reply::Json(
            StatusCode::CONFLICT,
            error_json(&message, "invalid_request_error", None).into(),
        );
    }
    if batch.status != "cancelling" {
        batch.status = "cancelling";
        batch.cancelling_at = Some(now_secs());
    }
    json(batch)
}

/// `/__mock/batches/{id}/{complete|cancel-partly|expire}`; `rest` follows `/__mock/batches/`.
pub(crate) fn control(state: &State, method: &Method, rest: &str, query: Option<&str>) -> Reply {
    let Some((id, action)) = rest.split_once('/') else {
        return unknown_url(method, &format!("/__mock/batches/{rest}"));
    };
    let lines = query
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("lines="))
        .and_then(|n| n.parse::<usize>().ok());
    let outcome = match (method, action) {
        (&Method::POST, "complete") => Outcome::Completed,
        (&Method::POST, "cancel-partly") => Outcome::Cancelled,
        (&Method::POST, "expire") => Outcome::Expired,
        _ => return unknown_url(method, &format!("/__mock/batches/{rest}")),
    };
    let status = lock(&state.batches)
        .get_mut(id)
        .map(|b| (b.is_open(), b.status));
    match status {
        None => return not_found(id),
        Some((false, status)) => {
            let message = format!("Batch {id} already ended with status '{status}'.");
            return Reply::Json(
                StatusCode::CONFLICT,
                error_json(&message, "invalid_request_error", None).into(),
            );
        }
        Some((true, _)) => {}
    }
    let lines = match outcome {
        Outcome::Completed => lines,
        Outcome::Cancelled | Outcome::Expired => Some(lines.unwrap_or(0)),
    };
    run::finish(state, id, outcome, lines);
    match lock(&state.batches).get_mut(id) {
        Some(batch) => json(batch),
        None => not_found(id),
    }
}
