//! One request's way through the mock: record it, apply the knobs, route it, pace the reply.
//! A Responses WebSocket handshake branches off first, to `websocket`.

use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::answer::MockUsage;
use crate::body::{MockBody, Pacing, Script, SseBody};
use crate::request::{BODY_LIMIT, decode};
use crate::state::{RecordedRequest, State, Transport};
use crate::wire::{error_json, failure_json, now_secs};
use crate::{
    MockOptions, audio, batches, chat, completions, control, embeddings, files, images, models,
    moderations, responses, transcribe, websocket,
};

/// The model echoed when a request names none.
pub(crate) const DEFAULT_MODEL: &str = "gpt-5.5";
/// Keeps `x-mock-deltas` from asking for an unbounded answer.
const MAX_DELTAS: usize = 100_000;

/// The effective behaviour for one request (or one WebSocket connection): the server's
/// options, overridden by headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Knobs {
    pub chunk_delay: Duration,
    pub first_byte_delay: Duration,
    pub fail_status: Option<StatusCode>,
    pub cut_after: Option<usize>,
    pub no_usage: bool,
    pub deltas: usize,
    pub malformed: bool,
    pub builtin_calls: usize,
    pub containers: Option<usize>,
    /// Responses one WebSocket connection answers before it is closed
    /// (`x-mock-ws-max-responses`).
    pub ws_max_responses: Option<usize>,
}

/// Keeps `x-mock-builtin-calls` / `x-mock-containers` from asking for unbounded output.
const MAX_BUILTIN_CALLS: usize = 100;

fn header<T: FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Only error statuses make sense as a forced failure.
fn failure_status(code: u16) -> Option<StatusCode> {
    StatusCode::from_u16(code)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
}

impl Knobs {
    pub fn new(opts: &MockOptions, headers: &HeaderMap) -> Self {
        let ms = |name| header::<u64>(headers, name).map(Duration::from_millis);
        let no_usage = match headers
            .get("x-mock-no-usage")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
        {
            Some("1" | "true" | "yes") => true,
            Some("0" | "false" | "no") => false,
            _ => opts.no_usage,
        };
        Self {
            chunk_delay: ms("x-mock-chunk-delay-ms").unwrap_or(opts.chunk_delay),
            first_byte_delay: ms("x-mock-first-byte-delay-ms").unwrap_or(opts.first_byte_delay),
            fail_status: header::<u16>(headers, "x-mock-status")
                .or(opts.fail_status)
                .and_then(failure_status),
            cut_after: header(headers, "x-mock-cut-after").or(opts.cut_after_events),
            no_usage,
            malformed: headers.contains_key("x-mock-malformed"),
            deltas: header(headers, "x-mock-deltas")
                .unwrap_or(opts.deltas)
                .min(MAX_DELTAS),
            builtin_calls: header(headers, "x-mock-builtin-calls")
                .unwrap_or(1)
                .min(MAX_BUILTIN_CALLS),
            containers: header::<usize>(headers, "x-mock-containers")
                .map(|m| m.clamp(1, MAX_BUILTIN_CALLS)),
            ws_max_responses: header(headers, "x-mock-ws-max-responses").or(opts.ws_max_responses),
        }
    }

    /// The context of one request whose (decoded) body is `body_len` bytes long.
    pub fn ctx(&self, state: &State, body_len: usize) -> Ctx {
        Ctx {
            id: state.next_id(),
            created: now_secs(),
            deltas: self.deltas,
            no_usage: self.no_usage,
            body_len,
            builtin_calls: self.builtin_calls,
            containers: self.containers,
        }
    }
}

/// What an endpoint needs to know about the request beyond its body.
pub(crate) struct Ctx {
    pub id: u64,
    pub created: u64,
    pub deltas: usize,
    pub no_usage: bool,
    /// Decoded body length, the input of the usage formula.
    pub body_len: usize,
    /// Calls per built-in tool in a Responses answer (`x-mock-builtin-calls`, default 1).
    pub builtin_calls: usize,
    /// Containers the `code_interpreter` calls of one answer spread over (`x-mock-containers`);
    /// `None`: they share one.
    pub containers: Option<usize>,
}

/// What the endpoints with state or form uploads need beyond [`Ctx`].
pub(crate) struct Call<'a> {
    pub state: &'a State,
    pub content_type: Option<&'a str>,
    pub query: Option<&'a str>,
}

impl Ctx {
    /// The usage to report, or `None` when usage is switched off.
    pub fn usage(&self) -> Option<MockUsage> {
        (!self.no_usage).then(|| MockUsage::for_request(self.body_len, self.deltas))
    }

    pub fn usage_always(&self) -> MockUsage {
        MockUsage::for_request(self.body_len, self.deltas)
    }

    /// A context for a request the mock makes to itself (a batch line): the server's
    /// defaults, as if the body had arrived without `x-mock-*` headers.
    pub fn internal(state: &State, body_len: usize) -> Self {
        Self {
            id: state.next_id(),
            created: now_secs(),
            deltas: state.opts.deltas.min(MAX_DELTAS),
            no_usage: state.opts.no_usage,
            body_len,
            builtin_calls: 1,
            containers: None,
        }
    }
}

/// An endpoint's answer, before pacing and framing.
pub(crate) enum Reply {
    Json(StatusCode, Bytes),
    /// A body that is not JSON (audio, file contents, plain-text transcripts).
    Raw(StatusCode, &'static str, Bytes),
    Stream(Script),
}

impl Reply {
    pub fn ok(json: Vec<u8>) -> Self {
        Reply::Json(StatusCode::OK, json.into())
    }

    pub fn bad_request(message: &str) -> Self {
        Reply::Json(
            StatusCode::BAD_REQUEST,
            error_json(message, "invalid_request_error", None).into(),
        )
    }

    /// OpenAI's 404 for an id that names nothing, e.g. `No such File object: file-…`.
    pub fn not_found(message: &str, param: &str) -> Self {
        Reply::Json(
            StatusCode::NOT_FOUND,
            crate::wire::error_json_param(message, "invalid_request_error", Some(param), None)
                .into(),
        )
    }

    /// A 400 naming the parameter at fault.
    pub fn invalid_param(message: &str, param: &str) -> Self {
        Reply::Json(
            StatusCode::BAD_REQUEST,
            crate::wire::error_json_param(message, "invalid_request_error", Some(param), None)
                .into(),
        )
    }

    pub fn bad_json(e: &serde_json::Error) -> Self {
        let message = format!(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.) Detail: {e}"
        );
        Reply::bad_request(&message)
    }
}

pub(crate) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    if websocket::is_handshake(&req) {
        return Ok(websocket::handshake(state, req));
    }
    let (parts, body) = req.into_parts();
    if let Some(rest) = parts.uri.path().strip_prefix("/__mock/") {
        return Ok(control::handle(
            &state,
            &parts.method,
            rest,
            parts.uri.query(),
        ));
    }
    let raw = match read_body(body).await {
        Ok(raw) => raw,
        Err(response) => return Ok(response),
    };
    state.record(|| recorded(&parts, raw.clone(), Transport::Http));
    let knobs = Knobs::new(&state.opts, &parts.headers);
    let reply = match knobs.fail_status {
        Some(status) => Reply::Json(status, failure_json(status).into()),
        None if knobs.malformed => malformed(&raw),
        None => route(&state, &parts, &raw, &knobs),
    };
    let mut response = match reply {
        Reply::Json(status, json) => json_response(status, json),
        Reply::Raw(status, content_type, body) => raw_response(status, content_type, body),
        Reply::Stream(script) => {
            // Created before the first-byte delay so a client that gives up while waiting
            // is counted as a cancelled stream.
            let pacing = Pacing {
                chunk_delay: knobs.chunk_delay,
                cut_after: knobs.cut_after,
            };
            sse_response(SseBody::new(script, pacing, Arc::clone(&state)))
        }
    };
    // As the real API does: a request id on every answer, and Codex's sticky routing token
    // (`x-codex-turn-state`) echoed back so clients and gateways can be checked to pass it.
    let headers = response.headers_mut();
    headers.insert("x-request-id", HeaderValue::from(state.next_id()));
    if let Some(turn_state) = parts.headers.get("x-codex-turn-state") {
        headers.insert("x-codex-turn-state", turn_state.clone());
    }
    if !knobs.first_byte_delay.is_zero() {
        tokio::time::sleep(knobs.first_byte_delay).await;
    }
    Ok(response)
}

fn route(state: &State, parts: &Parts, raw: &[u8], knobs: &Knobs) -> Reply {
    let path = parts.uri.path();
    let Some(endpoint) = path.strip_prefix("/v1") else {
        return unknown_url(&parts.method, path);
    };
    match (&parts.method, endpoint) {
        (&Method::GET, "/models") => return models::list(),
        (&Method::GET, _) if endpoint.starts_with("/models/") => {
            return models::get(&endpoint["/models/".len()..]);
        }
        _ => {}
    }
    let encoding = parts
        .headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let body = match decode(encoding, raw) {
        Ok(body) => body,
        Err(message) => return Reply::bad_request(&message),
    };
    let ctx = knobs.ctx(state, body.len());
    let call = Call {
        state,
        content_type: parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        query: parts.uri.query(),
    };
    let method = &parts.method;
    match (method, endpoint) {
        (&Method::POST, "/responses") => responses::handle(&ctx, &body),
        (&Method::POST, "/responses/compact") => responses::compact(&ctx, &body),
        (&Method::POST, "/chat/completions") => chat::handle(&ctx, &body),
        (&Method::POST, "/completions") => completions::handle(&ctx, &body),
        (&Method::POST, "/embeddings") => embeddings::handle(&ctx, &body),
        (&Method::POST, "/moderations") => moderations::handle(&ctx, &body),
        (&Method::POST, "/images/generations") => images::generate(&ctx, &body),
        (&Method::POST, "/images/edits") => images::edit(&ctx, &call, &body),
        (&Method::POST, "/images/variations") => images::variation(&ctx, &call, &body),
        (&Method::POST, "/audio/speech") => audio::speech(&ctx, &body),
        (&Method::POST, "/audio/transcriptions") => transcribe::transcription(&ctx, &call, &body),
        (&Method::POST, "/audio/translations") => transcribe::translation(&ctx, &call, &body),
        _ => {
            if let Some(rest) = endpoint.strip_prefix("/files") {
                files::route(&ctx, &call, method, rest, &body)
            } else if let Some(rest) = endpoint.strip_prefix("/batches") {
                batches::route(&ctx, &call, method, rest, &body)
            } else {
                unknown_url(method, path)
            }
        }
    }
}

/// `x-mock-malformed`: a 200 whose body breaks the wire format — SSE for a streaming request,
/// truncated JSON otherwise.
fn malformed(raw: &[u8]) -> Reply {
    let streaming = serde_json::from_slice::<serde_json::Value>(raw)
        .is_ok_and(|v| v.get("stream") == Some(&serde_json::Value::Bool(true)));
    if streaming {
        Reply::Stream(Script::Malformed)
    } else {
        Reply::ok(br#"{"id":"resp_malformed","object":"response","output":[{"type":"#.to_vec())
    }
}

pub(crate) fn unknown_url(method: &Method, path: &str) -> Reply {
    let message = format!("Invalid URL ({method} {path})");
    Reply::Json(
        StatusCode::NOT_FOUND,
        error_json(&message, "invalid_request_error", Some("unknown_url")).into(),
    )
}

/// Reads the whole request body (bounded), without copying when it came in one frame.
async fn read_body(mut body: Incoming) -> Result<Bytes, Response<MockBody>> {
    let mut single: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let message = format!("cannot read request body: {e}");
            json_response(
                StatusCode::BAD_REQUEST,
                error_json(&message, "invalid_request_error", None).into(),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if single.is_none() && joined.is_empty() {
            single = Some(data);
            continue;
        }
        if let Some(first) = single.take() {
            joined.extend_from_slice(&first);
        }
        joined.extend_from_slice(&data);
        if joined.len() > BODY_LIMIT {
            let message = format!("request body larger than {BODY_LIMIT} bytes");
            let json = error_json(&message, "invalid_request_error", None);
            return Err(json_response(StatusCode::PAYLOAD_TOO_LARGE, json.into()));
        }
    }
    Ok(single.unwrap_or_else(|| joined.freeze()))
}

pub(crate) fn recorded(parts: &Parts, body: Bytes, transport: Transport) -> RecordedRequest {
    RecordedRequest {
        transport,
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    }
}

pub(crate) fn json_response(status: StatusCode, json: Bytes) -> Response<MockBody> {
    raw_response(status, "application/json", json)
}

pub(crate) fn raw_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<MockBody> {
    let mut response = Response::new(MockBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn sse_response(body: SseBody) -> Response<MockBody> {
    let mut response = Response::new(MockBody::Sse(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
