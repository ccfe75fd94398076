//! The latency/throughput suite: every run measures every scenario on every target (targets
//! interleaved, so drift in the machine's load spreads over all of them), one cell at a time,
//! and counts the requests each target was sent (to hold OTLP export counts against).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{self, Prepared};
use crate::error::BenchError;
use crate::lab::{Lab, OtlpCounts, Target};
use crate::load;
use crate::options::Options;
use crate::procstat::{self, CpuMark};
use crate::scenario::{Scenario, TargetKind};
use crate::stats::{Errors, Latency};

/// One open-loop window of one run.
#[derive(Debug, Clone)]
pub struct RateRun {
    pub rate: u32,
    pub latency: Latency,
    /// Proxy CPU time per 1,000 completed requests, in ms.
    pub cpu_ms_per_1k: Option<f64>,
}

/// The closed-loop window of one run.
#[derive(Debug, Clone)]
pub struct Saturation {
    pub rps: f64,
    /// Closed-loop latency at saturation (errors included).
    pub latency: Latency,
    pub cpu_ms_per_1k: Option<f64>,
}

/// One run of one target × scenario.
#[derive(Debug, Clone)]
pub struct CellRun {
    pub rates: Vec<RateRun>,
    /// None for a scenario that does not saturate ([`Scenario::saturates`]).
    pub saturation: Option<Saturation>,
    /// Peak RSS of the proxy process during this cell.
    pub peak_rss_kib: Option<u64>,
}

impl CellRun {
    pub fn errors(&self) -> Errors {
        let mut all = Errors::default();
        let saturation = self.saturation.iter().map(|s| &s.latency);
        for latency in self.rates.iter().map(|r| &r.latency).chain(saturation) {
            all.merge(&latency.errors);
        }
        all
    }

    pub fn saturation_rps(&self) -> Option<f64> {
        self.saturation.as_ref().map(|s| s.rps)
    }
}

/// Everything the suite measured: runs per (scenario, target).
#[derive(Default)]
pub struct Results {
    pub cells: BTreeMap<(Scenario, TargetKind), Vec<CellRun>>,
    /// Targets that could not be started, with the reason.
    pub unavailable: Vec<(TargetKind, String)>,
    /// Whether each cell's peak RSS is its own (clear_refs worked) or the whole run's.
    pub peak_rss_per_cell: bool,
    /// Requests sent to each target over the whole run, warm-ups included.
    pub calls: BTreeMap<TargetKind, u64>,
    /// What each exporting gateway's OTLP receiver got (filled in once the gateways stop).
    pub otlp: OtlpCounts,
    /// Why the gateways ran without OTLP export, when they did.
    pub otlp_off: Option<String>,
    /// What the `tollgate-pg` target ran on.
    pub postgres: Option<String>,
}

impl Results {
    pub fn runs(&self, scenario: Scenario, target: TargetKind) -> &[CellRun] {
        self.cells
            .get(&(scenario, target))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

pub async fn run(lab: &mut Lab, opts: &Options) -> Result<Results, BenchError> {
    let ticks = procstat::clock_ticks();
    let mut results = Results {
        unavailable: lab
            .unavailable
            .iter()
            .map(|u| (u.kind, u.reason.clone()))
            .collect(),
        peak_rss_per_cell: true,
        otlp_off: lab.otlp_off.clone(),
        postgres: lab.postgres(),
        ..Results::default()
    };
    for run in 1..=opts.runs {
        for &scenario in &opts.scenarios {
            for index in 0..lab.targets.len() {
                lab.check_alive()?;
                let target = &lab.targets[index];
                let cell = measure_cell(target, scenario, opts, ticks, &mut results).await?;
                eprintln!(
                    "[run {run}/{}] {:<50} {:<21} {}",
                    opts.runs,
                    scenario.title(),
                    target.kind.label(),
                    progress(&cell)
                );
                results
                    .cells
                    .entry((scenario, target.kind))
                    .or_default()
                    .push(cell);
            }
        }
    }
    Ok(results)
}

async fn measure_cell(
    target: &Target,
    scenario: Scenario,
    opts: &Options,
    ticks: u64,
    results: &mut Results,
) -> Result<CellRun, BenchError> {
    let prepared = Prepared::new(&target.origin, &target.authorization, scenario.request())
        .ok_or_else(|| BenchError::Internal(format!("{} is not a valid URI", target.origin)))?;
    let prepared = Arc::new(prepared);
    let cell = measure(target, scenario, &prepared, opts, ticks, results).await;
    *results.calls.entry(target.kind).or_default() += prepared.sent();
    cell
}

async fn measure(
    target: &Target,
    scenario: Scenario,
    prepared: &Arc<Prepared>,
    opts: &Options,
    ticks: u64,
    results: &mut Results,
) -> Result<CellRun, BenchError> {
    let client = client::new_client();
    let pid = target.pid();
    if let Some(pid) = pid
        && !procstat::reset_peak_rss(pid)
    {
        results.peak_rss_per_cell = false;
    }
    let cpu_per_1k = |mark: Option<CpuMark>, completed: u64| -> Option<f64> {
        let used = mark?.elapsed(ticks)?;
        (completed > 0).then(|| used.as_secs_f64() * 1e3 * 1000.0 / completed as f64)
    };
    let mut rates = Vec::new();
    for &rate in &opts.rates {
        load::open_loop(&client, prepared, rate, opts.warmup(), opts.timeout()).await?;
        let mark = pid.and_then(CpuMark::take);
        let recorder =
            load::open_loop(&client, prepared, rate, opts.duration(), opts.timeout()).await?;
        let cpu_ms_per_1k = cpu_per_1k(mark, recorder.ok + recorder.errors.total());
        rates.push(RateRun {
            rate,
            latency: recorder.summary(),
            cpu_ms_per_1k,
        });
        settle().await;
    }
    let saturation = if scenario.saturates() {
        let warm = opts.warmup().min(Duration::from_secs(1));
        load::closed_loop(&client, prepared, opts.concurrency, warm, opts.timeout()).await?;
        let mark = pid.and_then(CpuMark::take);
        let (recorder, rps) = load::closed_loop(
            &client,
            prepared,
            opts.concurrency,
            opts.saturation(),
            opts.timeout(),
        )
        .await?;
        let cpu_ms_per_1k = cpu_per_1k(mark, recorder.ok + recorder.errors.total());
        settle().await;
        Some(Saturation {
            rps,
            latency: recorder.summary(),
            cpu_ms_per_1k,
        })
    } else {
        None
    };
    Ok(CellRun {
        rates,
        saturation,
        peak_rss_kib: pid.and_then(procstat::peak_rss_kib),
    })
}

/// A short pause between windows so one window's stragglers and closing connections do not
/// land in the next one's CPU reading.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn progress(cell: &CellRun) -> String {
    let mut line = String::new();
    for r in &cell.rates {
        line.push_str(&format!(
            "{}/s p50 {:.2} p99 {:.2} ms",
            r.rate, r.latency.p50, r.latency.p99
        ));
        if let Some(cpu) = r.cpu_ms_per_1k {
            line.push_str(&format!(" cpu {cpu:.0} ms/1k"));
        }
        line.push_str(" | ");
    }
    match cell.saturation_rps() {
        Some(rps) => line.push_str(&format!("sat {rps:.0}/s")),
        None => line.push_str("sat —"),
    }
    let errors = cell.errors();
    if errors.total() > 0 {
        line.push_str(&format!(
            " | {} ERRORS (e.g. {})",
            errors.total(),
            errors.example.as_deref().unwrap_or("?")
        ));
    }
    line
}
