//! Model allow-lists for keys and teams: exact names, or a prefix with a trailing `*`
//! (`gpt-5*` allows `gpt-5.5` and `gpt-5-2025-08-07`). No list allows every model.

use std::sync::Arc;

/// A parsed allow-list; cheap to clone into cache records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelAllowList(Arc<[String]>);

impl ModelAllowList {
    /// From the stored comma-separated form; `None` (or empty) allows every model.
    pub fn parse(stored: Option<&str>) -> Option<ModelAllowList> {
        let entries: Vec<String> = stored?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        (!entries.is_empty()).then(|| ModelAllowList(entries.into()))
    }

    /// The stored form of a list of entries (`None` for an empty list: allow all).
    pub fn to_stored(entries: &[String]) -> Option<String> {
        let kept: Vec<&str> = entries
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        (!kept.is_empty()).then(|| kept.join(","))
    }

    /// Checks one entry a user supplied: a model name, optionally ending in `*`.
    pub fn valid_entry(entry: &str) -> bool {
        let name = entry.strip_suffix('*').unwrap_or(entry);
        !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'/'))
    }

    pub fn allows(&self, model: &str) -> bool {
        self.0.iter().any(|entry| match entry.strip_suffix('*') {
            Some(prefix) => model.starts_with(prefix),
            None => entry == model,
        })
    }

    pub fn entries(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_and_prefixes() {
        let list = ModelAllowList::parse(Some("gpt-5*, text-embedding-3-small")).unwrap();
        assert!(
            list.allows("gpt-5.5")
                && list.allows("gpt-5-2025-08-07")
                && list.allows("text-embedding-3-small")
        );
        assert!(!list.allows("gpt-4o") && !list.allows("text-embedding-3-large"));
        assert_eq!(ModelAllowList::parse(Some(" , ")), None);
        assert_eq!(ModelAllowList::parse(None), None);
        assert_eq!(
            ModelAllowList::to_stored(&["a".into(), " ".into(), "b*".into()]).as_deref(),
            Some("a,b*")
        );
        assert!(
            ModelAllowList::valid_entry("gpt-5*")
                && !ModelAllowList::valid_entry("*")
                && !ModelAllowList::valid_entry("a,b")
        );
    }
}
