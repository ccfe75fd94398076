//! Making sure a chat or completions stream reports usage. Without `stream_options.include_usage`
//! OpenAI sends no usage at all in a stream, and gateways that don't ask record such calls at $0.
//! tollgate asks; the meter's `strip` then hides the extra chunk from a client that did not.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use tollgate_core::ApiError;

use super::Peek;

/// The body to forward and whether tollgate added the usage request (and so must strip it).
pub fn ensure_usage_reported(body: Bytes, peek: &Peek) -> Result<(Bytes, bool), ApiError> {
    if !peek.stream {
        return Ok((body, false));
    }
    match &peek.stream_options {
        Some(Some(options)) if options.include_usage == Some(true) => Ok((body, false)),
        // The common case: splice the option in after the opening brace, no re-serialisation.
        None => {
            let Some(open) = body.iter().position(|&b| b == b'{') else {
                return Ok((body, false));
            };
            const OPTION: &[u8] = b"\"stream_options\":{\"include_usage\":true},";
            let mut out = BytesMut::with_capacity(body.len() + OPTION.len());
            out.extend_from_slice(&body[..=open]);
            out.extend_from_slice(OPTION);
            out.extend_from_slice(&body[open + 1..]);
            Ok((out.freeze(), true))
        }
        // `stream_options` without usage, or `null` (which, left beside a spliced copy, would
        // be the one a parser that keeps the last key reads): rare, so rewrite the JSON.
        Some(_) => {
            let mut value: Value = serde_json::from_slice(&body).map_err(ApiError::invalid_json)?;
            if let Some(options) = value.get_mut("stream_options") {
                if !options.is_object() {
                    *options = Value::Object(serde_json::Map::new());
                }
                options["include_usage"] = Value::Bool(true);
            }
            let rewritten = serde_json::to_vec(&value).map_err(ApiError::internal)?;
            Ok((Bytes::from(rewritten), true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(json: &str) -> (String, bool) {
        let peek: Peek = serde_json::from_str(json).unwrap();
        let (body, strip) =
            ensure_usage_reported(Bytes::copy_from_slice(json.as_bytes()), &peek).unwrap();
        (String::from_utf8(body.to_vec()).unwrap(), strip)
    }

    #[test]
    fn adds_include_usage_only_when_the_client_did_not() {
        let (body, strip) = run(r#" {"model":"gpt-5.5","stream":true}"#);
        assert!(strip);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "gpt-5.5");
        let (body, strip) = run(r#"{"stream":true,"stream_options":{"include_usage":false}}"#);
        assert!(strip && body.contains(r#""include_usage":true"#));
        assert!(!run(r#"{"stream":true,"stream_options":{"include_usage":true}}"#).1);
        // A `null` is replaced, not left beside a second `stream_options` key.
        let (body, strip) = run(r#"{"model":"gpt-5.5","stream":true,"stream_options":null}"#);
        assert!(strip, "{body}");
        assert_eq!(body.matches("stream_options").count(), 1, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true, "{body}");
        assert_eq!(
            run(r#"{"stream":false}"#),
            (r#"{"stream":false}"#.into(), false)
        );
    }
}
