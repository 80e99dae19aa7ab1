//! Every way a request through Johi can fail.
//!
//! Constructing an error has no side effects; it is logged once, at completion. The server's
//! edge maps each variant to an HTTP status and OpenAI's `{"error": {...}}` body in one
//! exhaustive match, so a new variant forces a decision about its status.

use bytes::Bytes;
use http::StatusCode;

/// The gateway's error type, shared by processors, the runner and the server.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The request body or a field in it is not acceptable.
    #[error("{message}")]
    InvalidRequest {
        /// Human-readable explanation, naming the offending field.
        message: String,
        /// The JSON path of the offending field (OpenAI's `param`), when there is one.
        param: Option<String>,
        /// A stable machine-readable code.
        code: &'static str,
    },
    /// The request carries no acceptable credential. One message per cause, never saying
    /// whether a presented key exists, has expired or was revoked.
    #[error("{}", .reason.message())]
    Unauthenticated {
        /// Why; decides only the message and code, never which key was tried.
        reason: AuthFailure,
    },
    /// The caller is known but may not do this (a model or route outside its allowance).
    #[error("{message}")]
    PermissionDenied {
        /// What is not allowed, naming the model or route.
        message: String,
        /// A stable machine-readable code, e.g. `model_not_allowed`.
        code: &'static str,
    },
    /// A hard limit has no room for this request.
    #[error("{message}")]
    RateLimited {
        /// The limit's configured id.
        limit: String,
        /// Which limit, over which scope, and when room comes back.
        message: String,
        /// Seconds until the window resets (the `Retry-After` header); `None` for gauges.
        retry_after_secs: Option<u64>,
        /// Whether a money budget (OpenAI's `insufficient_quota`) rather than a rate.
        quota: bool,
    },
    /// The shared limit store is unreachable and the limiter fails closed.
    #[error("rate limits cannot be checked right now; retry shortly")]
    LimitsUnavailable,
    /// The request body is larger than the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The request is not `application/json`.
    #[error("unsupported content type {found:?}: send application/json")]
    UnsupportedMediaType {
        /// The content type the client sent, if any.
        found: Option<String>,
    },
    /// The model named in the request is not configured.
    #[error("The model `{model}` does not exist or you do not have access to it.")]
    ModelNotFound {
        /// The model name as requested.
        model: String,
    },
    /// No route matches the request path.
    #[error("Unknown request URL: {method} {path}.")]
    RouteNotFound {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The path exists but not for this method.
    #[error("Method {method} is not allowed on {path}.")]
    MethodNotAllowed {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The connection to the upstream could not be made (refused, reset, DNS, TLS).
    #[error("could not reach provider '{provider}': {detail}")]
    UpstreamConnect {
        /// Provider name from config.
        provider: String,
        /// What went wrong, without secrets.
        detail: String,
    },
    /// The upstream did not answer in time.
    #[error("provider '{provider}' did not answer within the {phase} timeout ({millis} ms)")]
    UpstreamTimeout {
        /// Provider name from config.
        provider: String,
        /// Which timeout fired: `first_byte` or `total`.
        phase: &'static str,
        /// The timeout's length.
        millis: u64,
    },
    /// The upstream answered with an error status; its body is passed on as it came.
    #[error("provider '{provider}' answered {status}")]
    UpstreamStatus {
        /// Provider name from config.
        provider: String,
        /// The upstream's status code.
        status: StatusCode,
        /// The upstream's body, unchanged.
        body: Bytes,
        /// Whether `body` is JSON (and so may be passed on as it is).
        json: bool,
    },
    /// The upstream answered something Johi cannot relay (bad framing, broken stream).
    #[error("provider '{provider}' sent an invalid response: {detail}")]
    UpstreamProtocol {
        /// Provider name from config.
        provider: String,
        /// What was wrong.
        detail: String,
    },
    /// A processor failed and its failure mode is fail-closed.
    #[error("processor '{processor}' failed: {detail}")]
    ProcessorFailed {
        /// The processor's name.
        processor: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The gateway is shutting down and takes no new work.
    #[error("the gateway is shutting down; retry on another replica")]
    ShuttingDown,
    /// A bug: something the gateway itself got wrong (including a caught panic).
    #[error("internal error: {detail}")]
    Internal {
        /// What went wrong.
        detail: String,
    },
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credential was presented on a route that needs one.
    Missing,
    /// A credential was presented but is not valid: unknown, expired, revoked or tampered
    /// with. Deliberately one case, so the answer reveals nothing about which.
    Invalid,
    /// The client's `OpenAI-Organization` header names another organisation than the
    /// credential's (OpenAI answers this with a 401 too).
    MismatchedOrganization,
}

impl AuthFailure {
    /// The client-facing message.
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::Missing => "You didn't provide an API key. Send it in an Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY), or in an api-key or x-api-key header.",
            AuthFailure::Invalid => "Incorrect API key provided.",
            AuthFailure::MismatchedOrganization => "The OpenAI-Organization header does not match the organization of the API key.",
        }
    }

    /// OpenAI's `code` for this failure.
    pub fn code(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing_api_key",
            AuthFailure::Invalid => "invalid_api_key",
            AuthFailure::MismatchedOrganization => "mismatched_organization",
        }
    }
}

impl GatewayError {
    /// Shorthand for an [`GatewayError::InvalidRequest`] naming a field.
    pub fn invalid(message: impl Into<String>, param: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
            code: "invalid_value",
        }
    }

    /// Whether another attempt (same or next target) may succeed where this one failed.
    ///
    /// Connect errors, timeouts, 5xx and 429 are retryable; everything the client got wrong
    /// is not, because the next target would refuse it too.
    pub fn retryable(&self) -> bool {
        match self {
            GatewayError::UpstreamConnect { .. } | GatewayError::UpstreamTimeout { .. } => true,
            GatewayError::UpstreamStatus { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            GatewayError::UpstreamProtocol { .. } => true,
            GatewayError::InvalidRequest { .. }
            | GatewayError::Unauthenticated { .. }
            | GatewayError::RateLimited { .. }
            | GatewayError::LimitsUnavailable
            | GatewayError::PermissionDenied { .. }
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::UnsupportedMediaType { .. }
            | GatewayError::ModelNotFound { .. }
            | GatewayError::RouteNotFound { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::ProcessorFailed { .. }
            | GatewayError::ShuttingDown
            | GatewayError::Internal { .. } => false,
        }
    }

    /// A low-cardinality name for metric labels and audit records.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::Unauthenticated { .. } => "unauthenticated",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::LimitsUnavailable => "limits_unavailable",
            GatewayError::PermissionDenied { .. } => "permission_denied",
            GatewayError::BodyTooLarge { .. } => "body_too_large",
            GatewayError::UnsupportedMediaType { .. } => "unsupported_media_type",
            GatewayError::ModelNotFound { .. } => "model_not_found",
            GatewayError::RouteNotFound { .. } => "route_not_found",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::UpstreamConnect { .. } => "upstream_connect",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::UpstreamStatus { .. } => "upstream_status",
            GatewayError::UpstreamProtocol { .. } => "upstream_protocol",
            GatewayError::ProcessorFailed { .. } => "processor_failed",
            GatewayError::ShuttingDown => "shutting_down",
            GatewayError::Internal { .. } => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability_follows_the_cause() {
        let timeout = GatewayError::UpstreamTimeout {
            provider: "p".into(),
            phase: "first_byte",
            millis: 1,
        };
        assert!(timeout.retryable());
        let status = |s: u16| GatewayError::UpstreamStatus {
            provider: "p".into(),
            status: StatusCode::from_u16(s).unwrap(),
            body: Bytes::new(),
            json: false,
        };
        assert!(status(503).retryable());
        assert!(status(429).retryable());
        assert!(!status(400).retryable());
        assert!(!GatewayError::invalid("bad", "messages").retryable());
    }
}
