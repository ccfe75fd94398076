//! `POST /v1/responses`: the Responses API, as a JSON object or an SSE event stream (and, via
//! `websocket`, as WebSocket text frames).

use std::borrow::Cow;

use serde::Deserialize;

use crate::answer::{Answer, EXEC_ARGUMENTS, MockUsage, PATCH_INPUT};
use crate::body::Script;
use crate::builtin::{self, ToolSpec};
use crate::request::{Ask, Conversation};
use crate::route::{Ctx, Reply};
use crate::wire::{self, EMPTY, EmptyObject, Framing, Id, write_json};

mod objects;

use objects::{
    Event, Format, Item, Output, Part, Reasoning, ResponseError, ResponseObject, TextConfig, Usage,
};

/// The message of a scripted `response.failed` (`mock:ws-failed`), OpenAI's wording.
pub(crate) const FAILED_MESSAGE: &str = "The model failed to generate a response.";

#[derive(Deserialize)]
struct Request<'a> {
    /// `response.create` over WebSocket; absent over HTTP.
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    input: Option<Conversation>,
    #[serde(borrow, default)]
    tools: Option<Vec<ToolSpec<'a>>>,
    #[serde(default)]
    generate: Option<bool>,
    #[serde(borrow, default)]
    previous_response_id: Option<Cow<'a, str>>,
}

/// A Responses request read once, owning what its stream needs, so a WebSocket session can
/// read a frame on arrival and answer it later.
pub(crate) struct Asked {
    /// The frame's `type` (WebSocket only).
    pub kind: Option<String>,
    pub stream: bool,
    /// `false` asks for a prewarm: no output, no output tokens (WebSocket only).
    pub generate: bool,
    pub previous_response_id: Option<String>,
    pub input: Conversation,
    model: String,
    builtins: Vec<builtin::Call>,
}

/// Parses a Responses request body (or a `response.create` frame).
pub(crate) fn read(ctx: &Ctx, body: &[u8]) -> Result<Asked, serde_json::Error> {
    let request: Request<'_> = serde_json::from_slice(body)?;
    Ok(Asked {
        kind: request.kind.map(Cow::into_owned),
        stream: request.stream == Some(true),
        generate: request.generate != Some(false),
        previous_response_id: request.previous_response_id.map(Cow::into_owned),
        input: request.input.unwrap_or_default(),
        model: request
            .model
            .as_deref()
            .unwrap_or(crate::route::DEFAULT_MODEL)
            .to_owned(),
        builtins: builtin::calls(
            request.tools.as_deref().unwrap_or_default(),
            ctx.id,
            ctx.builtin_calls,
            ctx.containers,
        ),
    })
}

/// The scripted answer to a conversation (`ask`: what its last user message asks for).
pub(crate) fn answer(ends_with_tool_output: bool, ask: Ask, deltas: usize) -> Answer {
    if ends_with_tool_output {
        return Answer::Done;
    }
    match ask {
        Ask::Exec => Answer::Exec,
        Ask::Patch => Answer::Patch,
        Ask::Text | Ask::WsCut | Ask::WsError | Ask::WsFailed => Answer::Sentence(deltas),
    }
}

/// How a response ends. Over HTTP always with its answer; the WebSocket transport also
/// scripts a prewarm and a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The answer's item, then `response.completed`.
    Answer,
    /// `generate: false`: `response.created`, then `response.completed` with no output.
    Prewarm,
    /// `response.created`, `response.in_progress`, then `response.failed`.
    Failed,
}

pub(crate) fn handle(ctx: &Ctx, body: &[u8]) -> Reply {
    let asked = match read(ctx, body) {
        Ok(asked) => asked,
        Err(e) => return Reply::bad_json(&e),
    };
    let streaming = asked.stream;
    let answer = answer(
        asked.input.ends_with_tool_output,
        asked.input.ask,
        ctx.deltas,
    );
    let stream = Stream::new(ctx, asked, answer, Ending::Answer);
    if streaming {
        Reply::Stream(Script::Responses(Box::new(stream)))
    } else {
        let mut out = Vec::with_capacity(1024);
        write_json(
            &mut out,
            &stream.response("completed", &[stream.item(true)], stream.usage),
        );
        Reply::ok(out)
    }
}

/// `POST /v1/responses/compact`: a `response.compaction` object (the conversation's user
/// messages dropped for brevity, one opaque compaction item) with its usage, as OpenAI bills
/// a compaction pass in tokens.
pub(crate) fn compact(ctx: &Ctx, body: &[u8]) -> Reply {
    if let Err(e) = serde_json::from_slice::<Request<'_>>(body) {
        return Reply::bad_json(&e);
    }
    #[derive(serde::Serialize)]
    struct Compaction {
        id: String,
        object: &'static str,
        created_at: u64,
        output: [CompactionItem; 1],
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    }
    #[derive(serde::Serialize)]
    struct CompactionItem {
        #[serde(rename = "type")]
        kind: &'static str,
        encrypted_content: &'static str,
    }
    let compaction = Compaction {
        id: format!("cmp_{:024x}", ctx.id),
        object: "response.compaction",
        created_at: ctx.created,
        output: [CompactionItem {
            kind: "compaction",
            encrypted_content: "bW9jayBjb21wYWN0aW9u",
        }],
        usage: ctx.usage().map(Usage::from),
    };
    let mut out = Vec::with_capacity(512);
    write_json(&mut out, &compaction);
    Reply::ok(out)
}

/// One response being streamed; events are produced on demand by index.
pub(crate) struct Stream {
    id: u64,
    created_at: u64,
    model: String,
    usage: Option<MockUsage>,
    answer: Answer,
    ending: Ending,
    text: String,
    previous_response_id: Option<String>,
    /// Hosted tool calls, output before the answer's own item.
    builtins: Vec<builtin::Call>,
}

impl Stream {
    pub fn new(ctx: &Ctx, asked: Asked, answer: Answer, ending: Ending) -> Self {
        let usage = match ending {
            Ending::Answer => ctx.usage(),
            // Nothing generated: the input is billed, the output is not.
            Ending::Prewarm | Ending::Failed => {
                (!ctx.no_usage).then(|| MockUsage::input_only(ctx.body_len))
            }
        };
        Self {
            id: ctx.id,
            created_at: ctx.created,
            model: asked.model,
            usage,
            answer,
            ending,
            text: answer.text(),
            previous_response_id: asked.previous_response_id,
            builtins: if ending == Ending::Answer {
                asked.builtins
            } else {
                Vec::new()
            },
        }
    }

    /// The response id, e.g. `resp_00000000000000a1`.
    pub fn id(&self) -> Id {
        Id::new("resp_", self.id)
    }

    fn item_id(&self) -> Id {
        let prefix = match self.answer {
            Answer::Sentence(_) | Answer::Done => "msg_",
            Answer::Exec => "fc_",
            Answer::Patch => "ctc_",
        };
        Id::new(prefix, self.id)
    }

    /// The output item, finished (`done`) or as first announced.
    fn item(&self, done: bool) -> Item<'_> {
        let status = if done { "completed" } else { "in_progress" };
        let id = self.item_id();
        let call_id = Id::new("call_", self.id);
        match self.answer {
            Answer::Sentence(_) | Answer::Done => Item::Message {
                id,
                status,
                role: "assistant",
                content: if done {
                    Some(Part::text(&self.text))
                } else {
                    None
                },
            },
            Answer::Exec => Item::FunctionCall {
                id,
                status,
                call_id,
                name: "exec_command",
                arguments: if done { EXEC_ARGUMENTS } else { "" },
            },
            Answer::Patch => Item::CustomToolCall {
                id,
                status,
                call_id,
                name: "apply_patch",
                input: if done { PATCH_INPUT } else { "" },
            },
        }
    }

    fn response<'a>(
        &'a self,
        status: &'static str,
        output: &'a [Item<'a>],
        usage: Option<MockUsage>,
    ) -> ResponseObject<'a> {
        ResponseObject {
            id: self.id(),
            object: "response",
            created_at: self.created_at,
            status,
            background: false,
            error: None,
            incomplete_details: None,
            instructions: None,
            max_output_tokens: None,
            model: &self.model,
            // The hosted calls are part of a response only once it has output.
            output: Output {
                builtins: if output.is_empty() {
                    &[]
                } else {
                    &self.builtins
                },
                items: output,
            },
            parallel_tool_calls: true,
            previous_response_id: self.previous_response_id.as_deref(),
            reasoning: Reasoning {
                effort: None,
                summary: None,
            },
            service_tier: "default",
            store: false,
            temperature: 1.0,
            text: TextConfig {
                format: Format { kind: "text" },
                verbosity: "medium",
            },
            tool_choice: "auto",
            tools: EMPTY,
            top_p: 1.0,
            truncation: "disabled",
            usage: usage.map(Usage::from),
            user: None,
            metadata: EmptyObject,
        }
    }

    /// Which phase event `index` is. Text: created, in_progress, output_item.added,
    /// content_part.added, N × output_text.delta, output_text.done, content_part.done,
    /// output_item.done, completed. A tool call has no content part and one arguments/input
    /// delta.
    fn phase(&self, index: usize) -> Option<Phase> {
        use Phase::*;
        match self.ending {
            Ending::Answer => {}
            Ending::Prewarm => return [Created, Completed].get(index).copied(),
            Ending::Failed => return [Created, InProgress, Failed].get(index).copied(),
        }
        // Created and InProgress, then every hosted call's events, then the answer's item.
        let builtin_events: usize = self.builtins.iter().map(builtin::Call::event_count).sum();
        let index = match index.checked_sub(2) {
            Some(i) if i < builtin_events => {
                let mut k = i;
                for (call, c) in self.builtins.iter().enumerate() {
                    if k < c.event_count() {
                        return Some(Builtin(call, k));
                    }
                    k -= c.event_count();
                }
                return None;
            }
            Some(i) => i + 2 - builtin_events,
            None => index,
        };
        let (prefix, deltas, suffix): (&[Phase], usize, &[Phase]) = match self.answer {
            Answer::Exec | Answer::Patch => (
                &[Created, InProgress, ItemAdded],
                1,
                &[DeltaDone, ItemDone, Completed],
            ),
            a => (
                &[Created, InProgress, ItemAdded, PartAdded],
                a.pieces(),
                &[DeltaDone, PartDone, ItemDone, Completed],
            ),
        };
        if let Some(phase) = prefix.get(index) {
            return Some(*phase);
        }
        let i = index - prefix.len();
        if i < deltas {
            Some(Delta(i))
        } else {
            suffix.get(i - deltas).copied()
        }
    }

    /// Appends event `index`; `false` when the stream is over.
    pub fn write_event(&self, index: usize, framing: Framing, out: &mut Vec<u8>) -> bool {
        let Some(phase) = self.phase(index) else {
            return false;
        };
        let sequence_number = index;
        let item_id = self.item_id();
        let (output_index, content_index) = (self.builtins.len(), 0);
        let completed_output;
        let event = match (phase, self.answer) {
            (Phase::Builtin(call, k), _) => {
                if let Some(call_ref) = self.builtins.get(call) {
                    call_ref.write_event(k, sequence_number, call, framing, out);
                }
                return true;
            }
            (Phase::Created, _) => Event::Created {
                sequence_number,
                response: self.response("in_progress", &[], None),
            },
            (Phase::InProgress, _) => Event::InProgress {
                sequence_number,
                response: self.response("in_progress", &[], None),
            },
            (Phase::ItemAdded, _) => Event::ItemAdded {
                sequence_number,
                output_index,
                item: self.item(false),
            },
            (Phase::PartAdded, _) => Event::PartAdded {
                sequence_number,
                item_id,
                output_index,
                content_index,
                part: Part::text(""),
            },
            (Phase::Delta(_), Answer::Exec) => Event::ArgsDelta {
                sequence_number,
                item_id,
                output_index,
                delta: EXEC_ARGUMENTS,
            },
            (Phase::Delta(_), Answer::Patch) => Event::InputDelta {
                sequence_number,
                item_id,
                output_index,
                delta: PATCH_INPUT,
            },
            (Phase::Delta(i), a) => Event::TextDelta {
                sequence_number,
                item_id,
                output_index,
                content_index,
                delta: a.piece(i),
                logprobs: EMPTY,
            },
            (Phase::DeltaDone, Answer::Exec) => Event::ArgsDone {
                sequence_number,
                item_id,
                output_index,
                name: "exec_command",
                arguments: EXEC_ARGUMENTS,
            },
            (Phase::DeltaDone, Answer::Patch) => Event::InputDone {
                sequence_number,
                item_id,
                output_index,
                input: PATCH_INPUT,
            },
            (Phase::DeltaDone, _) => Event::TextDone {
                sequence_number,
                item_id,
                output_index,
                content_index,
                text: &self.text,
                logprobs: EMPTY,
            },
            (Phase::PartDone, _) => Event::PartDone {
                sequence_number,
                item_id,
                output_index,
                content_index,
                part: Part::text(&self.text),
            },
            (Phase::ItemDone, _) => Event::ItemDone {
                sequence_number,
                output_index,
                item: self.item(true),
            },
            (Phase::Completed, _) => {
                completed_output = [self.item(true)];
                let output: &[Item<'_>] = match self.ending {
                    Ending::Prewarm => &[],
                    Ending::Answer | Ending::Failed => &completed_output,
                };
                Event::Completed {
                    sequence_number,
                    response: self.response("completed", output, self.usage),
                }
            }
            (Phase::Failed, _) => {
                let mut response = self.response("failed", &[], self.usage);
                response.error = Some(ResponseError {
                    code: "server_error",
                    message: FAILED_MESSAGE,
                });
                Event::Failed {
                    sequence_number,
                    response,
                }
            }
        };
        wire::event(out, framing, event.name(), &event);
        true
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Event `.1` of hosted call `.0`.
    Builtin(usize, usize),
    Created,
    InProgress,
    ItemAdded,
    PartAdded,
    Delta(usize),
    DeltaDone,
    PartDone,
    ItemDone,
    Completed,
    Failed,
}
