//! One socket's relay: a single loop over both directions. Client messages are admitted (or
//! refused in-band) and forwarded; upstream events are metered and forwarded; pings, pongs and
//! close frames pass through. Whatever ends the socket, the calls in flight are settled.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use tollgate_core::{ApiError, CallOutcome, KeyCache};

use super::calls::{Calls, Event, event_type};
use super::message::{Verdict, in_band};
use crate::admission::Admission;
use crate::auth::Authed;
use crate::settle::Settler;
use crate::upstream::socket::UpstreamSocket;

pub type ClientSocket = WebSocketStream<TokioIo<Upgraded>>;

/// How long closing frames may take to go out when a socket ends.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What one socket needs besides its two ends.
pub struct Relay {
    /// The handshake's key and attribution; each call re-checks the key.
    pub who: Authed,
    /// The client's handshake headers (its key, Codex's session headers, `traceparent`).
    pub handshake: HeaderMap,
    pub keys: Arc<KeyCache>,
    pub admission: Arc<Admission>,
    pub settler: Arc<Settler>,
    /// Longest upstream silence while a call is in flight.
    pub idle: Duration,
    /// Largest client message (the HTTP body limit).
    pub max_message: usize,
    pub closing: CancellationToken,
    pub stop: CancellationToken,
}

/// How a socket ended.
enum End {
    /// The client closed or went away.
    Client,
    /// The upstream broke off or went silent.
    Upstream(CallOutcome),
    /// The upstream closed the socket with a close frame (its connection limit, a shutdown):
    /// calls it had not begun to answer were never run.
    UpstreamClosed,
    /// tollgate closed it (shutdown).
    Gateway,
}

impl Relay {
    pub async fn run(self, mut client: ClientSocket, mut upstream: UpstreamSocket) {
        let opened = Instant::now();
        let team = &self.who.key.team;
        let cost_centre = team.cost_centre.as_deref().unwrap_or("");
        if let Some(telemetry) = &self.settler.telemetry {
            telemetry.socket_opened(&team.name, cost_centre);
        }
        let mut calls = Calls::default();
        let end = self.serve(&mut client, &mut upstream, &mut calls).await;
        match end {
            End::Client => calls.abandon(CallOutcome::ClientGone),
            End::Upstream(outcome) => calls.abandon(outcome),
            End::UpstreamClosed => calls.abandon_unstarted_unbilled(),
            End::Gateway => calls.abandon(CallOutcome::UpstreamCut),
        }
        let away = CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        };
        // Best effort, and also how a close the peer began gets its reply frame out; bounded,
        // since a peer that stopped reading would hold the write forever.
        let closes = async {
            let _ = client.close(Some(away.clone())).await;
            let _ = upstream.close(Some(away)).await;
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, closes).await;
        if let Some(telemetry) = &self.settler.telemetry {
            let seconds = opened.elapsed().as_secs_f64();
            telemetry.socket_closed(&team.name, cost_centre, seconds);
        }
    }

    /// Sends one message, giving up (as if the peer were gone) when it is not taken within the
    /// idle timeout or when the gateway stops: a peer that stopped reading cannot hold a
    /// socket, or shutdown, forever.
    async fn deliver<S>(&self, socket: &mut S, message: Message) -> Result<(), ()>
    where
        S: futures_util::Sink<Message> + Unpin,
    {
        tokio::select! {
            () = self.stop.cancelled() => Err(()),
            sent = tokio::time::timeout(self.idle, socket.send(message)) => match sent {
                Ok(Ok(())) => Ok(()),
                _ => Err(()),
            },
        }
    }

    async fn serve(
        &self,
        client: &mut ClientSocket,
        upstream: &mut UpstreamSocket,
        calls: &mut Calls,
    ) -> End {
        let mut draining = false;
        // Data frames only: pings and pongs keep neither a silent call nor an idle socket open.
        let mut silent_since = Instant::now();
        let mut active_at = Instant::now();
        loop {
            if draining && calls.is_empty() {
                return End::Gateway;
            }
            let deadline = silent_since + self.idle;
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return End::Gateway,
                () = self.closing.cancelled(), if !draining => draining = true,
                () = tokio::time::sleep_until(deadline), if !calls.is_empty() => {
                    let error = ApiError::upstream_timeout(self.idle.as_secs());
                    let _ = self.deliver(client, Message::text(in_band(&error))).await;
                    return End::Upstream(CallOutcome::UpstreamTimeout);
                }
                // A socket with nothing in flight and nothing said for as long is closed (Codex
                // opens a new one for its next turn), so a vanished client holds nothing.
                () = tokio::time::sleep_until(active_at + self.idle), if calls.is_empty() => {
                    return End::Gateway;
                }
                message = upstream.next() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(_)) | None => return End::Upstream(CallOutcome::UpstreamCut),
                    };
                    if matches!(message, Message::Text(_) | Message::Binary(_)) {
                        silent_since = Instant::now();
                        active_at = silent_since;
                    }
                    if let Message::Text(text) = &message
                        && calls.upstream_event(text.as_bytes()) == Event::Unclaimed
                        && event_type(text.as_bytes()).as_deref() == Some("response.created")
                    {
                        // A response no call of this socket asked for: calls and events are out
                        // of step, and its output would go unmetered. End the socket instead.
                        tracing::warn!("a response began with no call in flight; closing the socket");
                        let error = ApiError::internal("the upstream answered a call tollgate did not forward");
                        let _ = self.deliver(client, Message::text(in_band(&error))).await;
                        return End::Upstream(CallOutcome::UpstreamCut);
                    }
                    let closed = matches!(message, Message::Close(_));
                    if self.deliver(client, message).await.is_err() {
                        return End::Client;
                    }
                    if closed {
                        return End::UpstreamClosed;
                    }
                }
                message = client.next() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                            let error = ApiError::body_too_large(self.max_message as u64);
                            let _ = self.deliver(client, Message::text(in_band(&error))).await;
                            let too_long = CloseFrame {
                                code: CloseCode::Size,
                                reason: "message too long".into(),
                            };
                            let _ = self.deliver(client, Message::Close(Some(too_long))).await;
                            return End::Client;
                        }
                        Some(Err(_)) | None => return End::Client,
                    };
                    let mut call = None;
                    let forward = match message {
                        Message::Text(text) => {
                            active_at = Instant::now();
                            let bytes = bytes::Bytes::from(text.clone());
                            match self.client_message(&bytes, calls, draining).await {
                                Verdict::Forward(admitted) => {
                                    call = admitted;
                                    Message::Text(text)
                                }
                                Verdict::Refuse(event) => {
                                    if self.deliver(client, Message::text(event)).await.is_err() {
                                        return End::Client;
                                    }
                                    continue;
                                }
                            }
                        }
                        Message::Binary(_) => {
                            let error = ApiError::new(
                                400,
                                "invalid_request_error",
                                "unsupported_message",
                                "tollgate takes text messages (JSON) on the Responses WebSocket, not binary ones.",
                            );
                            if self.deliver(client, Message::text(in_band(&error))).await.is_err() {
                                return End::Client;
                            }
                            continue;
                        }
                        Message::Close(frame) => {
                            let _ = self.deliver(upstream, Message::Close(frame)).await;
                            return End::Client;
                        }
                        other @ (Message::Ping(_) | Message::Pong(_)) => other,
                        Message::Frame(_) => continue,
                    };
                    if self.deliver(upstream, forward).await.is_err() {
                        // The upstream never took the message: nothing to bill.
                        if let Some(call) = call {
                            let unsent = CallOutcome::UpstreamUnreachable;
                            call.pending.settle_unanswered(502, unsent, false);
                        }
                        return End::Upstream(CallOutcome::UpstreamCut);
                    }
                    if let Some(call) = call {
                        if calls.is_empty() {
                            silent_since = Instant::now();
                        }
                        calls.push(*call);
                    }
                }
            }
        }
    }
}
