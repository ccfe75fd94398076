//! Reading what a request asks for: the decoded body and a one-pass summary of the conversation.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};

/// Largest request body accepted, before and after decoding.
pub(crate) const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The body to parse: as received, or decoded if it came with a `content-encoding`
/// (tollgate is meant to decode before forwarding, but a mock that can still answer makes a
/// pass-through visible in the recorded headers instead of as a confusing 400).
pub(crate) fn decode<'a>(encoding: Option<&str>, raw: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
    let encoding = match encoding.map(str::trim) {
        None | Some("") => return Ok(Cow::Borrowed(raw)),
        Some(e) => e.to_ascii_lowercase(),
    };
    let mut out = Vec::new();
    let limit = BODY_LIMIT as u64 + 1;
    let read = match encoding.as_str() {
        "identity" => return Ok(Cow::Borrowed(raw)),
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(raw)
            .take(limit)
            .read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(raw)
            .take(limit)
            .read_to_end(&mut out),
        "zstd" => {
            zstd::stream::read::Decoder::new(raw).and_then(|d| d.take(limit).read_to_end(&mut out))
        }
        other => return Err(format!("unsupported content-encoding {other:?}")),
    };
    match read {
        Ok(n) if n > BODY_LIMIT => Err("decoded request body too large".to_owned()),
        Ok(_) => Ok(Cow::Owned(out)),
        Err(e) => Err(format!("cannot decode {encoding} request body: {e}")),
    }
}

/// `stream_options` of Chat Completions / Completions.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// Which scripted turn the last user message asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Ask {
    #[default]
    Text,
    Exec,
    Patch,
    /// `mock:ws-cut`: over WebSocket, drop the connection mid-response (text over HTTP).
    WsCut,
    /// `mock:ws-error`: over WebSocket, an in-band 500 `error` event (text over HTTP).
    WsError,
    /// `mock:ws-failed`: over WebSocket, a `response.failed` (text over HTTP).
    WsFailed,
}

/// What the mock needs from a Responses `input` or a Chat `messages` array, gathered in one
/// pass without keeping the (often ~40 KB) history around.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Conversation {
    /// The last item is a tool result (`*_call_output` item, or a `tool`/`function` message).
    pub ends_with_tool_output: bool,
    /// What the last user message asks for.
    pub ask: Ask,
    /// Some item is a user message (an incremental WebSocket request may carry none).
    pub has_user_message: bool,
}

#[derive(Deserialize)]
struct Turn<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<Part<'a>>),
    Other(IgnoredAny),
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

fn ask_of(text: &str) -> Ask {
    if text.contains("mock:ws-cut") {
        Ask::WsCut
    } else if text.contains("mock:ws-error") {
        Ask::WsError
    } else if text.contains("mock:ws-failed") {
        Ask::WsFailed
    } else if text.contains("mock:exec") {
        Ask::Exec
    } else if text.contains("mock:patch") {
        Ask::Patch
    } else {
        Ask::Text
    }
}

fn ask_of_content(content: Option<&Content<'_>>) -> Ask {
    match content {
        Some(Content::Text(text)) => ask_of(text),
        Some(Content::Parts(parts)) => parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .map(ask_of)
            .find(|ask| *ask != Ask::Text)
            .unwrap_or_default(),
        Some(Content::Other(_)) | None => Ask::Text,
    }
}

impl Conversation {
    fn push(&mut self, turn: &Turn<'_>) {
        let kind = turn.kind.as_deref().unwrap_or("");
        let role = turn.role.as_deref().unwrap_or("");
        self.ends_with_tool_output =
            kind.ends_with("_call_output") || role == "tool" || role == "function";
        if role == "user" {
            self.ask = ask_of_content(turn.content.as_ref());
            self.has_user_message = true;
        }
    }
}

impl<'de> Deserialize<'de> for Conversation {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ConversationVisitor)
    }
}

struct ConversationVisitor;

impl<'de> Visitor<'de> for ConversationVisitor {
    type Value = Conversation;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of input items / messages")
    }

    /// A bare string is one user message.
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Conversation, E> {
        Ok(Conversation {
            ends_with_tool_output: false,
            ask: ask_of(text),
            has_user_message: true,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Conversation, A::Error> {
        let mut conversation = Conversation::default();
        while let Some(turn) = seq.next_element::<Turn<'de>>()? {
            conversation.push(&turn);
        }
        Ok(conversation)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Conversation, E> {
        Ok(Conversation::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(json: &str) -> Conversation {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn last_user_message_decides_the_ask() {
        let c = summary(
            r#"[{"type":"message","role":"user","content":[{"type":"input_text","text":"please mock:exec"}]},
                {"type":"reasoning","summary":[],"encrypted_content":"x"}]"#,
        );
        assert_eq!(
            c,
            Conversation {
                ends_with_tool_output: false,
                ask: Ask::Exec,
                has_user_message: true,
            }
        );
        assert_eq!(summary(r#""mock:patch now""#).ask, Ask::Patch);
        assert_eq!(summary(r#""then mock:ws-cut""#).ask, Ask::WsCut);
        assert!(
            !summary(r#"[{"type":"function_call_output","call_id":"c","output":"x"}]"#)
                .has_user_message
        );
        assert_eq!(
            summary(r#"[{"role":"user","content":"mock:exec"},{"role":"user","content":"hi"}]"#)
                .ask,
            Ask::Text
        );
    }

    #[test]
    fn tool_output_last_ends_the_turn() {
        let c = summary(
            r#"[{"role":"user","content":"mock:exec"},
                {"type":"function_call","call_id":"c","name":"exec_command","arguments":"{}"},
                {"type":"function_call_output","call_id":"c","output":"tollgate"}]"#,
        );
        assert!(c.ends_with_tool_output);
        assert!(summary(r#"[{"role":"user","content":"mock:exec"},{"role":"tool","content":"ok","tool_call_id":"c"}]"#).ends_with_tool_output);
    }

    #[test]
    fn gzip_bodies_are_decoded_for_parsing() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"{\"a\":1}").unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(&*decode(Some("gzip"), &gz).unwrap(), b"{\"a\":1}");
        assert!(decode(Some("br"), b"x").is_err());
    }
}
