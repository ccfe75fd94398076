//! Reading `prices.toml`: walks the TOML tree by hand rather than through serde so that every
//! problem — unknown fields included — is collected and reported at once, each under the path
//! of its field (`model[3] (gpt-5.5).cached_input`).

use std::collections::HashMap;

use toml::{Table, Value};

use super::units::{PER_1M_TOKENS, Ratio, parse_day, parse_usd};
use super::{LongContext, PriceEntry, PriceTable, Rates, Unpriced};
use crate::config::ConfigProblem;

mod per_image;
mod tool;

const TOP_FIELDS: &[&str] = &["model", "tool", "service_tiers", "unpriced"];
const ENTRY_FIELDS: &[&str] = &[
    "name",
    "aliases",
    "effective_from",
    "input",
    "cached_input",
    "output",
    "long_context",
    "image_input",
    "image_output",
    "audio_input",
    "audio_output",
    "per_image",
    "per_1m_characters",
    "per_minute",
];
/// Fields that price a model by something other than tokens; any of them makes `input` optional.
const NON_TOKEN_FIELDS: &[&str] = &["per_image", "per_1m_characters", "per_minute"];
const PER_1M_CHARACTERS: &str = "USD per 1M characters";
const PER_MINUTE: &str = "USD per minute";
const LONG_CONTEXT_FIELDS: &[&str] = &["above_input_tokens", "input", "output"];
const UNPRICED_FIELDS: &[&str] = &["policy", "input", "cached_input", "output"];

/// Tiers every table knows unless `[service_tiers]` overrides them.
const DEFAULT_TIERS: &[(&str, u64, u64)] = &[("flex", 1, 2), ("batch", 1, 2), ("priority", 2, 1)];

#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn unknown_fields(&mut self, table: &Table, path: &str, known: &[&str]) {
        for key in table.keys().filter(|k| !known.contains(&k.as_str())) {
            let field = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            self.push(
                field,
                format!("unknown field; expected one of: {}", known.join(", ")),
            );
        }
    }
}

pub(super) fn parse(text: &str) -> Result<PriceTable, Vec<ConfigProblem>> {
    let root: Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e.span().map(|s| line_col(text, s.start));
        let field = at.map_or_else(
            || "price table".to_string(),
            |(line, col)| format!("price table (line {line}, column {col})"),
        );
        vec![ConfigProblem {
            field,
            message: e.message().trim().to_string(),
        }]
    })?;
    let mut p = Problems::default();
    p.unknown_fields(&root, "", TOP_FIELDS);

    let mut entries = Vec::new();
    match root.get("model") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Table(t) => entries.extend(entry(i, t, &mut p).map(|e| (i, e))),
                    _ => p.push(format!("model[{i}]"), "must be a table ([[model]])"),
                }
            }
        }
        Some(_) => p.push("model", "must be an array of tables ([[model]] … )"),
    }
    let mut tools = Vec::new();
    match root.get("tool") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Table(t) => tools.extend(tool::tool(i, t, &mut p).map(|e| (i, e))),
                    _ => p.push(format!("tool[{i}]"), "must be a table ([[tool]])"),
                }
            }
        }
        Some(_) => p.push("tool", "must be an array of tables ([[tool]] … )"),
    }
    let tool_timelines = tool::timelines(&tools, &mut p);
    let tiers = service_tiers(root.get("service_tiers"), &mut p);
    let unpriced = unpriced(root.get("unpriced"), &mut p);
    let timelines = timelines(&entries, &mut p);

    if p.0.is_empty() {
        Ok(PriceTable {
            entries: entries.into_iter().map(|(_, e)| e).collect(),
            timelines,
            tiers,
            unpriced,
            tools: tools.into_iter().map(|(_, t)| t).collect(),
            tool_timelines,
        })
    } else {
        Err(p.0)
    }
}

/// An entry's `name` (trimmed, non-empty) and the label its problems are reported under:
/// `model[3] (gpt-5.5)`, or `model[3]` without a name. `example` follows "missing".
fn name_and_label(
    kind: &str,
    i: usize,
    example: &str,
    t: &Table,
    p: &mut Problems,
) -> (Option<String>, String) {
    let name = match t.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(_) => {
            p.push(format!("{kind}[{i}].name"), "must be a non-empty string");
            None
        }
        None => {
            p.push(format!("{kind}[{i}].name"), format!("missing{example}"));
            None
        }
    };
    let label = match &name {
        Some(n) => format!("{kind}[{i}] ({n})"),
        None => format!("{kind}[{i}]"),
    };
    (name, label)
}

/// An entry's `effective_from`, as the day and its epoch ms.
fn effective_from(t: &Table, label: &str, p: &mut Problems) -> Option<(String, i64)> {
    match t.get("effective_from") {
        None => {
            p.push(
                format!("{label}.effective_from"),
                "missing (a UTC day, \"YYYY-MM-DD\")",
            );
            None
        }
        Some(v) => day(v, &format!("{label}.effective_from"), p),
    }
}

/// One `[[model]]`; `None` when a required field is missing or malformed (already reported).
fn entry(i: usize, t: &Table, p: &mut Problems) -> Option<PriceEntry> {
    let (name, label) = name_and_label("model", i, "", t, p);
    p.unknown_fields(t, &label, ENTRY_FIELDS);

    let aliases = aliases(t.get("aliases"), name.as_deref(), &label, p);
    let effective = effective_from(t, &label, p);
    let priced_by_units = NON_TOKEN_FIELDS.iter().any(|k| t.contains_key(*k));
    let input = if priced_by_units && !t.contains_key("input") {
        Some(0)
    } else {
        required_rate(t, "input", &label, p)
    };
    let cached_input = optional_rate(t, "cached_input", &label, p);
    let output = optional_rate(t, "output", &label, p);
    let image_input = optional_rate(t, "image_input", &label, p);
    let image_output = optional_rate(t, "image_output", &label, p);
    let audio_input = optional_rate(t, "audio_input", &label, p);
    let audio_output = optional_rate(t, "audio_output", &label, p);
    let per_image = match t.get("per_image") {
        None => Some(Vec::new()),
        Some(v) => per_image::per_image(v, &format!("{label}.per_image"), p),
    };
    let per_1m_characters = optional_usd(t, "per_1m_characters", PER_1M_CHARACTERS, &label, p);
    let per_minute = optional_usd(t, "per_minute", PER_MINUTE, &label, p);
    let long_context = match t.get("long_context") {
        None => Some(None),
        Some(Value::Table(lc)) => long_context(lc, &format!("{label}.long_context"), p).map(Some),
        Some(_) => {
            p.push(
                format!("{label}.long_context"),
                "must be a table like { above_input_tokens = 272000, input = \"2/1\", output = \"3/2\" }",
            );
            None
        }
    };
    let (effective_from, effective_from_ms) = effective?;
    Some(PriceEntry {
        name: name?,
        aliases,
        effective_from,
        input: input?,
        cached_input: cached_input?,
        output: output?,
        long_context: long_context?,
        image_input: image_input?,
        image_output: image_output?,
        audio_input: audio_input?,
        audio_output: audio_output?,
        per_image: per_image?,
        per_1m_characters: per_1m_characters?,
        per_minute: per_minute?,
        effective_from_ms,
    })
}

fn aliases(
    value: Option<&Value>,
    name: Option<&str>,
    label: &str,
    p: &mut Problems,
) -> Vec<String> {
    let items = match value {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            p.push(
                format!("{label}.aliases"),
                "must be an array of model names",
            );
            return Vec::new();
        }
    };
    let mut out: Vec<String> = Vec::new();
    for (j, item) in items.iter().enumerate() {
        let field = format!("{label}.aliases[{j}]");
        match item {
            Value::String(s) if !s.trim().is_empty() => {
                let alias = s.trim();
                if Some(alias) == name {
                    p.push(field, format!("'{alias}' is the entry's own name"));
                } else if out.iter().any(|a| a == alias) {
                    p.push(field, format!("'{alias}' is listed twice"));
                } else {
                    out.push(alias.to_string());
                }
            }
            _ => p.push(field, "must be a non-empty string"),
        }
    }
    out
}

/// A UTC day as a quoted string, or a bare TOML local date (`2025-01-01`), → (text, epoch ms).
fn day(value: &Value, field: &str, p: &mut Problems) -> Option<(String, i64)> {
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Datetime(dt) if dt.time.is_none() && dt.offset.is_none() => match dt.date {
            Some(d) => format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
            None => String::new(),
        },
        other => {
            p.push(
                field,
                format!(
                    "must be a date string \"YYYY-MM-DD\", not a {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    match parse_day(&text) {
        Ok(ms) => Some((text, ms)),
        Err(message) => {
            p.push(field, message);
            None
        }
    }
}

/// `Some(rate)` in nano-USD `per` something, or `None` after reporting why not.
fn usd(value: &Value, field: &str, per: &str, p: &mut Problems) -> Option<u64> {
    let parsed = match value {
        Value::String(s) => parse_usd(s, per),
        Value::Float(_) => Err("TOML floats are inexact; quote the rate: \"2.50\"".to_string()),
        other => Err(format!(
            "must be a quoted decimal string of {per} like \"2.50\", not a {}",
            other.type_str()
        )),
    };
    parsed.map_err(|message| p.push(field, message)).ok()
}

/// A token rate, in nano-USD per 1M tokens.
fn rate(value: &Value, field: &str, p: &mut Problems) -> Option<u64> {
    usd(value, field, PER_1M_TOKENS, p)
}

fn required_rate(t: &Table, key: &str, label: &str, p: &mut Problems) -> Option<u64> {
    let field = format!("{label}.{key}");
    match t.get(key) {
        Some(v) => rate(v, &field, p),
        None => {
            let hint = if key == "input" && !label.starts_with("unpriced") {
                "; only entries priced per_image, per_1m_characters or per_minute may omit it"
            } else {
                ""
            };
            p.push(
                field,
                format!("missing (USD per 1M tokens, e.g. \"2.50\"){hint}"),
            );
            None
        }
    }
}

/// `Some(None)` when absent, `None` when present but bad.
fn optional_rate(t: &Table, key: &str, label: &str, p: &mut Problems) -> Option<Option<u64>> {
    match t.get(key) {
        None => Some(None),
        Some(v) => rate(v, &format!("{label}.{key}"), p).map(Some),
    }
}

fn ratio(value: Option<&Value>, field: &str, p: &mut Problems) -> Option<Ratio> {
    let parsed = match value {
        Some(Value::String(s)) => Ratio::parse(s),
        Some(other) => Err(format!(
            "must be a quoted ratio like \"3/2\", not a {}",
            other.type_str()
        )),
        None => Err("missing (a ratio like \"3/2\")".to_string()),
    };
    parsed.map_err(|message| p.push(field, message)).ok()
}

fn long_context(t: &Table, path: &str, p: &mut Problems) -> Option<LongContext> {
    p.unknown_fields(t, path, LONG_CONTEXT_FIELDS);
    let field = format!("{path}.above_input_tokens");
    let above = match t.get("above_input_tokens") {
        Some(Value::Integer(n)) if *n >= 0 => u64::try_from(*n).ok(),
        Some(_) => {
            p.push(
                field,
                "must be a whole number of input tokens, zero or more",
            );
            None
        }
        None => {
            p.push(field, "missing (e.g. 272000)");
            None
        }
    };
    let input = ratio(t.get("input"), &format!("{path}.input"), p);
    let output = ratio(t.get("output"), &format!("{path}.output"), p);
    Some(LongContext {
        above_input_tokens: above?,
        input: input?,
        output: output?,
    })
}

fn service_tiers(value: Option<&Value>, p: &mut Problems) -> HashMap<String, Ratio> {
    let mut tiers: HashMap<String, Ratio> = DEFAULT_TIERS
        .iter()
        .filter_map(|&(name, n, d)| Ratio::new(n, d).map(|r| (name.to_string(), r)))
        .collect();
    match value {
        None => {}
        Some(Value::Table(t)) => {
            for (name, v) in t {
                if let Some(r) = ratio(Some(v), &format!("service_tiers.{name}"), p) {
                    tiers.insert(name.trim().to_string(), r);
                }
            }
        }
        Some(_) => p.push("service_tiers", "must be a table of tier = \"ratio\""),
    }
    tiers
}

fn unpriced(value: Option<&Value>, p: &mut Problems) -> Unpriced {
    let t = match value {
        None => return Unpriced::Reject,
        Some(Value::Table(t)) => t,
        Some(_) => {
            p.push("unpriced", "must be a table");
            return Unpriced::Reject;
        }
    };
    p.unknown_fields(t, "unpriced", UNPRICED_FIELDS);
    let fallback = match t.get("policy") {
        None => false,
        Some(Value::String(s)) if s == "reject" => false,
        Some(Value::String(s)) if s == "fallback" => true,
        Some(_) => {
            p.push("unpriced.policy", "must be \"reject\" or \"fallback\"");
            false
        }
    };
    // Rates are checked under either policy, so flipping to "fallback" later cannot surprise.
    let present = |key: &str| t.contains_key(key);
    let input = if fallback || present("input") {
        required_rate(t, "input", "unpriced", p)
    } else {
        None
    };
    let output = if fallback || present("output") {
        required_rate(t, "output", "unpriced", p)
    } else {
        None
    };
    let cached_input = optional_rate(t, "cached_input", "unpriced", p);
    match (fallback, input, cached_input, output) {
        (true, Some(input), Some(cached_input), Some(output)) => Unpriced::Fallback(Rates {
            input,
            cached_input,
            output: Some(output),
        }),
        _ => Unpriced::Reject,
    }
}

/// `Some(None)` when absent, `None` when present but bad.
fn optional_usd(
    t: &Table,
    key: &str,
    per: &str,
    label: &str,
    p: &mut Problems,
) -> Option<Option<u64>> {
    match t.get(key) {
        None => Some(None),
        Some(v) => usd(v, &format!("{label}.{key}"), per, p).map(Some),
    }
}

/// Name or alias → entry indices by `effective_from`. Two entries pricing the same name from
/// the same day would make the price of a call ambiguous: reported. `entries` are the valid
/// entries with their position in the file.
fn timelines(entries: &[(usize, PriceEntry)], p: &mut Problems) -> HashMap<String, Vec<usize>> {
    let mut timelines: HashMap<String, Vec<usize>> = HashMap::new();
    let mut seen: HashMap<(&str, i64), &PriceEntry> = HashMap::new();
    for (i, (file_index, e)) in entries.iter().enumerate() {
        let names = std::iter::once((e.name.as_str(), "effective_from".to_string())).chain(
            e.aliases
                .iter()
                .enumerate()
                .map(|(j, a)| (a.as_str(), format!("aliases[{j}]"))),
        );
        for (name, what) in names {
            if let Some(first) = seen.get(&(name, e.effective_from_ms)) {
                p.push(
                    format!("model[{file_index}] ({}).{what}", e.name),
                    format!(
                        "'{name}' already has a price from {} ({}); one entry per name and \
                         effective_from",
                        e.effective_from,
                        first.id()
                    ),
                );
            } else {
                seen.insert((name, e.effective_from_ms), e);
            }
            timelines.entry(name.to_string()).or_default().push(i);
        }
    }
    for timeline in timelines.values_mut() {
        timeline.sort_by_key(|&i| entries.get(i).map_or(0, |(_, e)| e.effective_from_ms));
    }
    timelines
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
