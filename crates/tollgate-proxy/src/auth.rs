//! Phase 1, auth: the Bearer team key against the in-memory key cache. No database round trip.

use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use tollgate_core::{ApiError, KeyCache, KeyRecord};

/// The key and team a request is attributed to, or the 401 that ends it.
pub fn authenticate(
    keys: &KeyCache,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<Arc<KeyRecord>, ApiError> {
    let value = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    keys.authenticate(value, now_ms)
        .map_err(ApiError::invalid_api_key)
}
