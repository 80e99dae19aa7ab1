//! The edge: the one place a [`GatewayError`] becomes an HTTP status and OpenAI's
//! `{"error": {"message", "type", "param", "code"}}` body.
//!
//! Matches are exhaustive, so a new error kind forces a decision about its status.

use axum::body::Body;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use johi_core::GatewayError;
use serde_json::json;

/// The HTTP status for an error.
pub fn status(error: &GatewayError) -> StatusCode {
    match error {
        GatewayError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
        GatewayError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
        GatewayError::PermissionDenied { .. } => StatusCode::FORBIDDEN,
        GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        GatewayError::LimitsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        GatewayError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        GatewayError::ModelNotFound { .. } | GatewayError::RouteNotFound { .. } => {
            StatusCode::NOT_FOUND
        }
        GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        GatewayError::UpstreamConnect { .. } | GatewayError::UpstreamProtocol { .. } => {
            StatusCode::BAD_GATEWAY
        }
        GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        GatewayError::UpstreamStatus { status, .. } => *status,
        GatewayError::ProcessorFailed { .. } | GatewayError::Internal { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        GatewayError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// OpenAI's `type` (and `code`, `param`) for an error.
fn classify(error: &GatewayError) -> (&'static str, Option<&'static str>, Option<&str>) {
    match error {
        GatewayError::InvalidRequest { param, code, .. } => {
            ("invalid_request_error", Some(*code), param.as_deref())
        }
        // OpenAI answers a bad key with `invalid_request_error`; its SDKs raise
        // `AuthenticationError` on the 401 and `PermissionDeniedError` on the 403.
        GatewayError::Unauthenticated { reason } => {
            ("invalid_request_error", Some(reason.code()), None)
        }
        GatewayError::PermissionDenied { code, .. } => ("permission_error", Some(*code), None),
        // OpenAI: a rate is `rate_limit_exceeded`, an exhausted budget `insufficient_quota`.
        GatewayError::RateLimited { quota: false, .. } => {
            ("requests", Some("rate_limit_exceeded"), None)
        }
        GatewayError::RateLimited { quota: true, .. } => {
            ("insufficient_quota", Some("insufficient_quota"), None)
        }
        GatewayError::LimitsUnavailable => ("server_error", Some("limits_unavailable"), None),
        GatewayError::BodyTooLarge { .. } => {
            ("invalid_request_error", Some("request_too_large"), None)
        }
        GatewayError::UnsupportedMediaType { .. } => (
            "invalid_request_error",
            Some("unsupported_media_type"),
            None,
        ),
        GatewayError::ModelNotFound { .. } => (
            "invalid_request_error",
            Some("model_not_found"),
            Some("model"),
        ),
        GatewayError::RouteNotFound { .. } => ("invalid_request_error", Some("unknown_url"), None),
        GatewayError::MethodNotAllowed { .. } => {
            ("invalid_request_error", Some("method_not_allowed"), None)
        }
        GatewayError::UpstreamConnect { .. } => {
            ("upstream_error", Some("upstream_connect_failed"), None)
        }
        GatewayError::UpstreamTimeout { .. } => ("upstream_error", Some("upstream_timeout"), None),
        GatewayError::UpstreamStatus { .. } => ("upstream_error", Some("upstream_error"), None),
        GatewayError::UpstreamProtocol { .. } => {
            ("upstream_error", Some("upstream_protocol_error"), None)
        }
        GatewayError::ProcessorFailed { .. } => ("server_error", Some("processor_failed"), None),
        GatewayError::ShuttingDown => ("server_error", Some("shutting_down"), None),
        GatewayError::Internal { .. } => ("server_error", Some("internal_error"), None),
    }
}

/// OpenAI's error object for `error`, as JSON bytes.
pub fn error_json(error: &GatewayError) -> Bytes {
    let (kind, code, param) = classify(error);
    let message = match error {
        GatewayError::UpstreamStatus {
            body,
            status,
            provider,
            ..
        } => {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            format!("provider '{provider}' answered {}: {text}", status.as_u16())
        }
        other => other.to_string(),
    };
    let value = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    Bytes::from(value.to_string())
}

/// The full error response: status, headers (the exchange's echo headers included), body.
///
/// An upstream's own JSON error is passed on unchanged with its status, so clients see
/// exactly what the provider said.
pub fn error_response(error: &GatewayError, echo: &HeaderMap) -> Response<Body> {
    let body = match error {
        GatewayError::UpstreamStatus {
            body, json: true, ..
        } => body.clone(),
        other => error_json(other),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status(error);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match error {
        GatewayError::ShuttingDown | GatewayError::LimitsUnavailable => {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        GatewayError::RateLimited {
            retry_after_secs, ..
        } => {
            let secs = retry_after_secs.unwrap_or(1).max(1);
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        // RFC 6750: a 401 says which scheme would be accepted.
        GatewayError::Unauthenticated { .. } => {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    for (name, value) in echo {
        headers.insert(name.clone(), value.clone());
    }
    response
}

/// An error inside a stream that has already started: an SSE event carrying OpenAI's error
/// object, which the official SDKs raise as an `APIError`. The stream is closed after it.
pub fn stream_error_event(error: &GatewayError) -> Bytes {
    let json = error_json(error);
    let mut event = Vec::with_capacity(json.len() + 8);
    event.extend_from_slice(b"data: ");
    event.extend_from_slice(&json);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_not_found_matches_openai() {
        let e = GatewayError::ModelNotFound {
            model: "gpt-9".into(),
        };
        assert_eq!(status(&e), StatusCode::NOT_FOUND);
        let v: serde_json::Value = serde_json::from_slice(&error_json(&e)).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(
            v["error"]["message"],
            "The model `gpt-9` does not exist or you do not have access to it."
        );
    }

    #[test]
    fn upstream_json_errors_pass_through_and_text_errors_are_wrapped() {
        let body =
            Bytes::from_static(br#"{"error":{"message":"overloaded","type":"server_error"}}"#);
        let e = GatewayError::UpstreamStatus {
            provider: "p".into(),
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: body.clone(),
            json: true,
        };
        let r = error_response(&e, &HeaderMap::new());
        assert_eq!(r.status(), 503);
        let e = GatewayError::UpstreamStatus {
            provider: "p".into(),
            status: StatusCode::BAD_GATEWAY,
            body: Bytes::from_static(b"<html>"),
            json: false,
        };
        let v: serde_json::Value = serde_json::from_slice(&error_json(&e)).unwrap();
        assert_eq!(v["error"]["message"], "provider 'p' answered 502: <html>");
    }
}
