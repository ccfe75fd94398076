//! The upstream's HTTP/1.1 connections, each driven by the task of the call that holds it.
//!
//! hyper's pooled client runs every connection as a task of its own and hands the response
//! body to the caller's task over a one-slot channel: each SSE event then costs two task wake-ups
//! and its own write to the client, even when the upstream sent twenty events in one packet.
//! Here the call's task polls the connection itself — while it sends the request, and from the
//! response body whenever the body has nothing decoded — so an event costs one wake-up, and
//! everything one read brought in is decoded within one poll of the client's connection, which
//! hyper then writes in one `writev` (never holding a frame back for more to arrive).
//!
//! HTTP/1.1 only, as nginx speaks to its upstreams: a connection serves one call at a time and
//! goes back to a small LIFO pool when its response has been read to the end.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::UpstreamBody;
use crate::body::BoxError;

type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Why a call got no response head from the pool.
#[derive(Debug)]
pub enum PoolError {
    /// No connection could be made (refused, unreachable, TLS handshake failed, timed out).
    Connect(BoxError),
    /// A new connection closed before it could take the request.
    Closed,
    /// The exchange failed after a connection was made.
    Http(hyper::Error),
}

/// Idle connections to one upstream origin.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// One HTTP/1.1 connection: where requests go in, and the state machine that moves its bytes.
struct Conn {
    sender: http1::SendRequest<UpstreamBody>,
    /// `None` once the connection has closed.
    driver: Option<http1::Connection<Stream, UpstreamBody>>,
}

impl Conn {
    /// Reads, decodes and writes whatever the connection can right now; `driver` becomes `None`
    /// once it has closed (its error, if any, reaches the call through the response or body).
    fn drive(driver: &mut Option<http1::Connection<Stream, UpstreamBody>>, cx: &mut Context<'_>) {
        if let Some(connection) = driver
            && let Poll::Ready(result) = Pin::new(connection).poll(cx)
        {
            if let Err(error) = result {
                tracing::debug!(%error, "upstream connection closed with an error");
            }
            *driver = None;
        }
    }

    fn closed(&self) -> bool {
        self.driver.is_none() || self.sender.is_closed()
    }
}

impl Pool {
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Pool {
        Pool {
            connector,
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
        }
    }

    /// Sends `request` on an idle connection, or a new one, driving it until the response head
    /// arrives. A request an idle connection could not take (it had closed in the meantime) is
    /// sent once more on a new connection; one that may have reached the upstream never is.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, PoolError> {
        let uri = request.uri().clone();
        origin_form(&mut request);
        let (mut conn, mut fresh) = match self.checkout() {
            Some(conn) => (conn, false),
            None => (self.connect(&uri).await?, true),
        };
        loop {
            let Conn { sender, driver } = &mut conn;
            let ready = poll_fn(|cx| {
                Conn::drive(driver, cx);
                if driver.is_none() {
                    return Poll::Ready(false);
                }
                sender.poll_ready(cx).map(|r| r.is_ok())
            })
            .await;
            if !ready {
                if fresh {
                    return Err(PoolError::Closed);
                }
                (conn, fresh) = (self.connect(&uri).await?, true);
                continue;
            }
            let mut response = std::pin::pin!(sender.try_send_request(request));
            let answered = poll_fn(|cx| {
                Conn::drive(driver, cx);
                response.as_mut().poll(cx)
            })
            .await;
            match answered {
                Ok(response) => {
                    let pool = Arc::clone(self);
                    return Ok(response.map(|body| PooledBody {
                        body,
                        conn: Some(conn),
                        pool,
                    }));
                }
                Err(mut error) => match error.take_message() {
                    // Never written: safe to send again, once, on a new connection.
                    Some(unsent) if !fresh => {
                        request = unsent;
                        (conn, fresh) = (self.connect(&uri).await?, true);
                    }
                    _ => return Err(PoolError::Http(error.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(Idle { mut conn, since }) = idle.pop() {
            if since.elapsed() >= self.idle_timeout {
                // Every connection below this one is older still.
                idle.clear();
                return None;
            }
            // One poll with no one to wake: a connection the upstream closed while it sat idle
            // reads its end now instead of failing the call.
            Conn::drive(&mut conn.driver, &mut Context::from_waker(Waker::noop()));
            if !conn.closed() {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn) {
        if conn.closed() || !conn.sender.is_ready() || self.max_idle == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Oldest first: drop those past the idle timeout, and the oldest past the cap.
        let expired = idle
            .iter()
            .take_while(|i| i.since.elapsed() >= self.idle_timeout)
            .count();
        let over = (idle.len() - expired + 1).saturating_sub(self.max_idle);
        idle.drain(..expired + over);
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    async fn connect(&self, uri: &Uri) -> Result<Conn, PoolError> {
        let stream = self
            .connector
            .clone()
            .call(uri.clone())
            .await
            .map_err(PoolError::Connect)?;
        let (sender, driver) = http1::Builder::new()
            .handshake(stream)
            .await
            .map_err(PoolError::Http)?;
        Ok(Conn {
            sender,
            driver: Some(driver),
        })
    }
}

/// An HTTP/1.1 request line carries the path and query; the authority goes in `Host`.
fn origin_form(request: &mut Request<UpstreamBody>) {
    let uri = request.uri().clone();
    if let Some(authority) = uri.authority()
        && let Ok(host) = http::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(http::header::HOST, host);
    }
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
}

/// An upstream response body that drives its own connection, and gives it back to the pool
/// once read to the end.
pub struct PooledBody {
    body: Incoming,
    /// `None` once given back (or closed).
    conn: Option<Conn>,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody").finish_non_exhaustive()
    }
}

impl PooledBody {
    /// The body ended: one more turn of the connection takes it back to idle, and it goes
    /// back to the pool if it is ready for another call.
    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(mut conn) = self.conn.take() {
            Conn::drive(&mut conn.driver, cx);
            self.pool.checkin(conn);
        }
    }
}

impl Drop for PooledBody {
    /// hyper stops polling a body of known length once it has written that many bytes: read to
    /// its end, the connection still goes back to the pool.
    fn drop(&mut self) {
        if self.conn.is_some() && self.body.is_end_stream() {
            self.release(&mut Context::from_waker(Waker::noop()));
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let mut polled = Pin::new(&mut this.body).poll_frame(cx);
        if polled.is_pending()
            && let Some(conn) = this.conn.as_mut()
        {
            // Nothing decoded yet: let the connection read and decode what has arrived.
            Conn::drive(&mut conn.driver, cx);
            polled = Pin::new(&mut this.body).poll_frame(cx);
        }
        if let Poll::Ready(None) = polled {
            this.release(cx);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
