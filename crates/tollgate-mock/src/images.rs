//! `POST /v1/images/generations`, `/v1/images/edits` and `/v1/images/variations`.
//!
//! GPT image models (`gpt-image-*`) answer `b64_json` images with token `usage`; DALL·E models
//! answer a `url` or `b64_json` and no usage, as OpenAI does. Every image is the same 1×1 PNG.
//! The token formulas are in [`tokens`].

mod tokens;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::body::Script;
use crate::multipart::Form;
use crate::route::{Call, Ctx, Reply};
use crate::wire::{sse_event, write_json};

pub(crate) use tokens::{ImageUsage, input_image_tokens, output_tokens_per_image, text_tokens};

/// A transparent 1×1 PNG, base64: the pixels of every mock image.
pub(crate) const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const DEFAULT_MODEL: &str = "dall-e-2";
const MAX_IMAGES: u64 = 10;
const MAX_PARTIAL_IMAGES: u64 = 3;

/// The options shared by generations and edits, from JSON or from form fields.
#[derive(Debug, Default, Deserialize)]
struct Options<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    prompt: Option<Cow<'a, str>>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(borrow, default)]
    size: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    quality: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    response_format: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    output_format: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    background: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    partial_images: Option<u64>,
}

impl<'a> Options<'a> {
    fn from_form(form: &'a Form<'a>) -> Self {
        let text = |name: &str| form.text(name).map(Cow::Owned);
        Self {
            model: text("model"),
            prompt: text("prompt"),
            n: form.text("n").and_then(|n| n.trim().parse().ok()),
            size: text("size"),
            quality: text("quality"),
            response_format: text("response_format"),
            output_format: text("output_format"),
            background: text("background"),
            stream: form.text("stream").map(|s| s.trim() == "true"),
            partial_images: form
                .text("partial_images")
                .and_then(|n| n.trim().parse().ok()),
        }
    }
}

/// Which endpoint's stream event names to use.
#[derive(Clone, Copy)]
enum Kind {
    Generation,
    Edit,
    Variation,
}

pub(crate) fn generate(ctx: &Ctx, body: &[u8]) -> Reply {
    match serde_json::from_slice::<Options<'_>>(body) {
        Ok(options) => answer(ctx, &options, Kind::Generation, 0),
        Err(e) => Reply::bad_json(&e),
    }
}

pub(crate) fn edit(ctx: &Ctx, call: &Call<'_>, body: &[u8]) -> Reply {
    let form = match Form::parse(call.content_type, body) {
        Ok(form) => form,
        Err(message) => return Reply::bad_request(&message),
    };
    let images: Vec<&[u8]> = form.all(&["image", "image[]"]).map(|p| p.data).collect();
    if images.is_empty() {
        return Reply::invalid_param("Missing required parameter: 'image'.", "image");
    }
    let image_tokens = images.iter().map(|i| input_image_tokens(i)).sum();
    answer(ctx, &Options::from_form(&form), Kind::Edit, image_tokens)
}

pub(crate) fn variation(ctx: &Ctx, call: &Call<'_>, body: &[u8]) -> Reply {
    let form = match Form::parse(call.content_type, body) {
        Ok(form) => form,
        Err(message) => return Reply::bad_request(&message),
    };
    if form.get("image").is_none() {
        return Reply::invalid_param("Missing required parameter: 'image'.", "image");
    }
    answer(ctx, &Options::from_form(&form), Kind::Variation, 0)
}

#[derive(Serialize)]
struct Image<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b64_json: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revised_prompt: Option<&'a str>,
}

#[derive(Serialize)]
struct ImagesResponse<'a> {
    created: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    background: Option<&'a str>,
    data: Vec<Image<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_format: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quality: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<ImageUsage>,
}

#[derive(Serialize)]
struct StreamEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    b64_json: &'static str,
    background: &'a str,
    created_at: u64,
    output_format: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    partial_image_index: Option<u64>,
    quality: &'a str,
    size: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<ImageUsage>,
}

fn answer(ctx: &Ctx, options: &Options<'_>, kind: Kind, image_tokens: u64) -> Reply {
    let model = options.model.as_deref().unwrap_or(DEFAULT_MODEL);
    let n = options.n.unwrap_or(1).clamp(1, MAX_IMAGES);
    let prompt = options.prompt.as_deref().unwrap_or("");
    if !model.starts_with("gpt-image") {
        if options.stream == Some(true) {
            let message = format!("Streaming is not supported for model '{model}'.");
            return Reply::invalid_param(&message, "stream");
        }
        return dall_e(ctx, options, model, n, prompt);
    }
    // GPT image models: the size, quality, format and background actually used are echoed.
    let size = match options.size.as_deref() {
        None | Some("auto") => "1024x1024",
        Some(size) => size,
    };
    let quality = match options.quality.as_deref() {
        None | Some("auto") => "medium",
        Some(quality) => quality,
    };
    let Some(per_image) = output_tokens_per_image(size, quality) else {
        let message = format!(
            "Invalid size '{size}' or quality '{quality}' for {model}: sizes are 1024x1024, 1024x1536, 1536x1024 or auto; qualities low, medium, high or auto."
        );
        return Reply::invalid_param(&message, "size");
    };
    let output_format = options.output_format.as_deref().unwrap_or("png");
    let background = match options.background.as_deref() {
        None | Some("auto") => "opaque",
        Some(background) => background,
    };
    let text = text_tokens(prompt);
    if options.stream == Some(true) {
        let partials = options.partial_images.unwrap_or(0).min(MAX_PARTIAL_IMAGES);
        let (partial_name, completed_name) = match kind {
            Kind::Edit => ("image_edit.partial_image", "image_edit.completed"),
            Kind::Generation | Kind::Variation => (
                "image_generation.partial_image",
                "image_generation.completed",
            ),
        };
        let mut rendered = Vec::new();
        for image in 0..n {
            let base = |kind: &'static str| StreamEvent {
                kind,
                b64_json: PNG_B64,
                background,
                created_at: ctx.created,
                output_format,
                partial_image_index: None,
                quality,
                size,
                usage: None,
            };
            for index in 0..partials {
                let mut out = Vec::new();
                let e = StreamEvent {
                    partial_image_index: Some(index),
                    ..base(partial_name)
                };
                sse_event(&mut out, partial_name, &e);
                rendered.push(out);
            }
            let usage = (!ctx.no_usage).then(|| {
                let (text, images) = if image == 0 {
                    (text, image_tokens)
                } else {
                    (0, 0)
                };
                ImageUsage::new(
                    text,
                    images,
                    per_image + partials * tokens::PARTIAL_IMAGE_TOKENS,
                )
            });
            let mut out = Vec::new();
            sse_event(
                &mut out,
                completed_name,
                &StreamEvent {
                    usage,
                    ..base(completed_name)
                },
            );
            rendered.push(out);
        }
        return Reply::Stream(Script::Prerendered(rendered));
    }
    let response = ImagesResponse {
        created: ctx.created,
        background: Some(background),
        data: (0..n)
            .map(|_| Image {
                url: None,
                b64_json: Some(PNG_B64),
                revised_prompt: None,
            })
            .collect(),
        output_format: Some(output_format),
        quality: Some(quality),
        size: Some(size),
        usage: (!ctx.no_usage).then(|| ImageUsage::new(text, image_tokens, per_image * n)),
    };
    let mut out = Vec::with_capacity(512);
    write_json(&mut out, &response);
    Reply::ok(out)
}

/// DALL·E: `url` (default) or `b64_json`, `revised_prompt` from dall-e-3, and no usage.
fn dall_e(ctx: &Ctx, options: &Options<'_>, model: &str, n: u64, prompt: &str) -> Reply {
    let b64 = match options.response_format.as_deref() {
        None | Some("url") => false,
        Some("b64_json") => true,
        Some(other) => {
            let message = format!(
                "Invalid value for 'response_format': {other:?}. Expected 'url' or 'b64_json'."
            );
            return Reply::invalid_param(&message, "response_format");
        }
    };
    let data = (0..n)
        .map(|i| Image {
            url: (!b64).then(|| {
                format!(
                    "https://tollgate-mock.invalid/images/img-{:x}-{i}.png",
                    ctx.id
                )
            }),
            b64_json: b64.then_some(PNG_B64),
            revised_prompt: (model == "dall-e-3").then_some(prompt),
        })
        .collect();
    let response = ImagesResponse {
        created: ctx.created,
        background: None,
        data,
        output_format: None,
        quality: None,
        size: None,
        usage: None,
    };
    let mut out = Vec::with_capacity(256);
    write_json(&mut out, &response);
    Reply::ok(out)
}
