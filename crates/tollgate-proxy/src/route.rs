//! Which OpenAI endpoint a request is for, and so whether tollgate must read its body.

use http::Method;

/// The endpoints tollgate knows. Everything else under `/v1` is passed through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Responses,
    ChatCompletions,
    Completions,
    Embeddings,
    Models,
    /// Any other `/v1/*` path (files, batches, `responses/compact`, …).
    Other,
}

impl Endpoint {
    /// Classifies a path already known to start with `/v1/` (or equal `/v1`).
    pub fn classify(method: &Method, path: &str) -> Endpoint {
        let rest = path
            .strip_prefix("/v1")
            .unwrap_or(path)
            .trim_end_matches('/');
        match (method, rest) {
            (&Method::POST, "/responses") => Endpoint::Responses,
            (&Method::POST, "/chat/completions") => Endpoint::ChatCompletions,
            (&Method::POST, "/completions") => Endpoint::Completions,
            (&Method::POST, "/embeddings") => Endpoint::Embeddings,
            (&Method::GET, "/models") => Endpoint::Models,
            _ if rest.starts_with("/models/") && method == Method::GET => Endpoint::Models,
            _ => Endpoint::Other,
        }
    }

    /// Endpoints whose JSON body tollgate reads (model, stream flag, limits) before forwarding.
    pub fn reads_body(self) -> bool {
        matches!(
            self,
            Endpoint::Responses
                | Endpoint::ChatCompletions
                | Endpoint::Completions
                | Endpoint::Embeddings
        )
    }

    /// Endpoints whose calls are priced from usage.
    pub fn is_priced(self) -> bool {
        self.reads_body()
    }

    /// A stable, bounded label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Responses => "responses",
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Models => "models",
            Endpoint::Other => "other",
        }
    }
}

/// True for the paths the proxy serves: `/v1` and everything under it.
pub fn is_api_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_known_endpoints_and_passes_the_rest() {
        assert_eq!(
            Endpoint::classify(&Method::POST, "/v1/responses"),
            Endpoint::Responses
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/v1/chat/completions"),
            Endpoint::ChatCompletions
        );
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1/models/gpt-5.5"),
            Endpoint::Models
        );
        assert_eq!(
            Endpoint::classify(&Method::POST, "/v1/responses/compact"),
            Endpoint::Other
        );
        assert_eq!(
            Endpoint::classify(&Method::GET, "/v1/responses"),
            Endpoint::Other
        );
        assert!(Endpoint::Embeddings.reads_body() && !Endpoint::Models.reads_body());
        assert!(
            is_api_path("/v1/files") && !is_api_path("/v10/x") && !is_api_path("/admin/v1/teams")
        );
    }
}
