//! What the meter learns from a response as it passes: usage, served model, service tier, tool
//! calls and (for estimates) the text actually delivered. One reader per wire format; each
//! parses only the events that carry what it needs, with borrowed, field-limited structs.

use std::borrow::Cow;

use serde::Deserialize;

use tollgate_core::{ToolCount, Units, Usage};

/// The text kept for an estimate is capped; past it only its length grows the estimate.
const MAX_TEXT: usize = 4 * 1024 * 1024;

/// Everything observed in one response.
#[derive(Debug, Default)]
pub struct Observed {
    pub usage: Option<Usage>,
    pub model: Option<String>,
    pub service_tier: Option<String>,
    /// The upstream's response id (`resp_…`, `chatcmpl-…`), for the trace span.
    pub response_id: Option<String>,
    pub tools: Vec<ToolCount>,
    /// Output text delivered to the client (deltas), for a tokenizer estimate without usage.
    pub text: String,
    /// Bytes of delivered text beyond `MAX_TEXT`.
    pub text_overflow: usize,
    /// What the answer says it billed beyond text tokens: image and audio tokens (subsets of
    /// `usage`), seconds of audio.
    pub units: Units,
    /// Built-in tools that bill per call, counted by their output items' types (never by a
    /// name, which a function of the client's could share).
    pub builtin: BuiltinCalls,
    /// Body bytes delivered (a speech answer's audio, for an estimate of its length).
    pub bytes: u64,
    /// Image streams: images whose completed event (with that image's usage) came.
    pub images_done: u64,
}

/// Built-in tool calls in one answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuiltinCalls {
    pub web_search: u64,
    pub file_search: u64,
    /// Images made by the `image_generation` tool: OpenAI bills their image tokens, which the
    /// answer's usage does not report, so they are priced per call and the row is an estimate.
    pub image_generation: u64,
    /// Code interpreter containers used (distinct ids); calls that name none count one each.
    pub containers: Vec<String>,
    pub unnamed_containers: u64,
}

impl BuiltinCalls {
    fn count(&mut self, item: &OutputItem<'_>) {
        match item.kind.as_ref() {
            "web_search_call" => self.web_search += 1,
            "file_search_call" => self.file_search += 1,
            "image_generation_call" => self.image_generation += 1,
            "code_interpreter_call" => match item.container_id.as_deref() {
                Some(id) if !self.containers.iter().any(|c| c == id) => {
                    self.containers.push(id.to_string())
                }
                Some(_) => {}
                None => self.unnamed_containers += 1,
            },
            _ => {}
        }
    }

    /// Containers billed: one per distinct container.
    pub fn container_count(&self) -> u64 {
        self.containers.len() as u64 + self.unnamed_containers
    }
}

impl Observed {
    pub(crate) fn push_text(&mut self, text: &str) {
        if self.text.len() + text.len() <= MAX_TEXT {
            self.text.push_str(text);
        } else {
            self.text_overflow += text.len();
        }
    }

    fn count_tool(&mut self, name: &str) {
        match self.tools.iter_mut().find(|t| t.name == name) {
            Some(t) => t.count += 1,
            None => self.tools.push(ToolCount {
                name: name.to_string(),
                count: 1,
            }),
        }
    }

    pub(crate) fn set_id(&mut self, id: Option<Cow<'_, str>>) {
        // Every chat chunk repeats it: keep the first.
        if self.response_id.is_none() {
            self.response_id = id.map(Cow::into_owned);
        }
    }

    pub(crate) fn set_meta(&mut self, model: Option<Cow<'_, str>>, tier: Option<Cow<'_, str>>) {
        if let Some(model) = model {
            self.model = Some(model.into_owned());
        }
        if let Some(tier) = tier {
            self.service_tier = Some(tier.into_owned());
        }
    }
}

// ---- Responses API ----

#[derive(Deserialize)]
struct ResponsesUsage {
    input_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    output_tokens: u64,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
    /// Audio models (gpt-audio, gpt-4o-audio-preview): billed at the audio input rate.
    #[serde(default)]
    audio_tokens: u64,
}

#[derive(Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: u64,
    #[serde(default)]
    audio_tokens: u64,
}

/// A usage object that may count audio tokens among its input and output tokens.
trait AudioTokens: Into<Usage> {
    /// Audio tokens of the input and of the output.
    fn audio(&self) -> (u64, u64);
}

impl Observed {
    /// Records a reported usage, with the audio tokens it counts.
    fn set_usage(&mut self, usage: impl AudioTokens) {
        let (input, output) = usage.audio();
        let usage: Usage = usage.into();
        self.units.input_audio_tokens = input.min(usage.input);
        self.units.output_audio_tokens = output.min(usage.output);
        self.usage = Some(usage);
    }
}

impl AudioTokens for ResponsesUsage {
    fn audio(&self) -> (u64, u64) {
        (
            self.input_tokens_details
                .as_ref()
                .map_or(0, |d| d.audio_tokens),
            self.output_tokens_details
                .as_ref()
                .map_or(0, |d| d.audio_tokens),
        )
    }
}

impl AudioTokens for ChatUsage {
    fn audio(&self) -> (u64, u64) {
        (
            self.prompt_tokens_details
                .as_ref()
                .map_or(0, |d| d.audio_tokens),
            self.completion_tokens_details
                .as_ref()
                .map_or(0, |d| d.audio_tokens),
        )
    }
}

impl From<ResponsesUsage> for Usage {
    fn from(u: ResponsesUsage) -> Usage {
        Usage {
            input: u.input_tokens,
            cached_input: u
                .input_tokens_details
                .map_or(0, |d| d.cached_tokens)
                .min(u.input_tokens),
            output: u.output_tokens,
            reasoning: u
                .output_tokens_details
                .map_or(0, |d| d.reasoning_tokens)
                .min(u.output_tokens),
        }
    }
}

/// A Response object (`response.*` events' `response`, or a non-streamed body).
#[derive(Deserialize)]
struct ResponseObject<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    service_tier: Option<Cow<'a, str>>,
    usage: Option<ResponsesUsage>,
    #[serde(default, borrow)]
    output: Vec<OutputItem<'a>>,
}

#[derive(Deserialize)]
struct OutputItem<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    /// A message's parts (`output_text`, `refusal`).
    #[serde(default, borrow)]
    content: Vec<TextPart<'a>>,
    /// A reasoning item's summary parts.
    #[serde(default, borrow)]
    summary: Vec<TextPart<'a>>,
    /// A function call's arguments.
    #[serde(borrow)]
    arguments: Option<Cow<'a, str>>,
    /// A custom tool call's input (`apply_patch`'s patch).
    #[serde(borrow)]
    input: Option<Cow<'a, str>>,
    /// A code interpreter call's container.
    #[serde(borrow)]
    container_id: Option<Cow<'a, str>>,
}

/// A part of an output item that carries model-written text.
#[derive(Deserialize)]
struct TextPart<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    refusal: Option<Cow<'a, str>>,
}

impl OutputItem<'_> {
    /// Every piece of text the model wrote in this item: what an estimate counts as output.
    fn texts(&self) -> impl Iterator<Item = &str> {
        let parts = self.content.iter().chain(&self.summary);
        parts
            .flat_map(|p| [p.text.as_deref(), p.refusal.as_deref()])
            .chain([self.arguments.as_deref(), self.input.as_deref()])
            .flatten()
    }
}

/// The tool name an output item counts as, if it is a tool call.
fn tool_name<'a>(item: &'a OutputItem<'_>) -> Option<&'a str> {
    match item.kind.as_ref() {
        "function_call" | "custom_tool_call" => item.name.as_deref(),
        "local_shell_call" => Some("local_shell"),
        "web_search_call" => Some("web_search"),
        "tool_search_call" => Some("tool_search"),
        "file_search_call" => Some("file_search"),
        "code_interpreter_call" => Some("code_interpreter"),
        "image_generation_call" => Some("image_generation"),
        "computer_call" => Some("computer"),
        "mcp_call" => item.name.as_deref().or(Some("mcp")),
        _ => None,
    }
}

#[derive(Deserialize)]
struct ResponseEvent<'a> {
    #[serde(borrow)]
    response: Option<ResponseObject<'a>>,
    #[serde(borrow)]
    item: Option<OutputItem<'a>>,
    #[serde(borrow)]
    delta: Option<Cow<'a, str>>,
}

/// Reads a Responses API SSE stream.
#[derive(Debug, Default)]
pub struct ResponsesStream {
    event: String,
}

impl ResponsesStream {
    pub fn line(&mut self, line: &[u8], seen: &mut Observed) {
        if let Some(name) = line.strip_prefix(b"event:") {
            self.event.clear();
            self.event.push_str(String::from_utf8_lossy(name).trim());
            return;
        }
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        // Events are named on their `event:` line; without one (some servers), peek at "type".
        let kind = if self.event.is_empty() {
            event_type(data)
        } else {
            Some(self.event.as_str())
        };
        responses_event(kind, data, seen);
        self.event.clear();
    }
}

/// One Responses stream event, `data` its JSON and `kind` its type: an SSE `data:` payload, or
/// one text frame of the WebSocket transport (the same JSON).
pub fn responses_event(kind: Option<&str>, data: &[u8], seen: &mut Observed) {
    match kind {
        Some(
            "response.completed"
            | "response.failed"
            | "response.incomplete"
            | "response.created"
            | "response.in_progress",
        ) => match serde_json::from_slice(data) {
            Ok(ResponseEvent {
                response: Some(r), ..
            }) => {
                seen.set_id(r.id);
                seen.set_meta(r.model, r.service_tier);
                if let Some(usage) = r.usage {
                    seen.set_usage(usage);
                }
            }
            Ok(_) => {}
            // An event too long to keep whole (the line splitter kept its start and end):
            // its usage is at its end.
            Err(_) => usage_in_tail(JsonKind::Responses, data, seen),
        },
        Some("response.output_item.done") => {
            if let Ok(ResponseEvent {
                item: Some(item), ..
            }) = serde_json::from_slice(data)
            {
                seen.builtin.count(&item);
                if let Some(name) = tool_name(&item) {
                    seen.count_tool(name);
                }
            }
        }
        Some(kind) if kind.ends_with(".delta") => match plain_delta(data) {
            Some(delta) => seen.push_text(delta),
            None => {
                if let Ok(ResponseEvent {
                    delta: Some(delta), ..
                }) = serde_json::from_slice(data)
                {
                    seen.push_text(&delta);
                }
            }
        },
        _ => {}
    }
}

/// A delta event's `"delta"` string when it holds no escapes, read in place: most of a stream's
/// events are deltas, and parsing each one whole was the meter's largest cost. `None` sends the
/// event to the JSON parser. (Inside a JSON string every quote is escaped, so `"delta":"` can
/// only be a key.)
fn plain_delta(data: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"delta\":\"";
    let start = memchr::memmem::find(data, KEY)? + KEY.len();
    let rest = &data[start..];
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

/// The `"type"` of an event whose `event:` line was missing.
fn event_type(data: &[u8]) -> Option<&'static str> {
    const KNOWN: [&str; 6] = [
        "response.completed",
        "response.failed",
        "response.incomplete",
        "response.output_item.done",
        "response.created",
        "response.output_text.delta",
    ];
    const TYPE: &[u8] = b"\"type\":\"";
    memchr::memmem::find_iter(data, TYPE).find_map(|at| {
        let value = &data[at + TYPE.len()..];
        KNOWN
            .into_iter()
            .find(|k| value.starts_with(k.as_bytes()) && value.get(k.len()) == Some(&b'"'))
    })
}

/// Reads a non-streamed Response object (or a compaction's `{"output":[…]}`). Without usage,
/// the output text is kept for the estimate, as a stream's deltas are.
pub fn response_json(body: &[u8], seen: &mut Observed) -> bool {
    let Ok(r) = serde_json::from_slice::<ResponseObject<'_>>(body) else {
        return false;
    };
    seen.set_id(r.id);
    seen.set_meta(r.model, r.service_tier);
    if let Some(usage) = r.usage {
        seen.set_usage(usage);
    }
    for item in &r.output {
        seen.builtin.count(item);
        if let Some(name) = tool_name(item) {
            seen.count_tool(name);
        }
        if seen.usage.is_none() {
            for text in item.texts() {
                seen.push_text(text);
            }
        }
    }
    true
}

// ---- Chat Completions and legacy completions ----

#[derive(Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<InputDetails>,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    completion_tokens_details: Option<OutputDetails>,
}

impl From<ChatUsage> for Usage {
    fn from(u: ChatUsage) -> Usage {
        Usage {
            input: u.prompt_tokens,
            cached_input: u
                .prompt_tokens_details
                .map_or(0, |d| d.cached_tokens)
                .min(u.prompt_tokens),
            output: u.completion_tokens,
            reasoning: u
                .completion_tokens_details
                .map_or(0, |d| d.reasoning_tokens)
                .min(u.completion_tokens),
        }
    }
}

#[derive(Deserialize)]
struct ChatBody<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    service_tier: Option<Cow<'a, str>>,
    usage: Option<ChatUsage>,
    #[serde(default, borrow)]
    choices: Vec<ChatChoice<'a>>,
}

#[derive(Deserialize)]
struct ChatChoice<'a> {
    #[serde(borrow)]
    delta: Option<ChatMessage<'a>>,
    #[serde(borrow)]
    message: Option<ChatMessage<'a>>,
    /// Legacy completions.
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChatMessage<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Vec<ChatToolCall<'a>>,
}

#[derive(Deserialize)]
struct ChatToolCall<'a> {
    #[serde(borrow)]
    function: Option<ChatFunction<'a>>,
}

#[derive(Deserialize)]
struct ChatFunction<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    arguments: Option<Cow<'a, str>>,
}

/// Whether one `data:` payload of a chat stream is the usage-only chunk that
/// `stream_options.include_usage` adds (`"choices": []` and a usage object).
pub fn is_usage_chunk(data: &[u8]) -> bool {
    matches!(serde_json::from_slice::<ChatBody<'_>>(data), Ok(ChatBody { usage: Some(_), ref choices, .. }) if choices.is_empty())
}

/// Reads one chat/completions chunk or a whole non-streamed body.
pub fn chat_json(data: &[u8], seen: &mut Observed) -> bool {
    let Ok(body) = serde_json::from_slice::<ChatBody<'_>>(data) else {
        return false;
    };
    seen.set_id(body.id);
    seen.set_meta(body.model, body.service_tier);
    if let Some(usage) = body.usage {
        seen.set_usage(usage);
    }
    for choice in body.choices {
        if let Some(text) = &choice.text {
            seen.push_text(text);
        }
        for message in [choice.delta, choice.message].into_iter().flatten() {
            if let Some(content) = &message.content {
                seen.push_text(content);
            }
            for call in message.tool_calls {
                let Some(function) = call.function else {
                    continue;
                };
                // A streamed tool call names its function once, in its first delta.
                if let Some(name) = &function.name {
                    seen.count_tool(name);
                }
                if let Some(arguments) = &function.arguments {
                    seen.push_text(arguments);
                }
            }
        }
    }
    true
}

/// Reads one line of a chat/completions SSE stream.
pub fn chat_line(line: &[u8], seen: &mut Observed) {
    let Some(data) = line.strip_prefix(b"data:") else {
        return;
    };
    let data = data.strip_prefix(b" ").unwrap_or(data);
    if data != b"[DONE]" {
        chat_json(data, seen);
    }
}

// ---- Embeddings ----

#[derive(Deserialize)]
struct EmbeddingsBody<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    usage: Option<EmbeddingsUsage>,
}

#[derive(Deserialize)]
struct EmbeddingsUsage {
    prompt_tokens: u64,
}

pub fn embeddings_json(body: &[u8], seen: &mut Observed) -> bool {
    let Ok(body) = serde_json::from_slice::<EmbeddingsBody<'_>>(body) else {
        return false;
    };
    seen.set_meta(body.model, None);
    seen.usage = body.usage.map(|u| Usage {
        input: u.prompt_tokens,
        ..Usage::default()
    });
    true
}

/// A JSON answer that ended before its end (the client left, or the upstream broke off): it
/// was whole upstream — a non-streamed answer is generated before it is sent — and billed
/// whole, usage last. What was delivered counts as its output text, JSON syntax and all: an
/// estimate over rather than under, or a client could read all but the usage and leave.
pub fn cut_json(body: &[u8], seen: &mut Observed) {
    seen.push_text(&String::from_utf8_lossy(body));
}

/// A moderation answer reports no usage: moderations are free, so one is complete with none.
pub fn moderations_json(body: &[u8], seen: &mut Observed) -> bool {
    let Ok(body) = serde_json::from_slice::<EmbeddingsBody<'_>>(body) else {
        return false;
    };
    seen.set_meta(body.model, None);
    seen.usage = Some(Usage::default());
    true
}

/// Which usage object a JSON response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Responses,
    Chat,
    Embeddings,
    Media(super::media::Media),
}

/// The usage of a JSON response too large to parse whole, from its last bytes: OpenAI writes
/// `usage` after the output. A `"usage"` inside a string has its quotes escaped, and a
/// client-chosen field after the usage (Responses' `user`, `metadata`) cannot hold an object,
/// so the last `"usage"` key whose value is a usage object is the response's own.
pub fn usage_in_tail(kind: JsonKind, tail: &[u8], seen: &mut Observed) {
    const KEY: &[u8] = b"\"usage\"";
    let mut end = tail.len();
    while let Some(at) = tail[..end].windows(KEY.len()).rposition(|w| w == KEY) {
        end = at;
        let Some(value) = tail[at + KEY.len()..].trim_ascii_start().strip_prefix(b":") else {
            continue;
        };
        if let JsonKind::Media(media) = kind {
            if super::media::usage_at(media, value, seen) {
                return;
            }
            continue;
        }
        let mut value = serde_json::Deserializer::from_slice(value);
        let found = match kind {
            JsonKind::Responses => ResponsesUsage::deserialize(&mut value)
                .map(|u| seen.set_usage(u))
                .is_ok(),
            JsonKind::Chat => ChatUsage::deserialize(&mut value)
                .map(|u| seen.set_usage(u))
                .is_ok(),
            JsonKind::Embeddings => EmbeddingsUsage::deserialize(&mut value)
                .map(|u| {
                    seen.usage = Some(Usage {
                        input: u.prompt_tokens,
                        ..Usage::default()
                    })
                })
                .is_ok(),
            JsonKind::Media(_) => false,
        };
        if found {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_of_a_large_json_response_is_found_in_its_tail() {
        let chat = br#"me, "\"usage\": {\"prompt_tokens\": 1}"}, "finish_reason": "stop"}],
  "usage": {
    "prompt_tokens": 10,
    "completion_tokens": 5000000,
    "completion_tokens_details": {"reasoning_tokens": 7}
  },
  "service_tier": "default"
}"#;
        let mut seen = Observed::default();
        usage_in_tail(JsonKind::Chat, chat, &mut seen);
        let usage = seen.usage.unwrap();
        assert_eq!(
            (usage.input, usage.output, usage.reasoning),
            (10, 5_000_000, 7)
        );
        // A client's `user` or `metadata` after the usage cannot stand in for it.
        let responses = br#"t"}]}],"usage":{"input_tokens":3,"output_tokens":4},"user":"\"usage","metadata":{"usage":"{\"input_tokens\":1,\"output_tokens\":1}"}}"#;
        let mut seen = Observed::default();
        usage_in_tail(JsonKind::Responses, responses, &mut seen);
        let usage = seen.usage.unwrap();
        assert_eq!((usage.input, usage.output), (3, 4));
        let mut seen = Observed::default();
        usage_in_tail(JsonKind::Responses, b"no usage here", &mut seen);
        assert!(seen.usage.is_none());
    }

    #[test]
    fn responses_stream_yields_usage_tools_and_text() {
        let mut reader = ResponsesStream::default();
        let mut seen = Observed::default();
        let lines: [&[u8]; 10] = [
            b"event: response.created",
            br#"data: {"type":"response.created","response":{"model":"gpt-5.5","usage":null}}"#,
            b"event: response.output_text.delta",
            br#"data: {"type":"response.output_text.delta","delta":"Hel"}"#,
            b"event: response.output_item.done",
            br#"data: {"type":"response.output_item.done","item":{"type":"function_call","name":"exec_command","arguments":"{}"}}"#,
            b"event: response.output_item.done",
            br#"data: {"type":"response.output_item.done","item":{"type":"custom_tool_call","name":"apply_patch"}}"#,
            b"event: response.completed",
            br#"data: {"type":"response.completed","response":{"model":"gpt-5.5-2026-04-01","service_tier":"default","usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":60,"cache_write_tokens":0},"output_tokens":20,"output_tokens_details":{"reasoning_tokens":8},"total_tokens":120}}}"#,
        ];
        for line in lines {
            reader.line(line, &mut seen);
        }
        assert_eq!(
            seen.usage,
            Some(Usage {
                input: 100,
                cached_input: 60,
                output: 20,
                reasoning: 8
            })
        );
        assert_eq!(seen.model.as_deref(), Some("gpt-5.5-2026-04-01"));
        assert_eq!(seen.service_tier.as_deref(), Some("default"));
        assert_eq!(seen.text, "Hel");
        let tools: Vec<(&str, u32)> = seen
            .tools
            .iter()
            .map(|t| (t.name.as_str(), t.count))
            .collect();
        assert_eq!(tools, [("exec_command", 1), ("apply_patch", 1)]);
    }

    #[test]
    fn chat_chunks_yield_usage_and_the_usage_chunk_is_recognised() {
        let mut seen = Observed::default();
        chat_line(
            br#"data: {"model":"gpt-5.5","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            &mut seen,
        );
        chat_line(br#"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"exec_command","arguments":""}}]}}]}"#, &mut seen);
        let usage = br#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        assert!(is_usage_chunk(usage));
        assert!(!is_usage_chunk(
            br#"{"choices":[{"delta":{}}],"usage":null}"#
        ));
        chat_line(&[b"data: ".as_slice(), usage].concat(), &mut seen);
        chat_line(b"data: [DONE]", &mut seen);
        assert_eq!(
            seen.usage,
            Some(Usage {
                input: 10,
                cached_input: 4,
                output: 5,
                reasoning: 2
            })
        );
        assert_eq!(seen.text, "Hi");
        assert_eq!(seen.tools[0].name, "exec_command");
    }

    #[test]
    fn audio_tokens_of_audio_models_are_kept_apart() {
        let mut seen = Observed::default();
        let body = br#"{"model":"gpt-audio","choices":[],"usage":{"prompt_tokens":120,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":100},"completion_tokens":300,"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":250}}}"#;
        assert!(chat_json(body, &mut seen));
        assert_eq!(
            (
                seen.units.input_audio_tokens,
                seen.units.output_audio_tokens
            ),
            (100, 250)
        );
        let mut seen = Observed::default();
        let tail = br#"..."usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":0,"audio_tokens":9000},"output_tokens":5,"output_tokens_details":{"audio_tokens":4}}}"#;
        usage_in_tail(JsonKind::Responses, tail, &mut seen);
        // Never more audio tokens than tokens.
        assert_eq!(
            (
                seen.units.input_audio_tokens,
                seen.units.output_audio_tokens
            ),
            (10, 4)
        );
    }

    #[test]
    fn delta_text_is_the_same_read_in_place_or_parsed() {
        let events: [&[u8]; 5] = [
            br#"{"type":"response.output_text.delta","item_id":"m","delta":"Hello, world","sequence_number":3}"#,
            br#"{"type":"response.output_text.delta","item_id":"m\"delta\":\"no","delta":"ok"}"#,
            br#"{"type":"response.output_text.delta","delta":"say \"hi\"\n\u00e9"}"#,
            br#"{"type":"response.output_text.delta","delta": "spaced"}"#,
            "{\"type\":\"response.output_text.delta\",\"delta\":\"caf\u{e9} \u{2713}\"}".as_bytes(),
        ];
        for data in events {
            let mut seen = Observed::default();
            responses_event(Some("response.output_text.delta"), data, &mut seen);
            let parsed: ResponseEvent<'_> = serde_json::from_slice(data).unwrap();
            assert_eq!(
                seen.text,
                parsed.delta.unwrap(),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
        assert_eq!(
            plain_delta(br#"{"delta":"a\"b"}"#),
            None,
            "an escape goes to the parser"
        );
    }

    #[test]
    fn an_event_without_its_event_line_is_named_by_its_own_type() {
        let completed =
            br#"{"type":"response.completed","response":{"output":[{"type":"message"}]}}"#;
        assert_eq!(event_type(completed), Some("response.completed"));
        let nested =
            br#"{"type":"response.output_item.done","item":{"type":"response.completed"}}"#;
        assert_eq!(event_type(nested), Some("response.output_item.done"));
        assert_eq!(event_type(br#"{"type":"response.created_x"}"#), None);
    }

    #[test]
    fn garbage_is_ignored_not_fatal() {
        let mut seen = Observed::default();
        let mut reader = ResponsesStream::default();
        reader.line(b"event: response.completed", &mut seen);
        reader.line(
            br#"data: {"response":{"usage":{"input_tokens":"many"}}"#,
            &mut seen,
        );
        chat_line(b"data: not json", &mut seen);
        response_json(b"{\"id\":", &mut seen);
        embeddings_json(b"[]", &mut seen);
        assert_eq!(seen.usage, None);
    }
}
