//! How a [`LedgerEvent`](tollgate_core::LedgerEvent)'s fields are squeezed into a small row and read
//! back: endpoint codes, the compact tool-call text, and the clamps that keep a malformed event
//! from failing a whole batch.

use std::borrow::Cow;

use tollgate_core::ToolCount;

/// Endpoint labels by their `ledger.endpoint` code; unknown labels are stored as 0, `other`.
const ENDPOINTS: [&str; 20] = [
    "other",
    "responses",
    "chat.completions",
    "completions",
    "embeddings",
    "models",
    "responses.compact",
    "moderations",
    "stored",
    "images.generations",
    "images.edits",
    "images.variations",
    "audio.speech",
    "audio.transcriptions",
    "audio.translations",
    "batches",
    "files",
    "batch",
    "responses.ws",
    "responses.ws.prewarm",
];

pub(crate) fn endpoint_code(label: &str) -> i16 {
    match ENDPOINTS.iter().position(|known| *known == label) {
        Some(code) => code as i16,
        None => {
            tracing::debug!(label, "unknown endpoint label stored as \"other\"");
            0
        }
    }
}

pub(crate) fn endpoint_label(code: i64) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|code| ENDPOINTS.get(code))
        .copied()
        .unwrap_or("other")
}

/// `exec_command=3,apply_patch=1`, in the event's order; `None` when no tool was called. `%`, `,`
/// and `=` in a tool name are percent-escaped so any name round-trips. Written by hand rather
/// than with `percent-encoding`, whose encoder always escapes non-ASCII bytes: that would change
/// the stored text of every non-ASCII tool name and make it unreadable in SQL.
pub(crate) fn encode_tools(tools: &[ToolCount]) -> Option<String> {
    if tools.is_empty() {
        return None;
    }
    let mut text = String::new();
    for (i, tool) in tools.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        for c in tool.name.chars() {
            match c {
                '%' => text.push_str("%25"),
                ',' => text.push_str("%2C"),
                '=' => text.push_str("%3D"),
                c => text.push(c),
            }
        }
        text.push('=');
        text.push_str(&tool.count.to_string());
    }
    Some(text)
}

/// The inverse of [`encode_tools`]; an entry that does not parse is skipped.
pub(crate) fn decode_tools(text: &str) -> Vec<ToolCount> {
    text.split(',')
        .filter_map(|entry| {
            let (name, count) = entry.rsplit_once('=')?;
            let name = name
                .replace("%2C", ",")
                .replace("%3D", "=")
                .replace("%25", "%");
            Some(ToolCount {
                name,
                count: count.parse().ok()?,
            })
        })
        .collect()
}

/// Longest text stored in an indexed column (request, team, key, session and turn ids, interned
/// names). Far above any real value, far below PostgreSQL's ~2.7 KB B-tree entry limit.
pub(crate) const MAX_TEXT_BYTES: usize = 512;

/// Text as stored: without NUL characters (PostgreSQL's `text` cannot hold them), cut at
/// [`MAX_TEXT_BYTES`] on a character boundary. Both are logged; neither happens to real values.
/// Deterministic, so a replayed event is cleaned exactly as the first attempt was.
pub(crate) fn clean_text(text: &str) -> Cow<'_, str> {
    let mut text = Cow::Borrowed(text);
    if text.contains('\0') {
        tracing::warn!(text = %text.escape_debug(), "NUL characters removed from a ledger field");
        text = Cow::Owned(text.replace('\0', ""));
    }
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        tracing::warn!(
            len = text.len(),
            "ledger field truncated to {MAX_TEXT_BYTES} bytes"
        );
        text = Cow::Owned(text[..end].to_owned());
    }
    text
}

/// A per-call count as stored in an INTEGER column, saturating (a call never comes near 2^31
/// tokens or milliseconds; a value that does is logged).
pub(crate) fn small_count(value: u64) -> i32 {
    i32::try_from(value).unwrap_or_else(|_| {
        tracing::warn!(value, "ledger count above 2^31 - 1 stored saturated");
        i32::MAX
    })
}

/// A duration in ms as stored in an INTEGER column, saturating at both ends.
pub(crate) fn small_ms(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, count: u32) -> ToolCount {
        ToolCount {
            name: name.to_owned(),
            count,
        }
    }

    #[test]
    fn endpoints_round_trip_and_unknown_is_other() {
        for label in ENDPOINTS {
            assert_eq!(endpoint_label(i64::from(endpoint_code(label))), label);
        }
        assert_eq!(endpoint_code("responses"), 1);
        assert_eq!(endpoint_code("batches"), 15);
        assert_eq!(endpoint_code("files"), 16);
        assert_eq!(endpoint_code("batch"), 17);
        assert_eq!(endpoint_code("audio.speak"), 0);
        assert_eq!(endpoint_label(99), "other");
        assert_eq!(endpoint_label(-1), "other");
    }

    #[test]
    fn tool_calls_are_compact_and_round_trip_any_name() {
        assert_eq!(encode_tools(&[]), None);
        let tools = vec![tool("exec_command", 3), tool("apply_patch", 1)];
        let text = encode_tools(&tools).unwrap();
        assert_eq!(text, "exec_command=3,apply_patch=1");
        assert_eq!(decode_tools(&text), tools);
        let odd = vec![
            tool("a,b=c%2C", 7),
            tool("", 0),
            tool("mcp__x__y", 4_000_000_000),
        ];
        assert_eq!(decode_tools(&encode_tools(&odd).unwrap()), odd);
    }

    #[test]
    fn text_is_cleaned_deterministically() {
        assert!(matches!(clean_text("req_1"), Cow::Borrowed("req_1")));
        assert_eq!(clean_text("a\0b"), "ab");
        let long = "é".repeat(400);
        let cut = clean_text(&long);
        assert!(cut.len() <= MAX_TEXT_BYTES && cut.len() >= MAX_TEXT_BYTES - 1);
        assert_eq!(small_count(u64::MAX), i32::MAX);
        assert_eq!(small_ms(-5), -5);
        assert_eq!(small_ms(i64::MAX), i32::MAX);
    }
}
