//! `tollgate-bench`: starts the mock upstream, nginx and tollgate as separate processes, drives
//! the same load through each, and prints a Markdown report (optionally to BENCHMARKS.md).
//! `tollgate-bench report-scale` instead times spend reports over a large ledger;
//! `tollgate-bench soak` reads the gateway's memory over a million calls per store,
//! `tollgate-bench pathological` what hostile bodies cost the gateway (`pathological.rs`), and
//! `tollgate-bench websocket` what a Codex turn costs over the Responses WebSocket against
//! HTTP SSE (`websocket.rs`), and `tollgate-bench intake` whether a flood of OTLP exports
//! slows proxied calls (`intake.rs`), and `tollgate-bench console-scale` how long each web
//! console page takes over a large ledger (`console_scale.rs`).

mod client;
mod console_scale;
mod error;
mod intake;
mod lab;
mod ledger_writer;
mod load;
mod machine;
mod micro;
mod nginx;
mod options;
mod otlp;
mod pathological;
mod pgdb;
mod procs;
mod procstat;
mod report;
mod report_scale;
mod scenario;
mod sections;
mod soak;
mod stats;
mod streams;
mod suite;
mod websocket;

use std::time::Instant;

use anyhow::Context;
use clap::Parser;

use crate::lab::Lab;
use crate::options::Options;
use crate::report::Report;

fn main() -> anyhow::Result<()> {
    // `report-scale` measures the store, not the proxy: its own options, no processes to start.
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("report-scale") {
        return report_scale::main(args.skip(1));
    }
    if args.peek().map(String::as_str) == Some("console-scale") {
        return console_scale::main(args.skip(1));
    }
    if args.peek().map(String::as_str) == Some("soak") {
        return soak::main(args.skip(1));
    }
    if args.peek().map(String::as_str) == Some("pathological") {
        return pathological::main(args.skip(1));
    }
    if args.peek().map(String::as_str) == Some("intake") {
        return intake::main(args.skip(1));
    }
    if args.peek().map(String::as_str) == Some("websocket") {
        return websocket::main(args.skip(1));
    }
    if args.peek().map(String::as_str) == Some("ledger-writer") {
        return ledger_writer::main(args.skip(1));
    }
    let opts = Options::parse().resolved();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        // Ctrl-C drops the run, and with it every process it started and the PostgreSQL
        // database (their `Drop`s), instead of leaving them behind.
        tokio::select! {
            outcome = run(opts) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    })
}

async fn run(opts: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let command = options::command_line();
    let tollgate = procs::tollgate_binary(opts.tollgate.as_deref())?;
    let nginx_bin = nginx::find(opts.nginx.as_deref()).map_err(|e| e.to_string());
    let mut machine = machine::Machine::describe(&tollgate, nginx_bin.as_deref().ok()).await;
    if let Some(commit) = &opts.tollgate_commit {
        machine.commit = Some(commit.clone());
    }
    eprintln!(
        "tollgate-bench: {} cores, {} run(s), rates {:?} req/s, {} s windows; this takes a while",
        machine.cores, opts.runs, opts.rates, opts.duration
    );

    let results = if opts.streams_only {
        None
    } else {
        let mut lab = Lab::start(&tollgate, nginx_bin.as_deref(), &opts).await?;
        for u in &lab.unavailable {
            eprintln!("{} will not be measured: {}", u.kind.label(), u.reason);
        }
        if let Some(reason) = &lab.otlp_off {
            eprintln!("tollgate runs without OTLP export: {reason}");
        }
        let results = suite::run(&mut lab, &opts).await;
        let otlp = lab.stop().await;
        let mut results = results?;
        for (kind, counts) in &otlp {
            let calls = results.calls.get(kind).copied().unwrap_or(0);
            match counts {
                Ok(c) => eprintln!(
                    "OTLP {}: {calls} calls sent, {} spans, {} log records, {} metric points received",
                    kind.label(),
                    c.spans,
                    c.log_records,
                    c.metric_points
                ),
                Err(e) => eprintln!("OTLP {}: counts unknown: {e}", kind.label()),
            }
        }
        results.otlp = otlp;
        Some(results)
    };

    let streams = if opts.streams > 0 {
        eprintln!(
            "concurrency: {} streams of ~{} s through a fresh tollgate",
            opts.streams, opts.hold
        );
        let outcome = streams::run(&tollgate, &opts).await;
        if let Ok(s) = &outcome {
            eprintln!(
                "concurrency: {} open at once, {:.1} KiB RSS per open stream, {} errors",
                s.max_open,
                s.per_stream_kib(),
                s.errors.total()
            );
        }
        Some(outcome.map_err(|e| e.to_string()))
    } else {
        None
    };

    let micro = micro::criterion_dir()
        .map(|dir| micro::load(&dir))
        .unwrap_or_default();
    let report = report::render(&Report {
        opts: &opts,
        machine: &machine,
        command,
        results: results.as_ref(),
        streams: streams.as_ref().map(|s| s.as_ref().map_err(Clone::clone)),
        micro,
        took: started.elapsed(),
    });
    print!("{report}");
    if let Some(path) = &opts.write {
        // Soak, pathological, intake, console, WebSocket and ledger-writer sections come from
        // their own commands: keep them.
        let previous = std::fs::read_to_string(path).unwrap_or_default();
        let report = sections::carry_over(&previous, &report);
        std::fs::write(path, &report).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!("took {}", report::human_duration(started.elapsed()));
    Ok(())
}
