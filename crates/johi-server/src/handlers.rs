//! Thin HTTP handlers: read the body, run the pipeline, relay the answer.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::IntoResponse;
use axum::Extension;
use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use johi_core::exchange::Outcome;
use std::time::SystemTime;

use johi_auth::PeerCertificate;
use johi_core::{Api, Exchange, GatewayError, Identity, Route};
use johi_pipeline::{Completion, Executed};
use serde_json::json;

use crate::edge;
use crate::relay;
use crate::Shared;

/// The proxied operations by path, all `POST`: the router's routes for them
/// ([`crate::router`]) and what the listener sends straight to [`proxy`] without the router
/// (`listener::Front`), from this one table.
pub(crate) const PROXIED: [(&str, Api); 3] = [
    ("/v1/chat/completions", Api::ChatCompletions),
    ("/v1/completions", Api::Completions),
    ("/v1/embeddings", Api::Embeddings),
];

/// The proxied operation a path names (see [`PROXIED`]).
pub(crate) fn proxied_api(path: &str) -> Option<Api> {
    PROXIED
        .iter()
        .find_map(|&(route, api)| (route == path).then_some(api))
}

/// Reads the body within the limit, runs the pipeline, and relays the result.
pub(crate) async fn proxy(shared: Arc<Shared>, api: Api, request: Request) -> Response<Body> {
    let runtime = shared.runtime.load_full();
    let (parts, body) = request.into_parts();
    let body = match read_request_body(&runtime, &parts.headers, body).await {
        Ok(body) => body,
        Err(error) => return edge::error_response(&error, &early_headers(&parts.headers)),
    };
    run(runtime, api, parts, body, None).await
}

/// The request body, within the configured limit (a declared length over it is refused
/// before anything is read).
pub(crate) async fn read_request_body(
    runtime: &crate::runtime::Runtime,
    headers: &http::HeaderMap,
    body: Body,
) -> Result<Bytes, GatewayError> {
    let limit = runtime.config.server.max_body_bytes;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(len) if len > limit => Err(GatewayError::BodyTooLarge { limit }),
        _ => read_body(body, limit).await,
    }
}

/// Runs the pipeline for a request whose body has been read, and relays the result.
/// `endpoint` names what the client called when it is not `api` (an edge translation).
pub(crate) async fn run(
    runtime: Arc<crate::runtime::Runtime>,
    api: Api,
    parts: http::request::Parts,
    body: Bytes,
    endpoint: Option<johi_core::api::ClientEndpoint>,
) -> Response<Body> {
    // The completion guard owns the exchange from here on: if this future is dropped (the
    // client went away), the completion hook still runs, as a cancellation.
    let mut exchange = Exchange::new(api, parts.headers, body);
    // The TLS client certificate the listener verified, for `authenticate`.
    if let Some(cert) = parts.extensions.get::<PeerCertificate>() {
        exchange.extensions.insert(cert.clone());
    }
    if let Some(endpoint) = endpoint {
        exchange.extensions.insert(endpoint);
    }
    let mut completion = Completion::new(runtime.pipeline.clone(), exchange);
    // A panicking processor is a bug, but one request's bug: it is answered (and audited) as
    // a 500 here, and the process keeps serving. The exchange is plain data, so observing it
    // after an unwind is sound.
    // Boxed, like the relay below: these futures are kilobytes, and an async fn's inline
    // sub-futures are copied on every move (measured: memcpy was 8 % of a request's CPU).
    let execution = Box::pin(
        runtime
            .pipeline
            .execute(completion.exchange(), &runtime.upstreams),
    );
    let result = match AssertUnwindSafe(execution).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let detail = panic_detail(panic.as_ref());
            tracing::error!(%detail, "a processor panicked");
            Err(GatewayError::Internal {
                detail: "the gateway hit an unexpected error".into(),
            })
        }
    };
    let attempts = completion.exchange().attempt + 1;
    match result {
        Ok(Executed::Upstream(upstream)) => {
            Box::pin(relay::relay(
                completion,
                upstream,
                attempts,
                &runtime.after_response,
            ))
            .await
        }
        Ok(Executed::Short(short)) => {
            let mut response = Response::new(Body::from(short.body));
            *response.status_mut() = short.status;
            response.headers_mut().extend(short.headers);
            for (name, value) in &completion.exchange().response_headers {
                response.headers_mut().insert(name.clone(), value.clone());
            }
            let outcome = Outcome {
                short_circuited: true,
                ..Outcome::ok(short.status, 0)
            };
            runtime.after_response.finish(completion, outcome);
            response
        }
        Err(error) => relay::fail(completion, error, attempts, &runtime.after_response),
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Err(e) => Err(GatewayError::InvalidRequest {
            message: format!("the request body could not be read: {e}"),
            param: None,
            code: "invalid_body",
        }),
    }
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn model_object(id: &str) -> serde_json::Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "johi"})
}

/// The caller of a `/v1/models` request, or the error to answer with. These routes do not
/// run the pipeline (there is no body to process), so they check the credential themselves,
/// with the same authenticator the `authenticate` processor uses.
async fn models_caller(
    runtime: &crate::runtime::Runtime,
    headers: &http::HeaderMap,
    peer: Option<&PeerCertificate>,
) -> Result<Arc<Identity>, GatewayError> {
    caller(runtime, headers, peer, Route::Models).await
}

/// The caller of a request to `route` that does not run the pipeline (or has not yet), with
/// the same authenticator and route allowance the `authenticate` processor applies.
pub(crate) async fn caller(
    runtime: &crate::runtime::Runtime,
    headers: &http::HeaderMap,
    peer: Option<&PeerCertificate>,
    route: Route,
) -> Result<Arc<Identity>, GatewayError> {
    let identity = runtime
        .config
        .auth
        .authenticator
        .authenticate(headers, peer, route, SystemTime::now())
        .await
        .map_err(|reason| GatewayError::Unauthenticated { reason })?;
    if identity.allowed_routes.contains(route) {
        Ok(identity)
    } else {
        Err(johi_processors::authenticate::route_not_allowed(route))
    }
}

/// `GET /v1/models`: the logical models the caller may use, in OpenAI's list shape.
pub async fn list_models(
    State(shared): State<Arc<Shared>>,
    peer: Option<Extension<PeerCertificate>>,
    headers: http::HeaderMap,
) -> Response<Body> {
    let runtime = shared.runtime.load_full();
    let peer = peer.as_ref().map(|Extension(cert)| cert);
    let identity = match models_caller(&runtime, &headers, peer).await {
        Ok(identity) => identity,
        Err(error) => return edge::error_response(&error, &early_headers(&headers)),
    };
    let data: Vec<_> = runtime
        .config
        .models
        .names()
        .iter()
        .filter(|n| identity.may_use_model(n))
        .map(|n| model_object(n))
        .collect();
    json_response(StatusCode::OK, json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{model}`: a model the caller may not use is answered like one that does
/// not exist, as OpenAI does.
pub async fn get_model(
    State(shared): State<Arc<Shared>>,
    peer: Option<Extension<PeerCertificate>>,
    headers: http::HeaderMap,
    Path(model): Path<String>,
) -> Response<Body> {
    let runtime = shared.runtime.load_full();
    let peer = peer.as_ref().map(|Extension(cert)| cert);
    let identity = match models_caller(&runtime, &headers, peer).await {
        Ok(identity) => identity,
        Err(error) => return edge::error_response(&error, &early_headers(&headers)),
    };
    if runtime.config.models.get(&model).is_some() && identity.may_use_model(&model) {
        json_response(StatusCode::OK, model_object(&model))
    } else {
        edge::error_response(
            &GatewayError::ModelNotFound { model },
            &early_headers(&headers),
        )
    }
}

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> impl IntoResponse {
    json_response(StatusCode::OK, json!({"status": "ok"}))
}

/// `GET /readyz`: ready for traffic — a valid config is loaded and the gateway is not
/// draining. A load balancer should stop sending requests when this turns 503.
pub async fn readyz(State(shared): State<Arc<Shared>>) -> Response<Body> {
    if shared.is_draining() {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "draining"}),
        )
    } else {
        let runtime = shared.runtime.load();
        json_response(
            StatusCode::OK,
            json!({"status": "ready", "models": runtime.config.models.names().len()}),
        )
    }
}

/// Headers for an answer given before the pipeline ran: the request ID, so that even these
/// answers can be traced.
pub(crate) fn early_headers(inbound: &http::HeaderMap) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    if let Ok(id) = HeaderValue::from_str(&johi_processors::enrich::request_id(inbound)) {
        headers.insert(johi_processors::enrich::REQUEST_ID, id);
    }
    headers
}

/// Any other path: OpenAI's 404.
pub async fn not_found(request: Request) -> Response<Body> {
    let error = GatewayError::RouteNotFound {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    };
    edge::error_response(&error, &early_headers(request.headers()))
}

/// A known path with the wrong method: OpenAI-shaped 405.
pub async fn method_not_allowed(request: Request) -> Response<Body> {
    let error = GatewayError::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    };
    edge::error_response(&error, &early_headers(request.headers()))
}

fn panic_detail(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}

/// A panic anywhere else in a handler (the backstop behind the pipeline's own catch): a 500
/// in OpenAI's shape; the process keeps serving.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let detail = panic_detail(panic.as_ref());
    tracing::error!(%detail, "handler panicked");
    edge::error_response(
        &GatewayError::Internal {
            detail: "the gateway hit an unexpected error".into(),
        },
        &http::HeaderMap::new(),
    )
}
