//! A connection that never sends a byte is closed after the header read timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use tollgate_proxy::ProxyBody;
use tollgate_proxy::server::{ServerOptions, serve};

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_read_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ServerOptions {
        max_header_bytes: 65536,
        header_read_timeout: Duration::from_millis(200),
        drain_timeout: Duration::from_secs(1),
        tls: None,
    };
    tokio::spawn(serve(
        listener,
        options,
        |_req| async { http::Response::new(ProxyBody::empty()) },
        std::future::pending(),
    ));
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "still open after {:?}", started.elapsed());
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "closed too early: {:?}",
        started.elapsed()
    );
}
