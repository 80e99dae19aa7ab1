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
use crate::tools::{bedrock_call, ToolCall};

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
    let call = bedrock_call(body).map(|call| (format!("tooluse_mock_{n}"), call));
    let output = match &call {
        Some((_, call)) => call.tokens(),
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
            Some((id, call)) => {
                json!([{"toolUse": {"toolUseId": id, "name": call.name, "input": call.input}}])
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
    call: Option<(String, ToolCall)>,
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
            Some((_, call)) => {
                let (first, second) = call.halves();
                let part = if i == 0 { first } else { second };
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
                    .map_or(("", ""), |(id, call)| (id.as_str(), call.name.as_str()));
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
