//! What an operation answers, and the small helpers every operation uses to build an answer or
//! an error.

use http::StatusCode;
use tollgate_core::ApiError;
use tollgate_store::StoreError;

use crate::validate::FieldErrors;

/// What an operation answers: JSON (almost all of them), a report, or a JSON document served
/// byte for byte as written (the OpenAPI document, so its order and layout survive).
#[derive(Debug)]
pub enum Reply {
    Json(StatusCode, serde_json::Value),
    Report {
        body: ReportBody,
        /// What the report covers (period, time zone, currency), for the response headers.
        headers: Vec<(&'static str, String)>,
    },
    Document(&'static str),
}

/// A report as JSON, or as a CSV file with the name it is saved under.
#[derive(Debug)]
pub enum ReportBody {
    Json(serde_json::Value),
    Csv { filename: String, text: String },
}

pub type Answer = Result<Reply, ApiError>;

pub fn openapi() -> Reply {
    Reply::Document(super::OPENAPI_JSON)
}

pub fn ok(body: serde_json::Value) -> Answer {
    Ok(Reply::Json(StatusCode::OK, body))
}

pub fn created(body: serde_json::Value) -> Answer {
    Ok(Reply::Json(StatusCode::CREATED, body))
}

/// The request body as `T`; a body that is not JSON, or not `T`, is a 400 naming the problem.
/// A string holding a NUL (`"\u0000"`) is a 422 naming its field: no id, name or label holds
/// one, and Postgres would refuse it with an error rather than answer "no such team".
pub fn read_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) {
        let mut errors = FieldErrors::default();
        for (name, field) in &fields {
            if holds_nul(field) {
                errors.push("body", format!("'{name}' holds a NUL character (\\u0000)"));
            }
        }
        errors.into_result()?;
    }
    Ok(value)
}

/// Any string in `value` (or key of an object in it) holds a NUL.
fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Like [`read_json`], but an empty body means every field's default.
pub fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    read_json(body)
}

pub fn json(value: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

pub fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new(
        404,
        "invalid_request_error",
        "not_found",
        format!("No {what} '{id}'."),
    )
}

pub fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(what) => ApiError::new(409, "invalid_request_error", "conflict", what),
        StoreError::NotFound(what) => {
            ApiError::new(404, "invalid_request_error", "not_found", what)
        }
        StoreError::Invalid(what) => {
            ApiError::new(422, "invalid_request_error", "invalid_fields", what)
        }
        other => {
            tracing::error!(error = %other, "control-plane store error");
            ApiError::new(
                503,
                "server_error",
                "store_unavailable",
                "The control-plane database is unavailable; try again.",
            )
        }
    }
}
