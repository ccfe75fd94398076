//! The tokenizer estimate: tokens in a request or a delivered answer, for the budget bound near
//! a limit (admission) and for calls whose usage never arrived (settle). Its memory and CPU are
//! bounded whatever the input, because the input is the client's: tiktoken's BPE takes ~56 bytes
//! of memory per byte of one regex "word", so 31 MiB of one repeated character used to cost
//! 1.8 GB and seconds of CPU per call.
//!
//! The bounds, each on its own:
//! - text is tokenized in windows of at most [`WINDOW`] bytes, cut where tiktoken's pre-split
//!   would cut anyway (before a space that follows a non-space), so ordinary text counts exactly
//!   as a whole; only a run without such a place is cut at a fixed size on a char boundary;
//! - only the first [`EXACT_LIMIT`] bytes are tokenized; the rest counts one token per byte, an
//!   upper bound (every token is at least one byte);
//! - at most [`GATE_BYTES`] bytes are being tokenized at once in the process; a caller waits up
//!   to [`WAIT`] for room and then takes the byte bound rather than pile up;
//! - it never runs on an async thread: [`count_off_thread`] moves it to the blocking pool.
//!
//! An encoding's tables take ~250 ms and over 100 MiB to load, so each is loaded on its first
//! use, not at start-up: a gateway whose upstream always reports usage never pays for them.

use std::time::Duration;

use bytes::Bytes;
use tiktoken_rs::CoreBPE;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The most bytes tokenized in one piece: bounds the BPE's working memory (~56 bytes a byte).
pub const WINDOW: usize = 8 * 1024;
/// Bytes of one text tokenized exactly; past them a token per byte (~100 ms of CPU in release).
pub const EXACT_LIMIT: usize = 2 * 1024 * 1024;
/// Bytes being tokenized at once in the whole process.
pub const GATE_BYTES: usize = 2 * EXACT_LIMIT;
/// How long a caller waits for room under the gate before it takes the byte bound.
pub const WAIT: Duration = Duration::from_secs(2);

static GATE: Semaphore = Semaphore::const_new(GATE_BYTES);

/// The encoding a model family uses, named without loading its tables.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Cl100k,
    O200k,
}

impl Encoding {
    fn of(model: &str) -> Encoding {
        let cl100k = ["gpt-4-", "gpt-3.5", "text-embedding-", "davinci", "babbage"];
        if model == "gpt-4" || cl100k.iter().any(|p| model.starts_with(p)) {
            Encoding::Cl100k
        } else {
            // gpt-4o, gpt-4.1, gpt-5.x, o-series and anything newer.
            Encoding::O200k
        }
    }

    /// The tables, loaded on first use (on the thread that tokenizes, never an async one).
    fn bpe(self) -> &'static CoreBPE {
        match self {
            Encoding::Cl100k => tiktoken_rs::cl100k_base_singleton(),
            Encoding::O200k => tiktoken_rs::o200k_base_singleton(),
        }
    }
}

/// Tokens in `text` (UTF-8; invalid bytes count as one token each) under `model`'s encoding,
/// plus a bytes/4 allowance for text that was delivered past the kept cap.
///
/// Runs on the calling thread, which must be allowed to block (the blocking pool, or a thread
/// outside any runtime): it waits up to [`WAIT`] for room under the process-wide gate.
pub fn count(model: &str, text: &[u8], overflow_bytes: usize) -> u64 {
    count_under(&GATE, model, text, overflow_bytes)
}

fn count_under(gate: &Semaphore, model: &str, text: &[u8], overflow_bytes: usize) -> u64 {
    let allowance = (overflow_bytes as u64).div_ceil(4);
    let Some(permit) = wait_blocking(gate, gated_bytes(text)) else {
        return byte_bound(text) + allowance;
    };
    let counted = count_ungated(Encoding::of(model).bpe(), text);
    drop(permit);
    counted + allowance
}

/// [`count`] from async code: waits for the gate without holding a thread, then tokenizes on
/// the blocking pool. Falls back to the byte bound when the gate stays full for [`WAIT`].
pub async fn count_off_thread(model: &str, text: Bytes) -> u64 {
    let wanted = gated_bytes(&text);
    let bound = byte_bound(&text);
    let permit = match tokio::time::timeout(WAIT, GATE.acquire_many(wanted)).await {
        Ok(Ok(permit)) => permit,
        _ => return bound,
    };
    let encoding = Encoding::of(model);
    // The permit goes with the work: a caller that gives up (its client left) must not free
    // room in the gate while its tokenizing still runs.
    let counted = tokio::task::spawn_blocking(move || {
        let counted = count_ungated(encoding.bpe(), &text);
        drop(permit);
        counted
    });
    counted.await.unwrap_or(bound)
}

/// Permits a text takes under the gate: the bytes that will be tokenized, at least one.
fn gated_bytes(text: &[u8]) -> u32 {
    u32::try_from(text.len().clamp(1, EXACT_LIMIT)).unwrap_or(u32::MAX)
}

/// Waits on this (blocking-allowed) thread for `wanted` of `gate`'s permits, up to [`WAIT`].
fn wait_blocking(gate: &Semaphore, wanted: u32) -> Option<SemaphorePermit<'_>> {
    if let Ok(permit) = gate.try_acquire_many(wanted) {
        return Some(permit);
    }
    // Inside a runtime's blocking pool, wait on the runtime's timer; outside any runtime
    // nothing else in this process tokenizes through tollgate, so a full gate is final.
    let handle = tokio::runtime::Handle::try_current().ok()?;
    handle
        .block_on(tokio::time::timeout(WAIT, gate.acquire_many(wanted)))
        .ok()?
        .ok()
}

/// Tokens in `text`: the first [`EXACT_LIMIT`] bytes tokenized window by window, the rest by
/// the byte bound.
fn count_ungated(bpe: &CoreBPE, text: &[u8]) -> u64 {
    let mut tokens = 0u64;
    let mut tokenized = 0usize;
    for chunk in text.utf8_chunks() {
        let mut valid = chunk.valid();
        while !valid.is_empty() {
            if tokenized >= EXACT_LIMIT {
                tokens += valid.len() as u64;
                break;
            }
            let (window, rest) = valid.split_at(window_end(valid));
            tokens += bpe.encode_ordinary(window).len() as u64;
            tokenized += window.len();
            valid = rest;
        }
        // An invalid sequence decodes to one U+FFFD, one token in both encodings.
        if !chunk.invalid().is_empty() {
            tokens += 1;
        }
    }
    tokens
}

/// Where the next window of `text` ends: all of it when short; else the last place within
/// [`WINDOW`] bytes where a space follows a non-space (no tiktoken pre-split piece spans such
/// a place, in either encoding: a space inside a piece is only at its start or in a piece of
/// all whitespace); else the last char boundary within [`WINDOW`].
fn window_end(text: &str) -> usize {
    if text.len() <= WINDOW {
        return text.len();
    }
    let bytes = text.as_bytes();
    let mut end = WINDOW;
    while end > 1 {
        if bytes[end] == b' ' && !char_before(text, end).is_some_and(char::is_whitespace) {
            return end;
        }
        end -= 1;
    }
    let mut end = WINDOW;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// The char that ends at byte `end` (a char boundary, since a space byte is always one).
fn char_before(text: &str, end: usize) -> Option<char> {
    text.get(..end).and_then(|head| head.chars().next_back())
}

/// An upper bound on the tokens of `text` without tokenizing: one per byte.
fn byte_bound(text: &[u8]) -> u64 {
    text.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded Codex request (~38 KB of JSON, prose, code and escapes).
    const CODEX: &str = include_str!("../../../tests/fixtures/codex/turn-request-1.json");

    #[test]
    fn counts_with_the_family_encoding() {
        let text = "The quick brown fox jumps over the lazy dog.";
        assert_eq!(count("gpt-5.5", text.as_bytes(), 0), 10);
        assert_eq!(count("gpt-3.5-turbo-instruct", text.as_bytes(), 0), 10);
        assert_eq!(count("gpt-5.5", b"", 8), 2);
    }

    /// Windows are cut only where tiktoken's own pre-split cuts, so ordinary text longer than a
    /// window counts exactly as it did whole.
    #[test]
    fn ordinary_text_counts_exactly_as_a_whole() {
        let mixed = "Line one: 12345 apples, 3.14159 pies!\n\n\tIndented   spaces  and\r\n\
                     don't stop — naïve café 東京 タワー 👍🏽 <tag attr=\"x\">\n    ";
        let texts = [
            CODEX.to_string(),
            CODEX.repeat(3),
            mixed.repeat(2_000),
            "word ".repeat(10_000),
        ];
        for text in &texts {
            assert!(text.len() > 4 * WINDOW, "long enough to be windowed");
            for encoding in [Encoding::O200k, Encoding::Cl100k] {
                let bpe = encoding.bpe();
                let whole = bpe.encode_ordinary(text).len() as u64;
                assert_eq!(
                    count_ungated(bpe, text.as_bytes()),
                    whole,
                    "{encoding:?} on {:?}…",
                    &text[..40]
                );
            }
        }
    }

    /// Past the exact prefix a token per byte: never fewer tokens than the truth, never more
    /// than the bytes.
    #[test]
    fn text_past_the_exact_prefix_counts_an_upper_bound() {
        let text = "Tokens are shorter than their bytes. ".repeat(EXACT_LIMIT / 16);
        let bpe = Encoding::O200k.bpe();
        let counted = count_ungated(bpe, text.as_bytes());
        let exact = bpe.encode_ordinary(&text).len() as u64;
        assert!(text.len() > EXACT_LIMIT);
        assert!(counted >= exact, "{counted} < {exact}");
        assert!(counted <= text.len() as u64, "{counted} > bytes");
    }

    #[test]
    fn invalid_utf8_counts_without_a_lossy_copy_and_within_its_bytes() {
        let mut text = b"valid start ".to_vec();
        text.extend_from_slice(&[0xFF, 0xFE, b' ', 0xC3]);
        let counted = count("gpt-5.5", &text, 0);
        assert!(counted > 0 && counted <= text.len() as u64, "{counted}");
    }

    #[test]
    fn a_full_gate_falls_back_to_the_byte_bound() {
        let text = "An ordinary sentence of some words.";
        let gate = Semaphore::new(GATE_BYTES);
        // Outside any runtime a full gate is final: the caller gets the byte bound at once.
        let all = gate.try_acquire_many(GATE_BYTES as u32).unwrap();
        assert_eq!(
            count_under(&gate, "gpt-5.5", text.as_bytes(), 0),
            text.len() as u64
        );
        drop(all);
        assert_eq!(count_under(&gate, "gpt-5.5", text.as_bytes(), 0), 7);
    }
}
