//! What the mock answers: the fixed sentence, the scripted tool calls and deterministic usage.

/// The default answer, one piece per delta: with the default 20 deltas the pieces join to
/// [`SENTENCE`]; with more they repeat, with fewer the sentence is cut short.
pub const SENTENCE_PIECES: [&str; 20] = [
    "Hello",
    " from",
    " the",
    " tollgate",
    " mock",
    " upstream",
    ",",
    " streaming",
    " one",
    " small",
    " piece",
    " at",
    " a",
    " time",
    " so",
    " every",
    " test",
    " can",
    " count",
    " them.",
];

/// The pieces of [`SENTENCE_PIECES`] joined.
pub const SENTENCE: &str = "Hello from the tollgate mock upstream, streaming one small piece at a time so every test can count them.";

/// The text answer after a tool result (`function_call_output`, `custom_tool_call_output`,
/// or a chat `tool` message): the scripted turn is over.
pub const DONE_TEXT: &str = "done";

/// The `exec_command` arguments of the `mock:exec` scripted turn.
pub const EXEC_ARGUMENTS: &str = r#"{"cmd":"echo tollgate"}"#;

/// The `apply_patch` input of the `mock:patch` scripted turn.
pub const PATCH_INPUT: &str = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n";

/// Reasoning tokens reported by every Responses / Chat Completions answer.
pub const REASONING_TOKENS: u64 = 8;

/// The text a streamed answer of `deltas` pieces concatenates to.
pub fn answer_text(deltas: usize) -> String {
    (0..deltas).map(sentence_piece).collect()
}

fn sentence_piece(i: usize) -> &'static str {
    SENTENCE_PIECES[i % SENTENCE_PIECES.len()]
}

/// Token usage as the mock reports it; a pure function of the request so tests can predict it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockUsage {
    /// `max(1, decoded request body bytes / 4)`.
    pub input_tokens: u64,
    /// `input_tokens / 2`.
    pub cached_tokens: u64,
    /// `deltas + reasoning_tokens`, whatever the answer's kind (text or tool call).
    pub output_tokens: u64,
    /// Always [`REASONING_TOKENS`].
    pub reasoning_tokens: u64,
    /// `input_tokens + output_tokens`.
    pub total_tokens: u64,
}

impl MockUsage {
    /// The usage reported by `/v1/responses` and `/v1/chat/completions`. (Legacy
    /// `/v1/completions` reports `completion_tokens = deltas`, no reasoning; embeddings
    /// report `prompt_tokens = total_tokens = input_tokens`.)
    pub fn for_request(body_len: usize, deltas: usize) -> Self {
        let input_tokens = (body_len as u64 / 4).max(1);
        let output_tokens = deltas as u64 + REASONING_TOKENS;
        Self {
            input_tokens,
            cached_tokens: input_tokens / 2,
            output_tokens,
            reasoning_tokens: REASONING_TOKENS,
            total_tokens: input_tokens + output_tokens,
        }
    }

    /// The usage of a response that generated nothing: a WebSocket prewarm
    /// (`generate: false`) or a `response.failed`. Input is counted as for any request
    /// (cached half included); output and reasoning are 0.
    pub fn input_only(body_len: usize) -> Self {
        let input_tokens = (body_len as u64 / 4).max(1);
        Self {
            input_tokens,
            cached_tokens: input_tokens / 2,
            output_tokens: 0,
            reasoning_tokens: 0,
            total_tokens: input_tokens,
        }
    }
}

/// The kind of answer a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The sentence, in `deltas` pieces.
    Sentence(usize),
    /// [`DONE_TEXT`], one piece.
    Done,
    /// A `function_call` to `exec_command`.
    Exec,
    /// A `custom_tool_call` to `apply_patch`.
    Patch,
}

impl Answer {
    /// Number of text pieces (0 for tool calls).
    pub fn pieces(self) -> usize {
        match self {
            Answer::Sentence(n) => n,
            Answer::Done => 1,
            Answer::Exec | Answer::Patch => 0,
        }
    }

    pub fn piece(self, i: usize) -> &'static str {
        match self {
            Answer::Sentence(_) => sentence_piece(i),
            Answer::Done => DONE_TEXT,
            Answer::Exec | Answer::Patch => "",
        }
    }

    /// The whole text of a text answer (empty for tool calls).
    pub fn text(self) -> String {
        match self {
            Answer::Sentence(n) => answer_text(n),
            Answer::Done => DONE_TEXT.to_owned(),
            Answer::Exec | Answer::Patch => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pieces_join_to_the_sentence() {
        assert_eq!(answer_text(20), SENTENCE);
        assert_eq!(answer_text(2), "Hello from");
    }

    #[test]
    fn usage_follows_the_documented_formula() {
        let u = MockUsage::for_request(400, 20);
        assert_eq!(
            (
                u.input_tokens,
                u.cached_tokens,
                u.output_tokens,
                u.total_tokens
            ),
            (100, 50, 28, 128)
        );
        assert_eq!(MockUsage::for_request(0, 0).input_tokens, 1);
    }
}
