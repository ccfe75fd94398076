//! Images and audio over real sockets: the shapes clients parse and the usage a meter prices.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly on purpose"
)]

mod support;

use http::StatusCode;
use serde_json::{Value, json};
use support::Mock;
use tollgate_mock::{MockOptions, TRANSCRIPT, audio_duration_ms, speech_duration_ms};

async fn mock() -> Mock {
    Mock::start(MockOptions::default()).await
}

/// A silent 16-bit mono WAV of `ms` at 16 kHz, written independently of the mock.
fn wav(ms: u32) -> Vec<u8> {
    let data_len = ms * 32;
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt \x10\0\0\0\x01\0\x01\0");
    out.extend_from_slice(&16_000u32.to_le_bytes());
    out.extend_from_slice(&32_000u32.to_le_bytes());
    out.extend_from_slice(b"\x02\0\x10\0data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.resize(out.len() + data_len as usize, 0);
    out
}

#[tokio::test]
async fn gpt_image_generations_report_token_usage_from_the_size_and_quality_table() {
    let mock = mock().await;
    let body = json!({"model": "gpt-image-1", "prompt": "a red fox in snow", "n": 2,
                      "size": "1024x1536", "quality": "high"});
    let r = mock.post("/v1/images/generations", &[], &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = r.json();
    assert_eq!(r["data"].as_array().unwrap().len(), 2);
    assert!(
        r["data"][0]["b64_json"]
            .as_str()
            .unwrap()
            .starts_with("iVBOR")
    );
    assert_eq!(r["data"][0].get("url"), None);
    assert_eq!(
        (r["size"].clone(), r["quality"].clone()),
        (json!("1024x1536"), json!("high"))
    );
    assert_eq!(r["output_format"], "png");
    // "a red fox in snow" is 17 bytes: 4 text tokens; 2 × 6240 output tokens.
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 4, "input_tokens_details": {"image_tokens": 0, "text_tokens": 4},
               "output_tokens": 12480, "output_tokens_details": {"image_tokens": 12480, "text_tokens": 0},
               "total_tokens": 12484})
    );
    let auto = mock
        .post(
            "/v1/images/generations",
            &[],
            &json!({"model": "gpt-image-1-mini", "prompt": "x"}),
        )
        .await
        .json();
    assert_eq!(
        auto["usage"]["output_tokens"], 1056,
        "auto is medium 1024x1024"
    );
}

#[tokio::test]
async fn dall_e_images_have_urls_or_base64_and_no_usage() {
    let mock = mock().await;
    let r = mock
        .post(
            "/v1/images/generations",
            &[],
            &json!({"prompt": "fox", "n": 3}),
        )
        .await
        .json();
    assert_eq!(r["data"].as_array().unwrap().len(), 3);
    assert!(
        r["data"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    assert_eq!(r.get("usage"), None);
    let r = mock
        .post(
            "/v1/images/generations",
            &[],
            &json!({"model": "dall-e-3", "prompt": "fox", "response_format": "b64_json"}),
        )
        .await
        .json();
    assert_eq!(r["data"][0]["revised_prompt"], "fox");
    assert!(r["data"][0]["b64_json"].is_string());
    let refused = mock
        .post(
            "/v1/images/generations",
            &[],
            &json!({"model": "dall-e-3", "prompt": "fox", "stream": true}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn streamed_images_send_partials_then_a_completed_event_with_usage() {
    let mock = mock().await;
    let body = json!({"model": "gpt-image-1", "prompt": "fox!", "stream": true, "partial_images": 2, "quality": "low"});
    let r = mock.post("/v1/images/generations", &[], &body).await;
    assert_eq!(r.content_type, "text/event-stream");
    assert!(
        r.text()
            .starts_with("event: image_generation.partial_image\n")
    );
    let events = r.events();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "image_generation.partial_image",
            "image_generation.partial_image",
            "image_generation.completed"
        ]
    );
    assert_eq!(events[1]["partial_image_index"], 1);
    // 272 for the low-quality image + 100 for each partial.
    assert_eq!(events[2]["usage"]["output_tokens"], 472);
    assert_eq!(events[2]["usage"]["input_tokens"], 1);
}

#[tokio::test]
async fn image_edits_count_every_uploaded_image_and_stream_edit_events() {
    let mock = mock().await;
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&512u32.to_be_bytes());
    png.extend_from_slice(&512u32.to_be_bytes());
    let fields = [
        ("model", "gpt-image-1"),
        ("prompt", "add a hat"),
        ("quality", "low"),
    ];
    let files: [(&str, &str, &[u8]); 2] =
        [("image[]", "a.png", &png), ("image[]", "b.jpg", b"jpeg")];
    let r = mock.form("/v1/images/edits", &fields, &files).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let usage = &r.json()["usage"];
    // 512×512 PNG: 85 + 170; the JPEG counts as 1024×1024: 765.
    assert_eq!(usage["input_tokens_details"]["image_tokens"], 255 + 765);
    assert_eq!(usage["input_tokens_details"]["text_tokens"], 2);
    let fields = [
        ("model", "gpt-image-1"),
        ("prompt", "hat"),
        ("stream", "true"),
    ];
    let events = mock
        .form("/v1/images/edits", &fields, &[("image", "a.png", &png)])
        .await
        .events();
    assert_eq!(events.last().unwrap()["type"], "image_edit.completed");
    assert_eq!(
        events.last().unwrap()["usage"]["input_tokens_details"]["image_tokens"],
        255
    );

    let variation = mock
        .form(
            "/v1/images/variations",
            &[("n", "2")],
            &[("image", "a.png", &png)],
        )
        .await
        .json();
    assert_eq!(variation["data"].as_array().unwrap().len(), 2);
    assert_eq!(variation.get("usage"), None);
}

#[tokio::test]
async fn speech_is_audio_of_a_length_that_follows_from_the_input() {
    let mock = mock().await;
    let input = "Hello there";
    let r = mock
        .post(
            "/v1/audio/speech",
            &[],
            &json!({"model": "tts-1", "input": input, "voice": "alloy", "response_format": "wav"}),
        )
        .await;
    assert_eq!(r.content_type, "audio/wav");
    assert_eq!(speech_duration_ms(input), 660);
    assert_eq!(audio_duration_ms(&r.body), 660);
    let mp3 = mock
        .post(
            "/v1/audio/speech",
            &[],
            &json!({"model": "tts-1-hd", "input": input, "voice": "alloy"}),
        )
        .await;
    assert_eq!(mp3.content_type, "audio/mpeg");
    assert_eq!(mp3.body.len(), 660 * 16);
    assert!(mp3.body.starts_with(b"ID3"));
}

#[tokio::test]
async fn speech_sse_streams_audio_deltas_then_usage() {
    let mock = mock().await;
    let body = json!({"model": "gpt-4o-mini-tts", "input": "Hello there", "voice": "alloy",
                      "response_format": "pcm", "stream_format": "sse", "instructions": "calm"});
    let r = mock.post("/v1/audio/speech", &[], &body).await;
    assert_eq!(r.content_type, "text/event-stream");
    let events = r.events();
    assert!(events.len() > 2);
    assert_eq!(events[0]["type"], "speech.audio.delta");
    let done = events.last().unwrap();
    assert_eq!(done["type"], "speech.audio.done");
    // (11 + 4) bytes / 4 = 3 input tokens; 660 ms / 20 = 33 output tokens.
    assert_eq!(
        done["usage"],
        json!({"input_tokens": 3, "output_tokens": 33, "total_tokens": 36})
    );
    let refused = mock
        .post(
            "/v1/audio/speech",
            &[],
            &json!({"model": "tts-1", "input": "x", "voice": "alloy", "stream_format": "sse"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn whisper_reports_the_wav_duration_and_gpt_4o_transcribe_reports_tokens() {
    let mock = mock().await;
    let audio = wav(2_345);
    let whisper = mock
        .form(
            "/v1/audio/transcriptions",
            &[("model", "whisper-1")],
            &[("file", "a.wav", &audio)],
        )
        .await
        .json();
    assert_eq!(
        whisper,
        json!({"text": TRANSCRIPT, "usage": {"type": "duration", "seconds": 2.345}})
    );
    let verbose = mock
        .form(
            "/v1/audio/transcriptions",
            &[
                ("model", "whisper-1"),
                ("response_format", "verbose_json"),
                ("language", "en"),
            ],
            &[("file", "a.wav", &audio)],
        )
        .await
        .json();
    assert_eq!(verbose["duration"], 2.345);
    assert_eq!(verbose["language"], "en");
    assert_eq!(verbose["segments"][0]["end"], 2.345);
    let srt = mock
        .form(
            "/v1/audio/transcriptions",
            &[("model", "whisper-1"), ("response_format", "srt")],
            &[("file", "a.wav", &audio)],
        )
        .await;
    assert!(srt.text().contains("00:00:00,000 --> 00:00:02,345"));
    let tokens = mock
        .form(
            "/v1/audio/transcriptions",
            &[("model", "gpt-4o-transcribe"), ("prompt", "names: Ada")],
            &[("file", "a.mp3", &[0u8; 32_000])],
        )
        .await
        .json();
    // 32000 bytes of non-WAV = 2000 ms = 20 audio tokens; "names: Ada" = 2 text tokens.
    assert_eq!(
        tokens["usage"],
        json!({"type": "tokens", "input_tokens": 22, "input_token_details": {"text_tokens": 2, "audio_tokens": 20},
               "output_tokens": TRANSCRIPT.len() / 4, "total_tokens": 22 + TRANSCRIPT.len() / 4})
    );
}

#[tokio::test]
async fn streamed_transcripts_end_with_usage_and_translations_have_none() {
    let mock = mock().await;
    let audio = wav(1_000);
    let events = mock
        .form(
            "/v1/audio/transcriptions",
            &[("model", "gpt-4o-mini-transcribe"), ("stream", "true")],
            &[("file", "a.wav", &audio)],
        )
        .await
        .events();
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "transcript.text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, TRANSCRIPT);
    let done = events.last().unwrap();
    assert_eq!(done["type"], "transcript.text.done");
    assert_eq!(done["usage"]["input_token_details"]["audio_tokens"], 10);
    let translation = mock
        .form(
            "/v1/audio/translations",
            &[("model", "whisper-1")],
            &[("file", "a.wav", &audio)],
        )
        .await
        .json();
    assert_eq!(translation, json!({"text": TRANSCRIPT}));
    let verbose: Value = mock
        .form(
            "/v1/audio/translations",
            &[("model", "whisper-1"), ("response_format", "verbose_json")],
            &[("file", "a.wav", &audio)],
        )
        .await
        .json();
    assert_eq!(
        (verbose["task"].clone(), verbose["duration"].clone()),
        (json!("translate"), json!(1.0))
    );
    assert_eq!(verbose.get("usage"), None);
}
