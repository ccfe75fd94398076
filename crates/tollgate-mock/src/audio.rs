//! `POST /v1/audio/speech`: audio bytes of a length that follows from the input, or (for
//! `gpt-4o-mini-tts` with `stream_format: "sse"`) `speech.audio.delta` events and a
//! `speech.audio.done` event carrying usage.
//!
//! Formulas:
//! - Duration: `max(100, 60 × input characters)` ms (`speed` is ignored).
//! - `wav` / `pcm`: 24 kHz mono 16-bit silence of that duration (`wav` with a 44-byte header);
//!   other formats: `16 bytes per ms` (128 kbit/s) starting with the format's magic bytes.
//! - SSE usage: `input_tokens = max(1, (input + instructions bytes) / 4)`,
//!   `output_tokens = duration ms / 20` (50 audio tokens a second).

pub(crate) mod wav;

use std::borrow::Cow;

use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::body::Script;
use crate::route::{Ctx, Reply};
use crate::wire::{base64, sse_data};

/// Audio bytes per SSE delta event (before base64).
const DELTA_BYTES: usize = 8 * 1024;
/// Keeps a huge `input` from making the mock allocate without bound (about 10 minutes).
const MAX_DURATION_MS: u64 = 600_000;

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    instructions: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    response_format: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stream_format: Option<Cow<'a, str>>,
}

/// Speech duration for `input`, in ms.
pub fn speech_duration_ms(input: &str) -> u64 {
    (60 * input.chars().count() as u64).clamp(100, MAX_DURATION_MS)
}

fn audio(format: &str, duration_ms: u64) -> Option<(&'static str, Vec<u8>)> {
    let (content_type, magic): (&'static str, &[u8]) = match format {
        "wav" => return Some(("audio/wav", wav::wav(duration_ms))),
        "pcm" => return Some(("audio/pcm", wav::pcm(duration_ms))),
        "mp3" => ("audio/mpeg", b"ID3\x04\0\0\0\0\0\0"),
        "opus" => ("audio/opus", b"OggS\0\x02"),
        "aac" => ("audio/aac", b"\xff\xf1\x50\x80"),
        "flac" => ("audio/flac", b"fLaC"),
        _ => return None,
    };
    let mut bytes = vec![0; (duration_ms * 16) as usize];
    bytes[..magic.len()].copy_from_slice(magic);
    Some((content_type, bytes))
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Event<'a> {
    #[serde(rename = "speech.audio.delta")]
    Delta { audio: &'a str },
    #[serde(rename = "speech.audio.done")]
    Done {
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<SpeechUsage>,
    },
}

#[derive(Serialize)]
struct SpeechUsage {
    input_tokens: u64,
    output_tokens: u64,
    total_tokens: u64,
}

pub(crate) fn speech(ctx: &Ctx, body: &[u8]) -> Reply {
    let request: Request<'_> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Reply::bad_json(&e),
    };
    let Some(input) = request.input.as_deref() else {
        return Reply::invalid_param("Missing required parameter: 'input'.", "input");
    };
    let model = request.model.as_deref().unwrap_or("tts-1");
    let format = request.response_format.as_deref().unwrap_or("mp3");
    let duration_ms = speech_duration_ms(input);
    let Some((content_type, bytes)) = audio(format, duration_ms) else {
        let message = format!(
            "Invalid value for 'response_format': {format:?}. Expected one of mp3, opus, aac, flac, wav, pcm."
        );
        return Reply::invalid_param(&message, "response_format");
    };
    match request.stream_format.as_deref() {
        None | Some("audio") => Reply::Raw(StatusCode::OK, content_type, Bytes::from(bytes)),
        Some("sse") if model.starts_with("gpt-4o") => {
            let mut events: Vec<Vec<u8>> = bytes
                .chunks(DELTA_BYTES)
                .map(|chunk| {
                    let mut out = Vec::new();
                    sse_data(
                        &mut out,
                        &Event::Delta {
                            audio: &base64(chunk),
                        },
                    );
                    out
                })
                .collect();
            let text = input.len() + request.instructions.as_deref().map_or(0, str::len);
            let input_tokens = (text as u64 / 4).max(1);
            let output_tokens = duration_ms / 20;
            let usage = (!ctx.no_usage).then_some(SpeechUsage {
                input_tokens,
                output_tokens,
                total_tokens: input_tokens + output_tokens,
            });
            let mut out = Vec::new();
            sse_data(&mut out, &Event::Done { usage });
            events.push(out);
            Reply::Stream(Script::Prerendered(events))
        }
        Some("sse") => {
            let message = format!("stream_format 'sse' is not supported for model '{model}'.");
            Reply::invalid_param(&message, "stream_format")
        }
        Some(other) => {
            let message =
                format!("Invalid value for 'stream_format': {other:?}. Expected 'audio' or 'sse'.");
            Reply::invalid_param(&message, "stream_format")
        }
    }
}
