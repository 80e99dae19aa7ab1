//! `POST /v1/completions`: the legacy `text_completion`, whole or streamed.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::{
    chunk_usage, include_usage, is_stream, json, model, sse, BadRequest, Ctx, Resp, TextUsage,
    CREATED,
};
use crate::body::{sse_event, EventSource};
use crate::reply::{prompt_tokens, Reply};

#[derive(Serialize)]
struct TextCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [Choice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<&'a TextUsage>>,
}

#[derive(Serialize)]
struct Choice<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

/// Answers a legacy completion request.
pub(super) fn handle(body: &Value, ctx: &Ctx<'_>) -> Result<Resp, BadRequest> {
    let model = model(body)?;
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64);
    let reply = Reply::new(ctx.knobs.reply.as_deref(), ctx.knobs.chunks, max_tokens);
    let usage = TextUsage::new(prompt_tokens(body.get("prompt")), reply.count() as u64);
    let id = format!("cmpl-mock-{}", ctx.shared.next_id());

    if is_stream(body) {
        let stream = TextStream {
            id,
            model: model.to_owned(),
            reply,
            usage,
            include_usage: include_usage(body),
        };
        return Ok(sse(Box::new(stream), ctx));
    }
    let completion = TextCompletion {
        id: &id,
        object: "text_completion",
        created: CREATED,
        model,
        choices: &[Choice {
            text: &reply.content(),
            index: 0,
            logprobs: None,
            finish_reason: Some(reply.finish_reason),
        }],
        usage: Some(Some(&usage)),
    };
    Ok(json(StatusCode::OK, &completion))
}

/// The events of a legacy stream: one chunk per reply word, a final chunk with the finish
/// reason, and the usage chunk when `stream_options.include_usage` is set.
struct TextStream {
    id: String,
    model: String,
    reply: Reply,
    usage: TextUsage,
    include_usage: bool,
}

impl TextStream {
    fn chunk(&self, choices: &[Choice<'_>], usage: Option<&TextUsage>) -> Bytes {
        sse_event(&TextCompletion {
            id: &self.id,
            object: "text_completion",
            created: CREATED,
            model: &self.model,
            choices,
            usage: chunk_usage(self.include_usage, usage),
        })
    }
}

/// The single choice of a stream chunk.
fn choice<'a>(text: &'a str, finish_reason: Option<&'static str>) -> [Choice<'a>; 1] {
    [Choice {
        text,
        index: 0,
        logprobs: None,
        finish_reason,
    }]
}

impl EventSource for TextStream {
    fn len(&self) -> usize {
        1 + self.reply.count() + usize::from(self.include_usage)
    }

    fn event(&self, i: usize) -> Bytes {
        let words = self.reply.count();
        if i < words {
            let piece = self.reply.piece(i);
            self.chunk(&choice(&piece, None), None)
        } else if i == words {
            self.chunk(&choice("", Some(self.reply.finish_reason)), None)
        } else {
            self.chunk(&[], Some(&self.usage))
        }
    }
}
