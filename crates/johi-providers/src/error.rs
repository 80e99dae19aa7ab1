//! The one error type of every adapter: what could not be translated, and which field.
//!
//! Shared by all protocols so the `translate` processor maps every adapter's refusal to the
//! same 400 (OpenAI's `param` naming the field) and every unreadable answer to the same 502.

/// Why a request or response could not be translated. One type for the module; every
/// variant names the field at fault, so the edge can answer a 400 with OpenAI's `param`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The client sent a field (or value) the target protocol cannot express; it is
    /// refused rather than dropped, so the client never gets an answer to another question.
    #[error("`{field}` is not supported by the target provider: {reason}")]
    Unsupported {
        /// JSON path of the field, e.g. `presence_penalty` or `messages[2].content[0].type`.
        field: String,
        /// Why, in a few words.
        reason: String,
    },
    /// The field is present but its value is malformed (wrong type, unparsable arguments).
    #[error("`{field}` is invalid: {reason}")]
    Invalid {
        /// JSON path of the field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The upstream's answer is not a response Johi can read (a 502 later); the
    /// field is the part of the response at fault (`body` when it is not JSON at all).
    #[error("the upstream's `{field}` could not be read: {reason}")]
    Upstream {
        /// Path in the upstream response.
        field: String,
        /// What was wrong.
        reason: String,
    },
}

impl TranslateError {
    /// The JSON path of the field at fault (OpenAI's `param` for a 400).
    pub fn field(&self) -> &str {
        match self {
            TranslateError::Unsupported { field, .. }
            | TranslateError::Invalid { field, .. }
            | TranslateError::Upstream { field, .. } => field,
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        TranslateError::Unsupported {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        TranslateError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn upstream(field: impl Into<String>, reason: impl Into<String>) -> Self {
        TranslateError::Upstream {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
