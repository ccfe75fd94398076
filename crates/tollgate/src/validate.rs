//! Input rules shared by the admin API and the CLI, collected so every bad field is named at once.

use tollgate_core::{ApiError, ModelAllowList};

/// Bad fields gathered during one validation pass.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<(&'static str, String)>);

impl FieldErrors {
    pub fn push(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    /// Checks a required field with `rule`; returns the value when present.
    pub fn check<'a>(
        &mut self,
        field: &'static str,
        value: Option<&'a str>,
        rule: fn(&str) -> Result<(), String>,
    ) -> Option<&'a str> {
        match value {
            None => {
                self.push(field, "is required");
                None
            }
            Some(v) => match rule(v) {
                Ok(()) => Some(v),
                Err(message) => {
                    self.push(field, message);
                    None
                }
            },
        }
    }

    /// 422 naming every bad field, or Ok when there were none.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let message = self
            .0
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; ");
        Err(ApiError::new(
            422,
            "invalid_request_error",
            "invalid_fields",
            message,
        ))
    }
}

/// Team names: 1–64 of letters, digits, `.`, `_`, `-`, starting with a letter or digit, and not
/// shaped like a team id (`tm_…`) so `{team}` in a path is never ambiguous.
pub fn valid_team_name(name: &str) -> Result<(), String> {
    valid_name(name)?;
    if name.starts_with("tm_") {
        return Err("must not start with 'tm_' (reserved for team ids)".into());
    }
    Ok(())
}

pub fn valid_key_name(name: &str) -> Result<(), String> {
    valid_name(name)
}

fn valid_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let ok_start = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 64 || !ok_chars || !ok_start {
        return Err(
            "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit".into(),
        );
    }
    Ok(())
}

/// Cost centres are free text from finance systems: 1–64 printable characters.
pub fn valid_cost_centre(cc: &str) -> Result<(), String> {
    // Characters, not bytes: a cost centre in any script gets the same 64.
    if cc.trim().is_empty() || cc.chars().count() > 64 || cc.chars().any(char::is_control) {
        return Err("must be 1-64 printable characters".into());
    }
    Ok(())
}

/// Most labels one team may carry, and the longest label value.
pub const MAX_LABELS: usize = 32;
pub const MAX_LABEL_VALUE: usize = 256;

/// Team labels: names follow the key-name rule (they become report columns and CSV headers);
/// values are short printable text.
pub fn check_labels(errors: &mut FieldErrors, labels: &std::collections::BTreeMap<String, String>) {
    if labels.len() > MAX_LABELS {
        errors.push("labels", format!("at most {MAX_LABELS} labels"));
    }
    for (name, value) in labels {
        if let Err(why) = valid_key_name(name) {
            errors.push("labels", format!("label name '{name}' {why}"));
        }
        if value.chars().count() > MAX_LABEL_VALUE || value.chars().any(char::is_control) {
            errors.push(
                "labels",
                format!("label '{name}' must be at most {MAX_LABEL_VALUE} printable characters"),
            );
        }
    }
}

/// Validates an `allowed_models` field; returns its stored form (`None`: allow all).
pub fn check_models(errors: &mut FieldErrors, models: Option<&[String]>) -> Option<String> {
    let models = models?;
    if let Some(bad) = models.iter().find(|m| !ModelAllowList::valid_entry(m)) {
        errors.push("allowed_models", format!("'{bad}' is not a model name (letters, digits, '.', '-', '_', ':', '/'; a trailing '*' matches a prefix)"));
        return None;
    }
    ModelAllowList::to_stored(models)
}

/// An optional whole number written as `805` or `805.0`: JSON Schema (and so the OpenAPI
/// document) counts both as integers, serde's integer types refuse the second. Fractions,
/// and numbers outside `T`, are refused (400 `invalid_json`, naming the field).
pub fn whole_number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::Deserialize;
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        // Exactly representable and in range: |f| < 2^63.
        #[allow(clippy::cast_possible_truncation)]
        (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
    });
    let whole = whole.ok_or_else(|| D::Error::custom(format!("{n} is not a whole number")))?;
    T::try_from(whole)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{n} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_bad_field() {
        let mut errors = FieldErrors::default();
        errors.check("name", Some("tm_x"), valid_team_name);
        errors.check("cost_centre", Some(""), valid_cost_centre);
        errors.check("other", None, valid_key_name);
        let err = errors.into_result().unwrap_err();
        assert_eq!(err.status, 422);
        for f in ["name:", "cost_centre:", "other: is required"] {
            assert!(err.message.contains(f), "{}", err.message);
        }
        #[derive(serde::Deserialize)]
        struct N {
            #[serde(default, deserialize_with = "whole_number")]
            n: Option<u32>,
        }
        let n = |text: &str| serde_json::from_str::<N>(text).map(|v| v.n).ok();
        assert_eq!(n(r#"{"n": 805.0}"#), Some(Some(805)));
        assert_eq!(n(r#"{"n": null}"#), Some(None));
        assert_eq!(n("{}"), Some(None));
        assert_eq!(n(r#"{"n": 1.5}"#), None);
        assert_eq!(n(r#"{"n": -1}"#), None);
        assert_eq!(n(r#"{"n": 4294967296}"#), None);
        assert!(
            valid_team_name("platform").is_ok()
                && valid_team_name("-x").is_err()
                && valid_team_name("a b").is_err()
        );
    }
}
