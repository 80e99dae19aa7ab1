//! The inbound Anthropic Messages API: `POST /v1/messages` and
//! `POST /v1/messages/count_tokens`, for clients built on Anthropic's SDKs.
//!
//! Translated at the edge and nowhere else: the Messages body becomes a chat-completions body
//! and runs the ordinary pipeline (authentication, limits, routing, ledger, audit — with
//! `endpoint: "messages"`), to any provider; its answer, stream or error is then put into
//! Anthropic's shape by [`to_anthropic`]. Errors are mapped in one place, by status, from the
//! OpenAI error Johi would otherwise have sent, so every failure path (ours, the pipeline's,
//! an upstream's) reads the same to an Anthropic client.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use johi_auth::PeerCertificate;
use johi_core::api::ClientEndpoint;
use johi_core::{Api, GatewayError, Route};
use johi_providers::anthropic::inbound::{self, DecodedRequest, StreamEncoder};
use johi_providers::TranslateError;
use serde_json::json;

use crate::handlers::{caller, early_headers, read_request_body, run};
use crate::runtime::Runtime;
use crate::{edge, Shared};

/// What the audit record calls a Messages request.
const ENDPOINT: ClientEndpoint = ClientEndpoint("messages");

/// Largest error body read back to be re-shaped (Johi's and upstreams' errors are small).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Largest complete answer read back to be translated.
const MAX_ANSWER_BODY: usize = 64 * 1024 * 1024;

/// The header in which Anthropic's SDKs look for the request id (`_request_id`).
const REQUEST_ID: HeaderName = HeaderName::from_static("request-id");

/// `POST /v1/messages`: runs the translated request through the pipeline and answers in
/// Anthropic's shape, plain or streamed.
pub async fn messages(State(shared): State<Arc<Shared>>, request: Request) -> Response<Body> {
    let runtime = shared.runtime.load_full();
    let (parts, body) = request.into_parts();
    let decoded = match read_and_decode(&runtime, &parts, body, inbound::decode_request).await {
        Ok(decoded) => decoded,
        Err(response) => return response,
    };
    let body = match serde_json::to_vec(&decoded.body) {
        Ok(body) => Bytes::from(body),
        Err(e) => {
            let error = GatewayError::Internal {
                detail: e.to_string(),
            };
            return error_response(&error, &parts.headers).await;
        }
    };
    let answer = run(runtime, Api::ChatCompletions, parts, body, Some(ENDPOINT)).await;
    to_anthropic(answer, &decoded).await
}

/// `POST /v1/messages/count_tokens`: the prompt's tokens as Johi counts them for its limits
/// (the model's tokenizer where known, an estimate otherwise); no upstream is called.
pub async fn count_tokens(State(shared): State<Arc<Shared>>, request: Request) -> Response<Body> {
    let runtime = shared.runtime.load_full();
    let (parts, body) = request.into_parts();
    let decoded = match read_and_decode(&runtime, &parts, body, inbound::decode_count_tokens).await
    {
        Ok(decoded) => decoded,
        Err(response) => return response,
    };
    let peer = parts.extensions.get::<PeerCertificate>();
    let counted = async {
        let identity = caller(&runtime, &parts.headers, peer, Route::ChatCompletions).await?;
        let model = runtime
            .config
            .models
            .get(&decoded.model)
            .filter(|_| identity.may_use_model(&decoded.model))
            .ok_or_else(|| GatewayError::ModelNotFound {
                model: decoded.model.clone(),
            })?;
        Ok::<_, GatewayError>(johi_processors::tokens::count_input_tokens(
            model.tokenizer,
            Api::ChatCompletions,
            &decoded.body,
        ))
    };
    match counted.await {
        Ok(n) => {
            let mut response =
                json_response(StatusCode::OK, json!({"input_tokens": n}).to_string());
            response.headers_mut().extend(early_headers(&parts.headers));
            response
        }
        Err(error) => error_response(&error, &parts.headers).await,
    }
}

/// Reads and decodes the body. A body that cannot be read or translated is answered with a
/// 400 only once the caller is authenticated, so that a client without a key always learns
/// that first, as on the chat route (where authentication runs before validation).
async fn read_and_decode(
    runtime: &Runtime,
    parts: &http::request::Parts,
    body: Body,
    decode: fn(&[u8]) -> Result<DecodedRequest, TranslateError>,
) -> Result<DecodedRequest, Response<Body>> {
    let failed = match read_request_body(runtime, &parts.headers, body).await {
        Ok(body) => match decode(&body) {
            Ok(decoded) => return Ok(decoded),
            Err(e) => invalid(&e),
        },
        Err(error) => error,
    };
    let peer = parts.extensions.get::<PeerCertificate>();
    let error = match caller(runtime, &parts.headers, peer, Route::ChatCompletions).await {
        Ok(_) => failed,
        Err(auth) => auth,
    };
    Err(error_response(&error, &parts.headers).await)
}

/// A translation refusal as the 400 the chat route gives for the same fault.
fn invalid(e: &TranslateError) -> GatewayError {
    let code = match e {
        TranslateError::Unsupported { .. } => "unsupported_parameter",
        TranslateError::Invalid { .. } | TranslateError::Upstream { .. } => "invalid_value",
    };
    GatewayError::InvalidRequest {
        message: e.to_string(),
        param: Some(e.field().to_owned()),
        code,
    }
}

/// An error answered before the pipeline ran, in Anthropic's shape.
async fn error_response(error: &GatewayError, inbound: &http::HeaderMap) -> Response<Body> {
    let response = edge::error_response(error, &early_headers(inbound));
    to_anthropic_error(response).await
}

/// The pipeline's OpenAI answer in Anthropic's shape: an error by its status, a stream event
/// by event, a complete answer translated whole.
async fn to_anthropic(response: Response<Body>, request: &DecodedRequest) -> Response<Body> {
    if !response.status().is_success() {
        return to_anthropic_error(response).await;
    }
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    copy_request_id(&mut parts.headers);
    if is_sse {
        parts.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        parts
            .headers
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let body = Body::from_stream(encode_stream(body, StreamEncoder::new(&request.model)));
        return Response::from_parts(parts, body);
    }
    let bytes = match Limited::new(body, MAX_ANSWER_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return answer_failed(parts, format!("the answer could not be read: {e}")),
    };
    match inbound::encode_response(&bytes, &request.model) {
        Ok(message) => {
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Response::from_parts(parts, Body::from(message.to_string()))
        }
        Err(e) => answer_failed(parts, e.to_string()),
    }
}

/// A 502 `api_error` for an answer that could not be translated (already paid for, so the
/// exchange itself is complete; only its shape failed).
fn answer_failed(mut parts: http::response::Parts, detail: String) -> Response<Body> {
    parts.status = StatusCode::BAD_GATEWAY;
    let body = inbound::encode_error(
        502,
        json!({"error": {"message": detail}}).to_string().as_bytes(),
    );
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(body.to_string()))
}

/// The one mapping of an error answer to Anthropic's shape: same status, the type its
/// status stands for, the OpenAI error's message.
async fn to_anthropic_error(response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let bytes = match Limited::new(body, MAX_ERROR_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let error = inbound::encode_error(parts.status.as_u16(), &bytes);
    parts.headers.remove(CONTENT_LENGTH);
    // Anthropic's SDKs send `x-api-key`; the challenge names it.
    if parts.headers.contains_key(WWW_AUTHENTICATE) {
        parts
            .headers
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("x-api-key"));
    }
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    copy_request_id(&mut parts.headers);
    Response::from_parts(parts, Body::from(error.to_string()))
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    copy_request_id(response.headers_mut());
    response
}

/// Johi's request id also under `request-id`, where Anthropic's SDKs read it.
fn copy_request_id(headers: &mut http::HeaderMap) {
    if let Some(id) = headers.get(johi_processors::enrich::REQUEST_ID).cloned() {
        headers.insert(REQUEST_ID, id);
    }
}

/// The OpenAI stream body re-encoded as Anthropic events. The inner body is read to its end
/// even after the encoder has finished, so that the relay completes the exchange as it
/// would for a chat client (usage charged, audit written); dropping this stream (the client
/// went away) drops the inner body, which cancels the upstream as usual.
fn encode_stream(
    body: Body,
    encoder: StreamEncoder,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    let state = (body.into_data_stream(), encoder, false);
    futures_util::stream::unfold(state, |(mut inner, mut encoder, done)| async move {
        if done {
            return None;
        }
        loop {
            let out = match inner.next().await {
                Some(Ok(chunk)) => encoder.feed(&chunk),
                Some(Err(_)) | None => {
                    let out = encoder.finish();
                    return (!out.is_empty())
                        .then(|| (Ok(Bytes::from(out)), (inner, encoder, true)));
                }
            };
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), (inner, encoder, false)));
            }
        }
    })
}
