//! Readers for image and audio answers: the `usage` an image model, a speech stream or a
//! transcription reports — with its image and audio token counts — and a whisper transcription's
//! seconds of audio. The images' and audio's own bytes are skipped, never kept.

use std::borrow::Cow;

use serde::Deserialize;

use tollgate_core::Usage;

use super::observe::Observed;

/// The usage object of image, speech and transcription answers. Transcriptions by whisper
/// report `{"type": "duration", "seconds": …}` instead of tokens.
#[derive(Deserialize)]
struct MediaUsage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    /// Images and speech say `input_tokens_details`, transcriptions `input_token_details`.
    #[serde(alias = "input_token_details")]
    input_tokens_details: Option<InputDetails>,
    output_tokens_details: Option<OutputDetails>,
    seconds: Option<serde_json::Number>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    image_tokens: u64,
    #[serde(default)]
    audio_tokens: u64,
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct OutputDetails {
    image_tokens: Option<u64>,
    #[serde(default)]
    text_tokens: u64,
}

/// Which answer the usage belongs to: it decides what output tokens are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// Output tokens are image tokens unless the details say otherwise.
    Image,
    /// Output tokens are audio tokens.
    Speech,
    /// Output tokens are transcript text; input has audio tokens.
    Transcript,
}

impl MediaUsage<'_> {
    /// Adds this usage to `seen` (several `*.completed` image events add up).
    fn add_to(self, media: Media, seen: &mut Observed) {
        if self.kind.as_deref() == Some("duration") {
            if let Some(ms) = self.seconds.as_ref().and_then(seconds_to_ms) {
                seen.units.audio_ms += ms;
            }
            return;
        }
        let details = self.input_tokens_details;
        let cached = details.as_ref().map_or(0, |d| d.cached_tokens);
        let usage = seen.usage.get_or_insert_with(Usage::default);
        usage.input += self.input_tokens;
        usage.cached_input += cached.min(self.input_tokens);
        usage.output += self.output_tokens;
        let units = &mut seen.units;
        if let Some(d) = &details {
            units.input_image_tokens += d.image_tokens.min(self.input_tokens);
            units.input_audio_tokens += d.audio_tokens.min(self.input_tokens);
        }
        match media {
            Media::Image => {
                let out = self.output_tokens_details.as_ref();
                let images = out.and_then(|d| d.image_tokens).unwrap_or_else(|| {
                    self.output_tokens
                        .saturating_sub(out.map_or(0, |d| d.text_tokens))
                });
                units.output_image_tokens += images.min(self.output_tokens);
            }
            Media::Speech => units.output_audio_tokens += self.output_tokens,
            Media::Transcript => {}
        }
    }
}

/// Seconds as JSON wrote them (`3`, `12.25`) in whole milliseconds, rounded up, without a float:
/// the number's own decimal text is read.
fn seconds_to_ms(seconds: &serde_json::Number) -> Option<u64> {
    let text = seconds.to_string();
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let whole: u64 = whole.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: u64 = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
    let rest_nonzero = frac.len() > 3 && frac[3..].bytes().any(|b| b != b'0');
    Some(whole.checked_mul(1000)? + millis + u64::from(rest_nonzero))
}

/// A whole image, speech or transcription JSON answer.
#[derive(Deserialize)]
struct MediaBody<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    usage: Option<MediaUsage<'a>>,
    /// Transcriptions: the text (kept for an estimate when no usage came).
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    /// `verbose_json` transcriptions: the audio's length in seconds.
    duration: Option<serde_json::Number>,
}

/// Reads a whole JSON answer of an image or audio endpoint. False when it is not JSON.
pub fn media_json(media: Media, body: &[u8], seen: &mut Observed) -> bool {
    let Ok(body) = serde_json::from_slice::<MediaBody<'_>>(body) else {
        return false;
    };
    seen.set_meta(body.model, None);
    if let Some(usage) = body.usage {
        usage.add_to(media, seen);
    }
    if seen.units.audio_ms == 0
        && let Some(ms) = body.duration.as_ref().and_then(seconds_to_ms)
    {
        seen.units.audio_ms = ms;
    }
    if seen.usage.is_none()
        && let Some(text) = &body.text
    {
        seen.push_text(text);
    }
    true
}

/// Reads the usage object at the start of `value` (the tail of an answer too large to parse
/// whole). False when it is not one.
pub fn usage_at(media: Media, value: &[u8], seen: &mut Observed) -> bool {
    let mut de = serde_json::Deserializer::from_slice(value);
    match MediaUsage::deserialize(&mut de) {
        Ok(usage) if usage.kind.is_some() || usage.input_tokens + usage.output_tokens > 0 => {
            usage.add_to(media, seen);
            true
        }
        _ => false,
    }
}

/// An event of an image, speech or transcription stream.
#[derive(Deserialize)]
struct MediaEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    usage: Option<MediaUsage<'a>>,
    #[serde(borrow)]
    delta: Option<Cow<'a, str>>,
}

/// Reads one line of an image (`image_generation.completed`), speech (`speech.audio.done`) or
/// transcription (`transcript.text.done`) event stream. Partial images and audio deltas are
/// long lines the splitter already shortened; they carry no usage and are skipped.
pub fn media_line(media: Media, line: &[u8], seen: &mut Observed) {
    let Some(data) = line.strip_prefix(b"data:") else {
        return;
    };
    let data = data.strip_prefix(b" ").unwrap_or(data);
    let Ok(event) = serde_json::from_slice::<MediaEvent<'_>>(data) else {
        return;
    };
    let kind = event.kind.as_deref().unwrap_or_default();
    if kind == "transcript.text.delta"
        && let Some(delta) = &event.delta
    {
        seen.push_text(delta);
    }
    if (kind.ends_with(".completed") || kind.ends_with(".done"))
        && let Some(usage) = event.usage
    {
        usage.add_to(media, seen);
        if media == Media::Image {
            seen.images_done += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_usage_splits_text_and_image_tokens() {
        let mut seen = Observed::default();
        let body = br#"{"created":1,"data":[{"b64_json":"AAAA"}],"usage":{"input_tokens":50,"input_tokens_details":{"text_tokens":10,"image_tokens":40},"output_tokens":4160,"total_tokens":4210}}"#;
        assert!(media_json(Media::Image, body, &mut seen));
        let usage = seen.usage.unwrap();
        assert_eq!((usage.input, usage.output), (50, 4160));
        assert_eq!(seen.units.input_image_tokens, 40);
        assert_eq!(seen.units.output_image_tokens, 4160);
    }

    #[test]
    fn transcriptions_report_seconds_or_tokens() {
        let mut seen = Observed::default();
        let body = br#"{"text":"hi","usage":{"type":"duration","seconds":12.25}}"#;
        assert!(media_json(Media::Transcript, body, &mut seen));
        assert_eq!(seen.units.audio_ms, 12_250);
        assert!(seen.usage.is_none());

        let mut seen = Observed::default();
        let body = br#"{"text":"hi","usage":{"type":"tokens","input_tokens":30,"input_token_details":{"text_tokens":5,"audio_tokens":25},"output_tokens":7,"total_tokens":37}}"#;
        assert!(media_json(Media::Transcript, body, &mut seen));
        assert_eq!(seen.usage.map(|u| (u.input, u.output)), Some((30, 7)));
        assert_eq!(seen.units.input_audio_tokens, 25);

        let mut seen = Observed::default();
        let body = br#"{"task":"transcribe","duration":3,"text":"hi"}"#;
        assert!(media_json(Media::Transcript, body, &mut seen));
        assert_eq!(seen.units.audio_ms, 3000);
    }

    #[test]
    fn seconds_are_read_from_their_decimal_text() {
        let ms = |text: &str| seconds_to_ms(&serde_json::from_str(text).unwrap());
        assert_eq!(ms("3"), Some(3000));
        assert_eq!(ms("0.001"), Some(1));
        assert_eq!(ms("1.0001"), Some(1001));
        assert_eq!(ms("59.9"), Some(59_900));
        assert_eq!(ms("-1"), None);
    }

    #[test]
    fn streams_yield_their_final_usage() {
        let mut seen = Observed::default();
        media_line(
            Media::Speech,
            br#"data: {"type":"speech.audio.delta","audio":"AAAA"}"#,
            &mut seen,
        );
        media_line(
            Media::Speech,
            br#"data: {"type":"speech.audio.done","usage":{"input_tokens":14,"output_tokens":101,"total_tokens":115}}"#,
            &mut seen,
        );
        assert_eq!(seen.units.output_audio_tokens, 101);
        assert_eq!(seen.usage.map(|u| u.input), Some(14));

        let mut seen = Observed::default();
        for line in [
            &br#"data: {"type":"transcript.text.delta","delta":"Hel"}"#[..],
            br#"data: {"type":"transcript.text.done","text":"Hello","usage":{"type":"tokens","input_tokens":20,"input_token_details":{"audio_tokens":18},"output_tokens":2,"total_tokens":22}}"#,
        ] {
            media_line(Media::Transcript, line, &mut seen);
        }
        assert_eq!(seen.text, "Hel");
        assert_eq!(seen.units.input_audio_tokens, 18);
    }
}
