//! What an image or audio call bills beyond text tokens, twice: an upper bound before it is
//! forwarded (the budget reservation) and the measure once it has answered (the ledger row).
//!
//! The price entry decides the unit: per image (dall-e) from the request's `n`, `size` and
//! `quality`; per character (tts-1) from the request's `input`; per minute (whisper-1) from the
//! duration the answer reports, else the uploaded WAV file's header; in tokens for every other
//! model, from the answer's `usage`. Where the answer never says (a client that left, a
//! transcript asked for as plain text), the row is an estimate and flagged, as for text calls.

use tollgate_core::pricing::PriceEntry;
use tollgate_core::{ImageCount, Units, Usage};

use crate::inspect::media::MediaAsk;
use crate::meter::observe::Observed;
use crate::route::Endpoint;

/// `size` when the request names none: OpenAI's default for every image model.
const DEFAULT_SIZE: &str = "1024x1024";
/// `quality` when the request names none (dall-e-3's default; dall-e-2 has only this one).
const DEFAULT_QUALITY: &str = "standard";

/// Upper bound of a token-priced image's output tokens per started megapixel (1024×1024). OpenAI
/// bills gpt-image-1 at high quality 4,160 tokens for 1024×1024 and 6,240 for 1024×1536.
const IMAGE_TOKENS_PER_MEGAPIXEL: u64 = 8_000;
/// `size` absent or `auto`: the bound assumes the largest standard size (1536×1024).
const AUTO_MEGAPIXELS: u64 = 2;
/// Upper bound of one input image's tokens (edits), and what each partial image adds.
const INPUT_IMAGE_TOKENS: u64 = 10_000;
const PARTIAL_IMAGE_TOKENS: u64 = 100;

/// Upper bound of a speech model's audio tokens per input character: about 21 audio tokens a
/// second of speech at roughly 15 characters a second, times four for `speed: 0.25`.
const AUDIO_TOKENS_PER_CHARACTER: u64 = 8;
/// The slowest audio an upload is bounded by: 1,000 bytes a second (8 kbit/s), so a 25 MB file
/// bounds at about seven hours.
const MIN_UPLOAD_BYTES_PER_SECOND: u64 = 1_000;
/// Upper bounds per second of audio: audio tokens in, transcript tokens out.
const AUDIO_TOKENS_PER_SECOND: u64 = 25;
const TRANSCRIPT_TOKENS_PER_SECOND: u64 = 10;

/// Estimates where an answer never reported: audio tokens a second (gpt-4o transcribe and
/// speech models, about $0.006 and $0.015 a minute at their audio rates), and the bytes a
/// second of compressed audio when the format does not say (128 kbit/s).
const ESTIMATED_AUDIO_TOKENS_PER_SECOND: u64 = 21;
const ESTIMATED_BYTES_PER_SECOND: u64 = 16_000;
/// PCM and WAV speech is 24 kHz 16-bit mono.
const PCM_BYTES_PER_SECOND: u64 = 48_000;

/// Usage and units measured for a settled call, and whether they are an estimate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bill {
    pub usage: Usage,
    pub units: Units,
    pub estimated: bool,
}

/// The most an image or audio call can bill, for its reservation. `input_bound` is the body's
/// length (a token is at least one byte of the body). `None` for other endpoints.
pub fn bound(
    endpoint: Endpoint,
    entry: Option<&PriceEntry>,
    media: &MediaAsk,
    n: Option<u64>,
    input_bound: u64,
) -> Option<(Usage, Units)> {
    let images = n.unwrap_or(1).max(1);
    let mut usage = Usage::default();
    let mut units = Units::default();
    match endpoint {
        Endpoint::ImagesGenerations | Endpoint::ImagesEdits | Endpoint::ImagesVariations => {
            if entry.is_some_and(PriceEntry::bills_per_image) {
                units.images = Some(image_count(media, images));
                return Some((usage, units));
            }
            // Text tokens are bounded by the body less its uploaded files; each file is an
            // input image of bounded tokens.
            let input_images = media.files.saturating_mul(INPUT_IMAGE_TOKENS);
            let text = input_bound.saturating_sub(media.file_bytes);
            let per_image = megapixels(media.size.as_deref()) * IMAGE_TOKENS_PER_MEGAPIXEL
                + media.partial_images.unwrap_or(0) * PARTIAL_IMAGE_TOKENS;
            units.input_image_tokens = input_images;
            units.output_image_tokens = per_image.saturating_mul(images);
            usage.input = text.saturating_add(input_images).max(1);
            usage.output = units.output_image_tokens;
        }
        Endpoint::AudioSpeech => {
            if entry.is_some_and(PriceEntry::bills_characters) {
                units.characters = media.characters;
                return Some((usage, units));
            }
            usage.input = input_bound.max(1);
            units.output_audio_tokens = media.characters.saturating_mul(AUDIO_TOKENS_PER_CHARACTER);
            usage.output = units.output_audio_tokens;
        }
        Endpoint::AudioTranscriptions | Endpoint::AudioTranslations => {
            let seconds = media.wav_ms.map_or_else(
                || media.file_bytes.div_ceil(MIN_UPLOAD_BYTES_PER_SECOND),
                |ms| ms.div_ceil(1000),
            );
            if entry.is_some_and(PriceEntry::bills_minutes) {
                units.audio_ms = seconds.saturating_mul(1000);
                return Some((usage, units));
            }
            units.input_audio_tokens = seconds.saturating_mul(AUDIO_TOKENS_PER_SECOND);
            let text = input_bound.saturating_sub(media.file_bytes);
            usage.input = text.saturating_add(units.input_audio_tokens).max(1);
            usage.output = seconds.saturating_mul(TRANSCRIPT_TOKENS_PER_SECOND);
        }
        _ => return None,
    }
    Some((usage, units))
}

/// What a settled image or audio call bills. `request_text_tokens` counts the request's text
/// for an estimate (it is only called when one is needed). `None` for other endpoints.
pub fn measure(
    endpoint: Endpoint,
    entry: Option<&PriceEntry>,
    media: &MediaAsk,
    n: Option<u64>,
    seen: &Observed,
    request_text_tokens: impl FnOnce() -> u64,
) -> Option<Bill> {
    let reported = |seen: &Observed| {
        seen.usage.map(|usage| Bill {
            usage,
            units: seen.units.clone(),
            estimated: false,
        })
    };
    let images = n.unwrap_or(1).max(1);
    let bill = match endpoint {
        Endpoint::ImagesGenerations | Endpoint::ImagesEdits | Endpoint::ImagesVariations => {
            if entry.is_some_and(PriceEntry::bills_per_image) {
                let units = Units {
                    images: Some(image_count(media, images)),
                    ..Units::default()
                };
                return Some(Bill {
                    units,
                    ..Bill::default()
                });
            }
            let reported = reported(seen).map(|bill| every_image(bill, images, seen.images_done));
            reported.unwrap_or_else(|| {
                // The images were generated and billed whole before the answer was sent: the
                // bound's output, the request's text.
                let (_, bounded) = bound(endpoint, entry, media, n, 0).unwrap_or_default();
                let usage = Usage {
                    input: request_text_tokens().max(1) + bounded.input_image_tokens,
                    output: bounded.output_image_tokens,
                    ..Usage::default()
                };
                Bill {
                    usage,
                    units: bounded,
                    estimated: true,
                }
            })
        }
        Endpoint::AudioSpeech => {
            if entry.is_some_and(PriceEntry::bills_characters) {
                let units = Units {
                    characters: media.characters,
                    ..Units::default()
                };
                return Some(Bill {
                    units,
                    ..Bill::default()
                });
            }
            reported(seen).unwrap_or_else(|| {
                let seconds = speech_seconds(media.response_format.as_deref(), seen.bytes);
                let audio = seconds
                    .saturating_mul(ESTIMATED_AUDIO_TOKENS_PER_SECOND)
                    .max(1);
                Bill {
                    usage: Usage {
                        input: request_text_tokens().max(1),
                        output: audio,
                        ..Usage::default()
                    },
                    units: Units {
                        output_audio_tokens: audio,
                        ..Units::default()
                    },
                    estimated: true,
                }
            })
        }
        Endpoint::AudioTranscriptions | Endpoint::AudioTranslations => {
            if entry.is_some_and(PriceEntry::bills_minutes) {
                // The duration the answer reports, else the WAV header's (exact), else the
                // subtitles' last cue or the upload's size (estimates).
                let (audio_ms, estimated) = match (seen.units.audio_ms, media.wav_ms) {
                    (ms, _) if ms > 0 => (ms, false),
                    (_, Some(ms)) => (ms, false),
                    _ => (upload_ms_estimate(media, seen), true),
                };
                let units = Units {
                    audio_ms,
                    ..Units::default()
                };
                return Some(Bill {
                    units,
                    estimated,
                    ..Bill::default()
                });
            }
            reported(seen).unwrap_or_else(|| {
                let ms = media
                    .wav_ms
                    .unwrap_or_else(|| upload_ms_estimate(media, seen));
                let audio = (ms * ESTIMATED_AUDIO_TOKENS_PER_SECOND)
                    .div_ceil(1000)
                    .max(1);
                let output = crate::estimate::count("", seen.text.as_bytes(), seen.text_overflow);
                Bill {
                    usage: Usage {
                        input: audio,
                        output,
                        ..Usage::default()
                    },
                    units: Units {
                        input_audio_tokens: audio,
                        ..Units::default()
                    },
                    estimated: true,
                }
            })
        }
        _ => return None,
    };
    Some(bill)
}

/// A stream reports each image's usage in its own completed event. When fewer came than were
/// asked for (the upstream cut, the client left), the rest were made and billed all the same:
/// they are charged at the reported images' output each, as an estimate. (The request's input
/// is read once, and reported with the first image.)
fn every_image(bill: Bill, asked: u64, done: u64) -> Bill {
    if done == 0 || done >= asked {
        return bill;
    }
    let all = |part: u64| part.saturating_mul(asked).div_ceil(done);
    let Bill { usage, units, .. } = bill;
    Bill {
        usage: Usage {
            output: all(usage.output),
            ..usage
        },
        units: Units {
            output_image_tokens: all(units.output_image_tokens),
            ..units
        },
        estimated: true,
    }
}

fn image_count(media: &MediaAsk, count: u64) -> ImageCount {
    let pick = |value: Option<&str>, default: &str| match value.map(str::trim) {
        None | Some("") | Some("auto") => default.to_string(),
        Some(value) => value.to_string(),
    };
    ImageCount {
        count,
        size: pick(media.size.as_deref(), DEFAULT_SIZE),
        quality: pick(media.quality.as_deref(), DEFAULT_QUALITY),
    }
}

/// Started megapixels of `WxH`; absent, `auto` or unreadable: the largest standard size.
fn megapixels(size: Option<&str>) -> u64 {
    size.and_then(|s| s.trim().split_once('x'))
        .and_then(|(w, h)| Some(w.parse::<u64>().ok()?.saturating_mul(h.parse().ok()?)))
        .map_or(AUTO_MEGAPIXELS, |pixels| {
            pixels.div_ceil(1024 * 1024).max(1)
        })
}

/// Seconds of speech in `bytes` of audio in `format` (mp3 when not said).
fn speech_seconds(format: Option<&str>, bytes: u64) -> u64 {
    let per_second = match format.map(str::trim) {
        Some("pcm" | "wav") => PCM_BYTES_PER_SECOND,
        _ => ESTIMATED_BYTES_PER_SECOND,
    };
    bytes.div_ceil(per_second).max(1)
}

/// The length of an upload whose answer did not say: the last cue of SRT/VTT subtitles if the
/// answer was subtitles, else the upload's size at 128 kbit/s.
fn upload_ms_estimate(media: &MediaAsk, seen: &Observed) -> u64 {
    last_cue_end_ms(&seen.text)
        .unwrap_or_else(|| (media.file_bytes * 1000).div_ceil(ESTIMATED_BYTES_PER_SECOND))
        .max(1)
}

/// The end time of the last `00:00:01,000 --> 00:00:04,250` cue line (SRT or VTT).
fn last_cue_end_ms(text: &str) -> Option<u64> {
    let line = text.lines().rev().find(|line| line.contains("-->"))?;
    let end = line.split("-->").nth(1)?.split_whitespace().next()?;
    let (clock, millis) = end.split_once([',', '.'])?;
    let mut ms: u64 = millis.parse().ok()?;
    let mut unit = 1000;
    for part in clock.rsplit(':') {
        ms += part.parse::<u64>().ok()? * unit;
        unit *= 60;
    }
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sizes_bound_by_started_megapixel() {
        assert_eq!(megapixels(Some("1024x1024")), 1);
        assert_eq!(megapixels(Some("1536x1024")), 2);
        assert_eq!(megapixels(Some("3840x2160")), 8);
        assert_eq!(megapixels(Some("auto")), AUTO_MEGAPIXELS);
        assert_eq!(megapixels(None), AUTO_MEGAPIXELS);
        assert_eq!(megapixels(Some("256x256")), 1);
    }

    #[test]
    fn subtitles_give_the_end_of_their_last_cue() {
        let srt =
            "1\n00:00:00,000 --> 00:00:02,500\nHello\n\n2\n00:01:02,500 --> 00:01:04,250\nthere\n";
        assert_eq!(last_cue_end_ms(srt), Some(64_250));
        let vtt = "WEBVTT\n\n00:00:00.000 --> 01:00:00.001\nHi\n";
        assert_eq!(last_cue_end_ms(vtt), Some(3_600_001));
        assert_eq!(last_cue_end_ms("just text"), None);
    }

    #[test]
    fn speech_length_follows_the_format() {
        assert_eq!(speech_seconds(Some("pcm"), 48_000 * 3), 3);
        assert_eq!(speech_seconds(None, 16_001), 2);
    }
}
