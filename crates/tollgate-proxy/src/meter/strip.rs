//! Hiding what tollgate added. When a chat stream's client did not ask for usage, tollgate asks
//! for it anyway (`stream_options.include_usage`) to meter exactly; this filter removes the
//! extra usage chunk and the `"usage":null` the upstream then adds to every other chunk, so the
//! client's bytes are exactly what it would have received without tollgate.
//!
//! It works on whole SSE events: a complete event inside a frame is handed on as a slice of
//! that frame (no copy); only an event split across frames, or one that must be edited, is
//! copied.

use bytes::{Bytes, BytesMut};

use super::observe::is_usage_chunk;

#[derive(Debug, Default)]
pub struct UsageChunkFilter {
    pending: BytesMut,
}

impl UsageChunkFilter {
    /// Filters one upstream frame; pushes the bytes to forward onto `out`.
    pub fn feed(&mut self, frame: Bytes, out: &mut impl Extend<Bytes>) {
        let buf = if self.pending.is_empty() {
            frame
        } else {
            self.pending.extend_from_slice(&frame);
            self.pending.split().freeze()
        };
        let mut start = 0;
        while let Some(len) = event_len(&buf[start..]) {
            let event = buf.slice(start..start + len);
            start += len;
            out.extend(rewrite(event));
        }
        if start < buf.len() {
            self.pending.extend_from_slice(&buf[start..]);
        }
    }

    /// Whatever is left when the stream ends (an unterminated last event) goes out as it is.
    pub fn finish(&mut self, out: &mut impl Extend<Bytes>) {
        if !self.pending.is_empty() {
            out.extend([self.pending.split().freeze()]);
        }
    }
}

/// Length of the first complete event (through its blank line), if there is one.
fn event_len(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(nl) = memchr::memchr(b'\n', &buf[at..]) {
        let line_end = at + nl + 1;
        let line = &buf[at..at + nl];
        if line.is_empty() || line == b"\r" {
            return Some(line_end);
        }
        at = line_end;
    }
    None
}

/// `None` to drop the event (the usage chunk), else the event, minus `"usage":null`.
fn rewrite(event: Bytes) -> Option<Bytes> {
    let data = event
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"data:"))
        .map(|d| {
            d.strip_prefix(b" ")
                .unwrap_or(d)
                .strip_suffix(b"\r")
                .unwrap_or(d)
        });
    // Only the usage chunk has an empty `choices`; parse just the events that might be it.
    const NO_CHOICES: &[u8] = b"\"choices\":[]";
    if data.is_some_and(|d| find_last(d, NO_CHOICES).is_some() && is_usage_chunk(d)) {
        return None;
    }
    const NULL_USAGE: &[u8] = b",\"usage\":null";
    match find_last(&event, NULL_USAGE) {
        None => Some(event),
        Some(at) => {
            let mut edited = BytesMut::with_capacity(event.len() - NULL_USAGE.len());
            edited.extend_from_slice(&event[..at]);
            edited.extend_from_slice(&event[at + NULL_USAGE.len()..]);
            Some(edited.freeze())
        }
    }
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::rfind(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(frames: &[&str]) -> String {
        let mut filter = UsageChunkFilter::default();
        let mut out = Vec::new();
        for f in frames {
            filter.feed(Bytes::copy_from_slice(f.as_bytes()), &mut out);
        }
        filter.finish(&mut out);
        out.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn drops_the_usage_chunk_and_null_usage_fields_even_across_frames() {
        let with = [
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\nda",
            "ta: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\n",
            "data: [DONE]\n\n",
        ];
        assert_eq!(
            run(&with),
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n"
        );
        let untouched =
            "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":null\"}}]}\n\n";
        assert_eq!(run(&[untouched]), untouched);
    }
}
