//! `tollgate report --month 2026-11`: finance's month-end spend report, read directly from the
//! database like `tollgate team …`, written as a table, CSV or JSON on stdout. The numbers and
//! the CSV are exactly what `GET /admin/v1/reports/spend` gives for the same month.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use tollgate_core::budget::Calendar;
use tollgate_core::config::Config;
use tollgate_store::{Report, ReportQuery, Source, month_bounds};

use crate::admin::reports::{is_number, parse_group_by, report_cells, report_csv, report_json};
use crate::manage::open_store;

/// A report that takes longer than this gets a progress line on stderr.
const QUIET_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The month to report, YYYY-MM (in --tz).
    #[arg(long)]
    pub month: String,
    /// Only this team (id or name).
    #[arg(long)]
    pub team: Option<String>,
    /// Group by any of team, cost_centre, key, model, user, session, day, month (user and
    /// session are read from the ledger itself, which is slower).
    #[arg(long, default_value = "team,model")]
    pub group_by: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// IANA time zone the month and any day/month groups are local to.
    #[arg(long, default_value = "UTC")]
    pub tz: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
}

pub async fn run(config: &Config, args: ReportArgs) -> anyhow::Result<()> {
    let calendar = Calendar::new(&args.tz).ok_or_else(|| {
        anyhow::anyhow!(
            "--tz '{}' is not an IANA time zone like Europe/Berlin",
            args.tz
        )
    })?;
    let (from_ms, to_ms) = month_bounds(&args.month, &calendar)
        .ok_or_else(|| anyhow::anyhow!("--month '{}' is not a month like 2026-11", args.month))?;
    let group_by =
        parse_group_by(&args.group_by).map_err(|e| anyhow::anyhow!("--group-by: {e}"))?;
    let store = open_store(config).await?;
    let team_id = match &args.team {
        Some(t) => Some(
            store
                .team(t)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no team '{t}' (see `tollgate team list`)"))?
                .id,
        ),
        None => None,
    };
    let query = ReportQuery {
        from_ms,
        to_ms,
        group_by,
        team_id,
        calendar,
    };
    let report = with_progress(query.source(), store.spend_report(&query)).await;
    store.close().await;
    let report = report?;

    let mut stdout = std::io::stdout().lock();
    match args.format {
        ReportFormat::Csv => stdout.write_all(report_csv(&report).as_bytes())?,
        ReportFormat::Json => writeln!(stdout, "{}", report_json(&report, &query))?,
        ReportFormat::Table => write_table(&mut stdout, &report)?,
    }
    stdout.flush()?;
    Ok(())
}

/// Awaits `work`, telling stderr how long it has been reading once that passes a second (over
/// a terminal the line updates in place; in a log, one line every ten seconds).
async fn with_progress<T>(source: Source, work: impl Future<Output = T>) -> T {
    let what = match source {
        Source::Ledger => "reading ledger rows",
        Source::Rollups => "reading daily rollups",
    };
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + QUIET_FOR, QUIET_FOR);
    let mut shown = false;
    tokio::pin!(work);
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = ticks.tick() => {
                let secs = started.elapsed().as_secs();
                if terminal {
                    eprint!("\r{what}… {secs} s");
                } else if secs == 1 || secs.is_multiple_of(10) {
                    eprintln!("{what}… {secs} s");
                }
                shown = true;
            }
        }
    };
    if shown && terminal {
        eprintln!("\r{what}… done in {:.1} s", started.elapsed().as_secs_f64());
    }
    out
}

/// The report's cells, aligned, numbers to the right, costs in dollars only: what a person
/// scans in a terminal.
fn write_table(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    let grid = report_cells(report);
    // The integer cost is for machines; the table keeps the dollars.
    let hide = grid
        .first()
        .and_then(|header| header.iter().position(|h| h == "cost_nano_usd"));
    let mut widths: Vec<usize> = Vec::new();
    for row in &grid {
        widths.resize(widths.len().max(row.len()), 0);
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // A column of numbers is right-aligned, header included.
    let numeric: Vec<bool> = (0..widths.len())
        .map(|i| {
            grid[1..]
                .iter()
                .all(|row| row.get(i).is_none_or(|c| c.is_empty() || is_number(c)))
        })
        .collect();
    for row in &grid {
        let cells: Vec<String> = row
            .iter()
            .zip(widths.iter().zip(&numeric))
            .enumerate()
            .filter(|(i, _)| Some(*i) != hide)
            .map(|(_, (cell, (w, right)))| {
                if *right {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    Ok(())
}
