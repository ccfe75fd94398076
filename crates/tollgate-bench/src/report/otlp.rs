//! The OTLP section: what each gateway's receiver decoded against the calls the gateway was
//! sent, which shows whether export kept up or dropped.

use std::fmt::Write;

use super::cells::one_line;
use crate::scenario::TargetKind;
use crate::suite::Results;

pub fn section(out: &mut String, results: &Results) {
    out.push_str("## OTLP export: did it keep up?\n\n");
    if let Some(reason) = &results.otlp_off {
        let _ = writeln!(
            out,
            "**OTLP export was off in this run**, so the tollgate rows above measure everything \
             else: {}\n",
            one_line(reason)
        );
        return;
    }
    out.push_str(
        "Each tollgate exported traces, metrics and logs over OTLP/HTTP (protobuf) to its own \
         `tests/otlp/receiver.py --discard`, which decodes every export with the official \
         protobuf classes and counts what it holds. The gateway ran with its default export \
         settings (batched spans and logs, metrics every 10 s); its counts were read after it \
         was stopped with SIGTERM, which flushes what it still held. Each call that reaches the \
         upstream makes one span and one `tollgate.cost` log record, so fewer spans than calls \
         means the exporter's bounded queue dropped some.\n\n",
    );
    let _ = writeln!(
        out,
        "| gateway | calls sent (warm-ups included) | spans received | spans per call | cost log records | metric data points | exports: traces / logs / metrics |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|");
    for kind in TargetKind::TOLLGATES {
        let Some(counts) = results.otlp.get(&kind) else {
            continue;
        };
        let calls = results.calls.get(&kind).copied().unwrap_or(0);
        let _ = match counts {
            Ok(c) => {
                let per_call = if calls == 0 {
                    "—".to_owned()
                } else {
                    let ratio = c.spans as f64 / calls as f64;
                    // Loud when spans went missing.
                    if c.spans < calls {
                        format!("**⚠ {ratio:.3}**")
                    } else {
                        format!("{ratio:.3}")
                    }
                };
                let [traces, logs, metrics] = c.exports;
                writeln!(
                    out,
                    "| {} | {calls} | {} | {per_call} | {} | {} | {traces} / {logs} / {metrics} |",
                    kind.label(),
                    c.spans,
                    c.log_records,
                    c.metric_points,
                )
            }
            Err(e) => writeln!(
                out,
                "| {} | {calls} | not read: {} | | | | |",
                kind.label(),
                one_line(e)
            ),
        };
    }
    out.push('\n');
}
