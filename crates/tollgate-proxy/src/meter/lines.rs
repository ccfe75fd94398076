//! Splits a byte stream into lines as frames arrive. A line split across frames is joined in a
//! small carry buffer; complete lines inside a frame are handed out as slices, never copied.

/// Carries the incomplete tail of the previous frame.
#[derive(Debug, Default)]
pub struct LineSplitter {
    carry: Vec<u8>,
}

/// Lines longer than this are not SSE anyone should meter; the carry is dropped past it so a
/// hostile upstream cannot grow it without bound.
const MAX_LINE: usize = 8 * 1024 * 1024;

impl LineSplitter {
    /// Calls `on_line` for every complete line in `frame` (without its `\n` or `\r\n`).
    pub fn feed(&mut self, frame: &[u8], mut on_line: impl FnMut(&[u8])) {
        let mut rest = frame;
        while let Some(end) = memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(end);
            rest = &tail[1..];
            if self.carry.is_empty() {
                on_line(trim_cr(line));
            } else {
                self.carry.extend_from_slice(line);
                let joined = std::mem::take(&mut self.carry);
                on_line(trim_cr(&joined));
                self.carry = joined;
                self.carry.clear();
            }
        }
        if !rest.is_empty() {
            if self.carry.len() + rest.len() > MAX_LINE {
                self.carry.clear();
            } else {
                self.carry.extend_from_slice(rest);
            }
        }
    }

    /// The unterminated last line, if the stream ended without a newline.
    pub fn finish(&mut self, on_line: impl FnOnce(&[u8])) {
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            on_line(trim_cr(&line));
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Position of `needle` in `haystack`. The standard library's slice search is vectorised for
/// a single byte via `iter().position` on u8 in practice; kept as a function for one place to tune.
fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(frames: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        for frame in frames {
            splitter.feed(frame, |l| {
                lines.push(String::from_utf8_lossy(l).into_owned())
            });
        }
        splitter.finish(|l| lines.push(String::from_utf8_lossy(l).into_owned()));
        lines
    }

    #[test]
    fn lines_split_across_frames_are_joined() {
        assert_eq!(
            split(&[b"data: {\"a\"", b":1}\n\nda", b"ta: [DONE]\r\n\r\n"]),
            ["data: {\"a\":1}", "", "data: [DONE]", ""]
        );
        assert_eq!(split(&[b"a\nb"]), ["a", "b"]);
        assert_eq!(split(&[b"\n", b"\n"]), ["", ""]);
    }
}
