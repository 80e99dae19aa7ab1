//! `POST /v1/messages`: Anthropic's Messages API — a `message`, or its event stream
//! (`message_start`, `content_block_start`, one `content_block_delta` per reply word,
//! `content_block_stop`, `message_delta` with the usage, `message_stop`), so the gateway's
//! Anthropic adapter can be tested end to end without Anthropic.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use super::{is_stream, json, model, sse, BadRequest, Ctx, Resp};
use crate::body::EventSource;
use crate::reply::{chat_prompt_tokens, content_words, Reply};
use crate::tools::{self, Prebuilt, ToolCall};

/// Anthropic's `stop_reason` for the mock reply's OpenAI finish reason.
fn stop_reason(finish: &str) -> &'static str {
    if finish == "length" {
        "max_tokens"
    } else {
        "end_turn"
    }
}

/// Answers a Messages request.
pub(super) fn handle(body: &Value, ctx: &Ctx<'_>) -> Result<Resp, BadRequest> {
    let model = model(body)?;
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err(BadRequest::new(
            "messages: Field required",
            Some("messages"),
        ));
    };
    let Some(max_tokens) = body.get("max_tokens").and_then(Value::as_u64) else {
        return Err(BadRequest::new(
            "max_tokens: Field required",
            Some("max_tokens"),
        ));
    };
    let input = chat_prompt_tokens(messages) + content_words(body.get("system"));
    let id = format!("msg_mock_{}", ctx.shared.next_id());
    if let Some(call) = tools::anthropic_call(body) {
        return Ok(tool_answer(&call, &id, model, input, is_stream(body), ctx));
    }
    let reply = Reply::new(
        ctx.knobs.reply.as_deref(),
        ctx.knobs.chunks,
        Some(max_tokens),
    );
    let output = reply.count() as u64;
    let stop = stop_reason(reply.finish_reason);
    if is_stream(body) {
        let stream = MessageStream {
            id,
            model: model.to_owned(),
            reply,
            input,
            output,
            stop,
        };
        return Ok(sse(Box::new(stream), ctx));
    }
    let message = json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply.content()}],
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": output},
    });
    Ok(json(StatusCode::OK, &message))
}

/// The answer under the tool-call convention (see [`crate::tools`]): one `tool_use` block
/// for the first tool, `stop_reason: "tool_use"`; streamed, two `input_json_delta`s.
fn tool_answer(
    call: &ToolCall,
    id: &str,
    model: &str,
    input: u64,
    stream: bool,
    ctx: &Ctx<'_>,
) -> Resp {
    let tool_id = format!("toolu_{id}");
    let output = call.tokens();
    if stream {
        let (first, second) = call.halves();
        let delta = |part: &str| {
            event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": part}}),
            )
        };
        let events = vec![
            event(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": id, "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": input, "output_tokens": 1}}}),
            ),
            event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block":
                    {"type": "tool_use", "id": tool_id, "name": call.name, "input": {}}}),
            ),
            delta(first),
            delta(second),
            event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ),
            event(
                "message_delta",
                &json!({"type": "message_delta",
                    "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                    "usage": {"output_tokens": output}}),
            ),
            event("message_stop", &json!({"type": "message_stop"})),
        ];
        return sse(
            Box::new(Prebuilt {
                events,
                done: false,
            }),
            ctx,
        );
    }
    let message = json!({
        "id": id, "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "tool_use", "id": tool_id, "name": call.name, "input": call.input}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": output},
    });
    json(StatusCode::OK, &message)
}

/// An error in Anthropic's shape for a fault knob's status (`overloaded_error` for 529).
pub(crate) fn knob_error(status: u16) -> Resp {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ if code.is_client_error() => "invalid_request_error",
        _ => "api_error",
    };
    let body = json!({
        "type": "error",
        "error": {"type": kind, "message": format!("mock error {status}")},
    });
    json(code, &body)
}

/// The events of one Messages stream.
struct MessageStream {
    id: String,
    model: String,
    reply: Reply,
    input: u64,
    output: u64,
    stop: &'static str,
}

/// One Anthropic SSE event: its `event:` line and its data.
fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

impl EventSource for MessageStream {
    fn len(&self) -> usize {
        5 + self.reply.count()
    }

    fn event(&self, i: usize) -> Bytes {
        let words = self.reply.count();
        match i {
            0 => event(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": self.id, "type": "message", "role": "assistant",
                    "model": self.model, "content": [], "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": self.input, "output_tokens": 1},
                }}),
            ),
            1 => event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
            ),
            i if i < 2 + words => event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": self.reply.piece(i - 2)}}),
            ),
            i if i == 2 + words => event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ),
            i if i == 3 + words => event(
                "message_delta",
                &json!({"type": "message_delta",
                    "delta": {"stop_reason": self.stop, "stop_sequence": null},
                    "usage": {"output_tokens": self.output}}),
            ),
            _ => event("message_stop", &json!({"type": "message_stop"})),
        }
    }

    fn done(&self) -> bool {
        false
    }
}
