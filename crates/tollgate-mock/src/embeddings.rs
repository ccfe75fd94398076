//! `POST /v1/embeddings`: small deterministic vectors, as float arrays or base64 (the Python
//! SDK asks for base64 by default and decodes it as little-endian f32).

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use crate::route::{Ctx, Reply};
use crate::wire::{base64, write_json};

const DEFAULT_MODEL: &str = "text-embedding-3-small";
const DEFAULT_DIMENSIONS: usize = 8;
/// Keeps a hostile `dimensions` from making the mock allocate without bound.
const MAX_DIMENSIONS: usize = 4096;
const MAX_INPUTS: usize = 2048;

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    input: Option<Input<'a>>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(borrow, default)]
    encoding_format: Option<Cow<'a, str>>,
}

/// A string, an array of strings, one token array, or an array of token arrays.
#[derive(Deserialize)]
#[serde(untagged)]
#[expect(
    dead_code,
    reason = "serde picks the variant by shape; only the shape is used"
)]
enum Input<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(Vec<Element>),
}

#[derive(Deserialize)]
#[serde(untagged)]
#[expect(
    dead_code,
    reason = "serde picks the variant by shape; only the shape is used"
)]
enum Element {
    Token(u64),
    Other(IgnoredAny),
}

impl Input<'_> {
    fn count(&self) -> usize {
        match self {
            Input::One(_) => 1,
            Input::Many(items) if items.iter().all(|e| matches!(e, Element::Token(_))) => 1,
            Input::Many(items) => items.len(),
        }
    }
}

pub(crate) fn handle(ctx: &Ctx, body: &[u8]) -> Reply {
    let request: Request<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Reply::bad_json(&e),
    };
    let count = request
        .input
        .as_ref()
        .map_or(1, Input::count)
        .min(MAX_INPUTS);
    let dimensions = request
        .dimensions
        .unwrap_or(DEFAULT_DIMENSIONS)
        .clamp(1, MAX_DIMENSIONS);
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            let message = format!(
                "Invalid value for 'encoding_format': {other:?}. Expected 'float' or 'base64'."
            );
            return Reply::bad_request(&message);
        }
    };
    let tokens = ctx.usage_always().input_tokens;
    let list = List {
        object: "list",
        data: Data {
            count,
            dimensions,
            base64,
        },
        model: request.model.as_deref().unwrap_or(DEFAULT_MODEL),
        usage: (!ctx.no_usage).then_some(Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        }),
    };
    let mut out = Vec::with_capacity(128 + count * (64 + dimensions * 12));
    write_json(&mut out, &list);
    Reply::ok(out)
}

/// Component `j` of the vector for input `i`: deterministic, in [-0.5, 0.5).
pub fn embedding_value(i: usize, j: usize) -> f32 {
    ((i * 31 + j * 17 + 7) % 101) as f32 / 101.0 - 0.5
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Data,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// The `data` array, generated while serializing.
struct Data {
    count: usize,
    dimensions: usize,
    base64: bool,
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.count))?;
        for index in 0..self.count {
            let vector = Vector {
                index,
                dimensions: self.dimensions,
                base64: self.base64,
            };
            seq.serialize_element(&Embedding {
                object: "embedding",
                index,
                embedding: vector,
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

struct Vector {
    index: usize,
    dimensions: usize,
    base64: bool,
}

impl Serialize for Vector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let values = (0..self.dimensions).map(|j| embedding_value(self.index, j));
        if self.base64 {
            let bytes: Vec<u8> = values.flat_map(f32::to_le_bytes).collect();
            s.serialize_str(&base64(&bytes))
        } else {
            s.collect_seq(values)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::wire::base64;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
