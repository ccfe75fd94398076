//! What an OTLP/HTTP exporter gets back. Success: 200 with an empty `Export*ServiceResponse`.
//! Failure: the HTTP status with a `google.rpc.Status` body (`code`, `message`), both in the
//! encoding of the request (protobuf or JSON), as the OTLP/HTTP specification asks. Exporters
//! retry only 429, 502, 503 and 504 (honouring `Retry-After`); every other refusal here is
//! final, so a misconfigured Codex does not hammer the gateway.

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use prost::Message as _;

use tollgate_core::ApiError;
use tollgate_core::key_cache::AuthError;
use tollgate_proxy::ProxyBody;

use super::decode::Encoding;

/// `google.rpc.Status` (google/rpc/status.proto) without `details`, which tollgate never sets.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// A refused export: status, message, and the `Retry-After` seconds of a 429.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn method(method: &Method) -> Refusal {
        Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("OTLP exports are sent with POST, not {method}"),
        )
    }

    pub fn unauthenticated(error: AuthError) -> Refusal {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            format!("{error}: send 'Authorization: Bearer <tollgate team key>'"),
        )
    }

    pub fn unsupported_type(content_type: String) -> Refusal {
        Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type '{content_type}' is not supported: send application/x-protobuf or \
                 application/json"
            ),
        )
    }

    /// The intake is decoding other exports: retry shortly (OTLP exporters retry 503).
    pub fn busy() -> Refusal {
        Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the intake is busy with other exports; retry shortly".into(),
            retry_after_secs: Some(1),
        }
    }

    pub fn bad(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn too_large(limit: u64) -> Refusal {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the export exceeds {limit} bytes ([intake] max_body_bytes); send smaller batches"
            ),
        )
    }

    /// A body that could not be read whole: too large (413), too slow or broken.
    pub fn body(error: ApiError, limit: u64) -> Refusal {
        match error.status {
            413 => Refusal::too_large(limit),
            status => Refusal::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                error.message,
            ),
        }
    }

    /// The gRPC code `google.rpc.Status` carries for this HTTP status (clients do not act on
    /// it; it is for their logs).
    fn code(&self) -> i32 {
        match self.status {
            StatusCode::UNAUTHORIZED => 16,        // UNAUTHENTICATED
            StatusCode::TOO_MANY_REQUESTS => 8,    // RESOURCE_EXHAUSTED
            StatusCode::METHOD_NOT_ALLOWED => 12,  // UNIMPLEMENTED
            StatusCode::REQUEST_TIMEOUT => 4,      // DEADLINE_EXCEEDED
            StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
            s if s.is_client_error() => 3,         // INVALID_ARGUMENT
            _ => 13,                               // INTERNAL
        }
    }
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        Refusal::new(
            StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST),
            error.message,
        )
    }
}

/// 200 with an empty `Export*ServiceResponse` (no partial success): `{}` or no bytes.
pub fn accepted(encoding: Result<Encoding, String>) -> Response<ProxyBody> {
    let encoding = encoding.unwrap_or(Encoding::Protobuf);
    let body: &'static [u8] = match encoding {
        Encoding::Protobuf => b"",
        Encoding::Json => b"{}",
    };
    respond(StatusCode::OK, encoding, body.to_vec())
}

/// The refusal's status with its `google.rpc.Status` body.
pub fn refused(encoding: Encoding, refusal: &Refusal) -> Response<ProxyBody> {
    let body = match encoding {
        Encoding::Protobuf => RpcStatus {
            code: refusal.code(),
            message: refusal.message.clone(),
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::json!({"code": refusal.code(), "message": refusal.message})
            .to_string()
            .into_bytes(),
    };
    let mut response = respond(refusal.status, encoding, body);
    let headers = response.headers_mut();
    if let Some(secs) = refusal.retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if refusal.status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

fn respond(status: StatusCode, encoding: Encoding, body: Vec<u8>) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    response
}
