//! The OpenAI-compatible operations Johi proxies.

use std::fmt;

/// Which OpenAI operation a request is; decides validation rules and the upstream path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions` (legacy text completions)
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
}

impl Api {
    /// The path below the provider's base URL (which conventionally ends in `/v1`).
    pub fn upstream_path(self) -> &'static str {
        match self {
            Api::ChatCompletions => "/chat/completions",
            Api::Completions => "/completions",
            Api::Embeddings => "/embeddings",
        }
    }

    /// Whether this operation can answer with a Server-Sent Events stream.
    pub fn can_stream(self) -> bool {
        match self {
            Api::ChatCompletions | Api::Completions => true,
            Api::Embeddings => false,
        }
    }

    /// A stable, low-cardinality name for logs, audit records and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat.completions",
            Api::Completions => "completions",
            Api::Embeddings => "embeddings",
        }
    }
}

/// The endpoint the client called, when it is not the [`Api`] the pipeline runs: a
/// Messages request (`POST /v1/messages`) is translated at the edge and runs as chat
/// completions. Kept in the exchange's extensions, so that the audit record names what the
/// client called rather than what it was translated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEndpoint(pub &'static str);

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
