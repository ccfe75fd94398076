//! `POST /v1/moderations`: one unflagged result per input, with every category OpenAI reports.
//!
//! Moderations are free, so there is no usage; an input containing `mock:flag` is flagged for
//! `harassment` so clients can exercise both branches.

use std::borrow::Cow;

use serde::Deserialize;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::route::{Ctx, Reply};
use crate::wire::{Id, write_json};

const DEFAULT_MODEL: &str = "omni-moderation-latest";
const MAX_INPUTS: usize = 2048;

/// Every category, and the input types it applies to for text input.
const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    input: Option<serde_json::Value>,
}

/// Whether each input asks to be flagged (`mock:flag`).
fn inputs(input: Option<&serde_json::Value>) -> Vec<bool> {
    let flag = |v: &serde_json::Value| v.to_string().contains("mock:flag");
    match input {
        Some(serde_json::Value::Array(items)) => {
            // A list of text / image_url parts is one multimodal input.
            if items.iter().any(|i| i.get("type").is_some()) {
                vec![items.iter().any(flag)]
            } else {
                items.iter().take(MAX_INPUTS).map(flag).collect()
            }
        }
        Some(other) => vec![flag(other)],
        None => vec![false],
    }
}

pub(crate) fn handle(ctx: &Ctx, body: &[u8]) -> Reply {
    let request: Request<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Reply::bad_json(&e),
    };
    let results: Vec<Moderation> = inputs(request.input.as_ref())
        .into_iter()
        .map(|flagged| Moderation { flagged })
        .collect();
    let response = Response {
        id: Id::new("modr-", ctx.id),
        model: request.model.as_deref().unwrap_or(DEFAULT_MODEL),
        results,
    };
    let mut out = Vec::with_capacity(1024);
    write_json(&mut out, &response);
    Reply::ok(out)
}

#[derive(Serialize)]
struct Response<'a> {
    id: Id,
    model: &'a str,
    results: Vec<Moderation>,
}

struct Moderation {
    flagged: bool,
}

impl Serialize for Moderation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("flagged", &self.flagged)?;
        map.serialize_entry("categories", &Table(|c| self.flagged && c == "harassment"))?;
        map.serialize_entry(
            "category_scores",
            &Table(|c| {
                if self.flagged && c == "harassment" {
                    0.97
                } else {
                    0.0001
                }
            }),
        )?;
        map.serialize_entry("category_applied_input_types", &Table(|_| ["text"]))?;
        map.end()
    }
}

/// A map from every category to `f(category)`.
struct Table<F>(F);

impl<F: Fn(&'static str) -> T, T: Serialize> Serialize for Table<F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(CATEGORIES.len()))?;
        for category in CATEGORIES {
            map.serialize_entry(category, &(self.0)(category))?;
        }
        map.end()
    }
}
