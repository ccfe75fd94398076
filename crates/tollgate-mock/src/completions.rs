//! `POST /v1/completions`: the legacy `text_completion` API, as JSON or a stream.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::answer::{Answer, MockUsage};
use crate::body::Script;
use crate::request::StreamOptions;
use crate::route::{Ctx, DEFAULT_MODEL, Reply};
use crate::wire::{DONE, Id, sse_data, write_json};

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

pub(crate) fn handle(ctx: &Ctx, body: &[u8]) -> Reply {
    let request: Request<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Reply::bad_json(&e),
    };
    let answer = Answer::Sentence(ctx.deltas);
    let stream = Stream {
        id: ctx.id,
        created: ctx.created,
        model: request.model.as_deref().unwrap_or(DEFAULT_MODEL).to_owned(),
        usage: ctx.usage().map(Usage::from),
        include_usage: request.stream_options.and_then(|o| o.include_usage) == Some(true),
        answer,
    };
    if request.stream == Some(true) {
        return Reply::Stream(Script::Completions(stream));
    }
    let text = answer.text();
    let choice = Choice {
        text: &text,
        index: 0,
        logprobs: None,
        finish_reason: Some("stop"),
    };
    let mut out = Vec::with_capacity(512);
    write_json(
        &mut out,
        &stream.object(std::slice::from_ref(&choice), stream.usage.map(Some)),
    );
    Reply::ok(out)
}

/// One legacy completion being streamed.
pub(crate) struct Stream {
    id: u64,
    created: u64,
    model: String,
    usage: Option<Usage>,
    include_usage: bool,
    answer: Answer,
}

impl Stream {
    fn object<'a>(
        &'a self,
        choices: &'a [Choice<'a>],
        usage: Option<Option<Usage>>,
    ) -> TextCompletion<'a> {
        TextCompletion {
            id: Id::new("cmpl-", self.id),
            object: "text_completion",
            created: self.created,
            model: &self.model,
            system_fingerprint: "fp_tollgate_mock",
            choices,
            usage,
        }
    }

    /// Events: N text chunks, a finish chunk, the usage chunk when asked for, `[DONE]`.
    pub fn write_event(&self, index: usize, out: &mut Vec<u8>) -> bool {
        let finish = self.answer.pieces();
        let usage_chunk = (self.include_usage && self.usage.is_some()).then_some(finish + 1);
        let done = usage_chunk.unwrap_or(finish) + 1;
        let (text, finish_reason) = if index < finish {
            (self.answer.piece(index), None)
        } else if index == finish {
            ("", Some("stop"))
        } else if Some(index) == usage_chunk {
            sse_data(out, &self.object(&[], Some(self.usage)));
            return true;
        } else if index == done {
            out.extend_from_slice(DONE);
            return true;
        } else {
            return false;
        };
        let choice = Choice {
            text,
            index: 0,
            logprobs: None,
            finish_reason,
        };
        sse_data(
            out,
            &self.object(
                std::slice::from_ref(&choice),
                self.include_usage.then_some(None),
            ),
        );
        true
    }
}

#[derive(Serialize)]
struct TextCompletion<'a> {
    id: Id,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: &'a [Choice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct Choice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

/// Legacy usage: no details, and no reasoning in `completion_tokens`.
#[derive(Debug, Clone, Copy, Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl From<MockUsage> for Usage {
    fn from(u: MockUsage) -> Self {
        let completion_tokens = u.output_tokens.saturating_sub(u.reasoning_tokens);
        Self {
            prompt_tokens: u.input_tokens,
            completion_tokens,
            total_tokens: u.input_tokens + completion_tokens,
        }
    }
}
