//! The Chat Completions objects and chunks, as borrowed structs serialized in place.

use serde::Serialize;

use crate::answer::MockUsage;
use crate::wire::Id;

#[derive(Serialize)]
pub(super) struct Completion<'a> {
    pub(super) id: Id,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) choices: [Choice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage: Option<Usage>,
    pub(super) service_tier: &'static str,
    pub(super) system_fingerprint: &'static str,
}

#[derive(Serialize)]
pub(super) struct Choice<'a> {
    pub(super) index: u32,
    pub(super) message: Message<'a>,
    pub(super) logprobs: Option<()>,
    pub(super) finish_reason: &'static str,
}

#[derive(Serialize)]
pub(super) struct Message<'a> {
    pub(super) role: &'static str,
    pub(super) content: Option<&'a str>,
    pub(super) refusal: Option<()>,
    pub(super) annotations: &'a [Annotation],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_calls: Option<[ToolCall; 1]>,
}

/// A search-preview model's citation of the page its answer came from.
#[derive(Serialize)]
pub(super) struct Annotation {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) url_citation: UrlCitation,
}

#[derive(Serialize)]
pub(super) struct UrlCitation {
    pub(super) end_index: usize,
    pub(super) start_index: usize,
    pub(super) title: &'static str,
    pub(super) url: &'static str,
}

#[derive(Serialize)]
pub(super) struct ToolCall {
    pub(super) id: Id,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) function: Function,
}

#[derive(Serialize)]
pub(super) struct Function {
    pub(super) name: &'static str,
    pub(super) arguments: &'static str,
}

#[derive(Serialize)]
pub(super) struct Chunk<'a> {
    pub(super) id: Id,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) service_tier: &'static str,
    pub(super) system_fingerprint: &'static str,
    pub(super) choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
pub(super) struct ChunkChoice<'a> {
    pub(super) index: u32,
    pub(super) delta: Delta<'a>,
    pub(super) logprobs: Option<()>,
    pub(super) finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
pub(super) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_calls: Option<[ToolCallDelta; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) refusal: Option<Option<()>>,
}

#[derive(Serialize)]
pub(super) struct ToolCallDelta {
    pub(super) index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<Id>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub(super) kind: Option<&'static str>,
    pub(super) function: FunctionDelta,
}

#[derive(Serialize)]
pub(super) struct FunctionDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<&'static str>,
    pub(super) arguments: &'static str,
}

/// Chat Completions usage, with the detail objects the SDKs model.
#[derive(Serialize)]
pub(super) struct Usage {
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) total_tokens: u64,
    pub(super) prompt_tokens_details: PromptDetails,
    pub(super) completion_tokens_details: CompletionDetails,
}

#[derive(Serialize)]
pub(super) struct PromptDetails {
    pub(super) cache_write_tokens: u64,
    pub(super) cached_tokens: u64,
    pub(super) audio_tokens: u64,
}

#[derive(Serialize)]
pub(super) struct CompletionDetails {
    pub(super) reasoning_tokens: u64,
    pub(super) audio_tokens: u64,
    pub(super) accepted_prediction_tokens: u64,
    pub(super) rejected_prediction_tokens: u64,
}

impl From<MockUsage> for Usage {
    fn from(u: MockUsage) -> Self {
        Self {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details: PromptDetails {
                cache_write_tokens: 0,
                cached_tokens: u.cached_tokens,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: u.reasoning_tokens,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}
