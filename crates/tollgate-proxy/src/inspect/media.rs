//! What an image or audio request says about what it will bill: how many images at which size
//! and quality, how many characters to speak, how much audio was uploaded. Image edits,
//! variations and audio uploads are multipart forms: their text fields are read and their files
//! only counted (a WAV file's header also gives its exact length), from the body already read
//! under the body limit.

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;

use tollgate_core::ApiError;

use crate::inspect::Peek;

/// The billable facts of a media request. Empty for every other endpoint.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MediaAsk {
    /// Images: `size` and `quality` as sent (`None`: the model's default).
    pub size: Option<String>,
    pub quality: Option<String>,
    /// gpt-image streams: partial images, each billed as extra output image tokens.
    pub partial_images: Option<u64>,
    /// Speech: the characters of `input` (what per-character models bill).
    pub characters: u64,
    /// Speech: `sse` when the audio comes as events that end with the usage.
    pub stream_format: Option<String>,
    /// Audio and image answers: `json`, `text`, `srt`, `verbose_json`, `vtt`, `mp3`, `url`, …
    pub response_format: Option<String>,
    /// Uploaded files (images to edit, audio to transcribe) and their bytes.
    pub files: u64,
    pub file_bytes: u64,
    /// The uploaded audio's length, when it is a WAV file whose header says so exactly.
    pub wav_ms: Option<u64>,
    /// Images: a parameter only GPT image models take, if the request sets one.
    pub gpt_image_field: Option<&'static str>,
}

/// Image parameters only GPT image models take. OpenAI: the model "defaults to dall-e-2 unless a
/// parameter specific to gpt-image-1 is used".
/// (`images`, by file id or URL, is how a JSON edit names its inputs; only GPT image models
/// take it.)
const GPT_IMAGE_FIELDS: [&str; 7] = [
    "images",
    "background",
    "moderation",
    "output_compression",
    "output_format",
    "input_fidelity",
    "partial_images",
];

impl MediaAsk {
    /// Why an image request that names no model may not be dall-e-2, the default tollgate
    /// would bill: it sets a parameter (or streams, which dall-e cannot) that makes the upstream
    /// pick a GPT image model instead, billed in tokens at up to ten times the price.
    pub fn not_dall_e(&self, stream: bool) -> Option<&'static str> {
        self.gpt_image_field.or(stream.then_some("stream"))
    }
}

/// The JSON fields of an image generation or speech request beyond [`Peek`]'s.
#[derive(Debug, Default, Deserialize)]
struct JsonMedia {
    size: Option<String>,
    quality: Option<String>,
    partial_images: Option<u64>,
    input: Option<String>,
    response_format: Option<String>,
    stream_format: Option<String>,
    /// JSON image edits: the images to edit (by file id or URL).
    images: Option<Vec<IgnoredAny>>,
    background: Option<IgnoredAny>,
    moderation: Option<IgnoredAny>,
    output_compression: Option<IgnoredAny>,
    output_format: Option<IgnoredAny>,
    input_fidelity: Option<IgnoredAny>,
}

/// Reads the media fields of a JSON request (`/v1/images/generations`, `/v1/audio/speech`, and
/// image edits sent as JSON with `images` by file id or URL).
pub fn from_json(body: &[u8]) -> Result<MediaAsk, ApiError> {
    let media: JsonMedia = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    let set = [
        media.images.is_some(),
        media.background.is_some(),
        media.moderation.is_some(),
        media.output_compression.is_some(),
        media.output_format.is_some(),
        media.input_fidelity.is_some(),
        media.partial_images.is_some(),
    ];
    let gpt_image_field = GPT_IMAGE_FIELDS
        .into_iter()
        .zip(set)
        .find_map(|(field, set)| set.then_some(field));
    Ok(MediaAsk {
        gpt_image_field,
        size: media.size,
        quality: media.quality,
        partial_images: media.partial_images,
        characters: media.input.map_or(0, |i| i.chars().count() as u64),
        stream_format: media.stream_format,
        response_format: media.response_format,
        files: media.images.map_or(0, |images| images.len() as u64),
        ..MediaAsk::default()
    })
}

/// A text field longer than this is not one tollgate reads (a prompt): skipped, not kept.
const MAX_FIELD: usize = 256;
/// Enough of an upload's start to find a WAV file's `fmt ` and `data` chunks.
const WAV_HEAD: usize = 64 * 1024;

/// Whether a request's `Content-Type` is a multipart form.
pub fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.trim_start()
            .get(..19)
            .is_some_and(|m| m.eq_ignore_ascii_case("multipart/form-data"))
    })
}

/// Reads a multipart form: the fields tollgate acts on into `peek` (model, stream, n) and the
/// returned [`MediaAsk`]. A body that is not a well-formed form is refused as the upstream
/// would refuse it.
pub async fn from_multipart(
    body: Bytes,
    content_type: Option<&str>,
    peek: &mut Peek,
) -> Result<MediaAsk, ApiError> {
    let boundary = content_type
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| {
            bad_form("the Content-Type must be multipart/form-data with a boundary".into())
        })?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut media = MediaAsk::default();
    let mut read: Vec<String> = Vec::new();
    while let Some(mut field) = form.next_field().await.map_err(form_error)? {
        let (name, named_file) = disposition(field.headers())?;
        // A part is what its name says, as the upstream reads it: an upload sent without a
        // file name is still the audio it bills, and a model sent as a file is still the model.
        if named_file && READ_FIELDS.contains(&name.as_str()) {
            return Err(bad_form(format!(
                "the field '{name}' is sent as a file; send it as a text field"
            )));
        }
        if named_file || FILE_FIELDS.contains(&name.as_str()) {
            // The audio is billed by its length: like a field tollgate reads, it may come once
            // (servers built on Starlette take the last of two, this reader the first).
            if name == "file" {
                if read.contains(&name) {
                    return Err(bad_form("the file is sent twice; send one file".into()));
                }
                read.push(name.clone());
            }
            media.files += 1;
            let mut head = Vec::new();
            let mut length = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(form_error)? {
                length += chunk.len() as u64;
                if head.len() < WAV_HEAD {
                    let room = WAV_HEAD - head.len();
                    head.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
            }
            media.file_bytes += length;
            if name == "file" && media.wav_ms.is_none() {
                media.wav_ms = wav_duration_ms(&head, length);
            }
            continue;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(form_error)? {
            if value.len() <= MAX_FIELD {
                value.extend_from_slice(&chunk);
            }
        }
        let read_field = READ_FIELDS.contains(&name.as_str());
        if value.len() > MAX_FIELD {
            // A long field tollgate bills by is not skipped: padded with zeros or spaces (`n`
            // as "000…03") the upstream still reads its number.
            if read_field {
                return Err(bad_form(format!(
                    "the field '{name}' is longer than {MAX_FIELD} bytes"
                )));
            }
            continue;
        }
        if read_field {
            // Which of two values the upstream would use is its business; tollgate must bill
            // the one it uses, so it accepts only one.
            if read.contains(&name) {
                return Err(bad_form(format!(
                    "the field '{name}' is sent twice; send it once"
                )));
            }
            read.push(name.clone());
        }
        if media.gpt_image_field.is_none() {
            media.gpt_image_field = GPT_IMAGE_FIELDS.into_iter().find(|f| *f == name);
        }
        let text = String::from_utf8_lossy(&value).trim().to_string();
        let number = || {
            text.parse::<u64>()
                .map_err(|_| bad_form(format!("'{name}' must be a whole number, not '{text}'")))
        };
        match name.as_str() {
            "model" => peek.model = Some(text),
            "stream" => peek.stream = text.eq_ignore_ascii_case("true"),
            "n" => peek.n = Some(number()?),
            "partial_images" => media.partial_images = Some(number()?),
            "size" => media.size = Some(text),
            "quality" => media.quality = Some(text),
            "response_format" => media.response_format = Some(text),
            _ => {}
        }
    }
    Ok(media)
}

/// The text fields tollgate reads from a form.
const READ_FIELDS: [&str; 7] = [
    "model",
    "stream",
    "n",
    "partial_images",
    "size",
    "quality",
    "response_format",
];

/// The fields whose parts are uploads, with or without a file name.
const FILE_FIELDS: [&str; 4] = ["file", "image", "image[]", "mask"];

/// A part's name and whether it names a file, read from its `Content-Disposition` the way
/// servers read it: parameter names in any case (multer matches only `name` in lower case, so
/// `NAME="model"` would pass unseen while the upstream bills by it), `filename*` (RFC 5987) as a
/// file name. A part without a name, or naming itself twice, is refused: tollgate could not
/// tell which name the upstream goes by.
fn disposition(headers: &http::HeaderMap) -> Result<(String, bool), ApiError> {
    let value = headers
        .get(http::header::CONTENT_DISPOSITION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mut name = None;
    let mut file = false;
    for param in split_params(&value).into_iter().skip(1) {
        let Some((key, raw)) = param.split_once('=') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "name" if name.is_none() => name = Some(unquote(raw)),
            "name" | "name*" => {
                return Err(bad_form(format!(
                    "a part's name must be given once, as name=\"…\" ({value})"
                )));
            }
            "filename" | "filename*" => file = true,
            _ => {}
        }
    }
    let name = name.ok_or_else(|| bad_form(format!("a part has no name ({value})")))?;
    Ok((name, file))
}

/// `form-data; name="a;b"; filename=x` split at the semicolons outside quotes.
fn split_params(value: &str) -> Vec<&str> {
    let (mut params, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (at, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                params.push(&value[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    params.push(&value[start..]);
    params
}

/// A parameter's value without its quotes and escapes.
fn unquote(raw: &str) -> String {
    let raw = raw.trim();
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\""),
        None => raw.to_string(),
    }
}

fn form_error(error: multer::Error) -> ApiError {
    bad_form(format!("the multipart form could not be read: {error}"))
}

fn bad_form(message: String) -> ApiError {
    ApiError::new(400, "invalid_request_error", "invalid_multipart", message)
}

/// The length of a RIFF/WAVE file of `file_len` bytes whose start is `head`: every byte from
/// the `data` chunk on, at the rate its `fmt ` chunk gives (to the millisecond, rounded up).
/// `None` for anything else.
///
/// Decoders play what is there, not what the header claims: ffmpeg reads on past a `data`
/// chunk's declared size into the next `data` chunk, and plays PCM by its sample rate and
/// sample size whatever the `byte_rate` field says. So neither a short `data` size nor an
/// inflated rate field may shorten what tollgate bills (the upstream bills what it heard); for
/// an honest file every reading agrees.
pub fn wav_duration_ms(head: &[u8], file_len: u64) -> Option<u64> {
    if head.get(0..4)? != b"RIFF" || head.get(8..12)? != b"WAVE" {
        return None;
    }
    let le = |at: usize, width: usize| -> Option<u64> {
        let b = head.get(at..at + width)?;
        Some(b.iter().rev().fold(0, |n, &byte| n << 8 | u64::from(byte)))
    };
    let mut at = 12;
    let mut byte_rate = None;
    while at + 8 <= head.len() {
        let id = head.get(at..at + 4)?;
        let size = le(at + 4, 4)?;
        match id {
            b"fmt " => {
                // The header states its rate three ways; the slowest is the longest audio.
                let (channels, sample_rate) = (le(at + 10, 2)?, le(at + 12, 4)?);
                let (block_align, bits) = (le(at + 20, 2)?, le(at + 22, 2)?);
                let sample_bytes = channels * bits.div_ceil(8);
                byte_rate = [
                    le(at + 16, 4)?,
                    sample_rate * block_align,
                    sample_rate * sample_bytes,
                ]
                .into_iter()
                .filter(|&rate| rate > 0)
                .min();
            }
            b"data" => {
                let rate = byte_rate?;
                let samples = file_len.saturating_sub(at as u64 + 8);
                return Some((samples * 1000).div_ceil(rate));
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = at
            .checked_add(8)?
            .checked_add(usize::try_from(size + size % 2).ok()?)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCM WAV header: `rate` samples per second, 16-bit mono, `data_len` bytes of samples.
    fn wav(rate: u32, data_len: u32) -> Vec<u8> {
        let mut w = Vec::new();
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(36 + data_len).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes());
        w.extend_from_slice(&rate.to_le_bytes());
        w.extend_from_slice(&(rate * 2).to_le_bytes());
        w.extend_from_slice(&2u16.to_le_bytes());
        w.extend_from_slice(&16u16.to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&data_len.to_le_bytes());
        w.resize(w.len() + data_len as usize, 0);
        w
    }

    #[test]
    fn a_wav_header_gives_the_exact_length() {
        // 24 kHz, 16-bit mono: 48,000 bytes a second.
        let ms = |file: &[u8]| wav_duration_ms(file, file.len() as u64);
        assert_eq!(ms(&wav(24_000, 48_000 * 3)), Some(3000));
        assert_eq!(ms(&wav(24_000, 48_001)), Some(1001));
        assert_eq!(ms(b"ID3\x04 not a wav"), None);
        assert_eq!(ms(&wav(24_000, 10)[..20]), None);
    }

    #[test]
    fn a_wav_header_cannot_shorten_the_audio_it_bills() {
        // One second declared, 60 seconds of samples after it (in a second `data` chunk).
        let mut file = wav(16_000, 32_000);
        file.extend_from_slice(b"data");
        file.extend_from_slice(&(32_000u32 * 59).to_le_bytes());
        file.resize(file.len() + 32_000 * 59, 0);
        assert_eq!(wav_duration_ms(&file, file.len() as u64), Some(60_001));
        // A byte rate 1,000 times the samples': the samples' rate wins.
        let mut file = wav(16_000, 32_000 * 2);
        file[28..32].copy_from_slice(&32_000_000u32.to_le_bytes());
        assert_eq!(wav_duration_ms(&file, file.len() as u64), Some(2000));
        // Only the head is read: the length is the whole file's.
        assert_eq!(wav_duration_ms(&file[..100], file.len() as u64), Some(2000));
    }

    /// A form of raw parts: each its header lines and its value.
    fn raw_form(parts: &[(&str, &[u8])]) -> Bytes {
        let mut body = Vec::new();
        for (head, value) in parts {
            body.extend_from_slice(b"--XyZ\r\n");
            body.extend_from_slice(head.as_bytes());
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        Bytes::from(body)
    }

    async fn read_form(parts: &[(&str, &[u8])]) -> Result<(Peek, MediaAsk), ApiError> {
        let mut peek = Peek::default();
        let ct = Some("multipart/form-data; boundary=XyZ");
        let media = from_multipart(raw_form(parts), ct, &mut peek).await?;
        Ok((peek, media))
    }

    #[tokio::test]
    async fn a_part_is_what_its_name_says_in_any_spelling() {
        let audio = wav(16_000, 32_000);
        // Uploads without a file name, or named the RFC 5987 way, are still the upload.
        for head in [
            "Content-Disposition: form-data; name=\"file\"",
            "Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''r%C3%A9.wav",
            "content-disposition: FORM-DATA; NAME=\"file\"; FILENAME=\"a.wav\"",
        ] {
            let (_, media) = read_form(&[(head, &audio)]).await.unwrap();
            assert_eq!((media.files, media.wav_ms), (1, Some(1000)), "{head}");
        }
        let (peek, _) = read_form(&[(
            "Content-Disposition: form-data; Name=\"model\"",
            b"gpt-image-1",
        )])
        .await
        .unwrap();
        assert_eq!(peek.model.as_deref(), Some("gpt-image-1"));
        let (peek, _) = read_form(&[(
            "Content-Disposition: form-data; name=\"a;name=n\"; x=\"\\\";\"",
            b"4",
        )])
        .await
        .unwrap();
        assert_eq!(peek.n, None);
        // A field tollgate bills by, sent as a file, or a part it cannot name, is refused.
        for head in [
            "Content-Disposition: form-data; name=\"model\"; filename=\"m.txt\"",
            "Content-Disposition: form-data; NAME=\"model\"; name=\"prompt\"",
            "Content-Disposition: form-data; name*=UTF-8''model",
            "Content-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.wav\"",
            "Content-Disposition: form-data",
            "Content-Type: text/plain",
        ] {
            let err = read_form(&[(head, b"gpt-image-1")]).await.unwrap_err();
            assert_eq!((err.status, err.code), (400, "invalid_multipart"), "{head}");
        }
    }

    #[tokio::test]
    async fn a_form_yields_its_fields_and_counts_its_files() {
        let audio = wav(16_000, 32_000 * 2);
        let mut body = Vec::new();
        let part = |body: &mut Vec<u8>, head: &str, value: &[u8]| {
            body.extend_from_slice(b"--XyZ\r\n");
            body.extend_from_slice(head.as_bytes());
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        };
        part(
            &mut body,
            "Content-Disposition: form-data; name=\"model\"",
            b"whisper-1",
        );
        part(
            &mut body,
            "Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav",
            &audio,
        );
        part(
            &mut body,
            "Content-Disposition: form-data; name=\"n\"",
            b"3",
        );
        part(
            &mut body,
            "Content-Disposition: form-data; name=\"response_format\"",
            b"verbose_json",
        );
        body.extend_from_slice(b"--XyZ--\r\n");
        let mut peek = Peek::default();
        let media = from_multipart(
            Bytes::from(body),
            Some("multipart/form-data; boundary=XyZ"),
            &mut peek,
        )
        .await
        .unwrap();
        assert_eq!(peek.model.as_deref(), Some("whisper-1"));
        assert_eq!(peek.n, Some(3));
        assert_eq!(media.files, 1);
        assert_eq!(media.file_bytes, audio.len() as u64);
        assert_eq!(media.wav_ms, Some(2000));
        assert_eq!(media.response_format.as_deref(), Some("verbose_json"));

        let mut peek = Peek::default();
        let err = from_multipart(
            Bytes::from_static(b"{}"),
            Some("application/json"),
            &mut peek,
        )
        .await
        .unwrap_err();
        assert_eq!((err.status, err.code), (400, "invalid_multipart"));
    }
}
