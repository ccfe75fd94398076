//! Concurrency mode: hold N slow streams open through a fresh tollgate at once and see what
//! each open stream costs in resident memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::HeaderValue;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{self, Prepared, exchange};
use crate::error::BenchError;
use crate::lab;
use crate::options::Options;
use crate::otlp;
use crate::procstat;
use crate::scenario::{OTHER_EVENTS, STREAM_DELTAS, Scenario};
use crate::stats::Recorder;

/// Streams opened per ramp step, and the pause between steps (keeps accept queues sane).
const RAMP_STEP: usize = 100;
const RAMP_PAUSE: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct StreamsResult {
    pub streams: usize,
    pub hold: Duration,
    /// Most streams seen open at the same time.
    pub max_open: usize,
    pub idle_rss_kib: u64,
    /// Highest RSS sampled while the streams were open.
    pub open_rss_kib: u64,
    pub peak_rss_kib: Option<u64>,
    pub stream_p50_ms: f64,
    pub ok: u64,
    pub errors: crate::stats::Errors,
    /// Whether the gateway exported OTLP to a receiver meanwhile (as in the suite).
    pub otlp: bool,
}

impl StreamsResult {
    pub fn per_stream_kib(&self) -> f64 {
        self.open_rss_kib.saturating_sub(self.idle_rss_kib) as f64 / self.streams.max(1) as f64
    }
}

pub async fn run(tollgate: &std::path::Path, opts: &Options) -> Result<StreamsResult, BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("tollgate-bench-")
        .tempdir()?;
    let mock = lab::start_mock(tollgate).await?;
    // Export on, as in the suite, when a receiver can run (the report says whether it did).
    let receiver = match otlp::python() {
        Ok(python) if !opts.no_otlp => otlp::Receiver::start(&python).await.ok(),
        _ => None,
    };
    let env = receiver
        .as_ref()
        .map(otlp::Receiver::env)
        .unwrap_or_default();
    let (gateway, key) =
        lab::start_tollgate_with(tollgate, dir.path(), mock.addr, !opts.no_limits, None, &env)
            .await?;
    let authorization = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
        BenchError::Internal(format!("the team key {key:?} is not a valid header value"))
    })?;
    let origin = format!("http://{}", gateway.addr);
    let fast = Prepared::new(&origin, &authorization, Scenario::ResponsesStream.request())
        .ok_or_else(|| BenchError::Internal(format!("{origin} is not a valid URI")))?;
    let delay_ms = (opts.hold().as_millis() as u64 / (STREAM_DELTAS as u64 + OTHER_EVENTS)).max(1);
    let slow = Arc::new(
        fast.clone()
            .with_header("x-mock-chunk-delay-ms", HeaderValue::from(delay_ms)),
    );
    let client = client::new_client();

    // Warm up (pool, allocator, lazily built state), then let the gateway go quiet.
    let fast = Arc::new(fast);
    crate::load::closed_loop(
        &client,
        &fast,
        8,
        Duration::from_millis(500),
        opts.timeout(),
    )
    .await?;
    drop(client);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let idle_rss_kib = procstat::rss_kib(gateway.pid).unwrap_or(0);
    procstat::reset_peak_rss(gateway.pid);

    let client = client::new_client();
    let open = Arc::new(AtomicUsize::new(0));
    let timeout = opts.hold() * 3 + opts.timeout();
    let mut tasks = JoinSet::new();
    for i in 0..opts.streams {
        if i > 0 && i % RAMP_STEP == 0 {
            tokio::time::sleep(RAMP_PAUSE).await;
        }
        let (client, slow, open) = (client.clone(), Arc::clone(&slow), Arc::clone(&open));
        tasks.spawn(async move {
            let counter = Arc::clone(&open);
            let outcome = exchange(&client, &slow, Instant::now(), timeout, move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .await;
            open.fetch_sub(1, Ordering::SeqCst);
            outcome
        });
    }
    // Sample while the streams are open, until the first ones start finishing. RSS only
    // grows while they open and the allocator keeps what it got, so the highest sample is
    // the one with (nearly) all streams open.
    let started = Instant::now();
    let mut max_open = 0;
    let mut open_rss_kib = idle_rss_kib;
    while started.elapsed() < opts.hold().mul_f64(0.9) {
        max_open = max_open.max(open.load(Ordering::SeqCst));
        open_rss_kib = open_rss_kib.max(procstat::rss_kib(gateway.pid).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peak_rss_kib = procstat::peak_rss_kib(gateway.pid);
    let mut recorder = Recorder::new()?;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outcome) => recorder.record(&outcome),
            Err(e) => recorder.record(&Err(client::Failure::Transport(e.to_string()))),
        }
    }
    let latency = recorder.summary();
    gateway.stop().await;
    mock.stop().await;
    let otlp = receiver.is_some();
    if let Some(receiver) = receiver {
        receiver.stop().await;
    }
    Ok(StreamsResult {
        streams: opts.streams,
        hold: opts.hold(),
        max_open,
        idle_rss_kib,
        open_rss_kib,
        peak_rss_kib,
        stream_p50_ms: latency.p50,
        ok: latency.ok,
        errors: latency.errors,
        otlp,
    })
}
