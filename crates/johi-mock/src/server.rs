//! The accept loop and the request handler (fault knobs first, then the routes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::knobs::Knobs;
use crate::routes::{self, Ctx, RequestBody, Resp, Route};
use crate::state::{bump, Shared};
use crate::RecordedRequest;

/// Largest request body accepted (413 beyond), so a runaway client cannot exhaust memory.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// The service error that makes hyper close the connection without answering: the `drop`
/// knob, or a request body that broke off.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the mock")
    }
}

impl std::error::Error for DropConnection {}

/// Accepts connections until `shutdown` changes (graceful: connections finish their
/// requests) or its sender is dropped (hard: connections are closed at once).
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "mock upstream accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        bump(&shared.counters.connections);
        // Small SSE frames must not wait for Nagle.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let builder = Arc::clone(&builder);
        let shared = Arc::clone(&shared);
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(Arc::clone(&shared), request));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "mock upstream connection ended with an error");
                    }
                }
                changed = shutdown.changed() => {
                    // Err: the MockUpstream was dropped; returning drops the connection.
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.as_mut().await;
                    }
                }
            }
        });
    }
}

/// Handles one request: control routes, counting, recording, fault knobs, then the route.
async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Resp, DropConnection> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    if let Some(control) = path.strip_prefix("/_mock/") {
        return Ok(control_route(&shared, &parts.method, control, path));
    }
    bump(&shared.counters.requests);
    let route = Route::of(&parts.method, path);
    route.count(&shared);

    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => {
            return Ok(routes::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large for the mock upstream",
                "invalid_request_error",
                None,
                None,
            ));
        }
        Err(_) => return Err(DropConnection),
    };
    let body = parse_body(&bytes);
    if shared.record {
        shared.push_record(record(&parts, &body));
    }
    // Bedrock checks the SigV4 signature before anything else, knobs included.
    if let Route::Converse { .. } | Route::Invoke(_) = route {
        if let Some(denied) = routes::sigv4::check(&parts, &bytes) {
            return Ok(denied);
        }
    }
    let json = match &body {
        RequestBody::Json(value) => Some(value),
        _ => None,
    };
    let knobs = match Knobs::parse(&parts.headers, json) {
        Ok(knobs) => knobs,
        Err(message) => {
            return Ok(routes::error(
                StatusCode::BAD_REQUEST,
                &message,
                "invalid_request_error",
                None,
                Some("invalid_mock_knob"),
            ));
        }
    };

    if let Some(latency) = knobs.latency {
        tokio::time::sleep(latency).await;
    }
    if knobs.drop_before_response {
        return Err(DropConnection);
    }
    if let Some(first) = knobs.fail_first {
        let key = knobs.fail_key.as_deref().unwrap_or("default");
        if shared.should_fail(key, first) {
            return Ok(knob_error(route, 503, &knobs));
        }
    }
    if let Some(status) = knobs.status {
        return Ok(knob_error(route, status, &knobs));
    }
    if let Route::Gemini(..) = route {
        if let Some(denied) = routes::gemini::check_auth(&parts.headers) {
            return Ok(denied);
        }
    }
    let ctx = Ctx {
        shared: &shared,
        knobs: &knobs,
        headers: &parts.headers,
    };
    if route == Route::Token {
        return Ok(routes::gemini::token(&bytes, &ctx));
    }
    Ok(routes::dispatch(route, &parts.method, path, &body, &ctx))
}

/// A fault knob's error in the route's own protocol: Anthropic's shape on `/v1/messages`,
/// Google's on the Gemini routes, Bedrock's on the Converse and InvokeModel routes, Cohere's on `/v2/*`.
fn knob_error(route: Route<'_>, status: u16, knobs: &Knobs) -> Resp {
    if route == Route::Messages && knobs.error_body.is_none() {
        return routes::messages::knob_error(status);
    }
    if let (Route::Converse { .. } | Route::Invoke(_), None) = (route, &knobs.error_body) {
        return routes::converse::error(status, &format!("mock error {status}"));
    }
    if let (Route::Gemini(..), None) = (route, &knobs.error_body) {
        return routes::gemini::knob_error(status);
    }
    if matches!(route, Route::CohereChat | Route::CohereEmbed) && knobs.error_body.is_none() {
        return routes::cohere::knob_error(status);
    }
    routes::knob_error(status, knobs)
}

fn parse_body(bytes: &Bytes) -> RequestBody {
    if bytes.is_empty() {
        return RequestBody::Empty;
    }
    match serde_json::from_slice(bytes) {
        Ok(value) => RequestBody::Json(value),
        Err(_) => RequestBody::Invalid,
    }
}

fn record(parts: &Parts, body: &RequestBody) -> RecordedRequest {
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers,
        body: match body {
            RequestBody::Json(value) => value.clone(),
            _ => Value::Null,
        },
    }
}

/// `/_mock/stats`, `/_mock/requests`, `/_mock/reset`: for tests and scripts that talk to a
/// mock in another process.
fn control_route(shared: &Shared, method: &Method, control: &str, path: &str) -> Resp {
    match (method, control) {
        (&Method::GET, "stats") => routes::json(StatusCode::OK, &shared.stats()),
        (&Method::GET, "requests") => routes::json(StatusCode::OK, &shared.requests()),
        (&Method::POST, "reset") => {
            shared.reset();
            routes::json(StatusCode::OK, &json!({"reset": true}))
        }
        _ => routes::not_found(method, path),
    }
}
