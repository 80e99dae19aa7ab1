//! `POST /v2/chat` and `POST /v2/embed`: Cohere's v2 API — a chat response or its event
//! stream (`message-start`, `content-start`, one `content-delta` per reply word,
//! `content-end`, `message-end` with the usage), and embeddings by type — so the gateway's
//! Cohere adapter can be tested end to end without Cohere.
//!
//! Like Cohere, the routes want `Authorization: Bearer <key>` (401 otherwise) and answer
//! errors as `{"message": …}`. Usage is reported both as `billed_units` and as `tokens`,
//! the latter with a prompt template's 50 tokens more, as Cohere's own answers differ.

use base64::Engine as _;
use bytes::Bytes;
use http::{header, StatusCode};
use serde_json::{json, Map, Value};

use super::embeddings::vector;
use super::{is_stream, json, model, sse, BadRequest, Ctx, Resp};
use crate::body::EventSource;
use crate::reply::{chat_prompt_tokens, words, Reply};

/// Tokens Cohere's prompt template adds to `tokens.input_tokens` but not to the bill.
const TEMPLATE_TOKENS: u64 = 50;
/// Embedding size when the request sets no `output_dimension`.
const DEFAULT_DIMENSIONS: usize = 16;
/// Largest `output_dimension` accepted.
const MAX_DIMENSIONS: u64 = 65_536;

/// An error in Cohere's shape: `{"id", "message"}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Resp {
    json(status, &json!({"id": "mock-error", "message": message}))
}

/// The answer to a fault knob on a Cohere route.
pub(crate) fn knob_error(status: u16) -> Resp {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(code, &format!("mock error {status}"))
}

/// The 401 Cohere gives a request without a bearer token.
fn unauthorized(ctx: &Ctx<'_>) -> Option<Resp> {
    let auth = ctx
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let has_token = auth
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "))
        && !auth[7..].trim().is_empty();
    (!has_token).then(|| error(StatusCode::UNAUTHORIZED, "no api key supplied"))
}

fn usage(input: u64, output: u64) -> Value {
    json!({
        "billed_units": {"input_tokens": input, "output_tokens": output},
        "tokens": {"input_tokens": input + TEMPLATE_TOKENS, "output_tokens": output},
    })
}

/// The arguments the mock convention makes from a tool's JSON schema: every `required`
/// property set to a placeholder of its type.
fn mock_arguments(schema: Option<&Value>) -> String {
    let props = schema.and_then(|s| s.get("properties"));
    let mut args = Map::new();
    for name in schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let kind = props
            .and_then(|p| p.get(name))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str);
        let value = match kind {
            Some("number" | "integer") => json!(1),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => json!("mock"),
        };
        args.insert(name.to_owned(), value);
    }
    Value::Object(args).to_string()
}

/// The tool call the mock answers with: to the first declared tool, unless the last message
/// is a tool result (then the normal reply).
fn planned_call(body: &Value, messages: &[Value]) -> Option<(String, String)> {
    let first = body.get("tools")?.as_array()?.first()?;
    let last_role = messages
        .last()
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str);
    if last_role == Some("tool") {
        return None;
    }
    let f = first.get("function")?;
    let name = f.get("name")?.as_str()?.to_owned();
    Some((name, mock_arguments(f.get("parameters"))))
}

/// Answers a v2 chat request.
pub(super) fn chat(body: &Value, ctx: &Ctx<'_>) -> Result<Resp, BadRequest> {
    if let Some(denied) = unauthorized(ctx) {
        return Ok(denied);
    }
    let model = model(body)?;
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err(BadRequest::new(
            "messages: Field required",
            Some("messages"),
        ));
    };
    let input = chat_prompt_tokens(messages);
    let id = format!("mock-cohere-{}", ctx.shared.next_id());
    let _ = model;
    if let Some((name, arguments)) = planned_call(body, messages) {
        let plan = format!("I will call {name}.");
        let call_id = format!("{name}_mock{}", ctx.shared.next_id());
        let output = words(&plan);
        if is_stream(body) {
            let stream = ToolStream {
                id,
                plan,
                call_id,
                name,
                arguments,
                usage: usage(input, output),
            };
            return Ok(sse(Box::new(stream), ctx));
        }
        let answer = json!({
            "id": id,
            "finish_reason": "TOOL_CALL",
            "message": {
                "role": "assistant",
                "tool_plan": plan,
                "tool_calls": [{"id": call_id, "type": "function",
                    "function": {"name": name, "arguments": arguments}}],
            },
            "usage": usage(input, output),
        });
        return Ok(json(StatusCode::OK, &answer));
    }
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64);
    let reply = Reply::new(ctx.knobs.reply.as_deref(), ctx.knobs.chunks, max_tokens);
    let output = reply.count() as u64;
    let finish = if reply.finish_reason == "length" {
        "MAX_TOKENS"
    } else {
        "COMPLETE"
    };
    if is_stream(body) {
        let stream = TextStream {
            id,
            reply,
            finish,
            usage: usage(input, output),
        };
        return Ok(sse(Box::new(stream), ctx));
    }
    let answer = json!({
        "id": id,
        "finish_reason": finish,
        "message": {"role": "assistant", "content": [{"type": "text", "text": reply.content()}]},
        "usage": usage(input, output),
    });
    Ok(json(StatusCode::OK, &answer))
}

/// One Cohere SSE event: its `event:` line and its data.
fn event(data: &Value) -> Bytes {
    let name = data.get("type").and_then(Value::as_str).unwrap_or("");
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn message_start(id: &str) -> Bytes {
    event(
        &json!({"id": id, "type": "message-start", "delta": {"message": {
            "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": [],
        }}}),
    )
}

fn message_end(finish: &str, usage: &Value) -> Bytes {
    event(&json!({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}}))
}

/// The events of a streamed text answer.
struct TextStream {
    id: String,
    reply: Reply,
    finish: &'static str,
    usage: Value,
}

impl EventSource for TextStream {
    fn len(&self) -> usize {
        4 + self.reply.count()
    }

    fn event(&self, i: usize) -> Bytes {
        let words = self.reply.count();
        match i {
            0 => message_start(&self.id),
            1 => event(&json!({"type": "content-start", "index": 0,
                "delta": {"message": {"content": {"type": "text", "text": ""}}}})),
            i if i < 2 + words => event(&json!({"type": "content-delta", "index": 0,
                "delta": {"message": {"content": {"text": self.reply.piece(i - 2)}}}})),
            i if i == 2 + words => event(&json!({"type": "content-end", "index": 0})),
            _ => message_end(self.finish, &self.usage),
        }
    }

    fn done(&self) -> bool {
        false
    }
}

/// The events of a streamed tool call: the plan, the call, its arguments in two deltas.
struct ToolStream {
    id: String,
    plan: String,
    call_id: String,
    name: String,
    arguments: String,
    usage: Value,
}

impl EventSource for ToolStream {
    fn len(&self) -> usize {
        7
    }

    fn event(&self, i: usize) -> Bytes {
        let mid = self
            .arguments
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| i >= self.arguments.len() / 2)
            .unwrap_or(0);
        let args = |part: &str| {
            event(&json!({"type": "tool-call-delta", "index": 0,
                "delta": {"message": {"tool_calls": {"function": {"arguments": part}}}}}))
        };
        match i {
            0 => message_start(&self.id),
            1 => event(&json!({"type": "tool-plan-delta",
                "delta": {"message": {"tool_plan": self.plan}}})),
            2 => event(&json!({"type": "tool-call-start", "index": 0,
                "delta": {"message": {"tool_calls": {"id": self.call_id, "type": "function",
                    "function": {"name": self.name, "arguments": ""}}}}})),
            3 => args(&self.arguments[..mid]),
            4 => args(&self.arguments[mid..]),
            5 => event(&json!({"type": "tool-call-end", "index": 0})),
            _ => message_end("TOOL_CALL", &self.usage),
        }
    }

    fn done(&self) -> bool {
        false
    }
}

/// FNV-1a (64 bit) of a text: the seed of its vector.
pub(crate) fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Answers a v2 embed request.
pub(super) fn embed(body: &Value, ctx: &Ctx<'_>) -> Result<Resp, BadRequest> {
    if let Some(denied) = unauthorized(ctx) {
        return Ok(denied);
    }
    model(body)?;
    let texts: Option<Vec<&str>> = body
        .get("texts")
        .and_then(Value::as_array)
        .map(|t| t.iter().map(Value::as_str).collect())
        .unwrap_or(None);
    let Some(texts) = texts else {
        return Err(BadRequest::new(
            "texts: must be an array of strings",
            Some("texts"),
        ));
    };
    if body.get("input_type").and_then(Value::as_str).is_none() {
        return Err(BadRequest::new(
            "input_type: Field required for embed models v3 and higher",
            Some("input_type"),
        ));
    }
    let dims = match body.get("output_dimension") {
        None => DEFAULT_DIMENSIONS,
        Some(d) => match d.as_u64().filter(|d| (1..=MAX_DIMENSIONS).contains(d)) {
            Some(d) => d as usize,
            None => {
                return Err(BadRequest::new(
                    "output_dimension: invalid",
                    Some("output_dimension"),
                ))
            }
        },
    };
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| vector(hash(t), dims)).collect();
    let types = body
        .get("embedding_types")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| vec![json!("float")]);
    let mut embeddings = Map::new();
    for t in types.iter().filter_map(Value::as_str) {
        let value = match t {
            "float" => json!(vectors),
            "base64" => json!(vectors
                .iter()
                .map(|v| {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                })
                .collect::<Vec<_>>()),
            _ => {
                return Err(BadRequest::new(
                    "embedding_types: the mock serves float and base64",
                    Some("embedding_types"),
                ))
            }
        };
        embeddings.insert(t.to_owned(), value);
    }
    let input: u64 = texts.iter().map(|t| words(t)).sum();
    let answer = json!({
        "id": format!("mock-embed-{}", ctx.shared.next_id()),
        "embeddings": embeddings,
        "texts": texts,
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": input}},
        "response_type": "embeddings_by_type",
    });
    Ok(json(StatusCode::OK, &answer))
}
