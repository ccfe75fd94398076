//! The Markdown report: what ran where, the summary against nginx, a table per scenario, the
//! concurrency result, the microbenchmarks and how it was all measured.

mod cells;
mod method;
mod otlp;

use std::fmt::Write;
use std::time::Duration;

use cells::{Load, med, med_diff, med_ratio, one_line, signed_ms};

use crate::machine::{Machine, date_of};
use crate::micro::{Micro, human_ns};
use crate::options::Options;
use crate::scenario::TargetKind;
use crate::stats::Latency;
use crate::streams::StreamsResult;
use crate::suite::{CellRun, Results};

/// What tollgate does to each request in this build. Update it when a hot-path feature lands,
/// so every table says what it measured.
pub const FEATURES_ON: &str = "everything: auth (team key) + JSON inspection + metering (usage, tool calls, chat include_usage and strip) + pricing + ledger (batched; a SQLite file for *tollgate (SQLite)*, PostgreSQL over TCP for *tollgate (PostgreSQL)*) + a team budget and rate limit (set never to bind; off with --no-limits) + telemetry: Prometheus /metrics and OTLP/HTTP export of traces, metrics and logs to a real receiver, at the gateway's default export settings (off with --no-otlp)";

pub struct Report<'a> {
    pub opts: &'a Options,
    pub machine: &'a Machine,
    pub command: String,
    pub results: Option<&'a Results>,
    pub streams: Option<Result<&'a StreamsResult, String>>,
    pub micro: Vec<Micro>,
    pub took: Duration,
}

pub fn render(r: &Report<'_>) -> String {
    let mut out = String::new();
    out.push_str("# tollgate benchmarks\n\n");
    out.push_str(method::INTRO);
    header(&mut out, r);
    if let Some(results) = r.results {
        summary(&mut out, results, r.opts);
        otlp::section(&mut out, results);
        out.push_str("## Per scenario\n\n");
        out.push_str(method::TABLE_LEGEND);
        for &scenario in &r.opts.scenarios {
            cells::scenario_table(&mut out, results, r.opts, scenario);
        }
    }
    if let Some(streams) = &r.streams {
        streams_section(&mut out, streams);
    }
    micro_section(&mut out, &r.micro);
    out.push_str(method::METHOD);
    out
}

fn header(out: &mut String, r: &Report<'_>) {
    let m = r.machine;
    let o = r.opts;
    let rates: Vec<String> = o.rates.iter().map(u32::to_string).collect();
    let _ = writeln!(out, "## This run\n\n| | |\n|---|---|");
    let _ = writeln!(out, "| date | {} |", m.date);
    let _ = writeln!(
        out,
        "| machine | {} cores ({}), shared with other work: read the ratios, not the absolute times |",
        m.cores, m.cpu_model
    );
    let _ = writeln!(
        out,
        "| tollgate | {}{} |",
        m.tollgate_version.as_deref().unwrap_or("?"),
        m.commit
            .as_deref()
            .map(|c| format!(", commit {c}"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "| tollgate features on | {FEATURES_ON} |");
    if let Some(reason) = r.results.and_then(|res| res.otlp_off.as_deref()) {
        let _ = writeln!(
            out,
            "| **OTLP export** | **off in this run:** {} |",
            one_line(reason)
        );
    }
    if let Some(postgres) = r.results.and_then(|res| res.postgres.as_deref()) {
        let _ = writeln!(out, "| tollgate (PostgreSQL) | {postgres} |");
    }
    let _ = match &m.nginx_version {
        Some(version) => writeln!(
            out,
            "| nginx | {version} (1 worker process, unbuffered `proxy_pass`, keep-alive pool of 64 to the mock) |"
        ),
        None => writeln!(out, "| nginx | not found: its rows are empty |"),
    };
    let _ = writeln!(
        out,
        "| load | open loop at {} req/s: {} s measured after {} s warm-up; saturation: {} closed-loop workers for {} s (not for the paced scenario); every cell the median of {} run{} |",
        rates.join(" and "),
        o.duration,
        o.warmup,
        o.concurrency,
        o.saturation_secs,
        o.runs,
        if o.runs == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "| command | `{}` |", r.command);
    let _ = writeln!(out, "| took | {} |\n", human_duration(r.took));
}

fn summary(out: &mut String, results: &Results, opts: &Options) {
    let light = Load::Rate(0);
    let heavy = Load::Rate(opts.rates.len().saturating_sub(1));
    let (light_rate, heavy_rate) = (
        opts.rates.first().copied().unwrap_or(0),
        opts.rates.last().copied().unwrap_or(0),
    );
    let _ = writeln!(out, "## Summary: tollgate against nginx\n");
    let _ = writeln!(
        out,
        "Each tollgate target against nginx in the same run, per scenario, on the numbers it is \
         judged by: the **CPU ratio** (the proxy process's user + system time per call at \
         {heavy_rate} req/s, tollgate's over nginx's; the design's target is within 2× with every \
         feature on), **saturation** throughput as a share of nginx's, the **added p50 over \
         nginx** (the median latency tollgate adds over going direct at {light_rate} req/s, minus \
         what nginx adds) and peak RSS.\n"
    );
    let _ = writeln!(
        out,
        "| scenario | tollgate on | CPU ms / 1k req: tollgate / nginx | CPU ratio | saturation req/s: tollgate / nginx | saturation, % of nginx | added p50 ms: tollgate / nginx | added p50 over nginx | added p99 ms: tollgate / nginx | peak RSS MiB: tollgate / nginx |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    let gateways: Vec<TargetKind> = TargetKind::TOLLGATES
        .into_iter()
        .filter(|k| opts.targets.contains(k) && !results.unavailable.iter().any(|(u, _)| u == k))
        .collect();
    for &scenario in &opts.scenarios {
        let direct = results.runs(scenario, TargetKind::Direct);
        let nginx = results.runs(scenario, TargetKind::Nginx);
        let lat = |f: fn(&Latency) -> f64| move |c: &CellRun| light.latency(c).map(f);
        let added = |runs, f: fn(&Latency) -> f64| signed_ms(med_diff(runs, direct, lat(f)));
        let cpu = |runs| whole(med(runs, |c| heavy.cpu(c)));
        let sat = |runs| whole(med(runs, CellRun::saturation_rps));
        let rss = |runs| {
            med(runs, |c| c.peak_rss_kib.map(|k| k as f64 / 1024.0))
                .map_or_else(|| "—".into(), |v| format!("{v:.1}"))
        };
        for &kind in &gateways {
            let tollgate = results.runs(scenario, kind);
            let cpu_ratio = med_ratio(tollgate, nginx, |c| heavy.cpu(c))
                .map_or_else(|| "—".into(), |v| format!("**{v:.2}×**"));
            let sat_share = med_ratio(tollgate, nginx, CellRun::saturation_rps)
                .map_or_else(|| "—".into(), |v| format!("**{:.0} %**", v * 100.0));
            // Paired run by run: (tollgate − direct) − (nginx − direct) = tollgate − nginx.
            let over_nginx = med_diff(tollgate, nginx, lat(|l| l.p50))
                .map_or_else(|| "—".into(), |v| format!("**{v:+.2}**"));
            let _ = writeln!(
                out,
                "| {} | {} | {} / {} | {cpu_ratio} | {} / {} | {sat_share} | {} / {} | {over_nginx} | {} / {} | {} / {} |",
                scenario.title(),
                store(kind),
                cpu(tollgate),
                cpu(nginx),
                sat(tollgate),
                sat(nginx),
                added(tollgate, |l| l.p50),
                added(nginx, |l| l.p50),
                added(tollgate, |l| l.p99),
                added(nginx, |l| l.p99),
                rss(tollgate),
                rss(nginx),
            );
        }
    }
    for (kind, reason) in &results.unavailable {
        let _ = writeln!(
            out,
            "\n**{} was not run:** {}",
            kind.label(),
            one_line(reason)
        );
    }
    if !results.peak_rss_per_cell {
        out.push_str(
            "\nPeak RSS could not be reset between cells here: each is the peak so far.\n",
        );
    }
    out.push('\n');
}

/// The store a tollgate target's ledger is on, for the summary's second column.
fn store(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::TollgatePg => "PostgreSQL",
        _ => "SQLite",
    }
}

fn streams_section(out: &mut String, streams: &Result<&StreamsResult, String>) {
    out.push_str("## Concurrency: open streams through tollgate\n\n");
    match streams {
        Err(reason) => {
            let _ = writeln!(out, "Not measured: {}\n", one_line(reason));
        }
        Ok(s) => {
            let _ = writeln!(
                out,
                "A fresh tollgate (SQLite, every feature on; OTLP export {}), warmed up, then {} \
                 streamed Responses calls opened at once (20 deltas, the mock pausing between \
                 events so each lasts about {:.0} s), RSS sampled every 100 ms while they were \
                 open.\n",
                if s.otlp { "on" } else { "off" },
                s.streams,
                s.hold.as_secs_f64()
            );
            let _ = writeln!(
                out,
                "| streams | open at once (max) | completed | idle RSS MiB | RSS with streams open MiB | peak RSS MiB | **RSS per open stream** | stream duration p50 | errors |"
            );
            let _ = writeln!(out, "|--:|--:|--:|--:|--:|--:|--:|--:|---|");
            let errors = if s.errors.total() == 0 {
                "0".to_owned()
            } else {
                format!(
                    "**⚠ {}** ({})",
                    s.errors.total(),
                    s.errors.example.as_deref().unwrap_or("?")
                )
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} | {:.1} | {} | **{:.1} KiB** | {:.1} s | {errors} |\n",
                s.streams,
                s.max_open,
                s.ok,
                s.idle_rss_kib as f64 / 1024.0,
                s.open_rss_kib as f64 / 1024.0,
                s.peak_rss_kib
                    .map_or_else(|| "—".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
                s.per_stream_kib(),
                s.stream_p50_ms / 1000.0,
            );
        }
    }
}

fn micro_section(out: &mut String, micro: &[Micro]) {
    out.push_str("## Microbenchmarks\n\n");
    out.push_str(method::MICRO_INTRO);
    if micro.is_empty() {
        out.push_str("No criterion results were found in `target/criterion`: run the command above, then this benchmark again.\n\n");
        return;
    }
    let _ = writeln!(
        out,
        "| benchmark | median | mean (95 % CI) | throughput | measured |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|---|");
    for m in micro {
        let throughput = m.bytes.map_or_else(
            || "—".into(),
            |b| {
                format!(
                    "{:.0} MiB/s",
                    b as f64 / (m.median_ns / 1e9) / (1024.0 * 1024.0)
                )
            },
        );
        let _ = writeln!(
            out,
            "| `{}` | {} | {} ({} – {}) | {throughput} | {} |",
            m.id,
            human_ns(m.median_ns),
            human_ns(m.mean_ns),
            human_ns(m.mean_low_ns),
            human_ns(m.mean_high_ns),
            m.measured.map(date_of).unwrap_or_default(),
        );
    }
    out.push('\n');
}

fn whole(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.0}"))
}

pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{} min {:02} s", secs / 60, secs % 60)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
