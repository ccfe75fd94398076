//! Which OpenAI endpoint a request is for, decided on the path exactly as the upstream will
//! route it. A path that could be read two ways (`/v1/./responses`, `/v1/x/../responses`,
//! `/v1/%72esponses`, `//`) is refused rather than classified: otherwise a spelling the
//! classifier did not recognise would pass as an unpriced endpoint while the upstream, after
//! normalising it, served (and billed) a priced one.

use http::{Method, Request};

use tollgate_core::ApiError;

use crate::headers::wants_websocket;

/// The endpoint a request is for, or why tollgate does not forward it at all. A WebSocket
/// upgrade is taken on `GET /v1/responses` only (the Responses WebSocket transport Codex uses);
/// anywhere else it gets 426, so a client that can fall back to HTTP does.
pub fn route<B>(request: &Request<B>) -> Result<Endpoint, ApiError> {
    let path = request.uri().path();
    let endpoint = Endpoint::classify(request.method(), path)?;
    if wants_websocket(request.headers()) {
        if request.method() == Method::GET && path == "/v1/responses" {
            return Ok(Endpoint::ResponsesSocket);
        }
        return Err(ApiError::websocket_unsupported());
    }
    Ok(endpoint)
}

/// The endpoints tollgate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Responses,
    /// `POST /v1/responses/compact`: Codex compacts long threads with it; billed in tokens.
    ResponsesCompact,
    /// One `response.create` on the Responses WebSocket transport (`GET /v1/responses` with
    /// `Upgrade: websocket`): billed as a Responses call, recorded as `responses.ws`.
    ResponsesSocket,
    /// A `response.create` with `generate: false` on the WebSocket: a prewarm, which bills its
    /// input and makes no output.
    ResponsesPrewarm,
    ChatCompletions,
    Completions,
    Embeddings,
    /// Listing and reading models: free.
    Models,
    /// `POST /v1/moderations`: free, metered at cost 0 by its price entry.
    Moderations,
    /// `POST /v1/images/generations`: per image (dall-e) or in text and image tokens (gpt-image).
    ImagesGenerations,
    /// `POST /v1/images/edits` (multipart): like generations, plus the input images' tokens.
    ImagesEdits,
    /// `POST /v1/images/variations` (multipart, dall-e-2): per image.
    ImagesVariations,
    /// `POST /v1/audio/speech`: per character (tts-1) or in text and audio tokens.
    AudioSpeech,
    /// `POST /v1/audio/transcriptions` (multipart): per minute of audio (whisper-1) or in tokens.
    AudioTranscriptions,
    /// `POST /v1/audio/translations` (multipart, whisper-1): per minute of audio.
    AudioTranslations,
    /// Reading, cancelling or deleting a stored response or chat completion, and counting a
    /// request's input tokens: free.
    Stored,
    /// `POST /v1/batches`: a Batch API job. Its own call is free; its request lines are
    /// reserved here, at creation, and billed when the batch ends, one ledger row each.
    Batches,
    /// `/v1/files`: uploading, listing, reading and deleting files. Free (OpenAI does not bill
    /// plain file storage), so forwarded and recorded at cost 0, not flagged.
    Files,
    /// Anything else under `/v1`: tollgate cannot price it, so it is forwarded only where the
    /// operator allows it (`proxy.unmetered`) and refused otherwise.
    Other,
}

impl Endpoint {
    /// Classifies a request path (`/v1` or below it, percent-encoded as sent). A non-canonical
    /// spelling is a 400.
    pub fn classify(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
        check_canonical(path).map_err(|why| {
            ApiError::new(
                400,
                "invalid_request_error",
                "invalid_path",
                format!(
                    "The request path '{path}' is not canonical ({why}). Send the endpoint's path as OpenAI documents it, e.g. /v1/responses."
                ),
            )
        })?;
        let rest = path.strip_prefix("/v1").unwrap_or(path);
        // No known endpoint has more than four segments: keep them on the stack (this runs
        // on every call), and let a longer path match nothing, which makes it `Other`.
        let mut parts = [""; 4];
        let mut count = 0;
        for segment in rest.split('/').skip(1) {
            if count == parts.len() {
                count = 0;
                break;
            }
            parts[count] = segment;
            count += 1;
        }
        let endpoint = match (method, &parts[..count]) {
            (&Method::POST, ["responses"]) => Endpoint::Responses,
            (&Method::POST, ["responses", "compact"]) => Endpoint::ResponsesCompact,
            (&Method::POST, ["responses", "input_tokens"]) => Endpoint::Stored,
            (&Method::GET | &Method::DELETE, ["responses", _]) => Endpoint::Stored,
            (&Method::GET, ["responses", _, "input_items"]) => Endpoint::Stored,
            (&Method::POST, ["responses", _, "cancel"]) => Endpoint::Stored,
            (&Method::POST, ["chat", "completions"]) => Endpoint::ChatCompletions,
            (&Method::GET, ["chat", "completions"]) => Endpoint::Stored,
            (&Method::GET | &Method::POST | &Method::DELETE, ["chat", "completions", _]) => {
                Endpoint::Stored
            }
            (&Method::GET, ["chat", "completions", _, "messages"]) => Endpoint::Stored,
            (&Method::POST, ["completions"]) => Endpoint::Completions,
            (&Method::POST, ["embeddings"]) => Endpoint::Embeddings,
            (&Method::POST, ["moderations"]) => Endpoint::Moderations,
            (&Method::POST, ["images", "generations"]) => Endpoint::ImagesGenerations,
            (&Method::POST, ["images", "edits"]) => Endpoint::ImagesEdits,
            (&Method::POST, ["images", "variations"]) => Endpoint::ImagesVariations,
            (&Method::POST, ["audio", "speech"]) => Endpoint::AudioSpeech,
            (&Method::POST, ["audio", "transcriptions"]) => Endpoint::AudioTranscriptions,
            (&Method::POST, ["audio", "translations"]) => Endpoint::AudioTranslations,
            (&Method::GET, ["models"] | ["models", _]) => Endpoint::Models,
            (&Method::POST, ["batches"]) => Endpoint::Batches,
            (&Method::GET, ["batches"] | ["batches", _]) => Endpoint::Stored,
            (&Method::POST, ["batches", _, "cancel"]) => Endpoint::Stored,
            (&Method::GET | &Method::POST, ["files"]) => Endpoint::Files,
            (&Method::GET | &Method::DELETE, ["files", _]) => Endpoint::Files,
            (&Method::GET, ["files", _, "content"]) => Endpoint::Files,
            _ => Endpoint::Other,
        };
        Ok(endpoint)
    }

    /// Endpoints whose JSON body tollgate reads (model, stream flag, limits; a batch's input
    /// file) before forwarding.
    pub fn reads_body(self) -> bool {
        self.is_priced() || self == Endpoint::Batches
    }

    /// Endpoints whose calls are priced from the price table (and so reserved against
    /// budgets). Moderations are priced too, at their entry's zero rates, so their rows name
    /// the model and the price version like any other call.
    pub fn is_priced(self) -> bool {
        matches!(
            self,
            Endpoint::Responses
                | Endpoint::ResponsesCompact
                | Endpoint::ResponsesSocket
                | Endpoint::ResponsesPrewarm
                | Endpoint::ChatCompletions
                | Endpoint::Completions
                | Endpoint::Embeddings
                | Endpoint::Moderations
                | Endpoint::ImagesGenerations
                | Endpoint::ImagesEdits
                | Endpoint::ImagesVariations
                | Endpoint::AudioSpeech
                | Endpoint::AudioTranscriptions
                | Endpoint::AudioTranslations
        )
    }

    /// Calls answered with a Responses object or its stream events, whatever the transport.
    pub fn is_responses(self) -> bool {
        matches!(
            self,
            Endpoint::Responses
                | Endpoint::ResponsesCompact
                | Endpoint::ResponsesSocket
                | Endpoint::ResponsesPrewarm
        )
    }

    /// Image and audio endpoints: billed in units besides tokens ([`crate::bill`]).
    pub fn is_media(self) -> bool {
        matches!(
            self,
            Endpoint::ImagesGenerations
                | Endpoint::ImagesEdits
                | Endpoint::ImagesVariations
                | Endpoint::AudioSpeech
                | Endpoint::AudioTranscriptions
                | Endpoint::AudioTranslations
        )
    }

    /// Endpoints whose request is a multipart form (an upload), not a JSON object.
    pub fn is_multipart(self) -> bool {
        matches!(
            self,
            Endpoint::ImagesEdits
                | Endpoint::ImagesVariations
                | Endpoint::AudioTranscriptions
                | Endpoint::AudioTranslations
        )
    }

    /// The model OpenAI uses when the request names none.
    pub fn default_model(self) -> Option<&'static str> {
        match self {
            Endpoint::Moderations => Some("omni-moderation-latest"),
            Endpoint::ImagesGenerations | Endpoint::ImagesEdits | Endpoint::ImagesVariations => {
                Some("dall-e-2")
            }
            _ => None,
        }
    }

    /// A stable, bounded label for the ledger, logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Responses => "responses",
            Endpoint::ResponsesCompact => "responses.compact",
            Endpoint::ResponsesSocket => "responses.ws",
            Endpoint::ResponsesPrewarm => "responses.ws.prewarm",
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Models => "models",
            Endpoint::Moderations => "moderations",
            Endpoint::ImagesGenerations => "images.generations",
            Endpoint::ImagesEdits => "images.edits",
            Endpoint::ImagesVariations => "images.variations",
            Endpoint::AudioSpeech => "audio.speech",
            Endpoint::AudioTranscriptions => "audio.transcriptions",
            Endpoint::AudioTranslations => "audio.translations",
            Endpoint::Stored => "stored",
            Endpoint::Batches => "batches",
            Endpoint::Files => "files",
            Endpoint::Other => "other",
        }
    }
}

/// The refusal for an endpoint tollgate does not price and the operator did not allow.
pub fn not_allowed(method: &Method, path: &str) -> ApiError {
    let prefix: String = path.split('/').take(3).collect::<Vec<_>>().join("/");
    ApiError::new(
        403,
        "invalid_request_error",
        "endpoint_not_allowed",
        format!(
            "tollgate does not meter {method} {path}, so it does not forward it: calls through tollgate must be billable to your team. Ask your platform team to allow it unmetered ([proxy] unmetered = [\"{prefix}\"])."
        ),
    )
}

/// Why a path is not in its one canonical spelling, if it is not.
fn check_canonical(path: &str) -> Result<(), &'static str> {
    if path.contains('\\') {
        return Err("it contains a backslash");
    }
    for segment in path.split('/').skip(1) {
        match segment {
            "" => return Err("it has an empty segment or a trailing slash"),
            "." | ".." => return Err("it has a '.' or '..' segment"),
            _ => {}
        }
        let bytes = segment.as_bytes();
        let mut i = 0;
        while let Some(offset) = bytes[i..].iter().position(|&b| b == b'%') {
            let at = i + offset;
            let decoded = bytes
                .get(at + 1..at + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("it has a '%' that is not a percent-escape")?;
            // Escaping a character that needs none gives the same path a second spelling; an
            // escaped '/', '.' or '\' would hide a segment boundary.
            if decoded.is_ascii_alphanumeric() || b"-._~/\\".contains(&decoded) {
                return Err("it percent-escapes a character that needs no escaping");
            }
            i = at + 3;
        }
    }
    Ok(())
}

/// True for the paths the proxy serves: `/v1` and everything under it.
pub fn is_api_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(method: Method, path: &str) -> Endpoint {
        Endpoint::classify(&method, path).unwrap()
    }

    #[test]
    fn classifies_known_endpoints_and_the_rest_is_other() {
        assert_eq!(classify(Method::POST, "/v1/responses"), Endpoint::Responses);
        assert_eq!(
            classify(Method::POST, "/v1/chat/completions"),
            Endpoint::ChatCompletions
        );
        assert_eq!(
            classify(Method::GET, "/v1/models/gpt-5.5"),
            Endpoint::Models
        );
        assert_eq!(
            classify(Method::GET, "/v1/models/ft%3Agpt-4o%3Aorg"),
            Endpoint::Models
        );
        assert_eq!(
            classify(Method::POST, "/v1/responses/compact"),
            Endpoint::ResponsesCompact
        );
        assert_eq!(
            classify(Method::GET, "/v1/responses/resp_1"),
            Endpoint::Stored
        );
        assert_eq!(
            classify(Method::POST, "/v1/responses/resp_1"),
            Endpoint::Other
        );
        assert_eq!(classify(Method::GET, "/v1/responses"), Endpoint::Other);
        assert_eq!(classify(Method::DELETE, "/v1/models/x"), Endpoint::Other);
        assert_eq!(
            classify(Method::GET, "/v1/responses/r/input_items/x/y"),
            Endpoint::Other
        );
        assert_eq!(
            classify(Method::POST, "/v1/images/edits"),
            Endpoint::ImagesEdits
        );
        assert_eq!(classify(Method::GET, "/v1/audio/speech"), Endpoint::Other);
        for paid in [
            "/v1/images/generations/x",
            "/v1/audio/voices",
            "/v1/realtime/sessions",
            "/v1/Responses",
            "/v1",
        ] {
            assert_eq!(classify(Method::POST, paid), Endpoint::Other, "{paid}");
        }
        assert!(Endpoint::ResponsesCompact.is_priced() && !Endpoint::Models.reads_body());
        assert!(
            is_api_path("/v1/files") && !is_api_path("/v10/x") && !is_api_path("/admin/v1/teams")
        );
    }

    #[test]
    fn batches_are_priced_at_creation_and_their_reads_and_files_are_free() {
        assert_eq!(classify(Method::POST, "/v1/batches"), Endpoint::Batches);
        assert!(Endpoint::Batches.reads_body() && !Endpoint::Batches.is_priced());
        for (method, path) in [
            (Method::GET, "/v1/batches"),
            (Method::GET, "/v1/batches/batch_1"),
            (Method::POST, "/v1/batches/batch_1/cancel"),
        ] {
            assert_eq!(classify(method, path), Endpoint::Stored, "{path}");
        }
        for (method, path) in [
            (Method::POST, "/v1/files"),
            (Method::GET, "/v1/files"),
            (Method::GET, "/v1/files/file-1"),
            (Method::DELETE, "/v1/files/file-1"),
            (Method::GET, "/v1/files/file-1/content"),
        ] {
            assert_eq!(classify(method, path), Endpoint::Files, "{path}");
        }
        assert!(!Endpoint::Files.reads_body() && !Endpoint::Files.is_priced());
        assert_eq!(classify(Method::DELETE, "/v1/batches/b"), Endpoint::Other);
        assert_eq!(
            classify(Method::POST, "/v1/files/f/content"),
            Endpoint::Other
        );
        assert_eq!(classify(Method::POST, "/v1/batches/b/x"), Endpoint::Other);
        assert_eq!(
            (Endpoint::Batches.label(), Endpoint::Files.label()),
            ("batches", "files")
        );
    }

    #[test]
    fn refuses_every_second_spelling_of_a_path() {
        for bad in [
            "/v1/./responses",
            "/v1/x/../responses",
            "/v1/%72esponses",
            "/v1/responses%2Fcompact",
            "/v1/responses%2fcompact",
            "/v1/chat%2Ecompletions",
            "/v1//responses",
            "/v1/responses/",
            "/v1/responses%",
            "/v1/responses%7",
            "/v1/responses%zz",
            "/v1/%2e%2e/admin",
            "/v1/responses\\compact",
        ] {
            let err = Endpoint::classify(&Method::POST, bad).unwrap_err();
            assert_eq!((err.status, err.code), (400, "invalid_path"), "{bad}");
        }
    }
}
