//! Header rules for both directions: everything passes except hop-by-hop headers (RFC 9110
//! §7.6.1, plus any the `Connection` header names) and the client's credential.

use http::HeaderMap;
use http::header::{self, HeaderName};

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers in place. `Upgrade` goes too: tollgate does not tunnel upgrades.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers listed in `Connection` are hop-by-hop for this connection only.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

pub const OPENAI_ORGANIZATION: HeaderName = HeaderName::from_static("openai-organization");
pub const OPENAI_PROJECT: HeaderName = HeaderName::from_static("openai-project");

/// Headers a client could use to carry a credential or to choose who the provider bills. The
/// upstream must see tollgate's credential and the operator's organisation and project only:
/// a client's `api-key` (Azure's spelling) next to tollgate's key, or its own
/// `OpenAI-Project`, would move spend where tollgate cannot see it.
const CLIENT_CREDENTIALS: [HeaderName; 9] = [
    header::AUTHORIZATION,
    header::COOKIE,
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("openai-api-key"),
    HeaderName::from_static("x-goog-api-key"),
    HeaderName::from_static("ocp-apim-subscription-key"),
    OPENAI_ORGANIZATION,
    OPENAI_PROJECT,
];

/// Removes every header that carries a client credential or a billing choice.
pub fn strip_client_credentials(headers: &mut HeaderMap) {
    for name in &CLIENT_CREDENTIALS {
        headers.remove(name);
    }
}

/// True when the request asks to switch to WebSocket (Codex tries this first on `/responses`).
pub fn wants_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers_only() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("session-id", HeaderValue::from_static("s1"));
        h.insert("x-codex-turn-state", HeaderValue::from_static("t"));
        h.insert("openai-organization", HeaderValue::from_static("org"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(
            h.contains_key("session-id")
                && h.contains_key("x-codex-turn-state")
                && h.contains_key("openai-organization")
        );
    }

    #[test]
    fn strips_every_client_credential_and_billing_header() {
        let mut h = HeaderMap::new();
        for name in [
            "authorization",
            "api-key",
            "x-api-key",
            "cookie",
            "openai-organization",
            "openai-project",
            "session-id",
        ] {
            h.insert(HeaderName::from_static(name), HeaderValue::from_static("v"));
        }
        strip_client_credentials(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["session-id"]);
    }
}
