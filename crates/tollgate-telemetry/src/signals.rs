//! Events that are not one request: rejections, budget state, ledger probes and the session
//! trajectory signals. Each updates its metric and, for the rare session signals, emits a log
//! record (and one tracing warning, since an operator wants to see those even without OTLP).

use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use tollgate_core::LedgerEvent;

use crate::instruments::BudgetKey;
use crate::names::{attr, event, label};
use crate::request::{any_value, at_ms};
use crate::trajectory::SessionSignal;
use crate::{Signal, Telemetry};

impl Telemetry {
    /// A request tollgate refused. `reason`: `budget`, `session_cap`, `rate_limit`,
    /// `model_not_allowed`, `model_not_priced` or `session_loop`.
    pub fn rejection(&self, team: &str, cost_centre: &str, reason: &str) {
        *self
            .inner
            .refusals
            .entry((team.to_string(), reason.to_string()))
            .or_insert(0) += 1;
        if let Some(m) = &self.inner.instruments {
            m.rejections.add(
                1,
                &[
                    KeyValue::new(label::TEAM, team.to_string()),
                    KeyValue::new(label::COST_CENTRE, cost_centre.to_string()),
                    KeyValue::new(label::REASON, reason.to_string()),
                ],
            );
        }
    }

    /// The refusals counted since the last call, as (team, reason, count), emptied.
    pub fn take_refusals(&self) -> Vec<(String, String, u64)> {
        let keys: Vec<(String, String)> = self
            .inner
            .refusals
            .iter()
            .map(|e| e.key().clone())
            .collect();
        keys.into_iter()
            .filter_map(|key| self.inner.refusals.remove(&key))
            .map(|((team, reason), n)| (team, reason, n))
            .collect()
    }

    /// A Responses WebSocket connection of `team` opened.
    pub fn socket_opened(&self, team: &str, cost_centre: &str) {
        if let Some(m) = &self.inner.instruments {
            let labels = [
                KeyValue::new(label::TEAM, team.to_string()),
                KeyValue::new(label::COST_CENTRE, cost_centre.to_string()),
            ];
            m.sockets_opened.add(1, &labels);
            m.sockets_open.add(1, &labels);
        }
    }

    /// A Responses WebSocket connection of `team` closed after `seconds`.
    pub fn socket_closed(&self, team: &str, cost_centre: &str, seconds: f64) {
        if let Some(m) = &self.inner.instruments {
            let labels = [
                KeyValue::new(label::TEAM, team.to_string()),
                KeyValue::new(label::COST_CENTRE, cost_centre.to_string()),
            ];
            m.sockets_open.add(-1, &labels);
            m.socket_duration.record(seconds, &labels);
        }
    }

    /// An OTLP export of `team` accepted at the intake (`/otlp/v1/*`).
    pub fn intake_export(&self, team: &str, signal: Signal) {
        if let Some(m) = &self.inner.instruments {
            m.intake_exports.add(
                1,
                &[
                    KeyValue::new(label::TEAM, team.to_string()),
                    KeyValue::new(label::SIGNAL, signal.label()),
                ],
            );
        }
    }

    /// An accepted intake export that will not reach the collector. `reason`: `no_destination`,
    /// `queue_full`, `send_failed`, `collector_refused` or `shutdown`.
    pub fn intake_dropped(&self, signal: Signal, reason: &'static str) {
        if let Some(m) = &self.inner.instruments {
            m.intake_dropped.add(
                1,
                &[
                    KeyValue::new(label::SIGNAL, signal.label()),
                    KeyValue::new(label::REASON, reason),
                ],
            );
        }
    }

    /// A Codex turn stopped (a `Stop` hook event): `outcome` is `completed`, `failed` or
    /// `gate_failed`; `task_type` a bounded label (`other` when none fits).
    pub fn codex_task(&self, team: &str, cost_centre: &str, outcome: &str, task_type: &str) {
        if let Some(m) = &self.inner.instruments {
            m.codex_tasks.add(
                1,
                &[
                    KeyValue::new(label::TEAM, team.to_string()),
                    KeyValue::new(label::COST_CENTRE, cost_centre.to_string()),
                    KeyValue::new(label::OUTCOME, outcome.to_string()),
                    KeyValue::new(label::TASK_TYPE, task_type.to_string()),
                ],
            );
        }
    }

    /// A quality gate run by `tollgate hook --gate`: passed when it exited 0.
    pub fn codex_gate_run(&self, team: &str, cost_centre: &str, passed: bool) {
        if let Some(m) = &self.inner.instruments {
            m.codex_gate_runs.add(
                1,
                &[
                    KeyValue::new(label::TEAM, team.to_string()),
                    KeyValue::new(label::COST_CENTRE, cost_centre.to_string()),
                    KeyValue::new(label::RESULT, if passed { "pass" } else { "fail" }),
                ],
            );
        }
    }

    /// A Codex tool-use hook event; `tool` is a bounded label (`other` when none fits).
    pub fn codex_tool_event(&self, team: &str, cost_centre: &str, tool: &str) {
        if let Some(m) = &self.inner.instruments {
            m.codex_tool_events.add(
                1,
                &[
                    KeyValue::new(label::TEAM, team.to_string()),
                    KeyValue::new(label::COST_CENTRE, cost_centre.to_string()),
                    KeyValue::new(label::TOOL, tool.to_string()),
                ],
            );
        }
    }

    /// A Codex session ended after `seconds` (its `session_loop` span); `task_type` as in
    /// [`Telemetry::codex_task`].
    pub fn codex_session(&self, team: &str, cost_centre: &str, task_type: &str, seconds: f64) {
        if let Some(m) = &self.inner.instruments {
            m.codex_session_duration.record(
                seconds,
                &[
                    KeyValue::new(label::TEAM, team.to_string()),
                    KeyValue::new(label::COST_CENTRE, cost_centre.to_string()),
                    KeyValue::new(label::TASK_TYPE, task_type.to_string()),
                ],
            );
        }
    }

    /// A Codex turn took `seconds` (its `session_task.turn` span).
    pub fn codex_turn(&self, team: &str, cost_centre: &str, seconds: f64) {
        if let Some(m) = &self.inner.instruments {
            m.codex_turn_duration.record(
                seconds,
                &[
                    KeyValue::new(label::TEAM, team.to_string()),
                    KeyValue::new(label::COST_CENTRE, cost_centre.to_string()),
                ],
            );
        }
    }

    /// Tokens Codex counted itself; `kind` is one of Codex's token types (`input`, `output`, …).
    pub fn codex_tokens(&self, team: &str, cost_centre: &str, kind: &'static str, tokens: u64) {
        if let Some(m) = &self.inner.instruments {
            m.codex_tokens.add(
                tokens,
                &[
                    KeyValue::new(label::TEAM, team.to_string()),
                    KeyValue::new(label::COST_CENTRE, cost_centre.to_string()),
                    KeyValue::new(label::TYPE, kind),
                ],
            );
        }
    }

    /// Codex decided whether a tool call may run; `tool` and `decision` are bounded labels.
    pub fn codex_tool_decision(&self, team: &str, cost_centre: &str, tool: &str, decision: &str) {
        if let Some(m) = &self.inner.instruments {
            m.codex_tool_decisions.add(
                1,
                &[
                    KeyValue::new(label::TEAM, team.to_string()),
                    KeyValue::new(label::COST_CENTRE, cost_centre.to_string()),
                    KeyValue::new(label::TOOL, tool.to_string()),
                    KeyValue::new(label::DECISION, decision.to_string()),
                ],
            );
        }
    }

    /// A model API request Codex reported failing: `transport` `http` or `websocket`, `status`
    /// the HTTP status or `none` (no answer).
    pub fn codex_api_error(&self, team: &str, cost_centre: &str, transport: &str, status: &str) {
        if let Some(m) = &self.inner.instruments {
            m.codex_api_errors.add(
                1,
                &[
                    KeyValue::new(label::TEAM, team.to_string()),
                    KeyValue::new(label::COST_CENTRE, cost_centre.to_string()),
                    KeyValue::new(label::TRANSPORT, transport.to_string()),
                    KeyValue::new(label::STATUS, status.to_string()),
                ],
            );
        }
    }

    /// The committed/limit ratio of a budget's current window, reported as
    /// `tollgate_budget_used_ratio` until updated or forgotten. `scope`: `team` or `key`;
    /// `period`: `day`, `week`, `month` or `total`.
    pub fn budget_used(
        &self,
        budget_id: &str,
        team: &str,
        cost_centre: &str,
        scope: &str,
        period: &str,
        ratio: f64,
    ) {
        let key = BudgetKey {
            budget: budget_id.to_string(),
            team: team.to_string(),
            cost_centre: cost_centre.to_string(),
            scope: scope.to_string(),
            period: period.to_string(),
        };
        if let Some(mut value) = self.inner.budgets.get_mut(&key) {
            *value = ratio;
            return;
        }
        // New labels: a renamed team or a changed period replaces the budget's old series.
        self.inner.budgets.retain(|k, _| k.budget != budget_id);
        self.inner.budgets.insert(key, ratio);
    }

    /// Stops reporting a deleted budget.
    pub fn budget_forget(&self, budget_id: &str) {
        self.inner.budgets.retain(|k, _| k.budget != budget_id);
    }

    /// A budget event: `kind` is `soft` (threshold crossed) or `hard` (limit reached).
    pub fn budget_event(&self, team: &str, cost_centre: &str, kind: &str) {
        if let Some(m) = &self.inner.instruments {
            m.budget_events.add(
                1,
                &[
                    KeyValue::new(label::TEAM, team.to_string()),
                    KeyValue::new(label::COST_CENTRE, cost_centre.to_string()),
                    KeyValue::new(label::KIND, kind.to_string()),
                ],
            );
        }
    }

    /// The message to refuse this session's requests with, when the loop detector stopped it
    /// (`loop_refuse`). Checked by the proxy before forwarding.
    pub fn session_refused(&self, team_id: &str, session_id: &str) -> Option<String> {
        self.inner.trajectories.session_refused(team_id, session_id)
    }

    pub(crate) fn session_signal(&self, signal: &SessionSignal, e: &LedgerEvent, team: &str) {
        let cost_centre = e.cost_centre.clone().unwrap_or_default();
        let session = e.session_id.clone().unwrap_or_default();
        let labels = [
            KeyValue::new(label::TEAM, team.to_string()),
            KeyValue::new(label::COST_CENTRE, cost_centre.clone()),
        ];
        let (name, details) = match signal {
            SessionSignal::Loop {
                calls,
                window_secs,
                refused,
            } => {
                tracing::warn!(team, session = %session, calls, window_secs, refused, "session looks like a tool loop");
                if let Some(m) = &self.inner.instruments {
                    m.session_loop_events.add(1, &labels);
                }
                (
                    event::SESSION_LOOP,
                    vec![
                        KeyValue::new(attr::SESSION_LOOP_CALLS, i64::from(*calls)),
                        KeyValue::new(
                            attr::SESSION_WINDOW_SECS,
                            i64::try_from(*window_secs).unwrap_or(i64::MAX),
                        ),
                        KeyValue::new(attr::SESSION_REFUSED, *refused),
                    ],
                )
            }
            SessionSignal::Cost { cost, threshold } => {
                tracing::warn!(team, session = %session, cost = %cost, threshold = %threshold, "session cost crossed the alert threshold");
                if let Some(m) = &self.inner.instruments {
                    m.session_cost_events.add(1, &labels);
                }
                (
                    event::SESSION_COST,
                    vec![
                        KeyValue::new(attr::SESSION_COST_USD, cost.to_usd_string()),
                        KeyValue::new(attr::SESSION_THRESHOLD_USD, threshold.to_usd_string()),
                    ],
                )
            }
        };
        let Some(logger) = &self.inner.logger else {
            return;
        };
        let mut record = logger.create_log_record();
        record.set_event_name(name);
        record.set_severity_number(Severity::Warn);
        record.set_severity_text("WARN");
        record.set_timestamp(at_ms(e.finished_at_ms));
        record.set_observed_timestamp(SystemTime::now());
        record.set_body(AnyValue::from(format!(
            "{name}: team {team}, session {session}"
        )));
        record.add_attributes(
            [
                KeyValue::new(attr::TEAM, team.to_string()),
                KeyValue::new(attr::TEAM_ID, e.team_id.clone()),
                KeyValue::new(attr::COST_CENTRE, cost_centre),
                KeyValue::new(attr::SESSION_ID, session),
                KeyValue::new(attr::REQUEST_ID, e.request_id.clone()),
            ]
            .into_iter()
            .chain(details)
            .map(|kv| (kv.key, any_value(kv.value))),
        );
        logger.emit(record);
    }
}
