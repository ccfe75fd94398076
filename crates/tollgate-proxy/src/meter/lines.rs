//! Splits a byte stream into lines as frames arrive. A line split across frames is joined in a
//! small carry buffer; complete lines inside a frame are handed out as slices, never copied.

/// Carries the incomplete tail of the previous frame.
#[derive(Debug, Default)]
pub struct LineSplitter {
    carry: Vec<u8>,
}

/// A line longer than this is not kept whole, so a hostile upstream cannot grow the carry
/// without bound: its first `KEEP_HEAD` bytes (which event it is) and its last `KEEP_TAIL`
/// (where a Responses event's usage is) are kept and the middle dropped. A `response.completed`
/// event carries the whole response, and with logprobs that is easily past this.
const MAX_LINE: usize = 8 * 1024 * 1024;
const KEEP_HEAD: usize = 4 * 1024;
const KEEP_TAIL: usize = 64 * 1024;

impl LineSplitter {
    /// Calls `on_line` for every complete line in `frame` (without its `\n` or `\r\n`).
    pub fn feed(&mut self, frame: &[u8], mut on_line: impl FnMut(&[u8])) {
        let mut rest = frame;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(end);
            rest = &tail[1..];
            if self.carry.is_empty() {
                on_line(trim_cr(line));
            } else {
                self.carry.extend_from_slice(line);
                drop_middle(&mut self.carry);
                let joined = std::mem::take(&mut self.carry);
                on_line(trim_cr(&joined));
                self.carry = joined;
                self.carry.clear();
            }
        }
        if !rest.is_empty() {
            self.carry.extend_from_slice(rest);
            drop_middle(&mut self.carry);
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

/// Keeps an over-long line's head and tail only.
fn drop_middle(carry: &mut Vec<u8>) {
    if carry.len() > MAX_LINE {
        carry.drain(KEEP_HEAD..carry.len() - KEEP_TAIL);
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
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

    #[test]
    fn an_over_long_line_keeps_its_start_and_end_in_bounded_memory() {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        let middle = vec![b'x'; 1024 * 1024];
        splitter.feed(
            b"data: {\"type\":\"response.completed\"",
            |_| unreachable!(),
        );
        for _ in 0..20 {
            splitter.feed(&middle, |_| unreachable!());
            assert!(splitter.carry.len() <= MAX_LINE + middle.len());
        }
        splitter.feed(b",\"usage\":{}}\nnext\n", |l| lines.push(l.to_vec()));
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(b"data: {\"type\":\"response.completed\""));
        assert!(lines[0].ends_with(b"xx,\"usage\":{}}"));
        assert!(lines[0].len() <= MAX_LINE, "{}", lines[0].len());
        assert_eq!(lines[1], b"next");
    }
}
