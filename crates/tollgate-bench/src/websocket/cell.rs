//! One cell of the comparison: a transport through a target (the mock itself, or tollgate),
//! driven by a few clients sending turns back to back, with what the turns cost each process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::turn::{Socket, Timed, http_turn, response_create};
use crate::client::{self, Failure, HttpClient, Prepared};
use crate::error::BenchError;
use crate::procstat::CpuMark;
use crate::scenario::{Scenario, TargetKind};
use crate::stats::Recorder;

/// How long after a cell its processes' CPU is read: tollgate's ledger writer flushes every
/// 50 ms, and the batch holding a cell's last turns is part of what they cost.
const SETTLE: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    WebSocket,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Http, Transport::WebSocket];

    pub fn label(self) -> &'static str {
        match self {
            Transport::Http => "HTTP SSE",
            Transport::WebSocket => "WebSocket",
        }
    }
}

/// A target as the clients see it: a keep-alive pool and one socket per client, both kept from
/// the warm-up to the end.
pub struct Leg {
    pub kind: TargetKind,
    /// The gateway's process (none when going direct).
    pub pid: Option<u32>,
    http: HttpClient,
    prepared: Arc<Prepared>,
    sockets: Vec<Socket>,
    create: Utf8Bytes,
}

impl Leg {
    /// The Codex scenario's request for `addr`, sent with `authorization`, over either transport.
    pub fn new(
        kind: TargetKind,
        addr: SocketAddr,
        pid: Option<u32>,
        authorization: &HeaderValue,
        clients: usize,
    ) -> Result<Leg, BenchError> {
        let spec = Scenario::Codex.request();
        let create = response_create(&spec.body)
            .ok_or_else(|| BenchError::Internal("the Codex body is not a JSON object".into()))?;
        // The handshake carries Codex's headers (session, turn metadata, the mock's knobs) but
        // not those describing an HTTP body.
        let mut handshake: Vec<(HeaderName, HeaderValue)> = spec
            .headers
            .iter()
            .filter(|(name, _)| {
                *name != http::header::CONTENT_TYPE && *name != http::header::ACCEPT
            })
            .cloned()
            .collect();
        handshake.push((http::header::AUTHORIZATION, authorization.clone()));
        handshake.push((
            HeaderName::from_static("openai-beta"),
            HeaderValue::from_static("responses_websockets=2026-02-06"),
        ));
        let origin = format!("http://{addr}");
        let prepared = Prepared::new(&origin, authorization, spec)
            .ok_or_else(|| BenchError::Internal(format!("{origin} is not a valid URI")))?;
        Ok(Leg {
            kind,
            pid,
            http: client::new_client(),
            prepared: Arc::new(prepared),
            sockets: (0..clients.max(1))
                .map(|_| Socket::new(addr, handshake.clone()))
                .collect(),
            create,
        })
    }

    /// WebSocket handshakes made so far.
    pub fn handshakes(&self) -> u64 {
        self.sockets.iter().map(|s| s.handshakes).sum()
    }

    /// `turns` turns over `transport`, from one loop per client.
    pub async fn drive(
        &mut self,
        transport: Transport,
        turns: u64,
        timeout: Duration,
    ) -> Vec<Result<Timed, Failure>> {
        let next = Arc::new(AtomicU64::new(0));
        let claim = move |next: &AtomicU64| next.fetch_add(1, Ordering::Relaxed) < turns;
        let mut outcomes = Vec::new();
        match transport {
            Transport::Http => {
                let mut tasks = JoinSet::new();
                for _ in 0..self.sockets.len() {
                    let (client, prepared) = (self.http.clone(), Arc::clone(&self.prepared));
                    let next = Arc::clone(&next);
                    tasks.spawn(async move {
                        let mut outcomes = Vec::new();
                        while claim(&next) {
                            outcomes.push(http_turn(&client, &prepared, timeout).await);
                        }
                        outcomes
                    });
                }
                while let Some(joined) = tasks.join_next().await {
                    outcomes.extend(joined.unwrap_or_else(|e| vec![Err(vanished(&e))]));
                }
            }
            Transport::WebSocket => {
                let mut tasks = JoinSet::new();
                for mut socket in std::mem::take(&mut self.sockets) {
                    let (create, next) = (self.create.clone(), Arc::clone(&next));
                    tasks.spawn(async move {
                        let mut outcomes = Vec::new();
                        while claim(&next) {
                            outcomes.push(socket.turn(&create, timeout).await);
                        }
                        (socket, outcomes)
                    });
                }
                while let Some(joined) = tasks.join_next().await {
                    match joined {
                        Ok((socket, done)) => {
                            self.sockets.push(socket);
                            outcomes.extend(done);
                        }
                        Err(e) => outcomes.push(Err(vanished(&e))),
                    }
                }
            }
        }
        outcomes
    }
}

fn vanished(e: &tokio::task::JoinError) -> Failure {
    Failure::Transport(format!("client loop failed: {e}"))
}

/// One cell's turns over all rounds, and what they cost.
pub struct Cell {
    pub recorder: Recorder,
    /// Time spent sending turns (without the pauses between cells).
    pub busy: Duration,
    /// Body chunks (HTTP) or messages (WebSocket) the clients read.
    pub reads: u64,
    /// CPU of the gateway over the cell (none when going direct, or when unreadable).
    pub gateway_cpu: Option<Duration>,
    pub mock_cpu: Option<Duration>,
}

impl Cell {
    pub fn new(leg: &Leg) -> Result<Cell, BenchError> {
        Ok(Cell {
            recorder: Recorder::new()?,
            busy: Duration::ZERO,
            reads: 0,
            gateway_cpu: leg.pid.map(|_| Duration::ZERO),
            mock_cpu: Some(Duration::ZERO),
        })
    }

    /// Runs `turns` more turns of this cell and adds them and their CPU to it.
    pub async fn measure(
        &mut self,
        leg: &mut Leg,
        transport: Transport,
        turns: u64,
        mock_pid: u32,
        timeout: Duration,
    ) {
        let ticks = crate::procstat::clock_ticks();
        let gateway = leg.pid.and_then(CpuMark::take);
        let mock = CpuMark::take(mock_pid);
        let began = Instant::now();
        let outcomes = leg.drive(transport, turns, timeout).await;
        self.busy += began.elapsed();
        tokio::time::sleep(SETTLE).await;
        add(
            &mut self.gateway_cpu,
            gateway.and_then(|m| m.elapsed(ticks)),
        );
        add(&mut self.mock_cpu, mock.and_then(|m| m.elapsed(ticks)));
        for outcome in outcomes {
            if let Ok(timed) = &outcome {
                self.reads += u64::from(timed.reads);
            }
            self.recorder.record(&outcome.map(|t| t.done));
        }
    }

    /// Turns answered or failed.
    pub fn turns(&self) -> u64 {
        self.recorder.ok + self.recorder.errors.total()
    }
}

/// Adds a reading to a running total, which stays unknown once a reading was missing.
fn add(total: &mut Option<Duration>, reading: Option<Duration>) {
    *total = total.zip(reading).map(|(a, b)| a + b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_cpu_reading_makes_the_total_unknown() {
        let mut total = Some(Duration::ZERO);
        add(&mut total, Some(Duration::from_millis(30)));
        add(&mut total, Some(Duration::from_millis(20)));
        assert_eq!(total, Some(Duration::from_millis(50)));
        add(&mut total, None);
        add(&mut total, Some(Duration::from_millis(20)));
        assert_eq!(total, None);
    }
}
