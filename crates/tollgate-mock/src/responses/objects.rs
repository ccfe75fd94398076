//! The Responses API objects and stream events, as borrowed structs serialized in place.

use serde::Serialize;

use crate::answer::MockUsage;
use crate::builtin;
use crate::wire::{EMPTY, EmptyList, EmptyObject, Id};

#[derive(Serialize)]
pub(super) struct ResponseObject<'a> {
    pub(super) id: Id,
    pub(super) object: &'static str,
    pub(super) created_at: u64,
    pub(super) status: &'static str,
    pub(super) background: bool,
    pub(super) error: Option<ResponseError>,
    pub(super) incomplete_details: Option<()>,
    pub(super) instructions: Option<()>,
    pub(super) max_output_tokens: Option<()>,
    pub(super) model: &'a str,
    pub(super) output: Output<'a>,
    pub(super) parallel_tool_calls: bool,
    pub(super) previous_response_id: Option<&'a str>,
    pub(super) reasoning: Reasoning,
    pub(super) service_tier: &'static str,
    pub(super) store: bool,
    pub(super) temperature: f64,
    pub(super) text: TextConfig,
    pub(super) tool_choice: &'static str,
    pub(super) tools: EmptyList,
    pub(super) top_p: f64,
    pub(super) truncation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage: Option<Usage>,
    pub(super) user: Option<()>,
    pub(super) metadata: EmptyObject,
}

/// Why a `response.failed` failed: `{"code","message"}`.
#[derive(Serialize)]
pub(super) struct ResponseError {
    pub(super) code: &'static str,
    pub(super) message: &'static str,
}

/// The `output` list: the hosted tool calls, then the answer's own items.
pub(super) struct Output<'a> {
    pub(super) builtins: &'a [builtin::Call],
    pub(super) items: &'a [Item<'a>],
}

impl Serialize for Output<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.builtins.len() + self.items.len()))?;
        for call in self.builtins {
            seq.serialize_element(&call.item(true))?;
        }
        for item in self.items {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
pub(super) struct Reasoning {
    pub(super) effort: Option<()>,
    pub(super) summary: Option<()>,
}

#[derive(Serialize)]
pub(super) struct TextConfig {
    pub(super) format: Format,
    pub(super) verbosity: &'static str,
}

#[derive(Serialize)]
pub(super) struct Format {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
}

#[derive(Serialize)]
pub(super) struct Usage {
    pub(super) input_tokens: u64,
    pub(super) input_tokens_details: InputDetails,
    pub(super) output_tokens: u64,
    pub(super) output_tokens_details: OutputDetails,
    pub(super) total_tokens: u64,
}

#[derive(Serialize)]
pub(super) struct InputDetails {
    /// Required by current SDKs; the mock never reports cache writes.
    pub(super) cache_write_tokens: u64,
    pub(super) cached_tokens: u64,
}

#[derive(Serialize)]
pub(super) struct OutputDetails {
    pub(super) reasoning_tokens: u64,
}

impl From<MockUsage> for Usage {
    fn from(u: MockUsage) -> Self {
        Self {
            input_tokens: u.input_tokens,
            input_tokens_details: InputDetails {
                cache_write_tokens: 0,
                cached_tokens: u.cached_tokens,
            },
            output_tokens: u.output_tokens,
            output_tokens_details: OutputDetails {
                reasoning_tokens: u.reasoning_tokens,
            },
            total_tokens: u.total_tokens,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Item<'a> {
    Message {
        id: Id,
        status: &'static str,
        role: &'static str,
        #[serde(serialize_with = "content_list")]
        content: Option<Part<'a>>,
    },
    FunctionCall {
        id: Id,
        status: &'static str,
        call_id: Id,
        name: &'static str,
        arguments: &'static str,
    },
    CustomToolCall {
        id: Id,
        status: &'static str,
        call_id: Id,
        name: &'static str,
        input: &'static str,
    },
}

/// A message's `content` is a list: empty while in progress, one `output_text` part when done.
fn content_list<S: serde::Serializer>(part: &Option<Part<'_>>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(part.iter())
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Part<'a> {
    OutputText {
        text: &'a str,
        annotations: EmptyList,
        logprobs: EmptyList,
    },
}

impl<'a> Part<'a> {
    pub(super) fn text(text: &'a str) -> Self {
        Part::OutputText {
            text,
            annotations: EMPTY,
            logprobs: EMPTY,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type")]
pub(super) enum Event<'a> {
    #[serde(rename = "response.created")]
    Created {
        sequence_number: usize,
        response: ResponseObject<'a>,
    },
    #[serde(rename = "response.in_progress")]
    InProgress {
        sequence_number: usize,
        response: ResponseObject<'a>,
    },
    #[serde(rename = "response.output_item.added")]
    ItemAdded {
        sequence_number: usize,
        output_index: usize,
        item: Item<'a>,
    },
    #[serde(rename = "response.content_part.added")]
    PartAdded {
        sequence_number: usize,
        item_id: Id,
        output_index: usize,
        content_index: u32,
        part: Part<'a>,
    },
    #[serde(rename = "response.output_text.delta")]
    TextDelta {
        sequence_number: usize,
        item_id: Id,
        output_index: usize,
        content_index: u32,
        delta: &'a str,
        logprobs: EmptyList,
    },
    #[serde(rename = "response.output_text.done")]
    TextDone {
        sequence_number: usize,
        item_id: Id,
        output_index: usize,
        content_index: u32,
        text: &'a str,
        logprobs: EmptyList,
    },
    #[serde(rename = "response.content_part.done")]
    PartDone {
        sequence_number: usize,
        item_id: Id,
        output_index: usize,
        content_index: u32,
        part: Part<'a>,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgsDelta {
        sequence_number: usize,
        item_id: Id,
        output_index: usize,
        delta: &'a str,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgsDone {
        sequence_number: usize,
        item_id: Id,
        output_index: usize,
        name: &'a str,
        arguments: &'a str,
    },
    #[serde(rename = "response.custom_tool_call_input.delta")]
    InputDelta {
        sequence_number: usize,
        item_id: Id,
        output_index: usize,
        delta: &'a str,
    },
    #[serde(rename = "response.custom_tool_call_input.done")]
    InputDone {
        sequence_number: usize,
        item_id: Id,
        output_index: usize,
        input: &'a str,
    },
    #[serde(rename = "response.output_item.done")]
    ItemDone {
        sequence_number: usize,
        output_index: usize,
        item: Item<'a>,
    },
    #[serde(rename = "response.completed")]
    Completed {
        sequence_number: usize,
        response: ResponseObject<'a>,
    },
    #[serde(rename = "response.failed")]
    Failed {
        sequence_number: usize,
        response: ResponseObject<'a>,
    },
}

impl Event<'_> {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Event::Created { .. } => "response.created",
            Event::InProgress { .. } => "response.in_progress",
            Event::ItemAdded { .. } => "response.output_item.added",
            Event::PartAdded { .. } => "response.content_part.added",
            Event::TextDelta { .. } => "response.output_text.delta",
            Event::TextDone { .. } => "response.output_text.done",
            Event::PartDone { .. } => "response.content_part.done",
            Event::ArgsDelta { .. } => "response.function_call_arguments.delta",
            Event::ArgsDone { .. } => "response.function_call_arguments.done",
            Event::InputDelta { .. } => "response.custom_tool_call_input.delta",
            Event::InputDone { .. } => "response.custom_tool_call_input.done",
            Event::ItemDone { .. } => "response.output_item.done",
            Event::Completed { .. } => "response.completed",
            Event::Failed { .. } => "response.failed",
        }
    }
}
