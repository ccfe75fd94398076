//! Token usage of one call, as the upstream reported it (or as tollgate estimated it), and the
//! units a call bills beyond its plain text tokens.

use serde::{Deserialize, Serialize};

/// Tokens by kind. `cached_input` is part of `input`; `reasoning` is part of `output` — the
/// same convention as OpenAI's usage objects, so nothing is counted twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    pub reasoning: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }

    /// Input tokens billed at the full input rate.
    pub fn uncached_input(&self) -> u64 {
        self.input.saturating_sub(self.cached_input)
    }
}

/// What a call bills beyond its plain text tokens. Token counts here are SUBSETS of [`Usage`]'s
/// counts (image input tokens are part of `Usage::input`, etc.), never added again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Units {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub input_image_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub input_audio_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_image_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_audio_tokens: u64,
    /// Images billed per image (dall-e-2/-3): how many, at which size and quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageCount>,
    /// Characters of input billed per character (tts-1, tts-1-hd).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub characters: u64,
    /// Audio billed per minute (whisper-1), in milliseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub audio_ms: u64,
    /// Built-in tool calls billed per call: web_search, web_search_preview, file_search,
    /// code_interpreter (containers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolUse>,
}

/// Images generated at one size and quality. An empty `quality` means "standard", the only
/// quality of models without qualities (dall-e-2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCount {
    pub count: u64,
    pub size: String,
    pub quality: String,
}

/// Calls of one built-in tool, named as OpenAI names the tool type (`web_search_preview`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolUse {
    pub tool: String,
    pub calls: u64,
}

impl Units {
    /// Nothing billed beyond text tokens: no modality tokens, no images, characters, audio or
    /// tool calls (a count of zero is nothing).
    pub fn is_empty(&self) -> bool {
        self.input_image_tokens == 0
            && self.input_audio_tokens == 0
            && self.output_image_tokens == 0
            && self.output_audio_tokens == 0
            && self.images.as_ref().is_none_or(|i| i.count == 0)
            && self.characters == 0
            && self.audio_ms == 0
            && self.tool_calls.iter().all(|t| t.calls == 0)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
