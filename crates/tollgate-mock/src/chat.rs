//! `POST /v1/chat/completions`: a `chat.completion` object or a stream of `chat.completion.chunk`s.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::answer::{Answer, EXEC_ARGUMENTS, MockUsage};
use crate::body::Script;
use crate::request::{Ask, Conversation, StreamOptions};
use crate::route::{Ctx, DEFAULT_MODEL, Reply};
use crate::wire::{DONE, Id, sse_data, write_json};

mod objects;

use objects::{
    Annotation, Choice, Chunk, ChunkChoice, Completion, Delta, Function, FunctionDelta, Message,
    ToolCall, ToolCallDelta, UrlCitation, Usage,
};

const FINGERPRINT: &str = "fp_tollgate_mock";

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    messages: Option<Conversation>,
    #[serde(default)]
    tools: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    web_search_options: Option<IgnoredAny>,
}

/// The page a search-preview answer cites.
pub const CITATION_URL: &str = "https://tollgate-mock.invalid/search-result";

pub(crate) fn handle(ctx: &Ctx, body: &[u8]) -> Reply {
    let request: Request<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Reply::bad_json(&e),
    };
    let messages = request.messages.unwrap_or_default();
    let has_tools = request.tools.is_some_and(|t| !t.is_empty());
    let answer = if messages.ends_with_tool_output {
        Answer::Done
    } else if has_tools && messages.ask == Ask::Exec {
        Answer::Exec
    } else {
        Answer::Sentence(ctx.deltas)
    };
    let stream = Stream {
        id: ctx.id,
        created: ctx.created,
        model: request.model.as_deref().unwrap_or(DEFAULT_MODEL).to_owned(),
        usage: ctx.usage(),
        include_usage: request.stream_options.and_then(|o| o.include_usage) == Some(true),
        answer,
        text: answer.text(),
    };
    if request.stream == Some(true) {
        return Reply::Stream(Script::Chat(stream));
    }
    let tool_call = (answer == Answer::Exec).then(|| [stream.tool_call()]);
    // A search-preview model with `web_search_options` searched once and cites the result
    // over its whole answer (OpenAI bills the search per call on top of tokens).
    let searched = request.web_search_options.is_some()
        && request
            .model
            .as_deref()
            .is_some_and(|m| m.contains("search-preview"));
    let annotations: Vec<Annotation> = searched
        .then(|| Annotation {
            kind: "url_citation",
            url_citation: UrlCitation {
                end_index: stream.text.chars().count(),
                start_index: 0,
                title: "tollgate mock search result",
                url: CITATION_URL,
            },
        })
        .into_iter()
        .collect();
    let completion = Completion {
        id: Id::new("chatcmpl-", stream.id),
        object: "chat.completion",
        created: stream.created,
        model: &stream.model,
        choices: [Choice {
            index: 0,
            message: Message {
                role: "assistant",
                content: tool_call.is_none().then_some(stream.text.as_str()),
                refusal: None,
                annotations: &annotations,
                tool_calls: tool_call,
            },
            logprobs: None,
            finish_reason: stream.finish_reason(),
        }],
        usage: stream.usage.map(Usage::from),
        service_tier: "default",
        system_fingerprint: FINGERPRINT,
    };
    let mut out = Vec::with_capacity(768);
    write_json(&mut out, &completion);
    Reply::ok(out)
}

/// One chat completion being streamed.
pub(crate) struct Stream {
    id: u64,
    created: u64,
    model: String,
    usage: Option<MockUsage>,
    include_usage: bool,
    answer: Answer,
    text: String,
}

impl Stream {
    fn finish_reason(&self) -> &'static str {
        if self.answer == Answer::Exec {
            "tool_calls"
        } else {
            "stop"
        }
    }

    fn tool_call(&self) -> ToolCall {
        ToolCall {
            id: Id::new("call_", self.id),
            kind: "function",
            function: Function {
                name: "exec_command",
                arguments: EXEC_ARGUMENTS,
            },
        }
    }

    /// Events: a role chunk, the content (or tool-call arguments) chunks, a finish chunk,
    /// the usage chunk when `stream_options.include_usage` asked for it, then `[DONE]`.
    pub fn write_event(&self, index: usize, out: &mut Vec<u8>) -> bool {
        let content_chunks = if self.answer == Answer::Exec {
            1
        } else {
            self.answer.pieces()
        };
        let finish = 1 + content_chunks;
        let usage_chunk = (self.include_usage && self.usage.is_some()).then_some(finish + 1);
        let done = usage_chunk.unwrap_or(finish) + 1;
        let delta = if index == 0 {
            let tool = self.answer == Answer::Exec;
            Delta {
                role: Some("assistant"),
                content: Some(if tool { None } else { Some("") }),
                tool_calls: tool.then(|| {
                    [ToolCallDelta {
                        index: 0,
                        id: Some(Id::new("call_", self.id)),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some("exec_command"),
                            arguments: "",
                        },
                    }]
                }),
                refusal: Some(None),
            }
        } else if index < finish && self.answer == Answer::Exec {
            Delta {
                tool_calls: Some([ToolCallDelta {
                    index: 0,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: EXEC_ARGUMENTS,
                    },
                }]),
                ..Delta::default()
            }
        } else if index < finish {
            Delta {
                content: Some(Some(self.answer.piece(index - 1))),
                ..Delta::default()
            }
        } else if index == finish {
            Delta::default()
        } else if Some(index) == usage_chunk {
            let chunk = self.chunk(&[], Some(self.usage.map(Usage::from)));
            sse_data(out, &chunk);
            return true;
        } else if index == done {
            out.extend_from_slice(DONE);
            return true;
        } else {
            return false;
        };
        let choice = ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: (index == finish).then(|| self.finish_reason()),
        };
        // With include_usage every chunk carries `"usage": null` until the usage chunk.
        let usage = self.include_usage.then_some(None);
        sse_data(out, &self.chunk(std::slice::from_ref(&choice), usage));
        true
    }

    fn chunk<'a>(
        &'a self,
        choices: &'a [ChunkChoice<'a>],
        usage: Option<Option<Usage>>,
    ) -> Chunk<'a> {
        Chunk {
            id: Id::new("chatcmpl-", self.id),
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            service_tier: "default",
            system_fingerprint: FINGERPRINT,
            choices,
            usage,
        }
    }
}
