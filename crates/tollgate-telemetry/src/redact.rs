//! Prompt redaction for the opt-in prompt log: every configured pattern is replaced by
//! `[REDACTED]` before anything leaves the process, then the text is truncated. Redacting
//! first means a secret cut in half by truncation can never leak its prefix.

use regex::Regex;

use crate::TelemetryError;

/// Longest prompt attached to a cost event, after redaction.
pub const MAX_PROMPT_BYTES: usize = 64 * 1024;
const MARK: &str = "[REDACTED]";

#[derive(Debug, Clone)]
pub struct Redactor {
    /// All patterns as one alternation: one pass over the text.
    pattern: Option<Regex>,
}

impl Redactor {
    pub fn new(patterns: &[String]) -> Result<Redactor, TelemetryError> {
        for (i, p) in patterns.iter().enumerate() {
            Regex::new(p).map_err(|e| TelemetryError::Redact(i, e.to_string()))?;
        }
        if patterns.is_empty() {
            return Ok(Redactor { pattern: None });
        }
        let joined = patterns
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        let pattern = Regex::new(&joined).map_err(|e| TelemetryError::Redact(0, e.to_string()))?;
        Ok(Redactor {
            pattern: Some(pattern),
        })
    }

    /// The prompt as loggable text: lossy UTF-8, redacted, at most [`MAX_PROMPT_BYTES`].
    pub fn redact(&self, prompt: &[u8]) -> String {
        let text = String::from_utf8_lossy(prompt);
        let mut text = match &self.pattern {
            Some(re) => re.replace_all(&text, MARK).into_owned(),
            None => text.into_owned(),
        };
        if text.len() > MAX_PROMPT_BYTES {
            let mut cut = MAX_PROMPT_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("…[truncated]");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::config::TelemetryConfig;

    #[test]
    fn default_patterns_hide_keys_and_emails() {
        let r = Redactor::new(&TelemetryConfig::default().redact).unwrap();
        let out = r.redact(
            br#"{"input":"key sk-proj-abcdefghijklmnop1234 and tg-abc123def456-XYZxyzXYZxyzXYZxyz, mail ops@example.com, ok"}"#,
        );
        assert!(!out.contains("sk-proj"), "{out}");
        assert!(!out.contains("XYZxyz"), "{out}");
        assert!(!out.contains("ops@example.com"), "{out}");
        assert!(out.contains("ok"), "{out}");
        assert_eq!(out.matches(MARK).count(), 3, "{out}");
    }

    #[test]
    fn long_prompts_are_cut_after_redaction() {
        let r = Redactor::new(&[]).unwrap();
        let out = r.redact("é".repeat(MAX_PROMPT_BYTES).as_bytes());
        assert!(out.len() <= MAX_PROMPT_BYTES + "…[truncated]".len());
        assert!(out.ends_with("[truncated]"));
    }
}
