//! Google's Gemini API, as the Gemini API (`/v1beta/models/{model}:{method}`) and Vertex AI
//! (`/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:{method}`) serve it:
//! `generateContent`, `streamGenerateContent` (SSE of partial responses, one per reply
//! word, the last with the finish reason and usage), `batchEmbedContents`; Vertex's
//! text-embedding `predict` (on Vertex paths only, as Vertex serves it instead of
//! `batchEmbedContents`); and `POST /token`, an OAuth2 token endpoint for the JWT-bearer
//! grant, so Vertex sign-in is tested too.
//!
//! Tool calls follow the mock's convention: a request that declares functions and whose
//! last turn is not a function response is answered with one call to the first declared
//! function, every required parameter filled from its schema type.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use super::{json, sse, BadRequest, Ctx, Resp};
use crate::body::EventSource;
use crate::reply::{content_words, Reply};

/// The Gemini methods the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Generate,
    Stream,
    BatchEmbed,
    /// Vertex's `:predict` for text-embedding models.
    Predict,
}

/// Reads a Gemini or Vertex method path into (model, method).
pub(crate) fn parse_path(path: &str) -> Option<(&str, Method)> {
    let (rest, is_vertex) = match path.strip_prefix("/v1beta/models/") {
        Some(rest) => (rest, false),
        None => (vertex_rest(path)?, true),
    };
    let (model, method) = rest.rsplit_once(':')?;
    if model.is_empty() || model.contains('/') {
        return None;
    }
    let method = match method {
        "generateContent" => Method::Generate,
        "streamGenerateContent" => Method::Stream,
        "batchEmbedContents" => Method::BatchEmbed,
        "predict" if is_vertex => Method::Predict,
        _ => return None,
    };
    Some((model, method))
}

/// What follows `/publishers/google/models/` in a Vertex path.
fn vertex_rest(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/projects/")?;
    let (_, rest) = rest.split_once("/locations/")?;
    let (_, rest) = rest.split_once("/publishers/google/models/")?;
    Some(rest)
}

/// Google's error body: `{"error": {"code", "message", "status"}}`.
pub(crate) fn error(status: u16, message: &str) -> Resp {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let name = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ if code.is_client_error() => "FAILED_PRECONDITION",
        _ => "UNKNOWN",
    };
    json(
        code,
        &json!({"error": {"code": status, "message": message, "status": name}}),
    )
}

/// A fault knob's error in Google's shape.
pub(crate) fn knob_error(status: u16) -> Resp {
    error(status, &format!("mock error {status}"))
}

/// The 401 for a request that carries neither `x-goog-api-key` nor a bearer token.
pub(crate) fn check_auth(headers: &HeaderMap) -> Option<Resp> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    let key = headers.get("x-goog-api-key").is_some_and(|v| !v.is_empty());
    (!bearer && !key).then(|| {
        error(
            401,
            "Request is missing required authentication credential.",
        )
    })
}

/// Answers a Gemini method call.
pub(crate) fn handle(
    model: &str,
    method: Method,
    body: &Value,
    ctx: &Ctx<'_>,
) -> Result<Resp, BadRequest> {
    match method {
        Method::BatchEmbed => return Ok(embed(body)),
        Method::Predict => return Ok(predict(body)),
        Method::Generate | Method::Stream => {}
    }
    let Some(contents) = body.get("contents").and_then(Value::as_array) else {
        return Ok(error(
            400,
            "* GenerateContentRequest.contents: contents is not specified",
        ));
    };
    let max_tokens = body
        .pointer("/generationConfig/maxOutputTokens")
        .and_then(Value::as_u64);
    let reply = Reply::new(ctx.knobs.reply.as_deref(), ctx.knobs.chunks, max_tokens);
    let input = contents
        .iter()
        .map(|c| 3 + content_words(c.get("parts")))
        .sum::<u64>()
        + content_words(body.pointer("/systemInstruction/parts"));
    let call = tool_call(body, contents);
    let output = match &call {
        Some(_) => 10,
        None => reply.count() as u64,
    };
    let answer = Answer {
        id: format!("mock-{}", ctx.shared.next_id()),
        model: model.to_owned(),
        reply,
        call,
        input,
        output,
    };
    if method == Method::Stream {
        return Ok(sse(Box::new(answer), ctx));
    }
    Ok(json(StatusCode::OK, &answer.complete()))
}

/// The convention's function call, if the request declares functions and its last turn is
/// not a function response.
fn tool_call(body: &Value, contents: &[Value]) -> Option<(String, Value)> {
    let last_is_response = contents
        .last()
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()));
    if last_is_response {
        return None;
    }
    let first = body.pointer("/tools/0/functionDeclarations/0")?;
    let name = first.get("name").and_then(Value::as_str)?.to_owned();
    let schema = first
        .get("parametersJsonSchema")
        .or_else(|| first.get("parameters"));
    let mut args = Map::new();
    let required = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array);
    for key in required.into_iter().flatten().filter_map(Value::as_str) {
        let kind = schema
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.get(key))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let value = match kind.as_deref() {
            Some("number" | "integer") => json!(1),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => json!("mock"),
        };
        args.insert(key.to_owned(), value);
    }
    Some((name, Value::Object(args)))
}

/// One answer, complete or as stream events.
struct Answer {
    id: String,
    model: String,
    reply: Reply,
    call: Option<(String, Value)>,
    input: u64,
    output: u64,
}

impl Answer {
    fn finish(&self) -> &'static str {
        if self.call.is_none() && self.reply.finish_reason == "length" {
            "MAX_TOKENS"
        } else {
            "STOP"
        }
    }

    fn usage(&self) -> Value {
        json!({
            "promptTokenCount": self.input,
            "candidatesTokenCount": self.output,
            "totalTokenCount": self.input + self.output,
        })
    }

    fn response(&self, parts: Value, finish: Option<&str>, usage: Value) -> Value {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let (Some(f), Some(obj)) = (finish, candidate.as_object_mut()) {
            obj.insert("finishReason".into(), json!(f));
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": self.model,
            "responseId": self.id,
        })
    }

    fn complete(&self) -> Value {
        let parts = match &self.call {
            Some((name, args)) => json!([{"functionCall": {"name": name, "args": args}}]),
            None => json!([{"text": self.reply.content()}]),
        };
        self.response(parts, Some(self.finish()), self.usage())
    }
}

impl EventSource for Answer {
    fn len(&self) -> usize {
        match self.call {
            Some(_) => 1,
            None => self.reply.count().max(1),
        }
    }

    fn event(&self, i: usize) -> Bytes {
        let last = i + 1 >= self.len();
        let finish = last.then(|| self.finish());
        let usage = if last {
            self.usage()
        } else {
            json!({"promptTokenCount": self.input, "totalTokenCount": self.input})
        };
        let parts = match &self.call {
            Some((name, args)) => json!([{"functionCall": {"name": name, "args": args}}]),
            None => json!([{"text": self.reply.piece(i)}]),
        };
        Bytes::from(format!(
            "data: {}\r\n\r\n",
            self.response(parts, finish, usage)
        ))
    }

    fn done(&self) -> bool {
        false
    }
}

/// A deterministic vector for a text of `words` words, `dims` long (8 unless asked).
fn vector(words: u64, dims: Option<u64>) -> Vec<f64> {
    let dims = dims.unwrap_or(8).min(4096);
    (0..dims)
        .map(|d| ((words + d) % 7) as f64 / 8.0 - 0.25)
        .collect()
}

/// Vertex's text-embedding `predict`: one deterministic vector per instance (the same as
/// `batchEmbedContents` gives the same text), with `statistics.token_count` = the
/// content's words, and `metadata.billableCharacterCount`, as Vertex answers.
fn predict(body: &Value) -> Resp {
    let Some(instances) = body.get("instances").and_then(Value::as_array) else {
        return error(400, "Invalid JSON payload: instances is required");
    };
    let dims = body
        .pointer("/parameters/outputDimensionality")
        .and_then(Value::as_u64);
    let mut chars = 0;
    let mut predictions = Vec::with_capacity(instances.len());
    for instance in instances {
        let Some(content) = instance.get("content").and_then(Value::as_str) else {
            return error(400, "instances[].content is required");
        };
        chars += content.chars().filter(|c| !c.is_whitespace()).count();
        let words = content_words(Some(&Value::from(content)));
        predictions.push(json!({"embeddings": {
            "values": vector(words, dims),
            "statistics": {"truncated": false, "token_count": words},
        }}));
    }
    json(
        StatusCode::OK,
        &json!({"predictions": predictions, "metadata": {"billableCharacterCount": chars}}),
    )
}

/// `batchEmbedContents`: one deterministic 8-dimension vector per request (or
/// `outputDimensionality` long), from the text's words.
fn embed(body: &Value) -> Resp {
    let Some(requests) = body.get("requests").and_then(Value::as_array) else {
        return error(
            400,
            "* BatchEmbedContentsRequest.requests: requests is not specified",
        );
    };
    let embeddings: Vec<Value> = requests
        .iter()
        .map(|r| {
            let dims = r.get("outputDimensionality").and_then(Value::as_u64);
            let words = content_words(r.pointer("/content/parts"));
            json!({ "values": vector(words, dims) })
        })
        .collect();
    json(StatusCode::OK, &json!({ "embeddings": embeddings }))
}

/// `POST /token`: an OAuth2 token endpoint for the JWT-bearer grant. It checks the grant
/// type and that the assertion is a three-part JWT (not its signature), and answers a token
/// valid an hour, numbered so tests can tell fetches apart.
pub(crate) fn token(form: &[u8], ctx: &Ctx<'_>) -> Resp {
    let form = String::from_utf8_lossy(form);
    let field = |name: &str| {
        form.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.replace("%3A", ":").replace("%3a", ":"))
    };
    let oauth_error = |description: &str| {
        json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_grant", "error_description": description}),
        )
    };
    if field("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return oauth_error("grant_type must be urn:ietf:params:oauth:grant-type:jwt-bearer");
    }
    let assertion = field("assertion").unwrap_or_default();
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return oauth_error("the assertion is not a JWT");
    }
    json(
        StatusCode::OK,
        &json!({
            "access_token": format!("ya29.mock-{}", ctx.shared.next_id()),
            "expires_in": 3599,
            "token_type": "Bearer",
        }),
    )
}
