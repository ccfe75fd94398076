//! `tollgate-bench intake`: whether a flood of OTLP exports at the intake (`/otlp/v1/traces`,
//! Codex-shaped: hundreds of spans, protobuf, with a team key) slows the calls tollgate proxies
//! at the same time. Proxied calls (Responses, streamed) are timed direct to the mock, through a
//! quiet tollgate, and through tollgate while `--flooders` clients send exports back to back,
//! in alternating rounds; the report is their latency, what tollgate adds over direct in each
//! state, the exports the intake took per second and the gateway's CPU.
//!
//! The gateway's per-key export limit is lifted for the run, so every export is decoded,
//! stamped, read for Codex's signals and re-encoded (no collector is configured, so the
//! re-encoded export is then dropped and counted, as in a deployment whose collector is down).
//!
//! A benchmark, not a test: it prints numbers, and fails only when a proxied call fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http::HeaderValue;
use http_body_util::Full;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use tokio::time::Instant;

use crate::client::{self, Prepared};
use crate::lab;
use crate::procs;
use crate::procstat::{self, CpuMark};
use crate::scenario::Scenario;
use crate::stats::{Latency, Recorder};

#[derive(Debug, Parser)]
#[command(name = "tollgate-bench intake")]
struct Args {
    /// Proxied calls per measured cell (direct, quiet, flooded) in each round.
    #[arg(long, default_value_t = 500)]
    calls: u64,
    /// Rounds; each runs every cell once, flooded and quiet alternating first.
    #[arg(long, default_value_t = 4)]
    rounds: u64,
    /// Concurrent clients sending proxied calls back to back.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Concurrent clients sending exports back to back during the flooded cell.
    #[arg(long, default_value_t = 4)]
    flooders: usize,
    /// Spans per export (Codex's exports hold up to 512).
    #[arg(long, default_value_t = 500)]
    spans: usize,
    /// The tollgate binary (default: next to this executable).
    #[arg(long)]
    tollgate: Option<std::path::PathBuf>,
}

/// Runs with the arguments after `intake`.
pub fn main(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let args = Args::parse_from(std::iter::once("intake".to_owned()).chain(args));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(args))
}

/// One cell's latencies over all rounds, and what the flood did meanwhile.
#[derive(Default)]
struct Cell {
    recorder: Option<Recorder>,
    seconds: f64,
    exports: u64,
    refused: u64,
    cpu_seconds: f64,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let tollgate = std::fs::canonicalize(procs::tollgate_binary(args.tollgate.as_deref())?)?;
    let dir = tempfile::Builder::new()
        .prefix("tollgate-bench-")
        .tempdir()?;
    let mut mock = lab::start_mock(&tollgate).await?;
    let lifted = [(
        "TOLLGATE_INTAKE_EXPORTS_PER_MINUTE",
        "100000000".to_string(),
    )];
    let (mut gateway, key) =
        lab::start_tollgate_with(&tollgate, dir.path(), mock.addr, true, None, &lifted).await?;
    let authorization = HeaderValue::from_str(&format!("Bearer {key}"))?;
    let spec = Scenario::ResponsesStream.request();
    let through = Prepared::new(
        &format!("http://{}", gateway.addr),
        &authorization,
        spec.clone(),
    )
    .context("the gateway's URL")?;
    let direct = Prepared::new(
        &format!("http://{}", mock.addr),
        &HeaderValue::from_static("Bearer sk-anything"),
        spec,
    )
    .context("the mock's URL")?;
    let export = Bytes::from(codex_like_export(args.spans));
    let export_url = format!("http://{}/otlp/v1/traces", gateway.addr);
    eprintln!(
        "intake: {} calls x {} rounds per cell, {} clients, {} flooders sending {} KiB exports",
        args.calls,
        args.rounds,
        args.clients,
        args.flooders,
        export.len() / 1024
    );

    // Warm-up: pools, key cache, allocator.
    drive(&through, args.clients, 100).await?;
    drive(&direct, args.clients, 100).await?;

    let mut cells: [Cell; 3] = Default::default();
    for round in 0..args.rounds {
        let flood_first = round % 2 == 0;
        for state in [
            0usize,
            if flood_first { 2 } else { 1 },
            if flood_first { 1 } else { 2 },
        ] {
            let target = if state == 0 { &direct } else { &through };
            let stop = Arc::new(AtomicBool::new(false));
            let sent = Arc::new(AtomicU64::new(0));
            let refused = Arc::new(AtomicU64::new(0));
            let flood: Vec<_> = if state == 2 {
                (0..args.flooders)
                    .map(|_| {
                        tokio::spawn(flood_loop(
                            export_url.clone(),
                            authorization.clone(),
                            export.clone(),
                            Arc::clone(&stop),
                            Arc::clone(&sent),
                            Arc::clone(&refused),
                        ))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let cpu = CpuMark::take(gateway.pid);
            let started = Instant::now();
            let recorder = drive(target, args.clients, args.calls).await?;
            let seconds = started.elapsed().as_secs_f64();
            let cpu_seconds = cpu
                .and_then(|m| m.elapsed(procstat::clock_ticks()))
                .map_or(0.0, |d| d.as_secs_f64());
            stop.store(true, Ordering::Relaxed);
            for task in flood {
                let _ = task.await;
            }
            let cell = &mut cells[state];
            cell.seconds += seconds;
            cell.exports += sent.load(Ordering::Relaxed);
            cell.refused += refused.load(Ordering::Relaxed);
            cell.cpu_seconds += cpu_seconds;
            match &mut cell.recorder {
                Some(all) => all.merge(&recorder)?,
                None => cell.recorder = Some(recorder),
            }
        }
        mock.check_alive()?;
        gateway.check_alive()?;
        eprintln!("intake: round {}/{} done", round + 1, args.rounds);
    }
    gateway.stop().await;
    mock.stop().await;

    let summaries: Vec<Latency> = cells
        .iter()
        .map(|c| {
            c.recorder
                .as_ref()
                .map(Recorder::summary)
                .unwrap_or_default()
        })
        .collect();
    print!("{}", render(&args, &cells, &summaries, export.len()));
    let failed: u64 = summaries.iter().map(|l| l.errors.total()).sum();
    anyhow::ensure!(failed == 0, "{failed} proxied calls failed");
    Ok(())
}

/// `calls` proxied calls from `clients` loops; their latencies.
async fn drive(target: &Prepared, clients: usize, calls: u64) -> anyhow::Result<Recorder> {
    let next = Arc::new(AtomicU64::new(0));
    let loops: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (target, next) = (target.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let http = client::new_client();
                let mut outcomes = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < calls {
                    let scheduled = Instant::now();
                    let outcome =
                        client::exchange(&http, &target, scheduled, Duration::from_secs(30), || {})
                            .await;
                    outcomes.push(outcome);
                }
                outcomes
            })
        })
        .collect();
    let mut recorder = Recorder::new()?;
    for task in loops {
        for outcome in task.await? {
            recorder.record(&outcome);
        }
    }
    Ok(recorder)
}

/// One flooder: exports back to back until `stop`; counts accepted and refused.
async fn flood_loop(
    url: String,
    authorization: HeaderValue,
    body: Bytes,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) {
    let http = client::new_client();
    while !stop.load(Ordering::Relaxed) {
        let request = http::Request::post(&url)
            .header(http::header::AUTHORIZATION, authorization.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(body.clone()));
        let Ok(request) = request else { return };
        match http.request(request).await {
            Ok(response) if response.status().is_success() => {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A trace export shaped like Codex's: `spans` spans with Codex's attribute counts and sizes.
fn codex_like_export(spans: usize) -> Vec<u8> {
    let text = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    };
    let int = |key: &str, value: i64| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    };
    let spans = (0..spans)
        .map(|i| Span {
            trace_id: vec![0x5b; 16],
            span_id: (i as u64).to_be_bytes().to_vec(),
            parent_span_id: vec![0x01; 8],
            name: if i % 50 == 0 {
                "session_task.turn"
            } else {
                "fs.get_metadata"
            }
            .into(),
            start_time_unix_nano: 1_800_000_000_000_000_000 + i as u64,
            end_time_unix_nano: 1_800_000_000_100_000_000 + i as u64,
            attributes: vec![
                text("code.file.path", "exec-server/src/local_file_system.rs"),
                text("code.module.name", "codex_exec_server::local_file_system"),
                int("code.line.number", 202),
                int("thread.id", 2),
                text("thread.name", "codex-main"),
                text("target", "codex_exec_server::local_file_system"),
                int("busy_ns", 19_196),
                int("idle_ns", 145_643),
            ],
            ..Span::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "codex_exec"),
                    text("service.version", "0.169.0"),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

fn render(args: &Args, cells: &[Cell; 3], latency: &[Latency], export_bytes: usize) -> String {
    let direct = &latency[0];
    let mut out = String::new();
    out.push_str("## Proxied calls while the OTLP intake is flooded\n\n");
    out.push_str(&format!(
        "`{}`; {} cores; Responses streamed (20 deltas) from {} clients; {} flooders sending \
         {} KiB trace exports of {} spans back to back, one team key, no export limit.\n\n",
        crate::options::command_line(),
        std::thread::available_parallelism().map_or(1, usize::from),
        args.clients,
        args.flooders,
        export_bytes / 1024,
        args.spans,
    ));
    out.push_str(
        "| target | calls | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms | exports/s taken | gateway CPU s per 1k calls |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (i, label) in [
        "direct to the mock",
        "tollgate, intake quiet",
        "tollgate, intake flooded",
    ]
    .iter()
    .enumerate()
    {
        let l = &latency[i];
        let c = &cells[i];
        let (added50, added99) = if i == 0 {
            ("—".to_string(), "—".to_string())
        } else {
            (
                format!("{:.3}", l.p50 - direct.p50),
                format!("{:.3}", l.p99 - direct.p99),
            )
        };
        let exports = if i == 2 && c.seconds > 0.0 {
            format!(
                "{:.0} ({} refused)",
                c.exports as f64 / c.seconds,
                c.refused
            )
        } else {
            "—".to_string()
        };
        let cpu = if i == 0 || l.ok == 0 {
            "—".to_string()
        } else {
            format!("{:.3}", c.cpu_seconds * 1000.0 / l.ok as f64)
        };
        out.push_str(&format!(
            "| {label} | {} | {:.3} | {:.3} | {:.3} | {added50} | {added99} | {exports} | {cpu} |\n",
            l.ok, l.p50, l.p90, l.p99
        ));
    }
    out
}
