//! The admin API's one error type, and the one place it becomes a status and OpenAI's
//! `{"error": {"message", "type", "param", "code"}}` body. Matches are exhaustive, so a new
//! kind forces a decision about its status.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde_json::json;

/// Why an admin request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No admin token, or not the configured one. One answer for both, so a caller learns
    /// nothing about the token from the refusal.
    #[error("a valid admin token is required (Authorization: Bearer <admin token>)")]
    Unauthorized,
    /// The request is malformed or names something the config does not have; `param` is the
    /// field or query parameter at fault.
    #[error("{message}")]
    BadRequest {
        /// What is wrong, for a person.
        message: String,
        /// The field or parameter at fault.
        param: Option<String>,
        /// A stable machine-readable code.
        code: &'static str,
    },
    /// The path names a thing that does not exist (a key ID), or no such route.
    #[error("{message}")]
    NotFound {
        /// What was not found.
        message: String,
        /// `key_not_found`, `tenant_not_found`, `unknown_url`, `ledger_not_configured`.
        code: &'static str,
    },
    /// The request body is larger than the admin API reads.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A known path with a method it does not serve.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path.
        path: String,
    },
    /// The request conflicts with existing state (an ID in use, a key defined in config).
    #[error("{message}")]
    Conflict {
        /// What conflicts.
        message: String,
        /// `key_id_taken`, `key_in_config`, `tenant_exists`, `tenant_in_config`,
        /// `tenant_has_children`, `tenant_in_use`.
        code: &'static str,
    },
    /// A backend (key store, limit store, ledger) failed; retrying later may succeed.
    #[error("{message}")]
    Unavailable {
        /// Which backend and why (no secrets: URLs are never included).
        message: String,
        /// `key_store_unavailable`, `limits_unavailable`, `ledger_unavailable`.
        code: &'static str,
    },
    /// A bug or a crashed task on the admin side; the public API is unaffected.
    #[error("{message}")]
    Internal {
        /// What failed.
        message: String,
    },
}

impl AdminError {
    /// A 400 for `param` with `message`.
    pub fn bad_request(param: impl Into<String>, message: impl Into<String>) -> AdminError {
        AdminError::BadRequest {
            message: message.into(),
            param: Some(param.into()),
            code: "invalid_value",
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AdminError::NotFound { .. } => StatusCode::NOT_FOUND,
            AdminError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::Conflict { .. } => StatusCode::CONFLICT,
            AdminError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type`, `code` and `param`.
    fn classify(&self) -> (&'static str, &'static str, Option<&str>) {
        match self {
            AdminError::Unauthorized => ("invalid_request_error", "invalid_admin_token", None),
            AdminError::BadRequest { param, code, .. } => {
                ("invalid_request_error", code, param.as_deref())
            }
            AdminError::NotFound { code, .. } | AdminError::Conflict { code, .. } => {
                ("invalid_request_error", code, None)
            }
            AdminError::MethodNotAllowed { .. } => {
                ("invalid_request_error", "method_not_allowed", None)
            }
            AdminError::TooLarge { .. } => ("invalid_request_error", "request_too_large", None),
            AdminError::Unavailable { code, .. } => ("server_error", code, None),
            AdminError::Internal { .. } => ("server_error", "internal_error", None),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (kind, code, param) = self.classify();
        let body = json!({"error": {
            "message": self.to_string(),
            "type": kind,
            "param": param,
            "code": code,
        }});
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            AdminError::Unauthorized => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AdminError::Unavailable { .. } => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            AdminError::BadRequest { .. }
            | AdminError::NotFound { .. }
            | AdminError::MethodNotAllowed { .. }
            | AdminError::TooLarge { .. }
            | AdminError::Conflict { .. }
            | AdminError::Internal { .. } => {}
        }
        response
    }
}
