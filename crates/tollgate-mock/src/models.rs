//! `GET /v1/models` and `GET /v1/models/{id}`: a fixed catalogue.

use std::sync::LazyLock;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use crate::route::Reply;
use crate::wire::{error_json, write_json};

/// The models the mock lists, with their `created` timestamps.
pub const MODELS: [(&str, u64); 19] = [
    ("gpt-5.5", 1_776_000_000),
    ("gpt-5.4", 1_772_000_000),
    ("gpt-5-mini", 1_754_500_000),
    ("gpt-4.1", 1_744_300_000),
    ("gpt-4o", 1_715_367_049),
    ("text-embedding-3-small", 1_705_948_997),
    ("dall-e-2", 1_698_798_177),
    ("dall-e-3", 1_698_785_189),
    ("gpt-image-1", 1_745_517_030),
    ("gpt-image-1-mini", 1_758_845_821),
    ("gpt-image-1.5", 1_765_000_000),
    ("tts-1", 1_681_940_951),
    ("tts-1-hd", 1_699_046_015),
    ("gpt-4o-mini-tts", 1_742_403_959),
    ("whisper-1", 1_677_532_384),
    ("gpt-4o-transcribe", 1_742_068_463),
    ("gpt-4o-mini-transcribe", 1_742_068_596),
    ("omni-moderation-latest", 1_731_689_265),
    ("gpt-4o-search-preview", 1_741_388_720),
];

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

impl Model<'static> {
    fn of((id, created): (&'static str, u64)) -> Self {
        Self {
            id,
            object: "model",
            created,
            owned_by: "system",
        }
    }
}

#[derive(Serialize)]
struct List {
    object: &'static str,
    data: [Model<'static>; MODELS.len()],
}

/// Built once: the list never changes, so each request only bumps a reference count.
static LIST: LazyLock<Bytes> = LazyLock::new(|| {
    let mut out = Vec::with_capacity(2048);
    write_json(
        &mut out,
        &List {
            object: "list",
            data: MODELS.map(Model::of),
        },
    );
    Bytes::from(out)
});

pub(crate) fn list() -> Reply {
    Reply::Json(StatusCode::OK, LIST.clone())
}

pub(crate) fn get(id: &str) -> Reply {
    match MODELS.iter().find(|(m, _)| *m == id) {
        Some(model) => {
            let mut out = Vec::with_capacity(128);
            write_json(&mut out, &Model::of(*model));
            Reply::ok(out)
        }
        None => {
            let message =
                format!("The model '{id}' does not exist or you do not have access to it.");
            Reply::Json(
                StatusCode::NOT_FOUND,
                error_json(&message, "invalid_request_error", Some("model_not_found")).into(),
            )
        }
    }
}
