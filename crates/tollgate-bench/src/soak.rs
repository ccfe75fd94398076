//! `tollgate-bench soak`: does the gateway's memory stay flat under sustained load? Drives N
//! non-streamed chat calls through a fresh tollgate per store (a SQLite file, PostgreSQL over
//! TCP) and reads its resident memory every `--every` calls, once the ledger queue has drained,
//! so what is left is what the process keeps, not what is in flight.
//!
//! A benchmark, not a test: it prints a table for a person to compare. The leak it was written
//! for grew ~0.7 KB per call and never came back, so the ratio of RSS at the last sample to RSS
//! at the first is the number to watch (flat is ~1.0×).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;
use tollgate_store::testdb::TestDb;

use crate::client::{HttpClient, Prepared, exchange, new_client};
use crate::lab;
use crate::procs;
use crate::procstat;
use crate::scenario::Scenario;

#[derive(Debug, Parser)]
#[command(name = "tollgate-bench soak")]
struct Args {
    /// Non-streamed chat calls to send through each store's gateway.
    #[arg(long, default_value_t = 1_000_000)]
    calls: u64,
    /// Read RSS every this many calls (the table has one row per reading).
    #[arg(long, default_value_t = 100_000)]
    every: u64,
    /// Stores to run the gateway on, each a fresh database.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "sqlite,postgres"
    )]
    stores: Vec<StoreKind>,
    /// Concurrent closed-loop workers.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Run without the bench team's budget and rate limit (by default both apply, never binding).
    #[arg(long)]
    no_limits: bool,
    /// The tollgate binary (default: next to this executable).
    #[arg(long)]
    tollgate: Option<PathBuf>,
    /// Per-request timeout, in seconds; a request that takes longer counts as an error.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Also put the section into this file (e.g. BENCHMARKS.md), replacing its previous soak
    /// section; the main report keeps it when it rewrites the file.
    #[arg(long)]
    write: Option<PathBuf>,
}

/// The heading of the section this writes; the main report carries it over by this heading.
pub const HEADING: &str = "## Memory under sustained load";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    fn label(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "SQLite file",
            StoreKind::Postgres => "PostgreSQL (TCP)",
        }
    }
}

/// One store's run: RSS (KiB) before load and after each `--every` calls.
struct Soak {
    store: StoreKind,
    idle_kib: u64,
    samples: Vec<(u64, u64)>,
    peak_kib: u64,
    errors: u64,
    calls_per_sec: f64,
}

/// Largest `/metrics` page read (it is a few KB).
const METRICS_LIMIT: usize = 1 << 20;
/// How long to wait for the ledger queue to drain before reading RSS anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs with the arguments after `soak`.
pub fn main(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let args = Args::parse_from(std::iter::once("soak".to_owned()).chain(args));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let tollgate = procs::tollgate_binary(args.tollgate.as_deref())?;
    let mut soaks = Vec::new();
    for &store in &args.stores {
        eprintln!(
            "soak: {} calls through tollgate on {}",
            args.calls,
            store.label()
        );
        soaks.push(soak(&tollgate, store, &args).await?);
    }
    let section = render(&args, &soaks);
    print!("{section}");
    if let Some(path) = &args.write {
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        std::fs::write(path, crate::sections::replace(&doc, HEADING, &section))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

async fn soak(tollgate: &std::path::Path, store: StoreKind, args: &Args) -> anyhow::Result<Soak> {
    // The CLI runs in the data directory, so a relative `--tollgate` must not stay relative.
    let tollgate = &std::fs::canonicalize(tollgate)?;
    let dir = tempfile::Builder::new()
        .prefix("tollgate-soak-")
        .tempdir()?;
    // Held until the gateway has stopped; dropping it drops the database.
    let postgres = match store {
        StoreKind::Sqlite => None,
        StoreKind::Postgres => Some(TestDb::postgres().await),
    };
    let mock = lab::start_mock(tollgate).await?;
    let (gateway, key) = lab::start_tollgate_on(
        tollgate,
        dir.path(),
        mock.addr,
        !args.no_limits,
        postgres.as_ref().map(|db| db.url.as_str()),
    )
    .await?;
    let origin = format!("http://{}", gateway.addr);
    let authorization = http::HeaderValue::from_str(&format!("Bearer {key}"))?;
    let prepared = Arc::new(
        Prepared::new(&origin, &authorization, Scenario::ChatJson.request())
            .context("building the request")?,
    );
    let client = new_client();
    let timeout = Duration::try_from_secs_f64(args.timeout.max(0.001))?;

    // Warm up (connections, caches, the first ledger batches), then read the idle baseline.
    let mut errors = drive(&client, &prepared, args.concurrency, 2_000, timeout).await;
    wait_for_drain(&origin).await;
    let idle_kib = procstat::rss_kib(gateway.pid).unwrap_or(0);
    procstat::reset_peak_rss(gateway.pid);

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut sent = 0;
    let every = args.every.max(1);
    while sent < args.calls {
        let n = every.min(args.calls - sent);
        errors += drive(&client, &prepared, args.concurrency, n, timeout).await;
        sent += n;
        let load_secs = started.elapsed().as_secs_f64();
        wait_for_drain(&origin).await;
        let rss = procstat::rss_kib(gateway.pid).unwrap_or(0);
        eprintln!(
            "soak: {}: {sent} calls, RSS {:.1} MiB, {errors} errors, {:.0} s",
            store.label(),
            mib(rss),
            load_secs
        );
        samples.push((sent, rss));
    }
    let calls_per_sec = sent as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let peak_kib = procstat::peak_rss_kib(gateway.pid).unwrap_or(0);
    let mut gateway = gateway;
    gateway.check_alive()?;
    gateway.stop().await;
    mock.stop().await;
    drop(postgres);
    Ok(Soak {
        store,
        idle_kib,
        samples,
        peak_kib,
        errors,
        calls_per_sec,
    })
}

/// Sends `calls` requests from `workers` back-to-back loops; returns how many failed.
async fn drive(
    client: &HttpClient,
    prepared: &Arc<Prepared>,
    workers: usize,
    calls: u64,
    timeout: Duration,
) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..workers.max(1) {
        let (client, prepared) = (client.clone(), Arc::clone(prepared));
        let (next, failed) = (Arc::clone(&next), Arc::clone(&failed));
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let began = tokio::time::Instant::now();
                if exchange(&client, &prepared, began, timeout, || ())
                    .await
                    .is_err()
                {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    failed.load(Ordering::Relaxed)
}

/// Waits until the gateway's `/metrics` shows an empty ledger queue (or [`DRAIN_TIMEOUT`]).
async fn wait_for_drain(origin: &str) {
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let Ok(uri) = format!("{origin}/metrics").parse::<http::Uri>() else {
        return;
    };
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while Instant::now() < deadline {
        let Ok(request) = http::Request::get(uri.clone())
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", crate::lab::METRICS_TOKEN),
            )
            .body(Empty::new())
        else {
            return;
        };
        #[allow(clippy::disallowed_methods)] // bounded by Limited
        let body = match client.request(request).await {
            Ok(response) => Limited::new(response.into_body(), METRICS_LIMIT)
                .collect()
                .await
                .ok(),
            Err(_) => None,
        };
        if let Some(body) = body {
            let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
            if queue_depth(&text) == Some(0) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("soak: the ledger queue did not drain within {DRAIN_TIMEOUT:?}; reading RSS anyway");
}

/// `tollgate_ledger_queue_depth` from Prometheus text.
fn queue_depth(metrics: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix("tollgate_ledger_queue_depth")?;
        if !rest.starts_with([' ', '{']) {
            return None;
        }
        let value = rest.rsplit(' ').next()?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn render(args: &Args, soaks: &[Soak]) -> String {
    let mut out = format!("{HEADING}\n\n");
    out.push_str(&format!(
        "A fresh tollgate per store (its default configuration, the bench team's budget and rate \
         limit on), driven by {} closed-loop workers sending non-streamed chat calls with one team \
         key and no session headers; RSS (MiB, `VmRSS`) read every {} calls once the ledger queue \
         has drained. Flat memory reads as a last ÷ first ratio near 1.0×.\n\n",
        args.concurrency,
        thousands(args.every)
    ));
    out.push_str("| calls |");
    for s in soaks {
        out.push_str(&format!(" {} |", s.store.label()));
    }
    out.push_str("\n|--:|");
    out.push_str(&"--:|".repeat(soaks.len()));
    out.push('\n');
    out.push_str("| idle (after 2,000 warm-up calls) |");
    for s in soaks {
        out.push_str(&format!(" {:.1} |", mib(s.idle_kib)));
    }
    out.push('\n');
    let rows = soaks.iter().map(|s| s.samples.len()).max().unwrap_or(0);
    for i in 0..rows {
        let calls = soaks
            .iter()
            .find_map(|s| s.samples.get(i).map(|(n, _)| *n))
            .unwrap_or(0);
        out.push_str(&format!("| {} |", thousands(calls)));
        for s in soaks {
            match s.samples.get(i) {
                Some((_, kib)) => out.push_str(&format!(" {:.1} |", mib(*kib))),
                None => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "| **last ÷ first reading** |{}\n| peak RSS (VmHWM) |{}\n| calls/s |{}\n| errors |{}\n",
        cells(soaks, |s| match (s.samples.first(), s.samples.last()) {
            (Some((_, first)), Some((_, last))) if *first > 0 => {
                format!("**{:.2}×**", *last as f64 / *first as f64)
            }
            _ => "—".into(),
        }),
        cells(soaks, |s| format!("{:.1}", mib(s.peak_kib))),
        cells(soaks, |s| format!("{:.0}", s.calls_per_sec)),
        cells(soaks, |s| s.errors.to_string()),
    ));
    out.push_str(&format!("\n`{}`\n", crate::options::command_line()));
    out
}

fn cells(soaks: &[Soak], cell: impl Fn(&Soak) -> String) -> String {
    soaks.iter().map(|s| format!(" {} |", cell(s))).collect()
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_queue_depth_from_prometheus_text() {
        let text = "# HELP x\ntollgate_ledger_queue_depth 0\ntollgate_requests_total{a=\"b\"} 3\n";
        assert_eq!(queue_depth(text), Some(0));
        assert_eq!(queue_depth("tollgate_ledger_queue_depth 17\n"), Some(17));
        assert_eq!(queue_depth("nothing here\n"), None);
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
    }
}
