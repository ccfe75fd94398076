//! `[proxy]`: what tollgate forwards besides the endpoints it prices.

use serde::Deserialize;

use super::{ConfigProblem, problem};

/// Endpoint policy for the `/v1` API.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Path prefixes under `/v1` that tollgate forwards although it cannot price them (for
    /// example `["/v1/files", "/v1/vector_stores"]`). A prefix matches itself and everything
    /// below it (`/v1/files` matches `/v1/files/file-1/content`, not `/v1/filesystem`). Such calls
    /// still pass key, team and rate-limit checks and leave a ledger row flagged `unmetered`.
    /// Any other endpoint tollgate does not price is refused (403 `endpoint_not_allowed`).
    pub unmetered: Vec<String>,
}

impl ProxyConfig {
    /// Whether `path` (already canonical) falls under an allowed unmetered prefix.
    pub fn allows_unmetered(&self, path: &str) -> bool {
        self.unmetered.iter().any(|prefix| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        for prefix in &self.unmetered {
            let segments_ok = prefix.strip_prefix("/v1/").is_some_and(|rest| {
                rest.split('/')
                    .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('%'))
            });
            if !segments_ok {
                problems.push(problem(
                    "proxy.unmetered",
                    format!(
                        "'{prefix}' must be a path under /v1/ without a trailing slash, '.', '..' or %-escapes (e.g. \"/v1/files\")"
                    ),
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments_and_bad_ones_are_named() {
        let config = ProxyConfig {
            unmetered: vec!["/v1/files".into(), "/v1/vector_stores".into()],
        };
        assert!(config.allows_unmetered("/v1/files"));
        assert!(config.allows_unmetered("/v1/files/file-1/content"));
        assert!(!config.allows_unmetered("/v1/filesystem"));
        assert!(!config.allows_unmetered("/v1/batches"));
        assert!(config.validate().is_empty());
        let bad = ProxyConfig {
            unmetered: vec![
                "/v1/files/".into(),
                "files".into(),
                "/v1/../x".into(),
                "/v1/".into(),
            ],
        };
        assert_eq!(bad.validate().len(), 4);
    }
}
