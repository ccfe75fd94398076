//! `/v1/files`: uploads kept in memory (batch inputs), and the batch output / error files the
//! mock writes itself.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Serialize;

use crate::multipart::Form;
use crate::route::{Call, Ctx, Reply, unknown_url};
use crate::state::lock;
use crate::wire::{Id, now_secs, write_json};

/// The purposes OpenAI accepts on upload.
const PURPOSES: [&str; 6] = [
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];

/// One stored file.
#[derive(Debug, Clone)]
pub(crate) struct StoredFile {
    pub id: String,
    pub filename: String,
    pub purpose: String,
    pub created_at: u64,
    pub data: Bytes,
}

/// Every file the server holds, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Store {
    files: Vec<StoredFile>,
}

impl Store {
    pub fn get(&self, id: &str) -> Option<&StoredFile> {
        self.files.iter().find(|f| f.id == id)
    }

    /// Stores `data` under a new id (`n` makes it unique) and returns its object.
    pub fn add(&mut self, n: u64, filename: &str, purpose: &str, data: Bytes) -> StoredFile {
        let file = StoredFile {
            id: Id::new("file-", n).to_string(),
            filename: filename.to_owned(),
            purpose: purpose.to_owned(),
            created_at: now_secs(),
            data,
        };
        self.files.push(file.clone());
        file
    }
}

/// The File object.
#[derive(Serialize)]
pub(crate) struct FileObject<'a> {
    id: &'a str,
    object: &'static str,
    bytes: usize,
    created_at: u64,
    expires_at: Option<u64>,
    filename: &'a str,
    purpose: &'a str,
    status: &'static str,
    status_details: Option<()>,
}

impl<'a> From<&'a StoredFile> for FileObject<'a> {
    fn from(f: &'a StoredFile) -> Self {
        Self {
            id: &f.id,
            object: "file",
            bytes: f.data.len(),
            created_at: f.created_at,
            expires_at: None,
            filename: &f.filename,
            purpose: &f.purpose,
            status: "processed",
            status_details: None,
        }
    }
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<FileObject<'a>>,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
    has_more: bool,
}

#[derive(Serialize)]
struct Deleted<'a> {
    id: &'a str,
    object: &'static str,
    deleted: bool,
}

pub(crate) fn not_found(id: &str) -> Reply {
    Reply::not_found(&format!("No such File object: {id}"), "id")
}

/// `rest` is the path after `/v1/files`.
pub(crate) fn route(ctx: &Ctx, call: &Call<'_>, method: &Method, rest: &str, body: &[u8]) -> Reply {
    let (id, content) = match rest.strip_prefix('/') {
        None if rest.is_empty() => ("", false),
        Some(tail) => match tail.strip_suffix("/content") {
            Some(id) => (id, true),
            None => (tail, false),
        },
        None => return unknown_url(method, &format!("/v1/files{rest}")),
    };
    let mut store = lock(&call.state.files);
    let mut out = Vec::with_capacity(256);
    match (method, id, content) {
        (&Method::POST, "", false) => {
            let form = match Form::parse(call.content_type, body) {
                Ok(form) => form,
                Err(message) => return Reply::bad_request(&message),
            };
            let Some(file) = form.get("file") else {
                return Reply::invalid_param("Missing required parameter: 'file'.", "file");
            };
            let purpose = form.text("purpose").unwrap_or_default();
            if !PURPOSES.contains(&purpose.as_str()) {
                let message = format!(
                    "Invalid value for 'purpose': {purpose:?}. Expected one of {}.",
                    PURPOSES.join(", ")
                );
                return Reply::invalid_param(&message, "purpose");
            }
            let filename = file.filename.as_deref().unwrap_or("upload");
            let stored = store.add(
                ctx.id,
                filename,
                &purpose,
                Bytes::copy_from_slice(file.data),
            );
            write_json(&mut out, &FileObject::from(&stored));
        }
        (&Method::GET, "", false) => {
            // Newest first, as OpenAI lists them by default.
            let data: Vec<FileObject<'_>> =
                store.files.iter().rev().map(FileObject::from).collect();
            let list = List {
                object: "list",
                first_id: data.first().map(|f| f.id),
                last_id: data.last().map(|f| f.id),
                data,
                has_more: false,
            };
            write_json(&mut out, &list);
        }
        (&Method::GET, id, false) => match store.get(id) {
            Some(file) => write_json(&mut out, &FileObject::from(file)),
            None => return not_found(id),
        },
        (&Method::GET, id, true) => match store.get(id) {
            Some(file) => {
                return Reply::Raw(
                    StatusCode::OK,
                    "application/octet-stream",
                    file.data.clone(),
                );
            }
            None => return not_found(id),
        },
        (&Method::DELETE, id, false) if !id.is_empty() => {
            let Some(at) = store.files.iter().position(|f| f.id == id) else {
                return not_found(id);
            };
            store.files.remove(at);
            let deleted = Deleted {
                id,
                object: "file",
                deleted: true,
            };
            write_json(&mut out, &deleted);
        }
        _ => return unknown_url(method, &format!("/v1/files{rest}")),
    }
    Reply::ok(out)
}
