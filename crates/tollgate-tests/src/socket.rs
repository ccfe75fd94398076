//! A client of the Responses WebSocket through the gateway, as the WebSocket tests drive it.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::Harness;

/// A client's socket through the gateway.
pub struct Socket(pub WebSocketStream<TcpStream>);

/// Opens `GET /v1/responses` on the harness's gateway as a WebSocket with `key`.
pub async fn open(
    h: &Harness,
    key: &str,
    extra: &[(&'static str, &str)],
) -> Result<Socket, WsError> {
    open_at(h.gateway.addr, key, extra).await
}

/// [`open`] on the gateway at `addr`.
pub async fn open_at(
    addr: SocketAddr,
    key: &str,
    extra: &[(&'static str, &str)],
) -> Result<Socket, WsError> {
    let stream = TcpStream::connect(addr).await.unwrap();
    open_on(addr, stream, key, extra).await
}

/// Opens `GET /v1/responses` as a WebSocket on `stream` with `key` and Codex-like headers.
pub async fn open_on(
    addr: SocketAddr,
    stream: TcpStream,
    key: &str,
    extra: &[(&'static str, &str)],
) -> Result<Socket, WsError> {
    let url = format!("ws://{addr}/v1/responses");
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    headers.insert(
        "openai-beta",
        "responses_websockets=2026-02-06".parse().unwrap(),
    );
    headers.insert("session-id", "sess-ws-1".parse().unwrap());
    headers.insert(
        "x-codex-turn-metadata",
        r#"{"turn_id":"turn-handshake"}"#.parse().unwrap(),
    );
    for (name, value) in extra {
        headers.append(*name, value.parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::client_async(request, stream).await?;
    Ok(Socket(ws))
}

/// A Codex-like `response.create` for turn `turn` saying `text`, in session `sess-ws-1`.
pub fn create(turn: &str, text: &str) -> Value {
    json!({
        "type": "response.create",
        "model": "gpt-5.5",
        "stream": true,
        "store": false,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}],
        "client_metadata": {"turn_id": turn, "session_id": "sess-ws-1"},
    })
}

pub const TERMINAL: [&str; 4] = [
    "response.completed",
    "response.failed",
    "response.incomplete",
    "error",
];

pub fn is_terminal(event: &Value) -> bool {
    TERMINAL.contains(&event["type"].as_str().unwrap_or(""))
}

impl Socket {
    pub async fn send(&mut self, message: Value) {
        self.0
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.0.send(Message::text(text)).await.unwrap();
    }

    /// The next text frame as JSON; `None` when the socket closed.
    pub async fn next_event(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(15), self.0.next())
                .await
                .expect("an event within 15 s")?;
            match message {
                Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads events until `n` terminal events came (or the socket closed); returns them all.
    pub async fn until_terminals(&mut self, n: usize) -> Vec<Value> {
        let mut events = Vec::new();
        let mut seen = 0;
        while seen < n {
            let Some(event) = self.next_event().await else {
                break;
            };
            seen += usize::from(is_terminal(&event));
            events.push(event);
        }
        events
    }

    /// Sends `message` and reads events up to its answer's terminal event.
    pub async fn call(&mut self, message: Value) -> Vec<Value> {
        self.send(message).await;
        let events = self.until_terminals(1).await;
        assert!(
            events.last().is_some_and(is_terminal),
            "the socket closed before a terminal event: {events:?}"
        );
        events
    }

    /// Whether the gateway closed the socket within `within` (reading and dropping events).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.0.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}
