//! What the session's reader hands its writer: a `response.create` read on arrival, or an
//! in-band `error` event to send in its turn.

use serde::Serialize;

use crate::responses::Asked;
use crate::route::Ctx;
use crate::wire::{EmptyObject, write_json};

/// One client frame, in arrival order.
pub(super) enum Job {
    /// Boxed: the context and the read request are far larger than an error.
    Create(Box<Create>),
    Reject(InBandError),
}

/// A `response.create`, read when it arrived (ids and `created_at` are from then).
pub(super) struct Create {
    pub ctx: Ctx,
    pub asked: Asked,
}

/// `{"type":"error","status":…,"error":{"type","code","message","param"},"headers":{}}`:
/// an error answered on the open socket, where HTTP would have answered a status.
#[derive(Debug, Serialize)]
pub(super) struct InBandError {
    #[serde(rename = "type")]
    kind: &'static str,
    status: u16,
    error: Detail,
    headers: EmptyObject,
}

#[derive(Debug, Serialize)]
struct Detail {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    message: String,
    param: Option<&'static str>,
}

impl InBandError {
    fn new(status: u16, code: &'static str, message: String, param: Option<&'static str>) -> Self {
        let kind = if status >= 500 {
            "server_error"
        } else {
            "invalid_request_error"
        };
        Self {
            kind: "error",
            status,
            error: Detail {
                kind,
                code,
                message,
                param,
            },
            headers: EmptyObject,
        }
    }

    /// A text frame that is not JSON (or not a JSON object).
    pub fn invalid_json(e: &serde_json::Error) -> Self {
        let message = format!("We could not parse the JSON body of your request. Detail: {e}");
        Self::new(400, "invalid_json", message, None)
    }

    /// A `response.create` whose fields have the wrong shape.
    pub fn invalid_create(e: &serde_json::Error) -> Self {
        let message = format!("Invalid response.create: {e}");
        Self::new(400, "invalid_request", message, None)
    }

    pub fn unknown_type(kind: Option<&str>) -> Self {
        let message = match kind {
            Some(kind) => {
                format!("Invalid value: '{kind}'. Supported values are: 'response.create'.")
            }
            None => "Missing required parameter: 'type'.".to_owned(),
        };
        Self::new(400, "invalid_request", message, Some("type"))
    }

    pub fn binary() -> Self {
        let message = "Binary frames are not supported; send each event as JSON in a text frame.";
        Self::new(400, "invalid_request", message.to_owned(), None)
    }

    pub fn previous_not_found(id: &str) -> Self {
        let message = format!("Previous response with id '{id}' not found.");
        Self::new(
            400,
            "previous_response_not_found",
            message,
            Some("previous_response_id"),
        )
    }

    /// `mock:ws-error`.
    pub fn server_error() -> Self {
        let message = "The server had an error while processing your request. Sorry about that! (mock:ws-error)";
        Self::new(500, "server_error", message.to_owned(), None)
    }

    /// OpenAI's answer once a connection has served its time (60 minutes there, a number
    /// of responses here); the socket is closed right after.
    pub fn limit_reached() -> Self {
        let message = "Responses websocket connection limit reached (60 minutes). Create a new websocket connection to continue.";
        Self::new(
            400,
            "websocket_connection_limit_reached",
            message.to_owned(),
            None,
        )
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        write_json(&mut out, self);
        out
    }
}
