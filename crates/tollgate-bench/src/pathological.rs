//! `tollgate-bench pathological`: what a hostile key holder's worst body costs the gateway.
//! Sends `--calls` parallel calls whose body is `--mib` MiB of one repeated character (one
//! tokenizer "word"), to an upstream told to report no usage so every one is estimated with the
//! tokenizer at settle, while `--workers` loops send ordinary calls. Prints the gateway's peak
//! RSS (VmHWM, reset after warm-up) and the ordinary calls' latency before and during.
//!
//! A benchmark, not a timed test: it prints numbers for a person to compare, and fails only when
//! a call fails.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use http::HeaderValue;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{self, Prepared, exchange};
use crate::lab;
use crate::load::closed_loop;
use crate::procs;
use crate::procstat;
use crate::scenario::{RequestSpec, Scenario};
use crate::stats::{Latency, Recorder};

#[derive(Debug, Parser)]
#[command(name = "tollgate-bench pathological")]
struct Args {
    /// Pathological calls sent at once.
    #[arg(long, default_value_t = 16)]
    calls: usize,
    /// Size of each pathological body in MiB (the default body limit is 32 MiB).
    #[arg(long, default_value_t = 31)]
    mib: usize,
    /// Concurrent loops sending ordinary calls (Responses, non-streamed) meanwhile.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Seconds of ordinary load measured before, and again from the first pathological call.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The `tollgate` binary (default: next to this executable).
    #[arg(long)]
    tollgate: Option<PathBuf>,
}

pub fn main(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let args = Args::parse_from(std::iter::once("pathological".to_string()).chain(args));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let tollgate = procs::tollgate_binary(args.tollgate.as_deref())?;
    let dir = tempfile::Builder::new()
        .prefix("tollgate-bench-")
        .tempdir()?;
    let mock = lab::start_mock(&tollgate).await?;
    let (gateway, key) = lab::start_tollgate(&tollgate, dir.path(), mock.addr, true).await?;
    let authorization = HeaderValue::from_str(&format!("Bearer {key}"))?;
    let origin = format!("http://{}", gateway.addr);
    let prepare = |spec: RequestSpec| {
        Prepared::new(&origin, &authorization, spec).context("the gateway's address is no URI")
    };
    let ordinary = Arc::new(prepare(Scenario::ResponsesJson.request())?);
    let hostile = Arc::new(
        prepare(hostile_request(args.mib))?
            .with_header("x-mock-no-usage", HeaderValue::from_static("1")),
    );
    let window = Duration::from_secs(args.seconds);
    let timeout = Duration::from_secs(120);

    // Warm up, then ordinary calls alone, then let the gateway go quiet.
    let client = client::new_client();
    closed_loop(
        &client,
        &ordinary,
        args.workers,
        Duration::from_secs(1),
        timeout,
    )
    .await?;
    let (before, _) = closed_loop(&client, &ordinary, args.workers, window, timeout).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_kib = procstat::rss_kib(gateway.pid).unwrap_or(0);
    procstat::reset_peak_rss(gateway.pid);
    let cpu = procstat::CpuMark::take(gateway.pid);

    let mut calls = JoinSet::new();
    for _ in 0..args.calls {
        let hostile = Arc::clone(&hostile);
        calls.spawn(async move {
            // A connection of its own each, so all of them are in flight at once.
            let client = client::new_client();
            exchange(&client, &hostile, Instant::now(), timeout, || ()).await
        });
    }
    let (during, _) = closed_loop(&client, &ordinary, args.workers, window, timeout).await?;
    let mut hostile_calls = Recorder::new()?;
    let mut slowest = Duration::ZERO;
    while let Some(joined) = calls.join_next().await {
        let outcome = joined.context("a pathological call's task failed")?;
        if let Ok(done) = &outcome {
            slowest = slowest.max(done.total);
        }
        hostile_calls.record(&outcome);
    }
    // Estimates settle after the response: give them the rest of a window to finish.
    tokio::time::sleep(window / 2).await;
    let peak_kib = procstat::peak_rss_kib(gateway.pid);
    let cpu_s = cpu
        .and_then(|mark| mark.elapsed(procstat::clock_ticks()))
        .map_or(f64::NAN, |d| d.as_secs_f64());
    gateway.stop().await;
    mock.stop().await;

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{} calls of {} MiB of one repeated character, upstream sending no usage (estimated at settle)",
        args.calls, args.mib
    );
    println!(
        "- gateway RSS: idle {:.0} MiB, peak (VmHWM) {}",
        mib(idle_kib),
        peak_kib.map_or("unknown".into(), |k| format!("{:.0} MiB", mib(k)))
    );
    println!(
        "- pathological calls: {} ok, {} failed, slowest {:.2} s; gateway CPU from their start {cpu_s:.1} s",
        hostile_calls.ok,
        hostile_calls.errors.total(),
        slowest.as_secs_f64()
    );
    print_latency("ordinary calls before", args.workers, &before.summary());
    print_latency("ordinary calls during", args.workers, &during.summary());
    let failed = hostile_calls.errors.total() + before.errors.total() + during.errors.total();
    anyhow::ensure!(failed == 0, "{failed} calls failed");
    Ok(())
}

fn print_latency(what: &str, workers: usize, l: &Latency) {
    println!(
        "- {what} ({workers} loops): {} ok, p50 {:.2} ms, p99 {:.2} ms, {} errors",
        l.ok,
        l.p50,
        l.p99,
        l.errors.total()
    );
}

/// A Responses call whose input is `mib` MiB (less the JSON around it) of the letter `a`.
fn hostile_request(mib: usize) -> RequestSpec {
    let head = br#"{"model":"gpt-5.5","input":""#;
    let tail = br#""}"#;
    let size = (mib * 1024 * 1024).max(head.len() + tail.len());
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head);
    body.resize(size - tail.len(), b'a');
    body.extend_from_slice(tail);
    let mut spec = Scenario::ResponsesJson.request();
    spec.body = body.into();
    spec
}
