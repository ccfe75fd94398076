//! The first two checks of tollgate's own team-key endpoints (Codex's turn-cost query, hook
//! reports): the method, then the team key against the in-memory key cache, as the proxy
//! checks it.

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{Method, Request};

use tollgate_core::{ApiError, KeyCache, KeyRecord};

/// The key of a `POST` to `path`, or its 405 / 401.
pub fn authenticate<B>(
    keys: &KeyCache,
    path: &str,
    request: &Request<B>,
) -> Result<Arc<KeyRecord>, ApiError> {
    if request.method() != Method::POST {
        let mut error = ApiError::new(
            405,
            "invalid_request_error",
            "method_not_allowed",
            format!("{path} takes POST, not {}.", request.method()),
        );
        error.headers.push(("allow", "POST".into()));
        return Err(error);
    }
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    keys.authenticate(authorization, tollgate_core::time::now_ms())
        .map_err(ApiError::invalid_api_key)
}
