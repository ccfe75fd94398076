//! OpenAI-hosted tools in a Responses answer: a `web_search_call`, `file_search_call`,
//! `code_interpreter_call` or `image_generation_call` item per call, before the answer's own
//! item.
//!
//! A request whose `tools` holds `web_search*`, `file_search`, `code_interpreter` or
//! `image_generation` gets
//! `x-mock-builtin-calls` calls of each (default 1), in the order the tools are listed. The
//! `code_interpreter` calls of one answer share one container unless `x-mock-containers: M`
//! spreads them round-robin over M. OpenAI bills these per call (and per container), so the
//! counts are what a gateway meters.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::wire::{self, Framing};

/// The query every web search call reports.
pub const WEB_SEARCH_QUERY: &str = "tollgate mock upstream";
/// The code every code interpreter call runs, and its logs.
pub const INTERPRETER_CODE: &str = "print(1 + 1)";
const INTERPRETER_LOGS: &str = "2\n";

/// One entry of a request's `tools`, by its type only.
#[derive(Deserialize)]
pub(crate) struct ToolSpec<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    WebSearch,
    FileSearch,
    CodeInterpreter,
    ImageGeneration,
}

impl Tool {
    fn of(kind: &str) -> Option<Self> {
        match kind {
            k if k.starts_with("web_search") => Some(Tool::WebSearch),
            "file_search" => Some(Tool::FileSearch),
            "code_interpreter" => Some(Tool::CodeInterpreter),
            "image_generation" => Some(Tool::ImageGeneration),
            _ => None,
        }
    }

    /// The item type, which also names the tool's own progress events.
    fn item_type(self) -> &'static str {
        match self {
            Tool::WebSearch => "web_search_call",
            Tool::FileSearch => "file_search_call",
            Tool::CodeInterpreter => "code_interpreter_call",
            Tool::ImageGeneration => "image_generation_call",
        }
    }
}

/// One hosted tool call of an answer.
pub(crate) struct Call {
    tool: Tool,
    id: String,
    container_id: Option<String>,
}

/// The calls an answer makes for `tools`; `response` makes ids unique.
pub(crate) fn calls(
    tools: &[ToolSpec<'_>],
    response: u64,
    per_tool: usize,
    containers: Option<usize>,
) -> Vec<Call> {
    let mut out: Vec<Call> = Vec::new();
    let mut interpreter_calls = 0;
    for tool in tools.iter().filter_map(|t| Tool::of(t.kind.as_deref()?)) {
        // A tool listed twice (e.g. web_search and web_search_preview) is still one tool.
        if out.iter().any(|c| c.tool == tool) {
            continue;
        }
        for _ in 0..per_tool {
            let n = out.len();
            let (prefix, container_id) = match tool {
                Tool::WebSearch => ("ws", None),
                Tool::FileSearch => ("fs", None),
                Tool::ImageGeneration => ("ig", None),
                Tool::CodeInterpreter => {
                    let container = interpreter_calls % containers.unwrap_or(1);
                    interpreter_calls += 1;
                    ("ci", Some(format!("cntr_{response:016x}{container:04x}")))
                }
            };
            out.push(Call {
                tool,
                id: format!("{prefix}_{response:016x}{n:04x}"),
                container_id,
            });
        }
    }
    out
}

#[derive(Serialize)]
pub(crate) struct Item<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queries: Option<[&'static str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<Option<()>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outputs: Option<Option<[Logs; 1]>>,
    /// An image generation call's image (base64), once made.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Option<&'static str>>,
}

#[derive(Serialize)]
struct Action {
    #[serde(rename = "type")]
    kind: &'static str,
    query: &'static str,
}

#[derive(Serialize)]
struct Logs {
    #[serde(rename = "type")]
    kind: &'static str,
    logs: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Event<'a> {
    Item {
        #[serde(rename = "type")]
        kind: &'static str,
        sequence_number: usize,
        output_index: usize,
        item: Item<'a>,
    },
    Progress {
        #[serde(rename = "type")]
        kind: &'a str,
        sequence_number: usize,
        output_index: usize,
        item_id: &'a str,
    },
    CodeDelta {
        #[serde(rename = "type")]
        kind: &'static str,
        sequence_number: usize,
        output_index: usize,
        item_id: &'a str,
        delta: &'static str,
    },
    CodeDone {
        #[serde(rename = "type")]
        kind: &'static str,
        sequence_number: usize,
        output_index: usize,
        item_id: &'a str,
        code: &'static str,
    },
}

impl Call {
    /// The item, finished or as first announced.
    pub fn item(&self, done: bool) -> Item<'_> {
        let status = if done { "completed" } else { "in_progress" };
        let mut item = Item {
            id: &self.id,
            kind: self.tool.item_type(),
            status,
            action: None,
            queries: None,
            results: None,
            code: None,
            container_id: None,
            outputs: None,
            result: None,
        };
        match self.tool {
            Tool::WebSearch => {
                item.action = Some(Action {
                    kind: "search",
                    query: WEB_SEARCH_QUERY,
                });
            }
            Tool::FileSearch => {
                item.queries = Some([WEB_SEARCH_QUERY]);
                item.results = Some(None);
            }
            Tool::ImageGeneration => {
                item.result = Some(done.then_some(crate::images::PNG_B64));
            }
            Tool::CodeInterpreter => {
                item.code = Some(if done { INTERPRETER_CODE } else { "" });
                item.container_id = self.container_id.as_deref();
                item.outputs = Some(done.then_some([Logs {
                    kind: "logs",
                    logs: INTERPRETER_LOGS,
                }]));
            }
        }
        item
    }

    /// How many stream events this call takes.
    pub fn event_count(&self) -> usize {
        match self.tool {
            // added, in_progress, searching (generating), completed, done
            Tool::WebSearch | Tool::FileSearch | Tool::ImageGeneration => 5,
            // added, in_progress, code delta, code done, interpreting, completed, done
            Tool::CodeInterpreter => 7,
        }
    }

    /// Appends this call's event `k` (of [`event_count`](Self::event_count)).
    pub fn write_event(
        &self,
        k: usize,
        sequence_number: usize,
        output_index: usize,
        framing: Framing,
        out: &mut Vec<u8>,
    ) {
        let last = self.event_count() - 1;
        let progress = |phase: &str| format!("response.{}.{phase}", self.tool.item_type());
        let name;
        let event = match (k, self.tool) {
            (0, _) => Event::Item {
                kind: "response.output_item.added",
                sequence_number,
                output_index,
                item: self.item(false),
            },
            (k, _) if k == last => Event::Item {
                kind: "response.output_item.done",
                sequence_number,
                output_index,
                item: self.item(true),
            },
            (2, Tool::CodeInterpreter) => Event::CodeDelta {
                kind: "response.code_interpreter_call_code.delta",
                sequence_number,
                output_index,
                item_id: &self.id,
                delta: INTERPRETER_CODE,
            },
            (3, Tool::CodeInterpreter) => Event::CodeDone {
                kind: "response.code_interpreter_call_code.done",
                sequence_number,
                output_index,
                item_id: &self.id,
                code: INTERPRETER_CODE,
            },
            (k, tool) => {
                let phase = match (k, tool) {
                    (1, _) => "in_progress",
                    (2, Tool::ImageGeneration) => "generating",
                    (2, _) => "searching",
                    (4, Tool::CodeInterpreter) => "interpreting",
                    _ => "completed",
                };
                name = progress(phase);
                Event::Progress {
                    kind: &name,
                    sequence_number,
                    output_index,
                    item_id: &self.id,
                }
            }
        };
        let event_name = match &event {
            Event::Item { kind, .. }
            | Event::CodeDelta { kind, .. }
            | Event::CodeDone { kind, .. } => kind,
            Event::Progress { kind, .. } => *kind,
        };
        wire::event(out, framing, event_name, &event);
    }
}
