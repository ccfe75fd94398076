//! `tollgate-bench websocket`: what tollgate adds to a Codex turn over the Responses WebSocket
//! (one socket per client, `response.create` after `response.create`, as Codex sends them)
//! against the same turn over HTTP SSE — latency to the first and the terminal event beyond
//! going direct to the mock, and the gateway's CPU per turn — printed as a Markdown section.
//!
//! A benchmark, not a test: it prints numbers for a person to compare, and fails only when a
//! turn fails.

mod cell;
mod table;
mod turn;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use http::HeaderValue;

use crate::lab;
use crate::procs;
use crate::scenario::TargetKind;
use cell::{Cell, Leg, Transport};
use table::{Row, Setup};

#[derive(Debug, Parser)]
#[command(name = "tollgate-bench websocket")]
struct Args {
    /// Measured turns per transport and target, after the warm-up.
    #[arg(long, default_value_t = 2_000)]
    turns: u64,
    /// Warm-up turns per transport and target (not measured).
    #[arg(long, default_value_t = 200)]
    warmup: u64,
    /// Concurrent clients, each sending turns back to back (over WebSocket, on a socket each).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Rounds the measured turns are split into; every round runs each cell once.
    #[arg(long, default_value_t = 4)]
    rounds: u64,
    /// Run without the bench team's budget and rate limit (by default both apply, never binding).
    #[arg(long)]
    no_limits: bool,
    /// The tollgate binary (default: next to this executable).
    #[arg(long)]
    tollgate: Option<PathBuf>,
    /// Per-turn timeout, in seconds; a turn that takes longer counts as an error.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

/// Runs with the arguments after `websocket`.
pub fn main(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let args = Args::parse_from(std::iter::once("websocket".to_owned()).chain(args));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    // The CLI runs in the data directory, so a relative `--tollgate` must not stay relative.
    let tollgate = std::fs::canonicalize(procs::tollgate_binary(args.tollgate.as_deref())?)?;
    let timeout = Duration::try_from_secs_f64(args.timeout.max(0.001))?;
    let clients = args.clients.max(1);
    let dir = tempfile::Builder::new()
        .prefix("tollgate-bench-")
        .tempdir()?;
    let mut mock = lab::start_mock(&tollgate).await?;
    let (mut gateway, key) =
        lab::start_tollgate(&tollgate, dir.path(), mock.addr, !args.no_limits).await?;
    let authorization = HeaderValue::from_str(&format!("Bearer {key}"))?;
    let direct = HeaderValue::from_static("Bearer sk-anything");
    let mut legs = [
        Leg::new(TargetKind::Direct, mock.addr, None, &direct, clients)?,
        Leg::new(
            TargetKind::Tollgate,
            gateway.addr,
            Some(gateway.pid),
            &authorization,
            clients,
        )?,
    ];

    // Warm up every cell (pools, sockets, allocator, key cache); a cell that cannot answer at
    // all stops the run here rather than as 2,000 errors.
    for leg in &mut legs {
        for transport in Transport::ALL {
            let outcomes = leg.drive(transport, args.warmup, timeout).await;
            let failed: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
            if let Some(first) = failed.first() {
                eprintln!(
                    "websocket: warm-up {} through {}: {} of {} turns failed, e.g. {first}",
                    transport.label(),
                    leg.kind.label(),
                    failed.len(),
                    outcomes.len()
                );
                anyhow::ensure!(
                    failed.len() < outcomes.len(),
                    "no warm-up turn over {} through {} succeeded",
                    transport.label(),
                    leg.kind.label()
                );
            }
        }
    }
    let warm_handshakes: Vec<u64> = legs.iter().map(Leg::handshakes).collect();

    // Cells in table order: HTTP direct, HTTP tollgate, WebSocket direct, WebSocket tollgate.
    let mut cells = Vec::new();
    for transport in Transport::ALL {
        for (at, leg) in legs.iter().enumerate() {
            cells.push((transport, at, Cell::new(leg)?));
        }
    }
    let rounds = split(args.turns, args.rounds);
    for (round, &turns) in rounds.iter().enumerate() {
        let mut order: Vec<usize> = (0..cells.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (transport, at, cell) = &mut cells[i];
            cell.measure(&mut legs[*at], *transport, turns, mock.pid, timeout)
                .await;
        }
        mock.check_alive()?;
        gateway.check_alive()?;
        eprintln!(
            "websocket: round {}/{} ({turns} turns per cell) done",
            round + 1,
            rounds.len()
        );
    }
    gateway.stop().await;
    mock.stop().await;

    let rows: Vec<Row> = cells
        .iter()
        .map(|(transport, at, cell)| {
            let reopened = legs[*at].handshakes() - warm_handshakes[*at];
            Row::of(*transport, legs[*at].kind, cell, reopened)
        })
        .collect();
    let setup = Setup {
        clients,
        turns: args.turns,
        warmup: args.warmup,
        rounds: rounds.len() as u64,
        limits: !args.no_limits,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        command: crate::options::command_line(),
    };
    print!("{}", table::render(&setup, &rows));
    let failed: u64 = rows.iter().map(|r| r.latency.errors.total()).sum();
    anyhow::ensure!(failed == 0, "{failed} turns failed");
    Ok(())
}

/// `turns` split into at most `rounds` near-equal, non-empty rounds.
fn split(turns: u64, rounds: u64) -> Vec<u64> {
    let rounds = rounds.clamp(1, turns.max(1));
    (0..rounds)
        .map(|i| turns / rounds + u64::from(i < turns % rounds))
        .filter(|&n| n > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_split_into_near_equal_rounds() {
        assert_eq!(split(2_000, 4), vec![500; 4]);
        assert_eq!(split(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(split(3, 8), vec![1, 1, 1]);
        assert_eq!(split(5, 0), vec![5]);
        assert!(split(0, 4).is_empty());
    }
}
