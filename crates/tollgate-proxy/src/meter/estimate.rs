//! Token estimates for calls whose usage never arrived (stream cut, client gone, an upstream
//! that does not report usage): input from the request, output from the text delivered, with
//! the encoding of the model's family. Tokenizing is milliseconds of CPU, so it runs only on
//! this rare path, off the async threads. An encoding's tables take ~250 ms and over 100 MiB to
//! load, so each is loaded on its first use, not at start-up: a gateway whose upstream always
//! reports usage never pays for them.

use tiktoken_rs::CoreBPE;

/// The encoding a model family uses.
fn encoding_for(model: &str) -> &'static CoreBPE {
    let cl100k = ["gpt-4-", "gpt-3.5", "text-embedding-", "davinci", "babbage"];
    if model == "gpt-4" || cl100k.iter().any(|p| model.starts_with(p)) {
        tiktoken_rs::cl100k_base_singleton()
    } else {
        // gpt-4o, gpt-4.1, gpt-5.x, o-series and anything newer.
        tiktoken_rs::o200k_base_singleton()
    }
}

/// Tokens in `text` under `model`'s encoding, plus a bytes/4 allowance for text that was
/// delivered past the kept cap.
pub fn count(model: &str, text: &str, overflow_bytes: usize) -> u64 {
    let counted = encoding_for(model).encode_ordinary(text).len() as u64;
    counted + (overflow_bytes as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_with_the_family_encoding() {
        let text = "The quick brown fox jumps over the lazy dog.";
        assert_eq!(count("gpt-5.5", text, 0), 10);
        assert_eq!(count("gpt-3.5-turbo-instruct", text, 0), 10);
        assert_eq!(count("gpt-5.5", "", 8), 2);
    }
}
