//! `/__mock/*`: the control endpoints for users outside the process (CLI, other languages),
//! and the batch controls (`/__mock/batches/{id}/complete|cancel-partly|expire`).

use http::{Method, Response, StatusCode};
use serde::Serialize;

use bytes::Bytes;

use crate::batches;
use crate::body::MockBody;
use crate::route::{Reply, json_response};
use crate::state::{RecordedRequest, State, Transport};
use crate::wire::{error_json, write_json};

/// A recorded request as `GET /__mock/requests` shows it.
#[derive(Serialize)]
struct View<'a> {
    /// `http`, or `websocket` for a `response.create` frame.
    transport: Transport,
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    /// `[name, value]` pairs, in arrival order, names lowercase.
    headers: &'a [(String, String)],
    /// The body as UTF-8 (lossy); still compressed if it arrived compressed.
    body: String,
}

impl<'a> View<'a> {
    fn of(r: &'a RecordedRequest) -> Self {
        Self {
            transport: r.transport,
            method: &r.method,
            path: &r.path,
            query: r.query.as_deref(),
            headers: &r.headers,
            body: String::from_utf8_lossy(&r.body).into_owned(),
        }
    }
}

/// `path` is what follows `/__mock/`.
pub(crate) fn handle(
    state: &State,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<MockBody> {
    if let Some(rest) = path.strip_prefix("batches/") {
        return match batches::control(state, method, rest, query) {
            Reply::Json(status, json) => json_response(status, json),
            // The batch controls only ever answer JSON.
            Reply::Raw(status, _, body) => json_response(status, body),
            Reply::Stream(_) => json_response(StatusCode::INTERNAL_SERVER_ERROR, Bytes::new()),
        };
    }
    let mut out = Vec::new();
    match (method, path) {
        (&Method::GET, "requests") => {
            let requests = state.requests();
            let views: Vec<View<'_>> = requests.iter().map(View::of).collect();
            write_json(&mut out, &views);
        }
        (&Method::DELETE, "requests") => {
            state.clear();
            return json_response(StatusCode::NO_CONTENT, bytes::Bytes::new());
        }
        (&Method::GET, "stats") => write_json(&mut out, &state.stats()),
        _ => {
            let message = format!("Invalid URL ({method} /__mock/{path})");
            let json = error_json(&message, "invalid_request_error", Some("unknown_url"));
            return json_response(StatusCode::NOT_FOUND, json.into());
        }
    }
    json_response(StatusCode::OK, out.into())
}
