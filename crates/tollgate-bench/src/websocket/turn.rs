//! One Codex turn over each transport, timed from sending it to its first event and to its
//! terminal event: an HTTP `POST /v1/responses` read as SSE, or a `response.create` on a socket
//! that stays open from one turn to the next (as Codex keeps it).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::client::{Done, Failure, HttpClient, Prepared, root_cause};

/// A timed turn, and how many pieces the client read it in (HTTP body chunks, or WebSocket
/// messages): what the gateway's writes looked like from the outside.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub done: Done,
    pub reads: u32,
}

/// Bytes of an SSE line kept to read its event type (it is near the start).
const LINE_HEAD: usize = 96;

/// Sends one streamed Responses call and reads its SSE body to the end.
pub async fn http_turn(
    client: &HttpClient,
    prepared: &Prepared,
    timeout: Duration,
) -> Result<Timed, Failure> {
    let began = Instant::now();
    let run = async {
        let response = client
            .request(prepared.request())
            .await
            .map_err(|e| Failure::Transport(root_cause(&e)))?;
        let status = response.status();
        let mut body = response.into_body();
        let (mut scan, mut reads) = (SseScan::default(), 0u32);
        let (mut first, mut terminal) = (None, None);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failure::Transport(root_cause(&e)))?;
            let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) else {
                continue;
            };
            reads += 1;
            let fed = scan.feed(data);
            let now = Instant::now();
            if fed.events > 0 && first.is_none() {
                first = Some(now);
            }
            if terminal.is_none() {
                terminal = fed.terminal.map(|kind| (now, kind));
            }
        }
        if !status.is_success() {
            return Err(Failure::Status(status.as_u16()));
        }
        finish(began, first, terminal, reads)
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

/// A client's Responses WebSocket, opened on first use and again after a failed turn.
pub struct Socket {
    url: String,
    addr: SocketAddr,
    headers: Vec<(HeaderName, HeaderValue)>,
    ws: Option<WebSocketStream<TcpStream>>,
    /// Handshakes made (one per client, unless a turn failed and the socket was reopened).
    pub handshakes: u64,
}

impl Socket {
    /// A socket to `ws://{addr}/v1/responses` sending `headers` with its handshake.
    pub fn new(addr: SocketAddr, headers: Vec<(HeaderName, HeaderValue)>) -> Socket {
        Socket {
            url: format!("ws://{addr}/v1/responses"),
            addr,
            headers,
            ws: None,
            handshakes: 0,
        }
    }

    /// Sends `create` (a `response.create` message) and reads events to its terminal one.
    pub async fn turn(&mut self, create: &Utf8Bytes, timeout: Duration) -> Result<Timed, Failure> {
        let began = Instant::now();
        let outcome = match tokio::time::timeout(timeout, self.exchange(create, began)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::Timeout),
        };
        if outcome.is_err() {
            // Whatever is still in flight on it would be read as the next turn's answer.
            self.ws = None;
        }
        outcome
    }

    async fn exchange(&mut self, create: &Utf8Bytes, began: Instant) -> Result<Timed, Failure> {
        let ws = self.open().await?;
        let broken = |e: tokio_tungstenite::tungstenite::Error| Failure::Transport(e.to_string());
        ws.send(Message::Text(create.clone()))
            .await
            .map_err(broken)?;
        let (mut first, mut reads) = (None, 0u32);
        loop {
            let text = match ws.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Err(Failure::Transport(format!("socket closed: {frame:?}")));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(broken(e)),
                None => return Err(Failure::Transport("socket ended".into())),
            };
            let now = Instant::now();
            reads += 1;
            first.get_or_insert(now);
            if let Some(kind) = event_type(text.as_bytes()).filter(|k| is_terminal(k)) {
                return finish(began, first, Some((now, kind.into_owned())), reads);
            }
        }
    }

    async fn open(&mut self) -> Result<&mut WebSocketStream<TcpStream>, Failure> {
        if self.ws.is_none() {
            let mut request = self
                .url
                .as_str()
                .into_client_request()
                .map_err(|e| Failure::Transport(e.to_string()))?;
            for (name, value) in &self.headers {
                request.headers_mut().insert(name.clone(), value.clone());
            }
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| Failure::Transport(e.to_string()))?;
            stream
                .set_nodelay(true)
                .map_err(|e| Failure::Transport(e.to_string()))?;
            let (ws, _) = tokio_tungstenite::client_async(request, stream)
                .await
                .map_err(|e| match e {
                    tokio_tungstenite::tungstenite::Error::Http(response) => {
                        Failure::Status(response.status().as_u16())
                    }
                    other => Failure::Transport(other.to_string()),
                })?;
            self.handshakes += 1;
            self.ws = Some(ws);
        }
        self.ws
            .as_mut()
            .ok_or_else(|| Failure::Transport("no socket".into()))
    }
}

/// The `response.create` message for a Responses request body: the body's own fields behind a
/// `type`, its bytes otherwise as they are (so both transports carry the same JSON).
pub fn response_create(body: &[u8]) -> Option<Utf8Bytes> {
    let text = std::str::from_utf8(body).ok()?.trim_start();
    let fields = text.strip_prefix('{')?.trim_start();
    let separator = if fields.starts_with('}') { "" } else { "," };
    Some(Utf8Bytes::from(format!(
        r#"{{"type":"response.create"{separator}{fields}"#
    )))
}

fn finish(
    began: Instant,
    first: Option<Instant>,
    terminal: Option<(Instant, String)>,
    reads: u32,
) -> Result<Timed, Failure> {
    match terminal {
        Some((at, kind)) if kind == "response.completed" => Ok(Timed {
            done: Done {
                ttfb: first.unwrap_or(at).saturating_duration_since(began),
                total: at.saturating_duration_since(began),
            },
            reads,
        }),
        Some((_, kind)) => Err(Failure::Transport(format!("the turn ended with {kind}"))),
        None => Err(Failure::Transport(
            "the stream ended without a terminal event".into(),
        )),
    }
}

/// Events that end a response: only `response.completed` counts as a turn done.
fn is_terminal(kind: &str) -> bool {
    matches!(
        kind,
        "response.completed" | "response.failed" | "response.incomplete" | "error"
    )
}

/// An event's `type`: read off the front when it is the first key (as OpenAI and the mock
/// write it), else parsed.
fn event_type(json: &[u8]) -> Option<Cow<'_, str>> {
    if let Some(kind) = leading_type(json) {
        return Some(Cow::Borrowed(kind));
    }
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    Some(Cow::Owned(value.get("type")?.as_str()?.to_owned()))
}

fn leading_type(json: &[u8]) -> Option<&str> {
    let rest = json.strip_prefix(br#"{"type":""#)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// What one chunk of an SSE body completed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// `data:` lines ended in this chunk.
    pub events: u32,
    /// The first terminal event among them.
    pub terminal: Option<String>,
}

/// Finds event boundaries in an SSE body as it arrives, keeping only the start of each line.
#[derive(Debug, Default)]
pub struct SseScan {
    head: Vec<u8>,
    /// The `event:` name of the event being read.
    event: String,
}

impl SseScan {
    pub fn feed(&mut self, chunk: &[u8]) -> Fed {
        let mut fed = Fed::default();
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            self.keep(&rest[..at]);
            self.end_line(&mut fed);
            rest = &rest[at + 1..];
        }
        self.keep(rest);
        fed
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = LINE_HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self, fed: &mut Fed) {
        let line = self.head.strip_suffix(b"\r").unwrap_or(&self.head);
        if let Some(name) = line.strip_prefix(b"event:") {
            self.event = String::from_utf8_lossy(name).trim().to_owned();
        } else if let Some(data) = line.strip_prefix(b"data:") {
            fed.events += 1;
            let data = data.strip_prefix(b" ").unwrap_or(data);
            let kind = leading_type(data).unwrap_or(&self.event);
            if fed.terminal.is_none() && is_terminal(kind) {
                fed.terminal = Some(kind.to_owned());
            }
        } else if line.is_empty() {
            self.event.clear();
        }
        self.head.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_found_across_chunk_boundaries() {
        let body = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{}}\n\n\
                    event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n\
                    event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{}}}\n\n";
        for split in [1, 7, 30, 31, body.len()] {
            let mut scan = SseScan::default();
            let mut seen = Fed::default();
            for piece in body.as_bytes().chunks(split) {
                let fed = scan.feed(piece);
                seen.events += fed.events;
                seen.terminal = seen.terminal.or(fed.terminal);
            }
            assert_eq!(seen.events, 3, "split {split}");
            assert_eq!(seen.terminal.as_deref(), Some("response.completed"));
        }
    }

    #[test]
    fn an_sse_event_without_a_leading_type_is_named_by_its_event_line() {
        let mut scan = SseScan::default();
        let fed =
            scan.feed(b"event: response.failed\r\ndata: {\"response\":{},\"type\":\"x\"}\r\n\r\n");
        assert_eq!(fed.events, 1);
        assert_eq!(fed.terminal.as_deref(), Some("response.failed"));
        let fed = scan.feed(b"data: {\"sequence_number\":1}\n\n");
        assert_eq!((fed.events, fed.terminal), (1, None));
    }

    #[test]
    fn websocket_event_types_are_read_from_the_front_or_parsed() {
        assert_eq!(
            event_type(br#"{"type":"response.completed","response":{}}"#).as_deref(),
            Some("response.completed")
        );
        assert_eq!(
            event_type(br#"{ "status": 400, "type": "error" }"#).as_deref(),
            Some("error")
        );
        assert_eq!(event_type(b"not json"), None);
        assert!(is_terminal("error") && !is_terminal("response.output_text.delta"));
    }

    #[test]
    fn the_create_message_is_the_body_behind_a_type() {
        let create = response_create(b" {\"model\": \"gpt-5.5\", \"stream\": true}").unwrap();
        let value: serde_json::Value = serde_json::from_str(create.as_str()).unwrap();
        assert_eq!(value["type"], "response.create");
        assert_eq!(value["model"], "gpt-5.5");
        assert_eq!(
            response_create(b"{}").unwrap().as_str(),
            r#"{"type":"response.create"}"#
        );
        assert!(response_create(b"[1]").is_none());
    }
}
