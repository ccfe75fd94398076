//! Every OpenAI endpoint that costs money is metered, priced from the price table and held to
//! the budget: images (per image and in tokens), speech (per character and in tokens),
//! transcriptions and translations (per minute and in tokens), moderations (free, still
//! metered) and the built-in tools Responses bills per call. Each row's cost is checked against
//! a hand computation from `config/prices.toml`'s rates, in nano-USD per token (USD per 1M
//! tokens × 1,000) or per unit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use http::{Method, StatusCode};
use serde_json::{Value, json};

use tollgate_tests::{Backend, Harness, Reply, bearer, both_stores};

both_stores!(
    images_are_priced_per_image_or_in_tokens,
    speech_is_priced_per_character_or_in_tokens,
    transcripts_are_priced_per_minute_or_in_tokens,
    built_in_tools_are_priced_per_call_on_top_of_tokens,
    an_exhausted_budget_refuses_every_media_endpoint_before_the_upstream,
    streams_uploads_and_compaction_are_metered_and_attributed,
    a_form_bills_by_the_fields_the_upstream_reads,
    a_wav_header_cannot_shorten_the_audio_a_transcript_bills,
    an_image_request_the_upstream_would_give_a_gpt_image_model_must_name_it,
    a_transparent_image_background_is_an_option_not_a_background_call,
    an_image_stream_that_ends_early_still_bills_every_image_asked_for,
    an_audio_request_without_a_model_is_refused_before_the_upstream,
);

/// The `data:` payloads of an event stream, parsed.
fn events(reply: &Reply) -> Vec<Value> {
    String::from_utf8_lossy(&reply.body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .collect()
}

/// Sends a JSON body with the team key.
async fn post_json(h: &Harness, key: &str, path: &str, body: Value) -> Reply {
    h.http
        .send(
            Method::POST,
            &format!("{}{path}", h.base()),
            &[bearer(key), ("content-type", "application/json".into())],
            body.to_string(),
        )
        .await
}

/// One part of a multipart form: a text field, or a file with its name and bytes.
enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a str, &'a [u8]),
}

/// Sends a multipart form with the team key.
async fn post_form(h: &Harness, key: &str, path: &str, parts: &[Part<'_>]) -> Reply {
    let heads: Vec<(String, &[u8])> = parts
        .iter()
        .map(|part| match part {
            Part::Text(name, value) => (
                format!("Content-Disposition: form-data; name=\"{name}\""),
                value.as_bytes(),
            ),
            Part::File(name, file_name, bytes) => (
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream"
                ),
                *bytes,
            ),
        })
        .collect();
    let raw: Vec<(&str, &[u8])> = heads.iter().map(|(h, v)| (h.as_str(), *v)).collect();
    post_raw_form(h, key, path, &raw).await
}

/// Sends a multipart form of raw parts, each its header lines and its value.
async fn post_raw_form(h: &Harness, key: &str, path: &str, parts: &[(&str, &[u8])]) -> Reply {
    let boundary = "tollgate-test-boundary-7d1f";
    let mut body = Vec::new();
    for (head, value) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n{head}\r\n\r\n").as_bytes());
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    h.http
        .send(
            Method::POST,
            &format!("{}{path}", h.base()),
            &[
                bearer(key),
                (
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                ),
            ],
            body,
        )
        .await
}

/// The ledger row of a reply, once written.
async fn row_of(h: &Harness, reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    h.ledger_row(reply.headers["x-request-id"].to_str().unwrap())
        .await
}

fn int(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("{value} is not an integer"))
}

/// A PCM WAV file: 16 kHz, 16-bit mono, `ms` milliseconds of silence.
fn wav(ms: u32) -> Vec<u8> {
    let data_len = 32 * ms;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    for (value, width) in [
        (16u32, 4),
        (1, 2),
        (1, 2),
        (16_000, 4),
        (32_000, 4),
        (2, 2),
        (16, 2),
    ] {
        w.extend_from_slice(&value.to_le_bytes()[..width]);
    }
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    w.resize(w.len() + data_len as usize, 0);
    w
}

async fn images_are_priced_per_image_or_in_tokens(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("pictures").await;

    // dall-e-3 bills per image by size and quality: hd 1024x1792 is $0.12.
    let reply = post_json(
        &h,
        &key,
        "/v1/images/generations",
        json!({"model": "dall-e-3", "prompt": "a gate", "size": "1024x1792", "quality": "hd"}),
    )
    .await;
    assert_eq!(
        reply.json()["data"].as_array().unwrap().len(),
        1,
        "{reply:?}"
    );
    let row = row_of(&h, &reply).await;
    assert_eq!(row["endpoint"], "images.generations");
    assert_eq!(row["cost_nanos"], 120_000_000, "{row}");
    assert_eq!(
        row["units"]["images"],
        json!({"count": 1, "size": "1024x1792", "quality": "hd"})
    );
    assert_eq!(
        (row["estimated"].clone(), row["unpriced"].clone()),
        (json!(false), json!(false))
    );

    // dall-e-2 is the default model; variations are a multipart upload: 2 × $0.018 at 512x512.
    let reply = post_form(
        &h,
        &key,
        "/v1/images/variations",
        &[
            Part::File("image", "gate.png", b"\x89PNG\r\n\x1a\nnot really a png"),
            Part::Text("n", "2"),
            Part::Text("size", "512x512"),
        ],
    )
    .await;
    let row = row_of(&h, &reply).await;
    assert_eq!(row["endpoint"], "images.variations");
    assert_eq!(row["model_requested"], "dall-e-2");
    assert_eq!(row["cost_nanos"], 36_000_000, "{row}");

    // gpt-image-1 bills tokens: text in $5, image in $10, image out $40 per 1M.
    for (path, reply) in [
        (
            "/v1/images/generations",
            post_json(
                &h,
                &key,
                "/v1/images/generations",
                json!({"model": "gpt-image-1", "prompt": "a gate at dawn", "quality": "low"}),
            )
            .await,
        ),
        (
            "/v1/images/edits",
            post_form(
                &h,
                &key,
                "/v1/images/edits",
                &[
                    Part::Text("model", "gpt-image-1"),
                    Part::Text("prompt", "paint it red"),
                    Part::File("image[]", "a.png", &[7u8; 5000]),
                    Part::File("image[]", "b.png", &[9u8; 3000]),
                ],
            )
            .await,
        ),
    ] {
        let usage = reply.json()["usage"].clone();
        assert!(usage.is_object(), "{path}: {reply:?}");
        let row = row_of(&h, &reply).await;
        let input = int(&usage["input_tokens"]);
        let image_in = int(&usage["input_tokens_details"]["image_tokens"]);
        let output = int(&usage["output_tokens"]);
        assert!(output > 0, "{path}: {usage}");
        let expected = (input - image_in) * 5_000 + image_in * 10_000 + output * 40_000;
        assert_eq!(row["cost_nanos"], expected, "{path}: {row} for {usage}");
        assert_eq!(row["units"]["output_image_tokens"], output, "{path}: {row}");
        assert_eq!(row["estimated"], false, "{path}");
    }

    // A size the price table has no per-image price for is refused before it is forwarded.
    let before = h.mock.requests().len();
    let reply = post_json(
        &h,
        &key,
        "/v1/images/generations",
        json!({"model": "dall-e-3", "prompt": "x", "size": "4096x4096"}),
    )
    .await;
    reply.assert_error(400, "model_not_priced");
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("4096x4096"), "{message}");
    assert_eq!(h.mock.requests().len(), before);
}

async fn speech_is_priced_per_character_or_in_tokens(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("voices").await;

    // tts-1 bills $15 per 1M characters of input: 15,000 nano-USD each, counted as characters
    // (é and 🚀 are one each), not bytes.
    let input = "Hello, gate! Café 🚀";
    let reply = post_json(
        &h,
        &key,
        "/v1/audio/speech",
        json!({"model": "tts-1", "input": input, "voice": "alloy"}),
    )
    .await;
    assert!(!reply.body.is_empty(), "{reply:?}");
    let row = row_of(&h, &reply).await;
    assert_eq!(row["endpoint"], "audio.speech");
    let characters = input.chars().count() as i64;
    assert_eq!(row["units"]["characters"], characters);
    assert_eq!(row["cost_nanos"], characters * 15_000, "{row}");
    assert_eq!(row["estimated"], false);

    // gpt-4o-mini-tts streamed as events reports tokens: text in $0.60, audio out $12 per 1M.
    let reply = post_json(
        &h,
        &key,
        "/v1/audio/speech",
        json!({"model": "gpt-4o-mini-tts", "input": input, "voice": "alloy", "stream_format": "sse"}),
    )
    .await;
    let done = events(&reply)
        .into_iter()
        .find(|e| e["type"] == "speech.audio.done")
        .unwrap_or_else(|| panic!("no speech.audio.done in {reply:?}"));
    let row = row_of(&h, &reply).await;
    let (input_tokens, output_tokens) = (
        int(&done["usage"]["input_tokens"]),
        int(&done["usage"]["output_tokens"]),
    );
    assert_eq!(
        row["cost_nanos"],
        input_tokens * 600 + output_tokens * 12_000,
        "{row}"
    );
    assert_eq!(row["units"]["output_audio_tokens"], output_tokens);
}

async fn transcripts_are_priced_per_minute_or_in_tokens(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("ears").await;
    let audio = wav(2_500);

    // whisper-1 bills $0.006 a minute, by the millisecond: 100 nano-USD a millisecond. The
    // JSON answer reports the seconds; a plain-text answer does not, and the WAV header says.
    for format in ["json", "verbose_json", "text", "srt"] {
        for path in ["/v1/audio/transcriptions", "/v1/audio/translations"] {
            let reply = post_form(
                &h,
                &key,
                path,
                &[
                    Part::Text("model", "whisper-1"),
                    Part::File("file", "speech.wav", &audio),
                    Part::Text("response_format", format),
                ],
            )
            .await;
            let row = row_of(&h, &reply).await;
            assert_eq!(row["units"]["audio_ms"], 2_500, "{path} {format}: {row}");
            assert_eq!(row["cost_nanos"], 250_000, "{path} {format}: {row}");
            assert_eq!(row["estimated"], false, "{path} {format}");
        }
    }

    // gpt-4o-transcribe bills tokens: text in $2.50, audio in $6, text out $10 per 1M.
    let reply = post_form(
        &h,
        &key,
        "/v1/audio/transcriptions",
        &[
            Part::Text("model", "gpt-4o-transcribe"),
            Part::File("file", "speech.wav", &audio),
        ],
    )
    .await;
    let usage = reply.json()["usage"].clone();
    let row = row_of(&h, &reply).await;
    let input = int(&usage["input_tokens"]);
    let audio_in = int(&usage["input_token_details"]["audio_tokens"]);
    let output = int(&usage["output_tokens"]);
    assert!(audio_in > 0, "{usage}");
    let expected = (input - audio_in) * 2_500 + audio_in * 6_000 + output * 10_000;
    assert_eq!(row["cost_nanos"], expected, "{row} for {usage}");
    assert_eq!(row["endpoint"], "audio.transcriptions");

    // Moderations are free and still metered: a row at cost 0, priced, not flagged.
    let reply = post_json(
        &h,
        &key,
        "/v1/moderations",
        json!({"input": "is this fine?"}),
    )
    .await;
    let row = row_of(&h, &reply).await;
    assert_eq!(row["endpoint"], "moderations");
    assert_eq!(row["cost_nanos"], 0);
    assert!(
        row["price_id"]
            .as_str()
            .unwrap()
            .starts_with("omni-moderation-latest@"),
        "{row}"
    );
    assert_eq!(
        (row["estimated"].clone(), row["unpriced"].clone()),
        (json!(false), json!(false))
    );
}

async fn built_in_tools_are_priced_per_call_on_top_of_tokens(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("searchers").await;
    let tools = |kind: &str| json!([{"type": kind}, {"type": "function", "name": "web_search", "parameters": {}}]);
    // (model, tool, header calls, per-call nano-USD, input/cached/output nano-USD per token)
    let cases = [
        ("gpt-5.5", "web_search", 3, 10_000_000, (5_000, 500, 30_000)),
        (
            "gpt-4o",
            "web_search_preview",
            2,
            25_000_000,
            (2_500, 1_250, 10_000),
        ),
        ("gpt-5.5", "file_search", 2, 2_500_000, (5_000, 500, 30_000)),
        (
            "gpt-5.5",
            "code_interpreter",
            2,
            30_000_000,
            (5_000, 500, 30_000),
        ),
        // The usage does not report the tool's images: each is one medium 1024x1024
        // gpt-image-1 image, an estimate.
        (
            "gpt-5.5",
            "image_generation",
            2,
            42_000_000,
            (5_000, 500, 30_000),
        ),
    ];
    for (model, tool, calls, per_call, (r_in, r_cached, r_out)) in cases {
        for stream in [false, true] {
            let reply = h
                .http
                .send(
                    Method::POST,
                    &format!("{}/v1/responses", h.base()),
                    &[
                        bearer(&key),
                        ("content-type", "application/json".into()),
                        ("x-mock-builtin-calls", calls.to_string()),
                    ],
                    json!({"model": model, "input": "look it up", "tools": tools(tool), "stream": stream})
                        .to_string(),
                )
                .await;
            let usage = if stream {
                events(&reply)
                    .into_iter()
                    .find(|e| e["type"] == "response.completed")
                    .unwrap_or_else(|| panic!("no response.completed in {reply:?}"))["response"]
                    ["usage"]
                    .clone()
            } else {
                reply.json()["usage"].clone()
            };
            let row = row_of(&h, &reply).await;
            let input = int(&usage["input_tokens"]);
            let cached = int(&usage["input_tokens_details"]["cached_tokens"]);
            let output = int(&usage["output_tokens"]);
            // Code interpreter calls of one answer share one container: billed once.
            let billed = if tool == "code_interpreter" { 1 } else { calls };
            let expected =
                (input - cached) * r_in + cached * r_cached + output * r_out + billed * per_call;
            assert_eq!(row["cost_nanos"], expected, "{tool} stream={stream}: {row}");
            assert_eq!(
                row["units"]["tool_calls"],
                json!([{"tool": tool, "calls": billed}]),
                "{tool} stream={stream}: {row}"
            );
            assert_eq!(
                row["estimated"],
                tool == "image_generation",
                "{tool} stream={stream}: {row}"
            );
        }
    }
}

async fn an_exhausted_budget_refuses_every_media_endpoint_before_the_upstream(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("broke").await;
    h.set_budget("broke", "0.000001").await;
    let audio = wav(1_000);
    let replies = [
        post_json(
            &h,
            &key,
            "/v1/images/generations",
            json!({"model": "dall-e-3", "prompt": "x"}),
        )
        .await,
        post_json(
            &h,
            &key,
            "/v1/images/generations",
            json!({"model": "gpt-image-1", "prompt": "x"}),
        )
        .await,
        post_form(
            &h,
            &key,
            "/v1/images/edits",
            &[
                Part::Text("model", "gpt-image-1"),
                Part::Text("prompt", "x"),
                Part::File("image", "a.png", b"png"),
            ],
        )
        .await,
        post_form(
            &h,
            &key,
            "/v1/images/variations",
            &[Part::File("image", "a.png", b"png")],
        )
        .await,
        post_json(
            &h,
            &key,
            "/v1/audio/speech",
            json!({"model": "tts-1", "input": "hello", "voice": "alloy"}),
        )
        .await,
        post_json(
            &h,
            &key,
            "/v1/audio/speech",
            json!({"model": "gpt-4o-mini-tts", "input": "hello", "voice": "alloy"}),
        )
        .await,
        post_form(
            &h,
            &key,
            "/v1/audio/transcriptions",
            &[
                Part::Text("model", "whisper-1"),
                Part::File("file", "a.wav", &audio),
            ],
        )
        .await,
        post_form(
            &h,
            &key,
            "/v1/audio/transcriptions",
            &[
                Part::Text("model", "gpt-4o-transcribe"),
                Part::File("file", "a.wav", &audio),
            ],
        )
        .await,
        post_form(
            &h,
            &key,
            "/v1/audio/translations",
            &[
                Part::Text("model", "whisper-1"),
                Part::File("file", "a.wav", &audio),
            ],
        )
        .await,
    ];
    for reply in replies {
        reply.assert_error(429, "usage_limit_reached");
    }
    assert!(h.mock.requests().is_empty(), "{:?}", h.mock.requests());
}

async fn streams_uploads_and_compaction_are_metered_and_attributed(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("streams").await;

    // A streamed gpt-image-1 generation of two images with partial images: each completed
    // event reports its image's usage, and the row is their sum.
    let reply = post_json(
        &h,
        &key,
        "/v1/images/generations",
        json!({"model": "gpt-image-1", "prompt": "two gates", "n": 2, "stream": true, "partial_images": 2}),
    )
    .await;
    let completed: Vec<Value> = events(&reply)
        .into_iter()
        .filter(|e| e["type"] == "image_generation.completed")
        .collect();
    assert_eq!(completed.len(), 2, "{reply:?}");
    let sum =
        |field: &dyn Fn(&Value) -> i64| completed.iter().map(|e| field(&e["usage"])).sum::<i64>();
    let input = sum(&|u| int(&u["input_tokens"]));
    let image_in = sum(&|u| int(&u["input_tokens_details"]["image_tokens"]));
    let output = sum(&|u| int(&u["output_tokens"]));
    let row = row_of(&h, &reply).await;
    assert_eq!(
        row["cost_nanos"],
        (input - image_in) * 5_000 + image_in * 10_000 + output * 40_000,
        "{row}"
    );

    // A streamed gpt-4o-mini-transcribe transcript: text in $1.25, audio in $3, out $5 per 1M.
    let reply = post_form(
        &h,
        &key,
        "/v1/audio/transcriptions",
        &[
            Part::Text("model", "gpt-4o-mini-transcribe"),
            Part::Text("stream", "true"),
            Part::File("file", "speech.wav", &wav(4_000)),
        ],
    )
    .await;
    let done = events(&reply)
        .into_iter()
        .find(|e| e["type"] == "transcript.text.done")
        .unwrap_or_else(|| panic!("no transcript.text.done in {reply:?}"));
    let usage = &done["usage"];
    let (input, audio_in, output) = (
        int(&usage["input_tokens"]),
        int(&usage["input_token_details"]["audio_tokens"]),
        int(&usage["output_tokens"]),
    );
    let row = row_of(&h, &reply).await;
    assert_eq!(
        row["cost_nanos"],
        (input - audio_in) * 1_250 + audio_in * 3_000 + output * 5_000,
        "{row}"
    );

    // An mp3 transcribed to plain text: nothing says its length, so it is estimated from its
    // size (128 kbit/s) and flagged.
    let mp3 = vec![0xFFu8; 48_000];
    let reply = post_form(
        &h,
        &key,
        "/v1/audio/transcriptions",
        &[
            Part::Text("model", "whisper-1"),
            Part::Text("response_format", "text"),
            Part::File("file", "speech.mp3", &mp3),
        ],
    )
    .await;
    let row = row_of(&h, &reply).await;
    assert_eq!(row["estimated"], true, "{row}");
    assert_eq!(row["units"]["audio_ms"], 3_000, "{row}");
    assert_eq!(row["cost_nanos"], 300_000, "{row}");

    // A form that names its model twice is refused: tollgate bills the model the upstream
    // uses, and will not guess which one that is.
    let before = h.mock.requests().len();
    post_form(
        &h,
        &key,
        "/v1/images/edits",
        &[
            Part::Text("model", "dall-e-2"),
            Part::Text("model", "gpt-image-1"),
            Part::Text("prompt", "x"),
            Part::File("image", "a.png", b"png"),
        ],
    )
    .await
    .assert_error(400, "invalid_multipart");
    assert_eq!(h.mock.requests().len(), before);

    // Codex compacts a long thread: the row belongs to the session and turn that caused it.
    let reply = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses/compact", h.base()),
            &[
                bearer(&key),
                ("content-type", "application/json".into()),
                ("originator", "codex_exec".into()),
                ("session-id", "019a-compact-session".into()),
                (
                    "x-codex-turn-metadata",
                    json!({"session_id": "019a-compact-session", "turn_id": "turn-7"}).to_string(),
                ),
            ],
            json!({"model": "gpt-5.5", "input": [{"role": "user", "content": "a long thread"}]})
                .to_string(),
        )
        .await;
    let row = row_of(&h, &reply).await;
    assert_eq!(row["endpoint"], "responses.compact");
    assert_eq!(row["session_id"], "019a-compact-session", "{row}");
    assert_eq!(row["turn_id"], "turn-7", "{row}");
    assert!(int(&row["cost_nanos"]) > 0, "{row}");
}

/// Reads the form as the upstream does: parts by their name in any case, uploads with or
/// without a file name. A part tollgate could misread is refused before the upstream.
async fn a_form_bills_by_the_fields_the_upstream_reads(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("forms").await;
    let image = [7u8; 500];
    let prompt = "Content-Disposition: form-data; name=\"prompt\"";
    let image_part = "Content-Disposition: form-data; name=\"image\"; filename=\"a.png\"";

    // A model sent as a file: the upstream would use it, tollgate would bill dall-e-2.
    let before = h.mock.requests().len();
    let reply = post_raw_form(
        &h,
        &key,
        "/v1/images/edits",
        &[
            (
                "Content-Disposition: form-data; name=\"model\"; filename=\"m.txt\"",
                b"gpt-image-1",
            ),
            (prompt, b"paint it red"),
            (image_part, &image),
        ],
    )
    .await;
    reply.assert_error(400, "invalid_multipart");
    assert_eq!(h.mock.requests().len(), before);

    // `NAME="model"` is the model: billed in gpt-image-1's tokens, not as a dall-e-2 image.
    let reply = post_raw_form(
        &h,
        &key,
        "/v1/images/edits",
        &[
            (
                "Content-Disposition: form-data; NAME=\"model\"",
                b"gpt-image-1",
            ),
            (prompt, b"paint it red"),
            (image_part, &image),
        ],
    )
    .await;
    let usage = reply.json()["usage"].clone();
    assert!(usage.is_object(), "{reply:?}");
    let row = row_of(&h, &reply).await;
    assert_eq!(row["model_requested"], "gpt-image-1", "{row}");
    let input = int(&usage["input_tokens"]);
    let image_in = int(&usage["input_tokens_details"]["image_tokens"]);
    let output = int(&usage["output_tokens"]);
    let expected = (input - image_in) * 5_000 + image_in * 10_000 + output * 40_000;
    assert_eq!(row["cost_nanos"], expected, "{row} for {usage}");

    // Audio sent without a file name, or named the RFC 5987 way, is still the audio billed:
    // 2.5 s of whisper-1 at 100 nano-USD a millisecond, though a plain-text answer never says.
    let audio = wav(2_500);
    for file in [
        "Content-Disposition: form-data; name=\"file\"",
        "Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''r%C3%A9.wav",
    ] {
        let reply = post_raw_form(
            &h,
            &key,
            "/v1/audio/transcriptions",
            &[
                (
                    "Content-Disposition: form-data; name=\"model\"",
                    b"whisper-1",
                ),
                (file, &audio),
                (
                    "Content-Disposition: form-data; name=\"response_format\"",
                    b"text",
                ),
            ],
        )
        .await;
        let row = row_of(&h, &reply).await;
        assert_eq!(row["units"]["audio_ms"], 2_500, "{file}: {row}");
        assert_eq!(row["cost_nanos"], 250_000, "{file}: {row}");
    }

    // `n` padded past the length tollgate reads fields to: the upstream still reads 3 images.
    let padded = format!("{}3", "0".repeat(300));
    let reply = post_form(
        &h,
        &key,
        "/v1/images/variations",
        &[
            Part::File("image", "a.png", &image),
            Part::Text("n", &padded),
        ],
    )
    .await;
    reply.assert_error(400, "invalid_multipart");

    // Two files: tollgate bills the first's length, a Starlette upstream transcribes the last.
    let before = h.mock.requests().len();
    let reply = post_form(
        &h,
        &key,
        "/v1/audio/transcriptions",
        &[
            Part::Text("model", "whisper-1"),
            Part::File("file", "short.wav", &wav(100)),
            Part::File("file", "long.wav", &audio),
            Part::Text("response_format", "text"),
        ],
    )
    .await;
    reply.assert_error(400, "invalid_multipart");
    assert_eq!(h.mock.requests().len(), before);
}

/// A WAV header that claims less audio than the file holds — a short `data` chunk followed by
/// another, or a byte rate far above its samples' — bills what a decoder plays, when the answer
/// (plain text) does not say.
async fn a_wav_header_cannot_shorten_the_audio_a_transcript_bills(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("ears").await;
    // One second declared, then 59 more in a second `data` chunk: every byte after the first
    // chunk's header is audio, 1,920,008 bytes at 32,000 a second.
    let mut long = wav(1_000);
    long.extend_from_slice(b"data");
    long.extend_from_slice(&(32_000u32 * 59).to_le_bytes());
    long.resize(long.len() + 32_000 * 59, 0);
    // 2.5 s whose header claims a byte rate a thousand times its samples'.
    let mut fast = wav(2_500);
    fast[28..32].copy_from_slice(&32_000_000u32.to_le_bytes());
    for (file, ms) in [(&long, 60_001), (&fast, 2_500)] {
        let reply = post_form(
            &h,
            &key,
            "/v1/audio/transcriptions",
            &[
                Part::Text("model", "whisper-1"),
                Part::File("file", "speech.wav", file),
                Part::Text("response_format", "text"),
            ],
        )
        .await;
        let row = row_of(&h, &reply).await;
        assert_eq!(row["units"]["audio_ms"], ms, "{row}");
        assert_eq!(row["cost_nanos"], ms * 100, "{row}");
    }
}

/// OpenAI gives an image request without a model to dall-e-2 only when it sets nothing GPT
/// image models alone take; otherwise it runs a GPT image model, billed in tokens at several
/// times dall-e-2's price. tollgate cannot tell which, so it refuses before the upstream.
async fn an_image_request_the_upstream_would_give_a_gpt_image_model_must_name_it(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("pictures").await;
    let before = h.mock.requests().len();
    for body in [
        json!({"prompt": "a gate", "output_format": "webp"}),
        json!({"prompt": "a gate", "background": "transparent"}),
        json!({"prompt": "a gate", "stream": true}),
    ] {
        let reply = post_json(&h, &key, "/v1/images/generations", body.clone()).await;
        reply.assert_error(400, "model_required");
        assert_eq!(reply.json()["error"]["param"], "model", "{body}");
    }
    let reply = post_form(
        &h,
        &key,
        "/v1/images/edits",
        &[
            Part::Text("prompt", "paint it red"),
            Part::File("image", "a.png", &[7u8; 500]),
            Part::Text("input_fidelity", "high"),
        ],
    )
    .await;
    reply.assert_error(400, "model_required");
    // A JSON edit naming its images by file id is a GPT image model's too.
    let reply = post_json(
        &h,
        &key,
        "/v1/images/edits",
        json!({"prompt": "paint it red", "images": [{"file_id": "file-abc"}]}),
    )
    .await;
    reply.assert_error(400, "model_required");
    assert_eq!(h.mock.requests().len(), before);

    // Without such a parameter dall-e-2 it is, at $0.02 an image.
    let reply = post_json(
        &h,
        &key,
        "/v1/images/generations",
        json!({"prompt": "a gate", "output_format": null}),
    )
    .await;
    let row = row_of(&h, &reply).await;
    assert_eq!(row["model_requested"], "dall-e-2");
    assert_eq!(row["cost_nanos"], 20_000_000, "{row}");
}

/// `background` is a flag on Responses (refused: it bills after the call) and a backdrop on
/// images: a transparent gpt-image-1 image is forwarded and billed like any other.
async fn a_transparent_image_background_is_an_option_not_a_background_call(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("pictures").await;
    let reply = post_json(
        &h,
        &key,
        "/v1/images/generations",
        json!({"model": "gpt-image-1", "prompt": "a gate", "background": "transparent", "quality": "low"}),
    )
    .await;
    let usage = reply.json()["usage"].clone();
    assert!(usage.is_object(), "{reply:?}");
    let row = row_of(&h, &reply).await;
    let input = int(&usage["input_tokens"]);
    let image_in = int(&usage["input_tokens_details"]["image_tokens"]);
    let output = int(&usage["output_tokens"]);
    let expected = (input - image_in) * 5_000 + image_in * 10_000 + output * 40_000;
    assert_eq!(row["cost_nanos"], expected, "{row} for {usage}");

    let reply = post_json(
        &h,
        &key,
        "/v1/responses",
        json!({"model": "gpt-5.5", "input": "hi", "background": true}),
    )
    .await;
    reply.assert_error(400, "background_not_supported");
}

/// A streamed gpt-image-1 generation of `n` images reports each image's usage in its own
/// completed event. When the stream ends before all of them (the upstream cuts, the client
/// leaves), the upstream still made and billed every image: the row charges the missing ones
/// at the reported images' usage, flagged as an estimate.
async fn an_image_stream_that_ends_early_still_bills_every_image_asked_for(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("pictures").await;
    let ask = json!({"model": "gpt-image-1", "prompt": "three gates", "n": 3, "stream": true, "quality": "low", "size": "1024x1024"});
    let whole = post_json(&h, &key, "/v1/images/generations", ask.clone()).await;
    let row = row_of(&h, &whole).await;
    let (cost, output) = (int(&row["cost_nanos"]), int(&row["output_tokens"]));
    assert_eq!(row["estimated"], false, "{row}");
    assert_eq!(
        events(&whole)
            .iter()
            .filter(|e| e["type"] == "image_generation.completed")
            .count(),
        3
    );

    // Cut after the first image's completed event: all three are billed.
    let cut = h
        .http
        .start(
            Method::POST,
            &format!("{}/v1/images/generations", h.base()),
            &[
                bearer(&key),
                ("content-type", "application/json".into()),
                ("x-mock-cut-after", "1".into()),
            ],
            ask.to_string(),
        )
        .await;
    let id = cut.headers()["x-request-id"].to_str().unwrap().to_string();
    drop(http_body_util::BodyExt::collect(cut.into_body()).await);
    let row = h.ledger_row(&id).await;
    assert_eq!(row["outcome"], "upstream_cut", "{row}");
    assert_eq!(row["output_tokens"], output, "{row}");
    assert_eq!(row["cost_nanos"], cost, "{row}");
    assert_eq!(row["estimated"], true, "{row}");
}

/// Speech and transcription requests must name their model: one without passed the team's
/// allow-list and the price check unasked, and was recorded unpriced at $0 while an upstream
/// that picked a model anyway billed it.
async fn an_audio_request_without_a_model_is_refused_before_the_upstream(backend: Backend) {
    let h = Harness::start(backend).await;
    let key = h.team_key("ears").await;
    let audio = wav(2_500);
    let replies = [
        post_form(
            &h,
            &key,
            "/v1/audio/transcriptions",
            &[
                Part::File("file", "a.wav", &audio),
                Part::Text("response_format", "text"),
            ],
        )
        .await,
        post_form(
            &h,
            &key,
            "/v1/audio/translations",
            &[
                Part::Text("model", " "),
                Part::File("file", "a.wav", &audio),
            ],
        )
        .await,
        post_json(
            &h,
            &key,
            "/v1/audio/speech",
            json!({"input": "hello", "voice": "alloy"}),
        )
        .await,
    ];
    for reply in replies {
        reply.assert_error(400, "model_required");
        assert_eq!(reply.json()["error"]["param"], "model");
    }
    assert!(h.mock.requests().is_empty(), "{:?}", h.mock.requests());
}
