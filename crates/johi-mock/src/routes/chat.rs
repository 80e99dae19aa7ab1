//! `POST /v1/chat/completions`: a `chat.completion`, or a stream of `chat.completion.chunk`s.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};

use super::{
    chunk_usage, include_usage, is_stream, json, model, sse, BadRequest, ChatUsage, Ctx, Resp,
    CREATED,
};
use crate::body::{sse_event, EventSource};
use crate::reply::{chat_prompt_tokens, Reply};
use crate::tools::{self, Prebuilt, ToolCall};

const FINGERPRINT: &str = "fp_mock";

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: [Choice<'a>; 1],
    usage: ChatUsage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a ChatUsage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// Answers a chat completion request.
pub(super) fn handle(body: &Value, ctx: &Ctx<'_>) -> Result<Resp, BadRequest> {
    let model = model(body)?;
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return Err(BadRequest::new(
            "'messages' is a required property",
            Some("messages"),
        ));
    };
    let max_tokens = body
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| body.get("max_tokens").and_then(Value::as_u64));
    let id = format!("chatcmpl-mock-{}", ctx.shared.next_id());
    if let Some(call) = tools::openai_call(body) {
        let usage = ChatUsage::new(chat_prompt_tokens(messages), call.tokens());
        return Ok(tool_answer(&call, &id, model, usage, body, ctx));
    }
    let reply = Reply::new(ctx.knobs.reply.as_deref(), ctx.knobs.chunks, max_tokens);
    let usage = ChatUsage::new(chat_prompt_tokens(messages), reply.count() as u64);

    if is_stream(body) {
        let stream = ChatStream {
            id,
            model: model.to_owned(),
            reply,
            usage,
            include_usage: include_usage(body),
        };
        return Ok(sse(Box::new(stream), ctx));
    }
    let completion = ChatCompletion {
        id: &id,
        object: "chat.completion",
        created: CREATED,
        model,
        system_fingerprint: FINGERPRINT,
        choices: [Choice {
            index: 0,
            message: Message {
                role: "assistant",
                content: &reply.content(),
                refusal: None,
            },
            logprobs: None,
            finish_reason: reply.finish_reason,
        }],
        usage,
    };
    Ok(json(StatusCode::OK, &completion))
}

/// The answer under the tool-call convention (see [`crate::tools`]): one call to the first
/// tool, `finish_reason: "tool_calls"`; streamed, the arguments in two deltas.
fn tool_answer(
    call: &ToolCall,
    id: &str,
    model: &str,
    usage: ChatUsage,
    body: &Value,
    ctx: &Ctx<'_>,
) -> Resp {
    let call_id = format!("call_{id}");
    let chunk = |delta: Value, finish: Option<&str>, usage: Option<&ChatUsage>| {
        let choices = if delta.is_null() {
            json!([])
        } else {
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}])
        };
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED,
            "model": model, "system_fingerprint": FINGERPRINT, "choices": choices});
        if let Some(u) = chunk_usage(include_usage(body), usage) {
            c["usage"] = json!(u);
        }
        sse_event(&c)
    };
    if is_stream(body) {
        let (first, second) = call.halves();
        let args = |a: &str| json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]});
        let mut events = vec![
            chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                    "id": call_id, "type": "function",
                    "function": {"name": call.name, "arguments": ""}}]}),
                None,
                None,
            ),
            chunk(args(first), None, None),
            chunk(args(second), None, None),
            chunk(json!({}), Some("tool_calls"), None),
        ];
        if include_usage(body) {
            events.push(chunk(Value::Null, None, Some(&usage)));
        }
        return sse(Box::new(Prebuilt { events, done: true }), ctx);
    }
    let completion = json!({
        "id": id, "object": "chat.completion", "created": CREATED, "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": call_id, "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments}}]}}],
        "usage": usage,
    });
    json(StatusCode::OK, &completion)
}

/// The events of a chat stream: the role chunk, one chunk per reply word, the finish chunk,
/// and the usage chunk when `stream_options.include_usage` is set.
struct ChatStream {
    id: String,
    model: String,
    reply: Reply,
    usage: ChatUsage,
    include_usage: bool,
}

impl ChatStream {
    fn chunk(&self, choices: &[ChunkChoice<'_>], usage: Option<&ChatUsage>) -> Bytes {
        sse_event(&Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: CREATED,
            model: &self.model,
            system_fingerprint: FINGERPRINT,
            choices,
            usage: chunk_usage(self.include_usage, usage),
        })
    }

    fn choice<'a>(delta: Delta<'a>, finish_reason: Option<&'static str>) -> [ChunkChoice<'a>; 1] {
        [ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        }]
    }
}

impl EventSource for ChatStream {
    fn len(&self) -> usize {
        2 + self.reply.count() + usize::from(self.include_usage)
    }

    fn event(&self, i: usize) -> Bytes {
        let words = self.reply.count();
        if i == 0 {
            let delta = Delta {
                role: Some("assistant"),
                content: Some(""),
            };
            self.chunk(&Self::choice(delta, None), None)
        } else if i <= words {
            let piece = self.reply.piece(i - 1);
            let delta = Delta {
                role: None,
                content: Some(&piece),
            };
            self.chunk(&Self::choice(delta, None), None)
        } else if i == words + 1 {
            let finish = Some(self.reply.finish_reason);
            self.chunk(&Self::choice(Delta::default(), finish), None)
        } else {
            self.chunk(&[], Some(&self.usage))
        }
    }
}
