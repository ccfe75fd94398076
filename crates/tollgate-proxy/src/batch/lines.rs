//! A JSONL body read line by line as it arrives, never holding more than one line (of at most
//! `max` bytes) and one frame: a batch file can be 200 MB; memory stays bounded, the file not.

use bytes::{Buf, Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

use crate::body::BoxError;

/// Why a JSONL body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum LinesError {
    #[error("line {line} is longer than {max} bytes")]
    TooLong { line: u64, max: usize },
    #[error("the body broke off: {0}")]
    Body(BoxError),
}

/// Splits a body into lines (without `\n` / `\r\n`); blank lines are skipped.
pub struct Lines<B> {
    body: B,
    buf: BytesMut,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    ended: bool,
    max: usize,
    /// Lines handed out so far, blank ones included (line numbers count from 1).
    number: u64,
}

impl<B> Lines<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub fn new(body: B, max: usize) -> Lines<B> {
        Lines {
            body,
            buf: BytesMut::new(),
            scanned: 0,
            ended: false,
            max,
            number: 0,
        }
    }

    /// The next non-blank line and its number, or `None` at the end of the body.
    pub async fn next(&mut self) -> Result<Option<(u64, Bytes)>, LinesError> {
        loop {
            let Some(line) = self.next_raw().await? else {
                return Ok(None);
            };
            self.number += 1;
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some((self.number, line)));
            }
        }
    }

    fn too_long(&self) -> LinesError {
        LinesError::TooLong {
            line: self.number + 1,
            max: self.max,
        }
    }

    async fn next_raw(&mut self) -> Result<Option<Bytes>, LinesError> {
        loop {
            if let Some(at) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + at;
                if end > self.max {
                    return Err(self.too_long());
                }
                let mut line = self.buf.split_to(end + 1).freeze();
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                self.scanned = 0;
                return Ok(Some(line));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.max {
                return Err(self.too_long());
            }
            if self.ended {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                self.scanned = 0;
                return Ok(Some(self.buf.split().freeze()));
            }
            match self.body.frame().await {
                None => self.ended = true,
                Some(Err(e)) => return Err(LinesError::Body(e.into())),
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        self.buf
                            .extend_from_slice(&data.copy_to_bytes(data.remaining()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn body(frames: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = frames
            .iter()
            .map(|f| Ok(http_body::Frame::data(Bytes::from_static(f))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn lines_split_across_frames_are_joined_and_blank_lines_skipped() {
        let mut lines = Lines::new(
            body(&[b"{\"a\"", b":1}\r\n\n{\"b\":2}\n{\"c\"", b":3}"]),
            64,
        );
        let mut got = Vec::new();
        while let Some((n, line)) = lines.next().await.unwrap() {
            got.push((n, String::from_utf8(line.to_vec()).unwrap()));
        }
        assert_eq!(
            got,
            [
                (1, "{\"a\":1}".to_string()),
                (3, "{\"b\":2}".to_string()),
                (4, "{\"c\":3}".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_an_error_not_a_buffer() {
        let mut lines = Lines::new(body(&[b"short\n", b"0123456789", b"0123456789\n"]), 16);
        assert_eq!(lines.next().await.unwrap().unwrap().0, 1);
        let err = lines.next().await.unwrap_err();
        assert!(
            matches!(err, LinesError::TooLong { line: 2, max: 16 }),
            "{err}"
        );
    }
}
