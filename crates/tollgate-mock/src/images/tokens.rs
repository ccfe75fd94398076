//! The image token formulas, deterministic so tests can compute expected cost by hand.
//!
//! - Input text tokens: `max(1, prompt bytes / 4)`.
//! - Input image tokens (edits), per uploaded `image` / `image[]` file: `85 + 170 × tiles`,
//!   `tiles = ceil(width / 512) × ceil(height / 512)` read from a PNG header; any other file
//!   counts as 1024×1024 (4 tiles, 765 tokens). The `mask` is not counted.
//! - Output image tokens per image, by size and quality (`auto` size = 1024x1024, `auto`
//!   quality = medium), the same for every `gpt-image-*` model:
//!
//!   | size      | low | medium | high |
//!   |-----------|-----|--------|------|
//!   | 1024x1024 | 272 | 1056   | 4160 |
//!   | 1024x1536 | 408 | 1584   | 6240 |
//!   | 1536x1024 | 400 | 1568   | 6208 |
//!
//! - A streamed image adds [`PARTIAL_IMAGE_TOKENS`] output tokens per partial image.
//! - `n` images: `n ×` the output tokens; input tokens once per request.

use serde::Serialize;

/// Output tokens each streamed partial image adds, as OpenAI prices them.
pub(crate) const PARTIAL_IMAGE_TOKENS: u64 = 100;

const TABLE: [(&str, [u64; 3]); 3] = [
    ("1024x1024", [272, 1056, 4160]),
    ("1024x1536", [408, 1584, 6240]),
    ("1536x1024", [400, 1568, 6208]),
];

/// Output tokens for one image of `size` at `quality` (neither `auto`), or `None` for a size
/// or quality GPT image models do not offer.
pub(crate) fn output_tokens_per_image(size: &str, quality: &str) -> Option<u64> {
    let column = match quality {
        "low" => 0,
        "medium" => 1,
        "high" => 2,
        _ => return None,
    };
    TABLE
        .iter()
        .find(|(s, _)| *s == size)
        .map(|(_, row)| row[column])
}

/// `max(1, prompt bytes / 4)`.
pub(crate) fn text_tokens(prompt: &str) -> u64 {
    (prompt.len() as u64 / 4).max(1)
}

/// Tokens for one uploaded input image.
pub(crate) fn input_image_tokens(file: &[u8]) -> u64 {
    let (width, height) = png_size(file).unwrap_or((1024, 1024));
    85 + 170 * width.div_ceil(512).max(1) * height.div_ceil(512).max(1)
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(file: &[u8]) -> Option<(u64, u64)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !file.starts_with(SIGNATURE) || file.get(12..16) != Some(b"IHDR") {
        return None;
    }
    let be = |at: usize| -> Option<u64> {
        let bytes: [u8; 4] = file.get(at..at + 4)?.try_into().ok()?;
        Some(u64::from(u32::from_be_bytes(bytes)))
    };
    Some((be(16)?, be(20)?))
}

/// The `usage` of a GPT image answer.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ImageUsage {
    input_tokens: u64,
    input_tokens_details: Details,
    output_tokens: u64,
    output_tokens_details: Details,
    total_tokens: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Details {
    image_tokens: u64,
    text_tokens: u64,
}

impl ImageUsage {
    pub(crate) fn new(text_tokens: u64, image_tokens: u64, output_tokens: u64) -> Self {
        let input_tokens = text_tokens + image_tokens;
        Self {
            input_tokens,
            input_tokens_details: Details {
                image_tokens,
                text_tokens,
            },
            output_tokens,
            output_tokens_details: Details {
                image_tokens: output_tokens,
                text_tokens: 0,
            },
            total_tokens: input_tokens + output_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_tokens_follow_openais_size_and_quality_table() {
        assert_eq!(output_tokens_per_image("1024x1024", "low"), Some(272));
        assert_eq!(output_tokens_per_image("1536x1024", "high"), Some(6208));
        assert_eq!(output_tokens_per_image("256x256", "low"), None);
    }

    #[test]
    fn input_image_tokens_come_from_the_png_size() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&600u32.to_be_bytes());
        png.extend_from_slice(&512u32.to_be_bytes());
        assert_eq!(input_image_tokens(&png), 85 + 170 * 2);
        assert_eq!(input_image_tokens(b"not a png"), 765);
    }
}
