//! What a browser sends: `application/x-www-form-urlencoded` forms and query strings, cookies,
//! and the console path's segments.

use std::collections::HashMap;

use http::HeaderValue;
use http::header::GetAll;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::control::page::percent_decode;

/// A parsed form or query string. A name given more than once keeps every value, in order
/// (checkbox groups).
#[derive(Default)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// Pairs that are not valid percent-encoded UTF-8 are dropped.
    pub fn parse(raw: &[u8]) -> Form {
        let text = String::from_utf8_lossy(raw);
        let fields = text
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |s: &str| percent_decode(&s.replace('+', " "));
                Some((decode(name)?, decode(value)?))
            })
            .collect();
        Form { fields }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed, when not empty.
    pub fn filled(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

/// `name=value` pairs of every `Cookie` header.
pub fn cookies(headers: GetAll<'_, HeaderValue>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for header in headers {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=') {
                out.entry(name.trim().to_string())
                    .or_insert_with(|| value.trim().to_string());
            }
        }
    }
    out
}

/// The percent-decoded segments after `/console`; `None` when one is not valid UTF-8, or is
/// `.` or `..` (no path is reached two ways).
pub fn segments(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix("/console")?;
    rest.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s).filter(|d| d != "." && d != ".." && !d.contains('/')))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_plus_and_percent_and_keep_repeated_names() {
        let form = Form::parse(b"name=ci+runner&models=gpt-5*%2Co3&g=team&g=day&bad=%ff");
        assert_eq!(form.get("name"), Some("ci runner"));
        assert_eq!(form.get("models"), Some("gpt-5*,o3"));
        assert_eq!(form.all("g"), ["team", "day"]);
        assert_eq!(form.get("bad"), None);
        assert_eq!(form.filled("missing"), None);
    }

    #[test]
    fn segments_refuse_dot_segments_and_encoded_slashes() {
        assert_eq!(segments("/console/teams/a%20b").unwrap(), ["teams", "a b"]);
        assert!(segments("/console/teams/..").is_none());
        assert!(segments("/console/teams/%2e%2e").is_none());
        assert!(segments("/console/teams/a%2Fb").is_none());
        assert_eq!(segments("/console").unwrap(), Vec::<String>::new());
    }
}
