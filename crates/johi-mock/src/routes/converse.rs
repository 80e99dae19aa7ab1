//! `POST /model/{modelId}/converse` and `/converse-stream`: AWS Bedrock's Converse API — a
//! Converse response, or ConverseStream's binary event-stream frames (`messageStart`, one
//! `contentBlockDelta` per reply word, `contentBlockStop`, `messageStop`, `metadata` with
//! the usage), so the gateway's Bedrock adapter can be tested end to end without AWS.
//!
//! Requests must be SigV4-signed with [`crate::MOCK_AWS_ACCESS_KEY_ID`] and
//! [`crate::MOCK_AWS_SECRET_ACCESS_KEY`] (service `bedrock`, any region); see [`super::sigv4`].

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue as EventHeader, Message};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::{json, sse, BadRequest, Ctx, Resp};
use crate::body::EventSource;
use crate::reply::{words, Reply};

/// The event-stream content type of a ConverseStream answer.
const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// Converse's `stopReason` for the mock reply's OpenAI finish reason.
fn stop_reason(finish: &str) -> &'static str {
    if finish == "length" {
        "max_tokens"
    } else {
        "end_turn"
    }
}

/// Words of every `text` in Converse content blocks (messages, system, tool results).
fn text_words(v: &Value) -> u64 {
    match v {
        Value::Array(items) => items.iter().map(text_words).sum(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match (k.as_str(), v) {
                ("text", Value::String(s)) => words(s),
                (_, v) => text_words(v),
            })
            .sum(),
        _ => 0,
    }
}

/// The tool call the mock convention asks for: the first declared tool, unless the last
/// message carries a tool result.
fn tool_call(body: &Value) -> Option<(String, String)> {
    let tool = body.pointer("/toolConfig/tools/0/toolSpec")?;
    let last = body.get("messages")?.as_array()?.last()?;
    let answered = last
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|b| b.get("toolResult").is_some()));
    if answered {
        return None;
    }
    let name = tool.get("name")?.as_str()?.to_owned();
    let schema = tool.pointer("/inputSchema/json");
    Some((name, mock_arguments(schema).to_string()))
}

/// Arguments from a JSON schema: every `required` property set to a fixed value of its type.
pub(crate) fn mock_arguments(schema: Option<&Value>) -> Value {
    let mut args = serde_json::Map::new();
    let props = schema.and_then(|s| s.get("properties"));
    let required = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
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
    Value::Object(args)
}

/// Answers a Converse or ConverseStream request for `model`.
pub(super) fn handle(body: &Value, stream: bool, ctx: &Ctx<'_>) -> Result<Resp, BadRequest> {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err(BadRequest::new(
            "messages: Field required",
            Some("messages"),
        ));
    };
    let max_tokens = body
        .pointer("/inferenceConfig/maxTokens")
        .and_then(Value::as_u64);
    let reply = Reply::new(ctx.knobs.reply.as_deref(), ctx.knobs.chunks, max_tokens);
    let input =
        messages.iter().map(text_words).sum::<u64>() + body.get("system").map_or(0, text_words);
    let n = ctx.shared.next_id();
    let call = tool_call(body).map(|(name, args)| (format!("tooluse_mock_{n}"), name, args));
    let output = match &call {
        Some((_, _, args)) => args.len().div_ceil(4) as u64,
        None => reply.count() as u64,
    };
    let usage =
        json!({"inputTokens": input, "outputTokens": output, "totalTokens": input + output});
    let stop = if call.is_some() {
        "tool_use"
    } else {
        stop_reason(reply.finish_reason)
    };
    let request_id = format!("mock-bedrock-{n}");
    let mut response = if stream {
        let frames = ConverseFrames {
            reply,
            call,
            stop,
            usage,
        };
        let mut response = sse(Box::new(frames), ctx);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(EVENT_STREAM),
        );
        response
    } else {
        let content = match &call {
            Some((id, name, args)) => {
                let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                json!([{"toolUse": {"toolUseId": id, "name": name, "input": input}}])
            }
            None => json!([{"text": reply.content()}]),
        };
        json(
            StatusCode::OK,
            &json!({
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 1},
            }),
        )
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    Ok(response)
}

/// An error in Bedrock's shape: `{"message"}` and the exception in `x-amzn-errortype`.
pub(crate) fn error(status: u16, message: &str) -> Resp {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let exception = match status {
        400 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ if code.is_client_error() => "ValidationException",
        _ => "InternalServerException",
    };
    error_named(code, exception, message)
}

/// A Bedrock error naming its exception (e.g. the signature check's).
pub(crate) fn error_named(code: StatusCode, exception: &str, message: &str) -> Resp {
    let mut response = json(code, &json!({ "message": message }));
    let value = format!("{exception}:http://internal.amazon.com/coral/com.amazon.bedrock/");
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    response
}

/// The frames of one ConverseStream answer: a text reply (one delta per word) or the
/// convention's tool call (its arguments in two deltas).
struct ConverseFrames {
    reply: Reply,
    call: Option<(String, String, String)>,
    stop: &'static str,
    usage: Value,
}

/// One event-stream frame carrying a Converse event.
pub(crate) fn frame(event_type: &str, payload: &Value) -> Bytes {
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(
            ":event-type",
            EventHeader::String(event_type.to_owned().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            EventHeader::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            EventHeader::String("event".into()),
        ));
    let mut buf = Vec::new();
    // Writing to a Vec fails only past 16 MiB headers or payloads, which the mock never sends.
    let _ = write_message_to(&message, &mut buf);
    Bytes::from(buf)
}

impl ConverseFrames {
    /// The content deltas: reply words, or the tool arguments split in the middle.
    fn deltas(&self) -> usize {
        if self.call.is_some() {
            2
        } else {
            self.reply.count()
        }
    }

    fn delta(&self, i: usize) -> Value {
        match &self.call {
            Some((_, _, args)) => {
                let mut mid = args.len() / 2;
                while !args.is_char_boundary(mid) {
                    mid -= 1;
                }
                let part = if i == 0 { &args[..mid] } else { &args[mid..] };
                json!({"toolUse": {"input": part}})
            }
            None => json!({"text": self.reply.piece(i)}),
        }
    }
}

impl EventSource for ConverseFrames {
    fn len(&self) -> usize {
        // messageStart, [contentBlockStart for a tool], deltas, contentBlockStop,
        // messageStop, metadata.
        4 + usize::from(self.call.is_some()) + self.deltas()
    }

    fn event(&self, i: usize) -> Bytes {
        let start = usize::from(self.call.is_some());
        let deltas = self.deltas();
        match i {
            0 => frame("messageStart", &json!({"p": "abcd", "role": "assistant"})),
            1 if start == 1 => {
                let (id, name) = self
                    .call
                    .as_ref()
                    .map_or(("", ""), |(id, name, _)| (id.as_str(), name.as_str()));
                frame(
                    "contentBlockStart",
                    &json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": id, "name": name}}}),
                )
            }
            i if i < 1 + start + deltas => frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": self.delta(i - 1 - start)}),
            ),
            i if i == 1 + start + deltas => {
                frame("contentBlockStop", &json!({"contentBlockIndex": 0}))
            }
            i if i == 2 + start + deltas => frame("messageStop", &json!({"stopReason": self.stop})),
            _ => frame(
                "metadata",
                &json!({"usage": self.usage, "metrics": {"latencyMs": 1}}),
            ),
        }
    }

    fn done(&self) -> bool {
        false
    }
}
