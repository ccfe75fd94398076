//! A client's message on the Responses WebSocket: a `response.create` becomes a call of its
//! own — its key checked again (a key revoked mid-session is refused at the next message),
//! admitted like an HTTP Responses call with the same body — and anything tollgate cannot meter
//! is refused in-band, never forwarded.

use bytes::Bytes;
use serde::Serialize;

use tollgate_core::ApiError;

use crate::admission::Message;
use crate::attribution::Started;
use crate::auth::Authed;
use crate::inspect::{self, Peek};
use crate::route::Endpoint;
use crate::settle::{Asked, Pending};

use super::calls::{Calls, InFlight};
use super::relay::Relay;

/// What becomes of one client message.
pub enum Verdict {
    /// Forward it; the call (if it is one) is in flight.
    Forward(Option<Box<InFlight>>),
    /// Do not forward it: send the client this in-band error event instead.
    Refuse(String),
}

impl Relay {
    /// Decides what to do with a client's text message.
    pub async fn client_message(&self, text: &Bytes, calls: &Calls, draining: bool) -> Verdict {
        let started = Started::now();
        let peek = match inspect::peek(text) {
            Ok(peek) => peek,
            Err(error) => return Verdict::Refuse(in_band(&error)),
        };
        match peek.kind.as_deref() {
            Some("response.create") => {}
            // Older Codex acknowledging what it read: the upstream answers nothing. Anything the
            // upstream may answer (`response.interrupt` gets an error when nothing runs) is not
            // forwarded: an answer to a message that is no call would be taken for a call's.
            Some("response.processed") => return Verdict::Forward(None),
            other => return Verdict::Refuse(in_band(&unknown_message(other))),
        }
        if draining {
            return Verdict::Refuse(in_band(&going_away()));
        }
        // Codex always names the model; without one, neither the allow-list nor the price
        // could be checked.
        if peek.model.as_deref().is_none_or(|m| m.trim().is_empty()) {
            let error = ApiError::new(
                400,
                "invalid_request_error",
                "model_required",
                "'model' is required: tollgate checks it against your allowed models and prices the call by it.",
            )
            .with_param("model");
            return Verdict::Refuse(in_band(&error));
        }
        let authorization = self
            .handshake
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let key = match self.keys.authenticate(authorization, started.at_ms) {
            Ok(key) => key,
            Err(reason) => return Verdict::Refuse(in_band(&ApiError::invalid_api_key(reason))),
        };
        let mut attribution = self.who.attribution.clone();
        if let Some(turn) = peek.turn_id.as_deref().and_then(crate::attribution::clean) {
            attribution.turn_id = Some(turn);
        }
        let who = Authed {
            endpoint: match peek.generate {
                Some(false) => Endpoint::ResponsesPrewarm,
                _ => Endpoint::ResponsesSocket,
            },
            key,
            attribution,
        };
        let telemetry = self.settler.telemetry.as_ref();
        let span = telemetry
            .map(|t| t.begin(&self.handshake))
            .unwrap_or_default();
        let prices = &self.settler.prices;
        // A call continuing a response metered on this socket makes the upstream read that
        // response's input and output again: bound by what they were, not by the context size.
        let held_input = peek
            .previous_response()
            .filter(|_| peek.conversation.is_none() && peek.prompt.is_none())
            .filter(|_| memchr::memmem::find(text, b"\"item_reference\"").is_none())
            .and_then(|id| calls.held(id));
        let message = Message {
            peek: &peek,
            body: text,
            held_input,
        };
        let admitted = self
            .admission
            .admit_message(&who, message, prices, telemetry, started.at_ms)
            .await;
        let admitted = match admitted {
            Ok(admitted) => admitted,
            Err(refused) => {
                let model = peek.model.as_deref();
                let error = refused.record(telemetry, &started, &who, model, span);
                return Verdict::Refuse(in_band(&error));
            }
        };
        let Peek { model, .. } = &peek;
        let asked = Asked {
            web_search_tool: peek.web_search_tool(),
            ..Asked::default()
        };
        let pending = Pending {
            started,
            who,
            model_requested: model.clone(),
            request_body: Some(text.clone()),
            settler: std::sync::Arc::clone(&self.settler),
            admitted,
            span,
            asked,
        };
        Verdict::Forward(Some(Box::new(InFlight::new(pending))))
    }
}

/// An error as the WebSocket transport carries it: an `error` event with the status the HTTP
/// answer would have had, the OpenAI error object, and the headers it would have carried —
/// Codex maps it as that HTTP answer (a 429 `usage_limit_reached` stops it, showing
/// `x-codex-promo-message`). A rate limit is the exception: an `error` event cannot carry a
/// retry delay (Codex gives up on any other 429), so it is a `response.failed` with
/// `rate_limit_exceeded` and "try again in Ns", which Codex retries after N seconds.
pub fn in_band(error: &ApiError) -> String {
    if error.code == "rate_limit_exceeded" {
        return serde_json::json!({
            "type": "response.failed",
            "response": {
                "object": "response",
                "status": "failed",
                "error": {"code": error.code, "message": error.message},
            },
        })
        .to_string();
    }
    #[derive(Serialize)]
    struct Event<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        status: u16,
        error: Body<'a>,
        headers: std::collections::BTreeMap<&'a str, &'a str>,
    }
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        code: &'a str,
        message: &'a str,
        param: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        resets_at: Option<i64>,
    }
    let event = Event {
        kind: "error",
        status: error.status,
        error: Body {
            kind: error.kind,
            code: error.code,
            message: &error.message,
            param: error.param,
            resets_at: error.resets_at,
        },
        headers: error
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect(),
    };
    serde_json::to_string(&event).unwrap_or_default()
}

fn unknown_message(kind: Option<&str>) -> ApiError {
    let what = kind.map_or("a message without a 'type'".to_string(), |k| {
        format!("a '{k}' message")
    });
    ApiError::new(
        400,
        "invalid_request_error",
        "unsupported_message",
        format!(
            "tollgate meters the Responses WebSocket by its 'response.create' messages and does not forward {what}."
        ),
    )
}

/// The answer to a `response.create` on a socket tollgate is closing: the code OpenAI uses at
/// a connection's age limit, on which Codex opens a new socket and sends the call again.
fn going_away() -> ApiError {
    ApiError::new(
        400,
        "invalid_request_error",
        "websocket_connection_limit_reached",
        "This tollgate replica is shutting down. Open a new WebSocket connection to continue.",
    )
}
