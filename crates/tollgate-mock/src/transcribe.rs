//! `POST /v1/audio/transcriptions` and `/v1/audio/translations`: [`TRANSCRIPT`] for any audio,
//! with the usage OpenAI reports for the model.
//!
//! Formulas:
//! - Duration: a WAV upload's `data` bytes / byte rate, in whole ms (rounded down); any other
//!   file `bytes / 16` ms (16 kB a second).
//! - `whisper-1` usage: `{"type":"duration","seconds": duration ms / 1000}` (exact to the ms).
//! - `gpt-4o-transcribe` / `gpt-4o-mini-transcribe` usage: `audio_tokens = ceil(duration ms /
//!   100)` (10 a second), `text_tokens = prompt bytes / 4`, `input_tokens` their sum,
//!   `output_tokens = max(1, transcript bytes / 4)`.
//! - Translations (`whisper-1` only) report no usage, as OpenAI's do not.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use crate::audio::wav;
use crate::body::Script;
use crate::multipart::Form;
use crate::route::{Call, Ctx, Reply};
use crate::wire::{sse_data, write_json};

/// The text of every transcription and translation.
pub const TRANSCRIPT: &str = "Hello from the tollgate mock upstream.";

/// The duration the mock hears in an uploaded audio file, in ms.
pub fn audio_duration_ms(file: &[u8]) -> u64 {
    wav::duration_ms(file).unwrap_or(file.len() as u64 / 16)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Task {
    Transcribe,
    Translate,
}

pub(crate) fn transcription(ctx: &Ctx, call: &Call<'_>, body: &[u8]) -> Reply {
    handle(ctx, call, body, Task::Transcribe)
}

pub(crate) fn translation(ctx: &Ctx, call: &Call<'_>, body: &[u8]) -> Reply {
    handle(ctx, call, body, Task::Translate)
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Usage {
    Duration {
        seconds: f64,
    },
    Tokens {
        input_tokens: u64,
        input_token_details: TokenDetails,
        output_tokens: u64,
        total_tokens: u64,
    },
}

#[derive(Serialize)]
struct TokenDetails {
    text_tokens: u64,
    audio_tokens: u64,
}

#[derive(Serialize)]
struct Json<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<f64>,
    text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    segments: Option<[Segment; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Segment {
    id: u32,
    seek: u32,
    start: f64,
    end: f64,
    text: &'static str,
    tokens: [u32; 3],
    temperature: f64,
    avg_logprob: f64,
    compression_ratio: f64,
    no_speech_prob: f64,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Event<'a> {
    #[serde(rename = "transcript.text.delta")]
    Delta { delta: &'a str },
    #[serde(rename = "transcript.text.done")]
    Done {
        text: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
}

fn handle(ctx: &Ctx, call: &Call<'_>, body: &[u8], task: Task) -> Reply {
    let form = match Form::parse(call.content_type, body) {
        Ok(form) => form,
        Err(message) => return Reply::bad_request(&message),
    };
    let Some(file) = form.get("file") else {
        return Reply::invalid_param("Missing required parameter: 'file'.", "file");
    };
    let model = form.text("model").unwrap_or_else(|| "whisper-1".to_owned());
    let whisper = model == "whisper-1";
    if task == Task::Translate && !whisper {
        let message = format!("Model '{model}' does not support translations; use whisper-1.");
        return Reply::invalid_param(&message, "model");
    }
    let format = form
        .text("response_format")
        .unwrap_or_else(|| "json".to_owned());
    if !whisper && !matches!(format.as_str(), "json" | "text") {
        let message = format!("response_format '{format}' is not compatible with model '{model}'.");
        return Reply::invalid_param(&message, "response_format");
    }
    let duration_ms = audio_duration_ms(file.data);
    let seconds = duration_ms as f64 / 1000.0;
    let prompt_bytes = form.get("prompt").map_or(0, |p| p.data.len()) as u64;
    let usage = || -> Option<Usage> {
        if ctx.no_usage || task == Task::Translate {
            return None;
        }
        Some(if whisper {
            Usage::Duration { seconds }
        } else {
            let audio_tokens = duration_ms.div_ceil(100);
            let text_tokens = prompt_bytes / 4;
            let output_tokens = (TRANSCRIPT.len() as u64 / 4).max(1);
            Usage::Tokens {
                input_tokens: audio_tokens + text_tokens,
                input_token_details: TokenDetails {
                    text_tokens,
                    audio_tokens,
                },
                output_tokens,
                total_tokens: audio_tokens + text_tokens + output_tokens,
            }
        })
    };
    // whisper-1 ignores `stream`, as OpenAI's does.
    let stream = form.text("stream").is_some_and(|s| s.trim() == "true") && !whisper;
    if stream {
        let mut events: Vec<Vec<u8>> = TRANSCRIPT
            .split_inclusive(' ')
            .map(|word| {
                let mut out = Vec::new();
                sse_data(&mut out, &Event::Delta { delta: word });
                out
            })
            .collect();
        let mut out = Vec::new();
        sse_data(
            &mut out,
            &Event::Done {
                text: TRANSCRIPT,
                usage: usage(),
            },
        );
        events.push(out);
        return Reply::Stream(Script::Prerendered(events));
    }
    let language = form.text("language");
    let text_reply = |text: String| {
        Reply::Raw(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from(text),
        )
    };
    let json = match format.as_str() {
        "json" => Json {
            task: None,
            language: None,
            duration: None,
            text: TRANSCRIPT,
            segments: None,
            usage: usage(),
        },
        "verbose_json" => Json {
            task: Some(match task {
                Task::Transcribe => "transcribe",
                Task::Translate => "translate",
            }),
            language: Some(match (task, language.as_deref()) {
                (Task::Transcribe, Some(language)) => language,
                _ => "english",
            }),
            duration: Some(seconds),
            text: TRANSCRIPT,
            segments: Some([Segment {
                id: 0,
                seek: 0,
                start: 0.0,
                end: seconds,
                text: TRANSCRIPT,
                tokens: [50364, 15947, 50414],
                temperature: 0.0,
                avg_logprob: -0.25,
                compression_ratio: 1.0,
                no_speech_prob: 0.01,
            }]),
            usage: usage(),
        },
        "text" => return text_reply(format!("{TRANSCRIPT}\n")),
        "srt" => {
            let end = timestamp(duration_ms, ',');
            return text_reply(format!("1\n00:00:00,000 --> {end}\n{TRANSCRIPT}\n\n"));
        }
        "vtt" => {
            let end = timestamp(duration_ms, '.');
            return text_reply(format!(
                "WEBVTT\n\n00:00:00.000 --> {end}\n{TRANSCRIPT}\n\n"
            ));
        }
        other => {
            let message = format!(
                "Invalid value for 'response_format': {other:?}. Expected one of json, text, srt, verbose_json, vtt."
            );
            return Reply::invalid_param(&message, "response_format");
        }
    };
    let mut out = Vec::with_capacity(256);
    write_json(&mut out, &json);
    Reply::ok(out)
}

/// `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (WebVTT).
fn timestamp(ms: u64, separator: char) -> String {
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    format!("{h:02}:{m:02}:{s:02}{separator}{:03}", ms % 1000)
}
