//! Phase 2, inspect: read a body tollgate must understand — decode `Content-Encoding`, check
//! it is a JSON object and peek at the few fields the gateway acts on, parsing it exactly
//! once — and leave any other body to stream through under the size limit and deadlines.

pub mod media;
pub mod usage_option;

use std::io::Read;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Request};
use hyper::body::Incoming;
use serde::Deserialize;
use serde::de::IgnoredAny;

use tollgate_core::ApiError;

use crate::body::{BodyDeadline, DeadlineBody, read_limited};
use crate::route::Endpoint;
use media::MediaAsk;

/// A request as inspect hands it on: its head, what its body says, and the body to forward.
pub struct Inspected {
    pub parts: Parts,
    /// The body's fields; all empty when the body was not read.
    pub peek: Peek,
    /// What an image or audio request bills by; empty for every other endpoint.
    pub media: MediaAsk,
    pub body: OutgoingBody,
}

/// The body to send upstream, as the inspect phase left it.
pub enum OutgoingBody {
    /// Read and possibly decoded: sent with an exact length.
    Read { body: Bytes, decoded: bool },
    /// Not read (free and allowed-unmetered endpoints): streamed under the size limit and the
    /// body deadlines.
    Streamed {
        body: DeadlineBody<Incoming>,
        limit: u64,
    },
}

/// Reads and peeks the body of an endpoint tollgate meters. Any other body is streamed
/// through later, refused now only when its declared length is already over `limit`.
pub async fn read(
    request: Request<Incoming>,
    endpoint: Endpoint,
    limit: u64,
    deadline: BodyDeadline,
) -> Result<Inspected, ApiError> {
    let (mut parts, body) = request.into_parts();
    let body = DeadlineBody::new(body, deadline);
    if !endpoint.reads_body() {
        if declared_length(&parts.headers).is_some_and(|len| len > limit) {
            return Err(ApiError::body_too_large(limit));
        }
        let body = OutgoingBody::Streamed { body, limit };
        return Ok(Inspected {
            parts,
            peek: Peek::default(),
            media: MediaAsk::default(),
            body,
        });
    }
    let raw = read_limited(body, limit).await?;
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let encoding = header(header::CONTENT_ENCODING);
    // Uploads are forms; image edits may also be JSON naming files or URLs.
    let form = endpoint.is_multipart()
        && (endpoint != Endpoint::ImagesEdits || media::is_form(header(header::CONTENT_TYPE)));
    let (body, peek, media, decoded) = if form {
        let (body, decoded) = decode_if_encoded(raw, encoding, limit)?;
        let mut peek = Peek::default();
        let form = media::from_multipart(body.clone(), header(header::CONTENT_TYPE), &mut peek);
        let media = form.await?;
        (body, peek, media, decoded)
    } else {
        let read = inspect(raw, encoding, limit)?;
        let media = match endpoint {
            Endpoint::ImagesGenerations | Endpoint::ImagesEdits | Endpoint::AudioSpeech => {
                media::from_json(&read.body)?
            }
            _ => MediaAsk::default(),
        };
        (read.body, read.peek, media, read.decoded)
    };
    let mut peek = peek;
    if peek.model.is_none() {
        let images = matches!(
            endpoint,
            Endpoint::ImagesGenerations | Endpoint::ImagesEdits
        );
        if let Some(field) = media.not_dall_e(peek.stream).filter(|_| images) {
            return Err(model_required(field));
        }
        peek.model = endpoint.default_model().map(str::to_string);
    }
    // The meter must read the response: ask for it uncompressed.
    parts.headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    let body = OutgoingBody::Read { body, decoded };
    Ok(Inspected {
        parts,
        peek,
        media,
        body,
    })
}

impl Inspected {
    /// The body as read, if it was.
    pub fn read_body(&self) -> Option<&Bytes> {
        match &self.body {
            OutgoingBody::Read { body, .. } => Some(body),
            OutgoingBody::Streamed { .. } => None,
        }
    }

    /// Asks a chat or completions stream for the usage OpenAI leaves out unless asked
    /// ([`usage_option`]); true when tollgate asked, so the meter strips it again.
    pub fn ask_for_usage(&mut self, endpoint: Endpoint) -> Result<bool, ApiError> {
        let OutgoingBody::Read { body, .. } = &mut self.body else {
            return Ok(false);
        };
        if !matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions) {
            return Ok(false);
        }
        let (rewritten, strip) =
            usage_option::ensure_usage_reported(std::mem::take(body), &self.peek)?;
        *body = rewritten;
        Ok(strip)
    }
}

/// An image request that names no model but sets a GPT image parameter: the upstream picks a
/// GPT image model tollgate cannot name, so the request must name it.
fn model_required(field: &str) -> ApiError {
    let message = format!(
        "'{field}' is only for GPT image models, and this request names no model: OpenAI would pick one, and tollgate must know which to bill. Set 'model' (e.g. \"gpt-image-1\")."
    );
    ApiError::new(400, "invalid_request_error", "model_required", message).with_param("model")
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The fields tollgate reads from a request body; everything else is validated and skipped.
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct Peek {
    pub model: Option<String>,
    #[serde(default)]
    pub stream: bool,
    pub max_output_tokens: Option<u64>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    /// `flex`, `priority`, …: budgets price the estimate at the requested tier.
    pub service_tier: Option<String>,
    /// `None` when absent, `Some(None)` when `null`: a `null` must be replaced, since adding
    /// the field beside it would send the upstream the key twice.
    #[serde(default, deserialize_with = "present")]
    pub stream_options: Option<Option<StreamOptions>>,
    /// Chat and legacy completions: how many choices are generated (each bills its output).
    pub n: Option<u64>,
    /// Legacy completions: candidates generated server-side (each bills its output).
    pub best_of: Option<u64>,
    /// A Responses call run in the background: it bills as it runs, after the call returns.
    /// (An image's `background` is `"transparent"` or `"opaque"`: no flag, and no refusal.)
    #[serde(default, deserialize_with = "flag")]
    pub background: Option<bool>,
    /// Responses: input the upstream holds and the body only names (see [`Peek::names_stored_input`]).
    pub previous_response_id: Option<serde_json::Value>,
    pub conversation: Option<IgnoredAny>,
    pub prompt: Option<IgnoredAny>,
    /// Responses and Chat: the built-in tools offered (a web search's calls are priced as the
    /// tool the request offered).
    #[serde(default)]
    pub tools: Option<Offered>,
    /// Chat with a search model: every call searches.
    pub web_search_options: Option<IgnoredAny>,
    /// Responses: the most built-in tool calls the model may make.
    pub max_tool_calls: Option<u64>,
    /// A WebSocket message's type (`response.create`); absent from HTTP bodies.
    #[serde(rename = "type", default, deserialize_with = "text")]
    pub kind: Option<String>,
    /// WebSocket `response.create`: `false` is a prewarm (input only, no output).
    #[serde(default, deserialize_with = "flag")]
    pub generate: Option<bool>,
    /// Codex's `client_metadata.turn_id`: which turn a call belongs to (on a WebSocket the
    /// handshake's headers name only the first).
    #[serde(rename = "client_metadata", default, deserialize_with = "turn_of")]
    pub turn_id: Option<String>,
}

/// `client_metadata.turn_id`, when the metadata is an object holding a string there.
fn turn_of<'de, D>(field: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(match serde_json::Value::deserialize(field)? {
        serde_json::Value::Object(mut map) => match map.remove("turn_id") {
            Some(serde_json::Value::String(turn)) => Some(turn),
            _ => None,
        },
        _ => None,
    })
}

/// The built-in tools a request offers, read from its `tools` array by each entry's `type`
/// without keeping the array (this runs on every Responses and Chat call).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    pub web_search: bool,
    pub web_search_preview: bool,
    pub file_search: bool,
    pub code_interpreter: bool,
    pub image_generation: bool,
}

impl<'de> Deserialize<'de> for Offered {
    fn deserialize<D: serde::Deserializer<'de>>(tools: D) -> Result<Offered, D::Error> {
        /// One entry of `tools`, by its type (borrowed: no allocation).
        #[derive(Deserialize)]
        struct Tool<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<std::borrow::Cow<'a, str>>,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Offered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of tools")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Offered, A::Error> {
                let mut offered = Offered::default();
                while let Some(tool) = seq.next_element::<Tool<'de>>()? {
                    let kind = tool.kind.as_deref().unwrap_or_default();
                    // Dated versions (`web_search_2025_08_26`, `web_search_preview_2025_03_11`)
                    // are the same tool.
                    if kind.starts_with("web_search_preview") {
                        offered.web_search_preview = true;
                    } else if kind.starts_with("web_search") {
                        offered.web_search = true;
                    }
                    offered.file_search |= kind == "file_search";
                    offered.code_interpreter |= kind == "code_interpreter";
                    offered.image_generation |= kind == "image_generation";
                }
                Ok(offered)
            }
        }
        tools.deserialize_seq(Visitor)
    }
}

impl Peek {
    /// Whether a Responses call names input the upstream holds — a previous response, a
    /// conversation, a stored prompt, a stored item — so the body's length does not bound it.
    /// (Only Responses has these: a legacy completion's `prompt` is its text.) A body that
    /// merely mentions `"item_reference"` in its text counts too: a larger reservation, never a
    /// smaller one. One SIMD scan of the body, and only for calls a budget applies to.
    pub fn names_stored_input(&self, body: &[u8]) -> bool {
        self.previous_response_id.is_some()
            || self.conversation.is_some()
            || self.prompt.is_some()
            || memchr::memmem::find(body, b"\"item_reference\"").is_some()
    }

    /// The web search tool offered, as the price table names it: `web_search_preview` (and its
    /// dated versions) or `web_search` (and its dated versions).
    /// The previous response a Responses call continues, when the body names one.
    pub fn previous_response(&self) -> Option<&str> {
        self.previous_response_id.as_ref()?.as_str()
    }

    pub fn web_search_tool(&self) -> Option<&'static str> {
        let offered = self.tools.unwrap_or_default();
        if offered.web_search_preview {
            Some("web_search_preview")
        } else if offered.web_search {
            Some("web_search")
        } else {
            None
        }
    }
}

/// `stream_options`, as far as tollgate cares.
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// A field that is present, even as `null`.
fn present<'de, D, T>(field: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(field).map(Some)
}

/// A field that is a flag when it is `true` or `false`, and none of tollgate's business otherwise.
/// A string field that may be anything else (metadata is the client's to fill): kept only
/// when it is a string.
fn text<'de, D>(field: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(match serde_json::Value::deserialize(field)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

fn flag<'de, D>(field: D) -> Result<Option<bool>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(serde_json::Value::deserialize(field)?.as_bool())
}

/// A decoded request body and what was learned from it.
#[derive(Debug)]
pub struct Decoded {
    pub body: Bytes,
    pub peek: Peek,
    /// True when the body was decompressed, so the forwarded request drops `Content-Encoding`.
    pub decoded: bool,
}

/// Decodes (if encoded) and peeks. `limit` bounds the decoded size as well, so a small gzip
/// bomb cannot expand past what an uncompressed body may be.
pub fn inspect(
    body: Bytes,
    content_encoding: Option<&str>,
    limit: u64,
) -> Result<Decoded, ApiError> {
    let (body, decoded) = decode_if_encoded(body, content_encoding, limit)?;
    let peek = peek(&body)?;
    Ok(Decoded {
        body,
        peek,
        decoded,
    })
}

/// The body as sent, or decompressed when it came with a `Content-Encoding`; true when decoded.
fn decode_if_encoded(
    body: Bytes,
    content_encoding: Option<&str>,
    limit: u64,
) -> Result<(Bytes, bool), ApiError> {
    Ok(match content_encoding.map(str::trim) {
        None | Some("") | Some("identity") => (body, false),
        Some(encoding) => (decode(&body, encoding, limit)?, true),
    })
}

pub(crate) fn peek(body: &[u8]) -> Result<Peek, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(if body.iter().all(u8::is_ascii_whitespace) {
            ApiError::invalid_json("the body is empty; this endpoint expects a JSON object")
        } else {
            ApiError::invalid_json("the body must be a JSON object")
        });
    }
    // Fields the peek skips are not checked for UTF-8 by serde; the upstream would reject
    // the body, so refuse it here. (from_str then skips serde's own re-validation.)
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::invalid_json(format!(
            "the body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    serde_json::from_str::<Peek>(text).map_err(ApiError::invalid_json)
}

fn decode(body: &[u8], encoding: &str, limit: u64) -> Result<Bytes, ApiError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(1 << 20));
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    let cap = limit.saturating_add(1);
    let result = match encoding.to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(body)
            .take(cap)
            .read_to_end(&mut out),
        "deflate" => {
            // HTTP's "deflate" is zlib-wrapped, but some clients send raw deflate.
            let zlib = flate2::read::ZlibDecoder::new(body)
                .take(cap)
                .read_to_end(&mut out);
            if zlib.is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(body)
                    .take(cap)
                    .read_to_end(&mut out)
            } else {
                zlib
            }
        }
        "zstd" => {
            zstd::stream::read::Decoder::new(body).and_then(|d| d.take(cap).read_to_end(&mut out))
        }
        other => return Err(ApiError::unsupported_encoding(other)),
    };
    result.map_err(|e| ApiError::bad_encoding(encoding, e))?;
    if out.len() as u64 > limit {
        return Err(ApiError::body_too_large(limit));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn peeks_fields_and_rejects_non_objects() {
        let got = inspect(
            Bytes::from_static(br#"{"model":"gpt-5.5","stream":true,"input":[1,2]}"#),
            None,
            1000,
        )
        .unwrap();
        assert_eq!(got.peek.model.as_deref(), Some("gpt-5.5"));
        assert!(got.peek.stream && !got.decoded);
        for bad in [
            &b"{\"model\": "[..],
            b"[1]",
            b"",
            b"model=x",
            b"{\"input\":\"\xff\"}",
        ] {
            let err = inspect(Bytes::copy_from_slice(bad), None, 1000).unwrap_err();
            assert_eq!((err.status, err.code), (400, "invalid_json"), "{bad:?}");
        }
    }

    #[test]
    fn built_in_tools_are_read_by_type_never_by_name() {
        let body = br#"{"model":"gpt-4o","tools":[{"type":"function","name":"web_search","parameters":{}},{"type":"web_search_preview_2025_03_11"},{"type":"code_interpreter","container":{"type":"auto"}}]}"#;
        let peek = inspect(Bytes::from_static(body), None, 10_000)
            .unwrap()
            .peek;
        let offered = peek.tools.unwrap();
        assert!(offered.web_search_preview && offered.code_interpreter);
        assert!(!offered.web_search && !offered.file_search && !offered.image_generation);
        assert_eq!(peek.web_search_tool(), Some("web_search_preview"));
        let only_functions = br#"{"tools":[{"type":"function","name":"web_search"}]}"#;
        let peek = inspect(Bytes::from_static(only_functions), None, 10_000)
            .unwrap()
            .peek;
        assert_eq!(peek.web_search_tool(), None);
        let not_a_list = inspect(Bytes::from_static(br#"{"tools":"web_search"}"#), None, 100);
        assert_eq!(not_a_list.unwrap_err().code, "invalid_json");
    }

    #[test]
    fn decodes_gzip_and_zstd_within_the_limit() {
        let json = br#"{"model":"gpt-5.5","input":"hello"}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json).unwrap();
        let got = inspect(Bytes::from(gz.finish().unwrap()), Some("gzip"), 1000).unwrap();
        assert_eq!(&got.body[..], json);
        assert!(got.decoded);
        let z = zstd::encode_all(&json[..], 3).unwrap();
        assert_eq!(
            &inspect(Bytes::from(z), Some("zstd"), 1000).unwrap().body[..],
            json
        );
        let bomb = zstd::encode_all(&vec![b' '; 10_000][..], 3).unwrap();
        assert_eq!(
            inspect(Bytes::from(bomb), Some("zstd"), 1000)
                .unwrap_err()
                .status,
            413
        );
        assert_eq!(
            inspect(Bytes::from_static(b"x"), Some("br"), 1000)
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(
            inspect(Bytes::from_static(b"not gzip"), Some("gzip"), 1000)
                .unwrap_err()
                .status,
            400
        );
    }
}
