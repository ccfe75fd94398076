//! The upstream connection pool against an upstream written by hand, so the test sees every
//! connection: calls in turn reuse one, a connection the upstream closed while idle is never
//! used again, and a stream the client abandoned closes its connection.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods)] // the test bodies are a few bytes

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use tollgate_core::config::UpstreamConfig;
use tollgate_proxy::Upstream;
use tollgate_proxy::upstream::UpstreamBody;

/// How the hand-written upstream answers on each connection.
#[derive(Clone, Copy)]
enum Answer {
    /// Content-Length JSON, keep-alive.
    Json,
    /// A chunked event stream of three events, keep-alive.
    Stream,
    /// Content-Length JSON, then the upstream closes the connection (as an idle timeout would).
    JsonThenClose,
}

struct Hand {
    url: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// Connections that ended with the gateway closing its side.
    closed_by_gateway: Arc<AtomicUsize>,
    /// Told whenever a counter moves.
    changed: Arc<Notify>,
}

async fn hand_upstream(answer: Answer) -> Hand {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let closed_by_gateway = Arc::new(AtomicUsize::new(0));
    let changed = Arc::new(Notify::new());
    let (c, r, g, n) = (
        connections.clone(),
        requests.clone(),
        closed_by_gateway.clone(),
        changed.clone(),
    );
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            c.fetch_add(1, Ordering::SeqCst);
            n.notify_waiters();
            let (r, g, n) = (r.clone(), g.clone(), n.clone());
            tokio::spawn(serve(socket, answer, r, g, n));
        }
    });
    Hand {
        url,
        connections,
        requests,
        closed_by_gateway,
        changed,
    }
}

async fn serve(
    mut socket: TcpStream,
    answer: Answer,
    requests: Arc<AtomicUsize>,
    closed_by_gateway: Arc<AtomicUsize>,
    changed: Arc<Notify>,
) {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            closed_by_gateway.fetch_add(1, Ordering::SeqCst);
            changed.notify_waiters();
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            assert!(
                head.starts_with("GET /v1/models HTTP/1.1\r\n"),
                "origin-form request line: {head}"
            );
            assert!(
                head.to_ascii_lowercase().contains("\r\nhost: 127.0.0.1:"),
                "Host header: {head}"
            );
            requests.fetch_add(1, Ordering::SeqCst);
            let reply: &[u8] = match answer {
                Answer::Json | Answer::JsonThenClose => {
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
                }
                Answer::Stream => {
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n9\r\ndata: 3\n\n\r\n0\r\n\r\n"
                }
            };
            socket.write_all(reply).await.unwrap();
            if let Answer::JsonThenClose = answer {
                return;
            }
        }
    }
}

fn upstream(url: &str) -> Upstream {
    let config = UpstreamConfig {
        url: url.into(),
        ..UpstreamConfig::default()
    };
    Upstream::new(&config, Some("sk-upstream")).unwrap()
}

fn get(upstream: &Upstream) -> Request<UpstreamBody> {
    let mut request = Request::new(UpstreamBody::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = upstream.uri_for("/v1/models").unwrap();
    request
}

async fn call(upstream: &Upstream) -> Bytes {
    let response = upstream.send(get(upstream), 0).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

/// Waits until `counter` reaches `want` (the hand upstream counts on its own tasks and says
/// when a counter moves), or 5 s; returns the count.
async fn until(counter: &AtomicUsize, changed: &Notify, want: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        // Registered before the check, so a change between the two is not missed.
        let moved = changed.notified();
        let now = counter.load(Ordering::SeqCst);
        if now >= want || tokio::time::timeout_at(deadline, moved).await.is_err() {
            return counter.load(Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn calls_in_turn_share_one_upstream_connection() {
    for answer in [Answer::Json, Answer::Stream] {
        let hand = hand_upstream(answer).await;
        let upstream = upstream(&hand.url);
        for _ in 0..5 {
            let body = call(&upstream).await;
            match answer {
                Answer::Stream => assert_eq!(body, "data: 1\n\ndata: 2\n\ndata: 3\n\n"),
                _ => assert_eq!(body, "{\"ok\":true}"),
            }
        }
        assert_eq!(hand.requests.load(Ordering::SeqCst), 5);
        assert_eq!(
            hand.connections.load(Ordering::SeqCst),
            1,
            "five calls one after another need one connection"
        );
    }
}

#[tokio::test]
async fn a_body_read_to_its_length_but_not_polled_to_its_end_still_returns_its_connection() {
    // hyper's server stops polling a body of known length once it has written that many bytes.
    let hand = hand_upstream(Answer::Json).await;
    let upstream = upstream(&hand.url);
    for _ in 0..3 {
        let response = upstream.send(get(&upstream), 0).await.unwrap();
        let mut body = response.into_body();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "{\"ok\":true}");
        assert!(http_body::Body::is_end_stream(&body));
        drop(body);
    }
    assert_eq!(hand.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_not_used_again() {
    let hand = hand_upstream(Answer::JsonThenClose).await;
    let upstream = upstream(&hand.url);
    for round in 1..=3 {
        assert_eq!(call(&upstream).await, "{\"ok\":true}");
        // The upstream has closed this one; the next call must not fail on it.
        assert_eq!(until(&hand.connections, &hand.changed, round).await, round);
    }
    assert_eq!(hand.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_stream_the_client_abandons_closes_its_connection() {
    let hand = hand_upstream(Answer::Stream).await;
    let upstream = upstream(&hand.url);
    let response = upstream.send(get(&upstream), 0).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "data: 1\n\n");
    drop(body);
    assert_eq!(
        until(&hand.closed_by_gateway, &hand.changed, 1).await,
        1,
        "the half-read connection is closed, not pooled"
    );
    assert_eq!(call(&upstream).await, "data: 1\n\ndata: 2\n\ndata: 3\n\n");
    assert_eq!(hand.connections.load(Ordering::SeqCst), 2);
}
