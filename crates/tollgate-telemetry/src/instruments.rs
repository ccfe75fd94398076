//! The instruments of `docs/metrics.md`, created once on the one MeterProvider. Synchronous
//! instruments are recorded on the request path; gauges whose truth lives elsewhere (budget
//! ratios, ledger queue, export failures) are observable and read at collection time.

use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    Counter, Histogram, Meter, ObservableCounter, ObservableGauge, UpDownCounter,
};

use crate::export_errors::{ExportErrors, Signal};
use crate::names::{self, MetricDef, label};

/// Labels of one budget's gauge: budget id, team, cost centre, scope, period.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BudgetKey {
    pub budget: String,
    pub team: String,
    pub cost_centre: String,
    pub scope: String,
    pub period: String,
}

/// Where the ledger gauges read from: `(queue depth, spool bytes)`.
pub(crate) type LedgerProbe = Arc<dyn Fn() -> (u64, u64) + Send + Sync>;

pub(crate) struct Instruments {
    pub requests: Counter<u64>,
    pub tokens: Counter<u64>,
    pub spend: Counter<u64>,
    pub duration: Histogram<f64>,
    pub ttfb: Histogram<f64>,
    pub tool_calls: Counter<u64>,
    pub rejections: Counter<u64>,
    pub upstream_errors: Counter<u64>,
    pub budget_events: Counter<u64>,
    pub session_loop_events: Counter<u64>,
    pub session_cost_events: Counter<u64>,
    pub sockets_opened: Counter<u64>,
    pub sockets_open: UpDownCounter<i64>,
    pub socket_duration: Histogram<f64>,
    pub codex_tasks: Counter<u64>,
    pub codex_gate_runs: Counter<u64>,
    pub codex_tool_events: Counter<u64>,
    pub codex_session_duration: Histogram<f64>,
    pub codex_turn_duration: Histogram<f64>,
    pub codex_tokens: Counter<u64>,
    pub codex_tool_decisions: Counter<u64>,
    pub codex_api_errors: Counter<u64>,
    pub intake_exports: Counter<u64>,
    pub intake_dropped: Counter<u64>,
    // Kept so their callbacks stay registered for the provider's lifetime.
    _observed: (
        ObservableGauge<f64>,
        ObservableGauge<u64>,
        ObservableGauge<u64>,
        ObservableCounter<u64>,
    ),
}

fn counter(meter: &Meter, d: MetricDef) -> Counter<u64> {
    meter
        .u64_counter(d.name)
        .with_unit(d.unit)
        .with_description(d.description)
        .build()
}

fn seconds(meter: &Meter, d: MetricDef) -> Histogram<f64> {
    histogram(meter, d, &names::BUCKETS_SECONDS)
}

fn histogram(meter: &Meter, d: MetricDef, buckets: &[f64]) -> Histogram<f64> {
    meter
        .f64_histogram(d.name)
        .with_unit(d.unit)
        .with_description(d.description)
        .with_boundaries(buckets.to_vec())
        .build()
}

impl Instruments {
    pub(crate) fn new(
        meter: &Meter,
        budgets: Arc<DashMap<BudgetKey, f64>>,
        ledger: Arc<RwLock<Option<LedgerProbe>>>,
        export_errors: Arc<ExportErrors>,
    ) -> Instruments {
        let budget_used = meter
            .f64_observable_gauge(names::BUDGET_USED.name)
            .with_unit(names::BUDGET_USED.unit)
            .with_description(names::BUDGET_USED.description)
            .with_callback(move |observer| {
                for entry in budgets.iter() {
                    let k = entry.key();
                    observer.observe(
                        *entry.value(),
                        &[
                            KeyValue::new(label::BUDGET, k.budget.clone()),
                            KeyValue::new(label::TEAM, k.team.clone()),
                            KeyValue::new(label::COST_CENTRE, k.cost_centre.clone()),
                            KeyValue::new(label::SCOPE, k.scope.clone()),
                            KeyValue::new(label::PERIOD, k.period.clone()),
                        ],
                    );
                }
            })
            .build();
        let probe = |pick: fn((u64, u64)) -> u64| {
            let ledger = ledger.clone();
            move |observer: &dyn opentelemetry::metrics::AsyncInstrument<u64>| {
                let f = ledger.read().ok().and_then(|g| g.clone());
                if let Some(f) = f {
                    observer.observe(pick(f()), &[]);
                }
            }
        };
        let queue_depth = meter
            .u64_observable_gauge(names::LEDGER_QUEUE_DEPTH.name)
            .with_unit(names::LEDGER_QUEUE_DEPTH.unit)
            .with_description(names::LEDGER_QUEUE_DEPTH.description)
            .with_callback(probe(|(depth, _)| depth))
            .build();
        let spool = meter
            .u64_observable_gauge(names::LEDGER_SPOOL.name)
            .with_unit(names::LEDGER_SPOOL.unit)
            .with_description(names::LEDGER_SPOOL.description)
            .with_callback(probe(|(_, bytes)| bytes))
            .build();
        let export = meter
            .u64_observable_counter(names::EXPORT_ERRORS.name)
            .with_unit(names::EXPORT_ERRORS.unit)
            .with_description(names::EXPORT_ERRORS.description)
            .with_callback(move |observer| {
                for signal in Signal::ALL {
                    observer.observe(
                        export_errors.count(signal),
                        &[KeyValue::new(label::SIGNAL, signal.label())],
                    );
                }
            })
            .build();
        Instruments {
            requests: counter(meter, names::REQUESTS),
            tokens: counter(meter, names::TOKENS),
            spend: counter(meter, names::SPEND),
            duration: seconds(meter, names::REQUEST_DURATION),
            ttfb: seconds(meter, names::TIME_TO_FIRST_BYTE),
            tool_calls: counter(meter, names::TOOL_CALLS),
            rejections: counter(meter, names::REJECTIONS),
            upstream_errors: counter(meter, names::UPSTREAM_ERRORS),
            budget_events: counter(meter, names::BUDGET_EVENTS),
            session_loop_events: counter(meter, names::SESSION_LOOP_EVENTS),
            session_cost_events: counter(meter, names::SESSION_COST_EVENTS),
            sockets_opened: counter(meter, names::WEBSOCKET_CONNECTIONS),
            sockets_open: meter
                .i64_up_down_counter(names::WEBSOCKET_OPEN.name)
                .with_unit(names::WEBSOCKET_OPEN.unit)
                .with_description(names::WEBSOCKET_OPEN.description)
                .build(),
            socket_duration: histogram(
                meter,
                names::WEBSOCKET_DURATION,
                &names::BUCKETS_CONNECTION_SECONDS,
            ),
            intake_exports: counter(meter, names::INTAKE_EXPORTS),
            intake_dropped: counter(meter, names::INTAKE_DROPPED),
            codex_tasks: counter(meter, names::CODEX_TASKS),
            codex_gate_runs: counter(meter, names::CODEX_GATE_RUNS),
            codex_tool_events: counter(meter, names::CODEX_TOOL_EVENTS),
            codex_session_duration: histogram(
                meter,
                names::CODEX_SESSION_DURATION,
                &names::BUCKETS_SESSION_SECONDS,
            ),
            codex_turn_duration: histogram(
                meter,
                names::CODEX_TURN_DURATION,
                &names::BUCKETS_TURN_SECONDS,
            ),
            codex_tokens: counter(meter, names::CODEX_TOKENS),
            codex_tool_decisions: counter(meter, names::CODEX_TOOL_DECISIONS),
            codex_api_errors: counter(meter, names::CODEX_API_ERRORS),
            _observed: (budget_used, queue_depth, spool, export),
        }
    }
}
