//! `[[tool]]` entries: per-call prices of built-in tools, each for every model or for a list.

use std::collections::HashMap;

use toml::{Table, Value};

use super::{Problems, effective_from, name_and_label, usd};
use crate::pricing::ToolPrice;

const TOOL_FIELDS: &[&str] = &["name", "effective_from", "per_call", "models"];
const PER_CALL: &str = "USD per call";

/// One `[[tool]]`; `None` when a field is missing or malformed (already reported).
pub(super) fn tool(i: usize, t: &Table, p: &mut Problems) -> Option<ToolPrice> {
    let (name, label) = name_and_label("tool", i, " (e.g. \"web_search\")", t, p);
    p.unknown_fields(t, &label, TOOL_FIELDS);
    let effective = effective_from(t, &label, p);
    let per_call = match t.get("per_call") {
        Some(v) => usd(v, &format!("{label}.per_call"), PER_CALL, p),
        None => {
            p.push(
                format!("{label}.per_call"),
                "missing (USD per call, e.g. \"0.01\")",
            );
            None
        }
    };
    let models = match t.get("models") {
        None => Some(Vec::new()),
        Some(Value::Array(items)) if items.is_empty() => {
            p.push(
                format!("{label}.models"),
                "lists no model; omit models to price the tool for every model",
            );
            None
        }
        Some(Value::Array(items)) => model_names(items, &format!("{label}.models"), p),
        Some(_) => {
            p.push(format!("{label}.models"), "must be an array of model names");
            None
        }
    };
    let (effective_from, effective_from_ms) = effective?;
    Some(ToolPrice {
        name: name?,
        effective_from,
        per_call: per_call?,
        models: models?,
        effective_from_ms,
    })
}

fn model_names(items: &[Value], path: &str, p: &mut Problems) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut ok = true;
    for (j, item) in items.iter().enumerate() {
        let field = format!("{path}[{j}]");
        match item {
            Value::String(s) if !s.trim().is_empty() => {
                let model = s.trim();
                if out.iter().any(|m| m == model) {
                    p.push(field, format!("'{model}' is listed twice"));
                    ok = false;
                } else {
                    out.push(model.to_string());
                }
            }
            _ => {
                p.push(field, "must be a non-empty string");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Tool name → entry indices by `effective_from`. Two entries for the same tool from the same
/// day that could both apply to one model (both for every model, or both listing it) would
/// make the price of a call ambiguous: reported.
pub(super) fn timelines(
    tools: &[(usize, ToolPrice)],
    p: &mut Problems,
) -> HashMap<String, Vec<usize>> {
    let mut timelines: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, (file_index, tool)) in tools.iter().enumerate() {
        let same_day = tools.iter().take(i).filter(|(_, earlier)| {
            earlier.name == tool.name && earlier.effective_from_ms == tool.effective_from_ms
        });
        for (_, earlier) in same_day {
            let clash = if tool.models.is_empty() || earlier.models.is_empty() {
                (tool.models.is_empty() && earlier.models.is_empty())
                    .then(|| "every model".to_string())
            } else {
                tool.models
                    .iter()
                    .find(|m| earlier.models.contains(m))
                    .map(|m| format!("'{m}'"))
            };
            if let Some(what) = clash {
                p.push(
                    format!("tool[{file_index}] ({}).effective_from", tool.name),
                    format!(
                        "'{}' already has a price for {what} from {}; one entry per tool, \
                         model and effective_from",
                        tool.name, tool.effective_from
                    ),
                );
            }
        }
        timelines.entry(tool.name.clone()).or_default().push(i);
    }
    for timeline in timelines.values_mut() {
        timeline.sort_by_key(|&i| tools.get(i).map_or(0, |(_, t)| t.effective_from_ms));
    }
    timelines
}
