//! Phase 1, auth: the Bearer team key against the in-memory key cache (no database round
//! trip), and who the call is for beyond the key.

use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use tollgate_core::{ApiError, KeyCache, KeyRecord};

use crate::attribution::Attribution;
use crate::route::Endpoint;

/// Who is calling, and for what: handed from auth to every later phase.
pub struct Authed {
    pub endpoint: Endpoint,
    pub key: Arc<KeyRecord>,
    pub attribution: Attribution,
}

/// The key and team a request is attributed to, or the 401 that ends it.
pub fn authenticate(
    keys: &KeyCache,
    headers: &HeaderMap,
    endpoint: Endpoint,
    now_ms: i64,
) -> Result<Authed, ApiError> {
    let value = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let key = keys
        .authenticate(value, now_ms)
        .map_err(ApiError::invalid_api_key)?;
    Ok(Authed {
        endpoint,
        key,
        attribution: Attribution::from_headers(headers),
    })
}
