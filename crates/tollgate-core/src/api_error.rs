//! Errors as API clients see them: OpenAI's shape `{"error":{"message","type","param","code"}}`
//! with the status that makes SDKs and Codex do the right thing (see codex-wire.md: never answer
//! a budget or an upstream outage with a status that makes Codex retry into a storm).

use serde::Serialize;

/// Whose fault an error is; decides the status class and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Upstream,
    Internal,
}

/// An error to return to an API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
    /// Unix seconds when a usage limit resets (`usage_limit_reached`; Codex shows it).
    pub resets_at: Option<i64>,
    /// Extra response headers (`retry-after`, `x-codex-promo-message`, rate-limit state).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resets_at: Option<i64>,
}

impl ApiError {
    pub fn new(
        status: u16,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
            resets_at: None,
            headers: Vec::new(),
        }
    }

    pub fn with_param(mut self, param: &'static str) -> ApiError {
        self.param = Some(param);
        self
    }

    pub fn fault(&self) -> Fault {
        match self.status {
            502..=504 => Fault::Upstream,
            500..=599 => Fault::Internal,
            _ => Fault::Client,
        }
    }

    /// The JSON body. Serialising a struct of strings cannot fail; the fallback keeps it total.
    pub fn to_json(&self) -> Vec<u8> {
        let envelope = Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
                resets_at: self.resets_at,
            },
        };
        serde_json::to_vec(&envelope).unwrap_or_else(|_| b"{\"error\":{\"message\":\"internal error\",\"type\":\"server_error\",\"param\":null,\"code\":\"internal_error\"}}".to_vec())
    }

    // The errors tollgate itself raises, in one place so their wording and codes stay consistent.

    pub fn invalid_api_key(reason: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            401,
            "invalid_request_error",
            "invalid_api_key",
            format!(
                "Incorrect API key provided: {reason}. Use a team key issued by tollgate (tg-…)."
            ),
        )
    }

    pub fn invalid_json(detail: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            400,
            "invalid_request_error",
            "invalid_json",
            format!("We could not parse the JSON body of your request: {detail}."),
        )
    }

    pub fn body_too_large(limit: u64) -> ApiError {
        ApiError::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!(
                "The request body exceeds tollgate's limit of {limit} bytes (limits.max_body_bytes)."
            ),
        )
    }

    pub fn unsupported_encoding(encoding: &str) -> ApiError {
        ApiError::new(
            415,
            "invalid_request_error",
            "unsupported_content_encoding",
            format!(
                "Content-Encoding '{encoding}' is not supported; use gzip, deflate, zstd or none."
            ),
        )
    }

    pub fn bad_encoding(encoding: &str, detail: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            400,
            "invalid_request_error",
            "invalid_body_encoding",
            format!("The request body is not valid {encoding}: {detail}."),
        )
    }

    pub fn unknown_url(method: &str, path: &str) -> ApiError {
        ApiError::new(
            404,
            "invalid_request_error",
            "unknown_url",
            format!("Invalid URL ({method} {path})"),
        )
    }

    pub fn websocket_unsupported() -> ApiError {
        ApiError::new(
            426,
            "invalid_request_error",
            "websocket_not_supported",
            "tollgate takes WebSocket upgrades on GET /v1/responses only (the Responses WebSocket transport). Use HTTP for this endpoint.",
        )
    }

    pub fn upstream_unavailable(detail: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            502,
            "upstream_error",
            "upstream_unavailable",
            format!("tollgate could not reach the upstream API: {detail}"),
        )
    }

    pub fn upstream_timeout(seconds: u64) -> ApiError {
        ApiError::new(
            504,
            "upstream_error",
            "upstream_timeout",
            format!("The upstream API did not answer within {seconds} s."),
        )
    }

    /// The session loop detector stopped this Codex session (`telemetry.loop_refuse`). Codex
    /// stops on `usage_limit_reached` and shows the promo text, instead of retrying.
    pub fn session_stopped(message: String) -> ApiError {
        let mut error = ApiError::new(
            429,
            "usage_limit_reached",
            "usage_limit_reached",
            message.clone(),
        );
        error.headers.push(("x-codex-promo-message", message));
        error
    }

    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            500,
            "server_error",
            "internal_error",
            format!("tollgate hit an internal error: {detail}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_in_openai_shape() {
        let err = ApiError::invalid_json("expected value at line 1").with_param("body");
        let v: serde_json::Value = serde_json::from_slice(&err.to_json()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_json");
        assert_eq!(v["error"]["param"], "body");
        assert!(v["error"]["message"].as_str().unwrap().contains("line 1"));
        assert_eq!(ApiError::upstream_timeout(5).fault(), Fault::Upstream);
    }
}
