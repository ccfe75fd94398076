//! Reducing runs to report cells: medians, paired differences and ratios (run i of one target
//! against run i of another, measured back to back), and the per-scenario table.

use std::fmt::Write;

use crate::options::Options;
use crate::scenario::{Scenario, TargetKind};
use crate::stats::{Errors, Latency, median};
use crate::suite::{CellRun, Results};

/// Which window of a cell a number comes from.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// Open loop at `opts.rates[i]`.
    Rate(usize),
    Saturation,
}

impl Load {
    pub fn latency(self, cell: &CellRun) -> Option<&Latency> {
        match self {
            Load::Rate(i) => cell.rates.get(i).map(|r| &r.latency),
            Load::Saturation => cell.saturation.as_ref().map(|s| &s.latency),
        }
    }

    pub fn cpu(self, cell: &CellRun) -> Option<f64> {
        match self {
            Load::Rate(i) => cell.rates.get(i).and_then(|r| r.cpu_ms_per_1k),
            Load::Saturation => cell.saturation.as_ref().and_then(|s| s.cpu_ms_per_1k),
        }
    }
}

/// Median over runs of one number.
pub fn med(runs: &[CellRun], f: impl Fn(&CellRun) -> Option<f64>) -> Option<f64> {
    median(runs.iter().map(f))
}

/// Median over runs of `f(a) - f(b)`, pairing run i with run i.
pub fn med_diff(a: &[CellRun], b: &[CellRun], f: impl Fn(&CellRun) -> Option<f64>) -> Option<f64> {
    median(a.iter().zip(b).map(|(x, y)| Some(f(x)? - f(y)?)))
}

/// Median over runs of `f(a) / f(b)`, pairing run i with run i.
pub fn med_ratio(a: &[CellRun], b: &[CellRun], f: impl Fn(&CellRun) -> Option<f64>) -> Option<f64> {
    median(
        a.iter()
            .zip(b)
            .map(|(x, y)| Some(f(x)? / f(y)?).filter(|r| r.is_finite())),
    )
}

pub fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.2}"))
}

pub fn signed_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:+.2}"))
}

/// Errors over all runs of one window, loud when there are any.
pub fn errors_cell(runs: &[CellRun], load: Load) -> String {
    let mut errors = Errors::default();
    let mut total = 0;
    for run in runs {
        if let Some(latency) = load.latency(run) {
            errors.merge(&latency.errors);
            total += latency.ok + latency.errors.total();
        }
    }
    if errors.total() == 0 {
        "0".into()
    } else {
        format!(
            "**⚠ {} of {total}** ({})",
            errors.total(),
            errors.example.as_deref().unwrap_or("?")
        )
    }
}

/// One scenario's table: a row per target and load.
pub fn scenario_table(out: &mut String, results: &Results, opts: &Options, scenario: Scenario) {
    let direct = results.runs(scenario, TargetKind::Direct);
    let _ = writeln!(out, "### {}\n", scenario.title());
    if scenario.pacing_ms() > 0 {
        let _ = writeln!(
            out,
            "The mock pauses {} ms between the answer's SSE events, so every call spends ~{} ms \
             in the mock alone and each event is its own write and wake-up through the proxy: \
             read the *added* columns and the CPU. No saturation run (closed-loop workers would \
             only measure the pauses).\n",
            crate::scenario::PACED_DELAY_MS,
            scenario.pacing_ms()
        );
    }
    let _ = writeln!(
        out,
        "| target | load | p50 ms | p90 ms | p99 ms | added p50 | added p99 | TTFB p50 | proxy CPU ms / 1k req | errors |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|---|");
    for &kind in &opts.targets {
        if let Some((_, reason)) = results.unavailable.iter().find(|(k, _)| *k == kind) {
            let _ = writeln!(
                out,
                "| {} | not run: {} |||||||||",
                kind.label(),
                one_line(reason)
            );
            continue;
        }
        let runs = results.runs(scenario, kind);
        if runs.is_empty() {
            continue;
        }
        let saturation = scenario.saturates().then_some(Load::Saturation);
        let loads = (0..opts.rates.len()).map(Load::Rate).chain(saturation);
        for load in loads {
            let pct = |f: fn(&Latency) -> f64| move |c: &CellRun| load.latency(c).map(f);
            let label = match load {
                Load::Rate(i) => format!("{} req/s", opts.rates[i]),
                Load::Saturation => format!(
                    "{} workers → **{:.0} req/s**",
                    opts.concurrency,
                    med(runs, CellRun::saturation_rps).unwrap_or(0.0)
                ),
            };
            let (added50, added99) = if kind == TargetKind::Direct {
                ("—".into(), "—".into())
            } else {
                (
                    signed_ms(med_diff(runs, direct, pct(|l| l.p50))),
                    signed_ms(med_diff(runs, direct, pct(|l| l.p99))),
                )
            };
            let ttfb = if scenario.streamed() {
                ms(med(runs, pct(|l| l.ttfb_p50)))
            } else {
                "—".into()
            };
            let cpu = med(runs, |c| load.cpu(c)).map_or_else(|| "—".into(), |v| format!("{v:.0}"));
            let _ = writeln!(
                out,
                "| {} | {label} | {} | {} | {} | {added50} | {added99} | {ttfb} | {cpu} | {} |",
                kind.label(),
                ms(med(runs, pct(|l| l.p50))),
                ms(med(runs, pct(|l| l.p90))),
                ms(med(runs, pct(|l| l.p99))),
                errors_cell(runs, load),
            );
        }
    }
    out.push('\n');
}

pub fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or("").replace('|', "\\|")
}
