//! Routing and the OpenAI response helpers shared by the routes.

mod chat;
pub(crate) mod cohere;
mod completions;
pub(crate) mod converse;
mod embeddings;
pub(crate) mod gemini;
mod invoke;
pub(crate) mod messages;
mod models;
pub(crate) mod sigv4;

use std::sync::Arc;

use http::{header, HeaderValue, Method, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::body::{EventSource, MockBody, SseBody, StreamShape};
use crate::knobs::Knobs;
use crate::state::{bump, Shared};

/// A response as the service returns it.
pub(crate) type Resp = Response<MockBody>;

/// The `created` timestamp of every object: fixed, so answers are byte-for-byte stable.
pub(crate) const CREATED: u64 = 1_700_000_000;

/// The OpenAI API routes the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Chat,
    Messages,
    /// Cohere's `POST /v2/chat` (counted with chat).
    CohereChat,
    /// Cohere's `POST /v2/embed` (counted with embeddings).
    CohereEmbed,
    Completions,
    Embeddings,
    Models,
    Model(&'a str),
    /// Bedrock's `POST /model/{id}/converse` (`stream: false`) or `/converse-stream`.
    Converse {
        stream: bool,
    },
    /// Bedrock's `POST /model/{id}/invoke` (the id as in the path; counted with embeddings:
    /// the mock serves it for embedding models only).
    Invoke(&'a str),
    /// A Gemini (or Vertex) method on a model.
    Gemini(&'a str, gemini::Method),
    /// The OAuth2 token endpoint (Vertex sign-in).
    Token,
    NotFound,
}

impl<'a> Route<'a> {
    pub(crate) fn of(method: &Method, path: &'a str) -> Route<'a> {
        // Azure OpenAI: `/openai/deployments/{deployment}/…` and its v1 API `/openai/v1/…`
        // are the OpenAI routes under another prefix.
        if let Some(rest) = path.strip_prefix("/openai/") {
            let op = match rest.strip_prefix("deployments/") {
                Some(d) => d.split_once('/').map_or("", |(_, op)| op),
                None => rest.strip_prefix("v1/").unwrap_or(""),
            };
            return match (method, op) {
                (&Method::POST, "chat/completions") => Route::Chat,
                (&Method::POST, "completions") => Route::Completions,
                (&Method::POST, "embeddings") => Route::Embeddings,
                _ => Route::NotFound,
            };
        }
        match (method, path) {
            (&Method::POST, "/v1/chat/completions") => Route::Chat,
            (&Method::POST, "/v1/messages") => Route::Messages,
            (&Method::POST, "/v2/chat") => Route::CohereChat,
            (&Method::POST, "/v2/embed") => Route::CohereEmbed,
            (&Method::POST, "/v1/completions") => Route::Completions,
            (&Method::POST, "/v1/embeddings") => Route::Embeddings,
            (&Method::GET, "/v1/models") => Route::Models,
            // Bedrock's runtime has no version prefix; a base URL ending in `/v1` (the
            // mock's own) still reaches it.
            (&Method::POST, _) if path.trim_start_matches("/v1").starts_with("/model/") => {
                let rest = path.trim_start_matches("/v1").trim_start_matches("/model/");
                match rest.rsplit_once('/') {
                    Some((id, "converse")) if !id.is_empty() => Route::Converse { stream: false },
                    Some((id, "converse-stream")) if !id.is_empty() => {
                        Route::Converse { stream: true }
                    }
                    Some((id, "invoke")) if !id.is_empty() => Route::Invoke(id),
                    _ => Route::NotFound,
                }
            }
            (&Method::POST, "/token") => Route::Token,
            (&Method::POST, _) => match gemini::parse_path(path) {
                Some((model, method)) => Route::Gemini(model, method),
                None => Route::NotFound,
            },
            (&Method::GET, _) => match path.strip_prefix("/v1/models/") {
                Some(id) if !id.is_empty() && !id.contains('/') => Route::Model(id),
                _ => Route::NotFound,
            },
            _ => Route::NotFound,
        }
    }

    /// Counts the request in its per-route counter (on arrival, before any fault knob).
    pub(crate) fn count(self, shared: &Shared) {
        let c = &shared.counters;
        match self {
            Route::Chat | Route::CohereChat => bump(&c.chat),
            Route::Messages => bump(&c.messages),
            Route::Converse { .. } => bump(&c.converse),
            Route::Completions => bump(&c.completions),
            Route::Embeddings | Route::CohereEmbed | Route::Invoke(_) => bump(&c.embeddings),
            Route::Models | Route::Model(_) => bump(&c.models),
            // Gemini's methods count as the OpenAI routes they stand for.
            Route::Gemini(_, gemini::Method::Generate | gemini::Method::Stream) => bump(&c.chat),
            Route::Gemini(_, gemini::Method::BatchEmbed | gemini::Method::Predict) => {
                bump(&c.embeddings)
            }
            Route::Token | Route::NotFound => {}
        }
    }
}

/// What the routes need besides the request body.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub knobs: &'a Knobs,
    /// The request's headers (Cohere's routes check the bearer token).
    pub headers: &'a http::HeaderMap,
}

/// The request body as the routes see it.
pub(crate) enum RequestBody {
    Empty,
    Json(Value),
    Invalid,
}

/// A 400 answer still to be built (kept small so `Result`s stay cheap to move).
pub(crate) struct BadRequest {
    message: &'static str,
    param: Option<&'static str>,
}

impl BadRequest {
    pub(crate) fn new(message: &'static str, param: Option<&'static str>) -> Self {
        BadRequest { message, param }
    }

    pub(crate) fn into_response(self) -> Resp {
        bad_request(self.message, self.param)
    }
}

/// Answers a request that passed the fault knobs.
pub(crate) fn dispatch(
    route: Route<'_>,
    method: &Method,
    path: &str,
    body: &RequestBody,
    ctx: &Ctx<'_>,
) -> Resp {
    let json_body = || match body {
        RequestBody::Json(value @ Value::Object(_)) => Ok(value),
        RequestBody::Json(_) => Err(BadRequest::new(
            "The request body must be a JSON object.",
            None,
        )),
        RequestBody::Invalid => Err(BadRequest::new(
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
            None,
        )),
        RequestBody::Empty => Err(BadRequest::new(
            "You must provide a JSON body with a model parameter.",
            Some("model"),
        )),
    };
    let result = match route {
        Route::Chat => json_body().and_then(|b| chat::handle(b, ctx)),
        Route::Messages => json_body().and_then(|b| messages::handle(b, ctx)),
        Route::Converse { stream } => json_body().and_then(|b| converse::handle(b, stream, ctx)),
        Route::CohereChat => json_body().and_then(|b| cohere::chat(b, ctx)),
        Route::CohereEmbed => json_body().and_then(|b| cohere::embed(b, ctx)),
        Route::Completions => json_body().and_then(|b| completions::handle(b, ctx)),
        Route::Embeddings => json_body().and_then(|b| embeddings::handle(b, ctx)),
        Route::Invoke(id) => match body {
            RequestBody::Json(b) => Ok(invoke::handle(id, b, ctx)),
            _ => Ok(converse::error(400, "The request body must be JSON.")),
        },
        Route::Models => Ok(models::list()),
        Route::Model(id) => Ok(models::one(id)),
        Route::Gemini(model, m) => json_body().and_then(|b| gemini::handle(model, m, b, ctx)),
        // Answered by the server from the raw form body (see `server::handle`).
        Route::Token | Route::NotFound => Ok(not_found(method, path)),
    };
    result.unwrap_or_else(BadRequest::into_response)
}

/// The OpenAI 404 for a URL it does not know.
pub(crate) fn not_found(method: &Method, path: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({method} {path})"),
        "invalid_request_error",
        None,
        Some("unknown_url"),
    )
}

/// A JSON response.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(MockBody::full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// An error in OpenAI's shape: `{"error":{"message","type","param","code"}}`.
pub(crate) fn error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Resp {
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            param,
            code,
        },
    };
    json(status, &body)
}

/// A 400 `invalid_request_error`.
pub(crate) fn bad_request(message: &str, param: Option<&str>) -> Resp {
    error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        param,
        None,
    )
}

/// The answer to the `status` and `fail_first` knobs: the OpenAI error for `status`, or the
/// raw `error_body` knob.
pub(crate) fn knob_error(status: u16, knobs: &Knobs) -> Resp {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(raw) = &knobs.error_body {
        let is_json = serde_json::from_str::<serde::de::IgnoredAny>(raw).is_ok();
        let mut response = Response::new(MockBody::full(raw.clone()));
        *response.status_mut() = code;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(if is_json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            }),
        );
        return response;
    }
    let kind = if code.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    error(
        code,
        &format!("mock error {status}"),
        kind,
        None,
        Some(&format!("mock_{status}")),
    )
}

/// A `text/event-stream` response over `source`, shaped by the stream knobs.
pub(crate) fn sse(source: Box<dyn EventSource>, ctx: &Ctx<'_>) -> Resp {
    let shape = StreamShape {
        cut_after: ctx.knobs.stream_cut_after,
        no_done: ctx.knobs.stream_no_done,
        delay: ctx.knobs.chunk_delay,
    };
    let body = SseBody::new(source, shape, Arc::clone(ctx.shared));
    let mut response = Response::new(MockBody::Sse(Box::new(body)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Reads `stream_options.include_usage`.
pub(crate) fn include_usage(body: &Value) -> bool {
    body.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Reads `"stream": true`.
pub(crate) fn is_stream(body: &Value) -> bool {
    body.get("stream").and_then(Value::as_bool).unwrap_or(false)
}

/// Reads the required `model` field, or answers with OpenAI's 400.
pub(crate) fn model(body: &Value) -> Result<&str, BadRequest> {
    body.get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| BadRequest::new("you must provide a model parameter", Some("model")))
}

/// `prompt_tokens_details` of a chat usage object.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct PromptDetails {
    cached_tokens: u64,
}

/// `completion_tokens_details` of a chat usage object.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct CompletionDetails {
    reasoning_tokens: u64,
}

/// A chat usage object, with the detail objects current OpenAI models return.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
}

impl ChatUsage {
    pub(crate) fn new(prompt: u64, completion: u64) -> Self {
        ChatUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: PromptDetails { cached_tokens: 0 },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: 0,
            },
        }
    }
}

/// A legacy completions usage object.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct TextUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl TextUsage {
    pub(crate) fn new(prompt: u64, completion: u64) -> Self {
        TextUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
        }
    }
}

/// The `usage` field of a stream chunk: absent, `null`, or the usage object.
pub(crate) fn chunk_usage<U>(include_usage: bool, usage: Option<U>) -> Option<Option<U>> {
    include_usage.then_some(usage)
}
