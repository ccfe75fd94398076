//! Signals derived from Codex's own telemetry on its way through the OTLP intake: per team
//! metrics (sessions' time to resolution by task type, turn durations, Codex's own token
//! counts, tool decisions, API errors) and, per session, rows in `session_signals` that the
//! session view (`GET /admin/v1/sessions/{id}`, `tollgate session show`) shows beside cost.
//!
//! ```text
//! intake (decoding slot)           CodexSignals::traces / logs / metrics
//!    │  token counts ─────────────► tollgate_codex_tokens_total        (no session: no row)
//!    │  session rows ─► bounded queue ─► writer task ─► session_signals (one transaction)
//!    ▼                                        └─► metrics, for rows stored for the first time
//! ```
//! The observer runs in the intake's decoding slot, so it only reads and copies; the database
//! write and the task-type lookup happen on the writer task. A full queue drops the export's
//! rows (counted, warned) rather than slow the intake. Metrics that come from session rows are
//! counted once per row: a retried export adds nothing twice.

mod read;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tollgate_store::{SessionSignal, SignalKind, Store};
use tollgate_telemetry::Telemetry;

use crate::hooks_http::task_type_label;
use crate::intake::{IntakeObserver, TeamStamp};

/// Exports whose rows wait for the writer; beyond this, rows are dropped.
const QUEUE: usize = 1024;
/// Rows one export may add: a Codex export has a handful; more is not Codex.
const MAX_ROWS_PER_EXPORT: usize = 100;
/// Distinct tool names and decisions a process gives labels of their own; later ones are
/// `other`, so a key inventing names cannot grow the metric registry without bound.
const MAX_LABELS: usize = 256;

/// One export's session rows, with the team they belong to.
struct Batch {
    team: TeamStamp,
    rows: Vec<SessionSignal>,
}

/// The [`IntakeObserver`] that derives Codex's session signals.
pub struct CodexSignals {
    telemetry: Telemetry,
    queue: mpsc::Sender<Batch>,
    dropped: AtomicU64,
}

impl CodexSignals {
    /// Starts the writer on `tasks`; it stops when `cancel` fires, after storing what is queued.
    pub fn start(
        store: Store,
        telemetry: Telemetry,
        tasks: &TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<CodexSignals> {
        let (queue, batches) = mpsc::channel(QUEUE);
        tasks.spawn(write(store, telemetry.clone(), batches, cancel));
        Arc::new(CodexSignals {
            telemetry,
            queue,
            dropped: AtomicU64::new(0),
        })
    }

    fn submit(&self, team: &TeamStamp, found: impl Iterator<Item = SessionSignal>) {
        let rows: Vec<SessionSignal> = found
            .take(MAX_ROWS_PER_EXPORT)
            .map(|row| SessionSignal {
                team_id: team.team_id.clone(),
                ..row
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        let batch = Batch {
            team: team.clone(),
            rows,
        };
        if self.queue.try_send(batch).is_err() {
            // Warn at the 1st, 2nd, 4th, 8th … drop: visible without a log storm.
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "Codex session signals dropped: the database is not keeping up"
                );
            }
        }
    }
}

impl IntakeObserver for CodexSignals {
    fn traces(&self, team: &TeamStamp, request: &ExportTraceServiceRequest) {
        let spans = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans);
        self.submit(team, spans.filter_map(read::span));
    }

    fn logs(&self, team: &TeamStamp, request: &ExportLogsServiceRequest) {
        let records = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records);
        self.submit(team, records.filter_map(read::log));
    }

    fn metrics(&self, team: &TeamStamp, request: &ExportMetricsServiceRequest) {
        let cost_centre = team.cost_centre.as_deref().unwrap_or_default();
        let metrics = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics);
        for metric in metrics {
            for (kind, tokens) in read::token_usage(metric) {
                self.telemetry
                    .codex_tokens(&team.team, cost_centre, kind, tokens);
            }
        }
    }
}

/// The writer: stores each batch, then counts the rows that were new.
async fn write(
    store: Store,
    telemetry: Telemetry,
    mut batches: mpsc::Receiver<Batch>,
    cancel: CancellationToken,
) {
    let mut labels = Labels::default();
    loop {
        let batch = tokio::select! {
            batch = batches.recv() => batch,
            () = cancel.cancelled() => None,
        };
        let Some(batch) = batch else { break };
        save(&store, &telemetry, &mut labels, batch).await;
    }
    // Shutdown: what was accepted before it is still stored.
    batches.close();
    while let Ok(batch) = batches.try_recv() {
        save(&store, &telemetry, &mut labels, batch).await;
    }
}

async fn save(store: &Store, telemetry: &Telemetry, labels: &mut Labels, batch: Batch) {
    let new = match store.record_session_signals(&batch.rows).await {
        Ok(new) => new,
        Err(error) => {
            // The rows are lost; their metrics are still counted, once.
            tracing::warn!(%error, rows = batch.rows.len(), "cannot store Codex session signals");
            vec![true; batch.rows.len()]
        }
    };
    let team = batch.team.team.as_str();
    let cost_centre = batch.team.cost_centre.as_deref().unwrap_or_default();
    for (row, _) in batch.rows.iter().zip(new).filter(|(_, new)| *new) {
        let seconds = row.duration_ms.unwrap_or(0) as f64 / 1000.0;
        match &row.kind {
            SignalKind::Session => {
                // Time to resolution per task type: the type `tollgate hook --task-type`
                // reported for this session, if any.
                let task_type = store
                    .session_task_type(&row.team_id, &row.session_id)
                    .await
                    .ok()
                    .flatten();
                let task_type = task_type.as_deref().map_or("other", task_type_label);
                telemetry.codex_session(team, cost_centre, task_type, seconds);
            }
            SignalKind::Turn => telemetry.codex_turn(team, cost_centre, seconds),
            SignalKind::ToolDecision { tool, decision } => {
                let tool = labels.bounded(tool);
                let decision = labels.bounded(decision);
                telemetry.codex_tool_decision(team, cost_centre, tool, decision);
            }
            SignalKind::ApiError { transport, status } => {
                telemetry.codex_api_error(team, cost_centre, transport, status);
            }
        }
    }
}

/// The label values given out so far; past [`MAX_LABELS`], new ones are `other`.
#[derive(Default)]
struct Labels(std::collections::HashSet<String>);

impl Labels {
    fn bounded<'a>(&mut self, value: &'a str) -> &'a str {
        if self.0.contains(value) {
            return value;
        }
        if self.0.len() >= MAX_LABELS {
            return "other";
        }
        self.0.insert(value.to_string());
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_past_the_cap_are_other() {
        let mut labels = Labels::default();
        for i in 0..MAX_LABELS {
            let tool = format!("tool_{i}");
            assert_eq!(labels.bounded(&tool), tool);
        }
        assert_eq!(labels.bounded("tool_0"), "tool_0", "known values stay");
        assert_eq!(labels.bounded("one_more"), "other");
    }
}
