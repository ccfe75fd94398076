//! The Markdown section: the four cells, then what tollgate adds on each transport and the
//! WebSocket ÷ HTTP ratios (machines are noisy; the ratios are the numbers to quote).

use std::fmt::Write;
use std::time::Duration;

use super::cell::{Cell, Transport};
use crate::scenario::TargetKind;
use crate::stats::Latency;

pub const HEADING: &str = "## Codex turns: HTTP SSE vs WebSocket";

/// How the run was set up, for the text above the tables.
pub struct Setup {
    pub clients: usize,
    pub turns: u64,
    pub warmup: u64,
    pub rounds: u64,
    pub limits: bool,
    pub cores: usize,
    pub command: String,
}

/// One cell's numbers.
pub struct Row {
    pub transport: Transport,
    pub kind: TargetKind,
    pub latency: Latency,
    pub turns: u64,
    pub per_sec: f64,
    pub reads_per_turn: f64,
    pub gateway_cpu_us: Option<f64>,
    pub mock_cpu_us: Option<f64>,
    /// WebSocket handshakes after the warm-up (0: every socket stayed open).
    pub reopened: u64,
}

impl Row {
    pub fn of(transport: Transport, kind: TargetKind, cell: &Cell, reopened: u64) -> Row {
        let latency = cell.recorder.summary();
        let turns = cell.turns();
        Row {
            transport,
            kind,
            per_sec: latency.ok as f64 / cell.busy.as_secs_f64().max(1e-9),
            reads_per_turn: cell.reads as f64 / latency.ok.max(1) as f64,
            gateway_cpu_us: per_turn_us(cell.gateway_cpu, turns),
            mock_cpu_us: per_turn_us(cell.mock_cpu, turns),
            latency,
            turns,
            reopened,
        }
    }
}

/// CPU per turn in microseconds (unknown without turns or without a reading).
pub fn per_turn_us(cpu: Option<Duration>, turns: u64) -> Option<f64> {
    let cpu = cpu?;
    (turns > 0).then(|| cpu.as_secs_f64() * 1e6 / turns as f64)
}

/// `ws ÷ http`, when it means something: a positive denominator and a non-negative numerator
/// (an overhead below zero is noise, and a ratio to it would read as a result).
pub fn ratio(ws: f64, http: f64) -> Option<f64> {
    (ws.is_finite() && http.is_finite() && http > 0.0 && ws >= 0.0).then(|| ws / http)
}

pub fn render(setup: &Setup, rows: &[Row]) -> String {
    let mut out = format!("{HEADING}\n\n");
    let _ = writeln!(
        out,
        "The recorded Codex turn (38 KB body, `stream: true`, Codex's own headers), answered by \
         the mock upstream with 20 text deltas and no pause between events, so what the gateway \
         adds dominates. {clients} clients send turns back to back: over HTTP as `POST \
         /v1/responses` on a keep-alive pool, over WebSocket as `response.create` messages on \
         one socket per client, open for the whole run (as Codex keeps it). {turns} measured \
         turns per cell after {warmup} warm-up turns, in {rounds} interleaved rounds (order \
         reversed every other round) so the drift of a shared {cores}-core machine falls on all \
         cells alike. tollgate runs on its SQLite default{limits}. Latency runs from sending a \
         turn to its first event and to `response.completed`; CPU is user + system time of \
         each process (`/proc/<pid>/stat`) over the cell and the 250 ms after it, divided by \
         its turns.\n",
        clients = setup.clients,
        turns = thousands(setup.turns),
        warmup = thousands(setup.warmup),
        rounds = setup.rounds,
        cores = setup.cores,
        limits = if setup.limits {
            ", with a team budget and rate limit that never bind"
        } else {
            ", without limits"
        },
    );
    out.push_str(
        "| transport | through | turns | turns/s | first event p50 · p99 | `response.completed` \
         p50 · p99 | reads / turn | tollgate CPU / turn | mock CPU / turn | errors |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.2} · {:.2} ms | {:.2} · {:.2} ms | {:.1} | {} | {} | {} |",
            r.transport.label(),
            r.kind.label(),
            thousands(r.turns),
            r.per_sec,
            r.latency.ttfb_p50,
            r.latency.ttfb_p99,
            r.latency.p50,
            r.latency.p99,
            r.reads_per_turn,
            us(r.gateway_cpu_us),
            us(r.mock_cpu_us),
            r.latency.errors.total(),
        );
    }
    added(&mut out, rows);
    notes(&mut out, rows);
    let _ = writeln!(out, "\n`{}`", setup.command);
    out
}

/// Reads one number off a row.
type Pick = fn(&Row) -> Option<f64>;

/// Tollgate minus direct per transport, and WebSocket ÷ HTTP.
fn added(out: &mut String, rows: &[Row]) {
    let cell = |t: Transport, k: TargetKind, pick: Pick| {
        rows.iter()
            .find(|r| r.transport == t && r.kind == k)
            .and_then(pick)
    };
    let over = |t: Transport, pick: Pick| {
        Some(cell(t, TargetKind::Tollgate, pick)? - cell(t, TargetKind::Direct, pick)?)
    };
    out.push_str(
        "\n| added by tollgate (tollgate − direct) | HTTP SSE | WebSocket | **WebSocket ÷ HTTP** |\n\
         |---|--:|--:|--:|\n",
    );
    let latency: [(&str, Pick); 4] = [
        ("first event p50", |r| Some(r.latency.ttfb_p50)),
        ("first event p99", |r| Some(r.latency.ttfb_p99)),
        ("`response.completed` p50", |r| Some(r.latency.p50)),
        ("`response.completed` p99", |r| Some(r.latency.p99)),
    ];
    for (what, pick) in latency {
        let (http, ws) = (
            over(Transport::Http, pick),
            over(Transport::WebSocket, pick),
        );
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} |",
            signed_ms(http),
            signed_ms(ws),
            times(http.zip(ws).and_then(|(h, w)| ratio(w, h))),
        );
    }
    let cpu: [(&str, TargetKind, Pick); 2] = [
        ("tollgate CPU per turn", TargetKind::Tollgate, |r| {
            r.gateway_cpu_us
        }),
        (
            "mock CPU per turn (direct, for scale)",
            TargetKind::Direct,
            |r| r.mock_cpu_us,
        ),
    ];
    for (what, kind, pick) in cpu {
        let http = cell(Transport::Http, kind, pick);
        let ws = cell(Transport::WebSocket, kind, pick);
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} |",
            us(http),
            us(ws),
            times(http.zip(ws).and_then(|(h, w)| ratio(w, h))),
        );
    }
}

fn notes(out: &mut String, rows: &[Row]) {
    let reopened: Vec<String> = rows
        .iter()
        .filter(|r| r.transport == Transport::WebSocket)
        .map(|r| format!("{} {}", r.kind.label(), r.reopened))
        .collect();
    let _ = writeln!(
        out,
        "\nWebSocket handshakes after the warm-up (0: every client kept its socket): {}.",
        reopened.join(", ")
    );
    for r in rows {
        if let Some(example) = &r.latency.errors.example {
            let _ = writeln!(
                out,
                "{} through {}: {} errors, e.g. {example}.",
                r.transport.label(),
                r.kind.label(),
                r.latency.errors.total()
            );
        }
    }
}

fn signed_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:+.2} ms"))
}

fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.0} µs"))
}

fn times(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("**{v:.2}×**"))
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
    fn ratios_need_a_positive_http_side_and_no_negative_websocket_side() {
        assert_eq!(ratio(0.5, 1.0), Some(0.5));
        assert_eq!(ratio(0.0, 2.0), Some(0.0));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, -0.2), None);
        assert_eq!(ratio(-0.1, 1.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }

    #[test]
    fn cpu_per_turn_is_in_microseconds_and_unknown_without_turns() {
        assert_eq!(
            per_turn_us(Some(Duration::from_millis(500)), 2_000),
            Some(250.0)
        );
        assert_eq!(per_turn_us(Some(Duration::from_millis(500)), 0), None);
        assert_eq!(per_turn_us(None, 10), None);
    }

    fn row(transport: Transport, kind: TargetKind, p50: f64, cpu: Option<f64>) -> Row {
        Row {
            transport,
            kind,
            latency: Latency {
                p50,
                p99: p50 * 2.0,
                ttfb_p50: p50 / 2.0,
                ttfb_p99: p50,
                ok: 100,
                ..Latency::default()
            },
            turns: 100,
            per_sec: 10.0,
            reads_per_turn: 28.0,
            gateway_cpu_us: cpu,
            mock_cpu_us: Some(50.0),
            reopened: 0,
        }
    }

    #[test]
    fn the_added_table_subtracts_direct_and_divides_websocket_by_http() {
        let rows = [
            row(Transport::Http, TargetKind::Direct, 1.0, None),
            row(Transport::Http, TargetKind::Tollgate, 1.4, Some(200.0)),
            row(Transport::WebSocket, TargetKind::Direct, 0.8, None),
            row(Transport::WebSocket, TargetKind::Tollgate, 1.0, Some(150.0)),
        ];
        let setup = Setup {
            clients: 4,
            turns: 2_000,
            warmup: 200,
            rounds: 4,
            limits: true,
            cores: 2,
            command: "tollgate-bench websocket".into(),
        };
        let text = render(&setup, &rows);
        assert!(
            text.contains("| `response.completed` p50 | +0.40 ms | +0.20 ms | **0.50×** |"),
            "{text}"
        );
        assert!(text.contains("| tollgate CPU per turn | 200 µs | 150 µs | **0.75×** |"));
        assert!(text.contains("| HTTP SSE | tollgate (SQLite) | 100 | 10 | 0.70 · 1.40 ms |"));
        assert!(text.contains("2,000 measured turns"));
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
