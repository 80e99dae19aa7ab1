//! OpenAI `chat.completion.chunk` events → Anthropic's Messages event stream.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::response::{encode_error, message_id, stop_reason, usage};
use crate::sse::{feed_events, EventSplitter};

/// The content block currently open, so that a delta of another kind closes it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    /// A tool call, by its OpenAI `tool_calls[].index`.
    Tool(u64),
}

/// Turns one OpenAI chat stream (as the pipeline relays it) into Anthropic's events as it
/// arrives: `message_start`, then per content block `content_block_start`, its deltas
/// (`text_delta`, `thinking_delta`, `input_json_delta`) and `content_block_stop`, then
/// `message_delta` (stop reason and usage) and `message_stop` at `data: [DONE]`.
///
/// OpenAI reports usage in a chunk after the finish reason, so `message_start` carries zero
/// usage and `message_delta` the full usage (input, output and cache reads), which the
/// Anthropic SDKs merge into the message. An OpenAI error event, an unreadable event, or an
/// end without `[DONE]` ([`StreamEncoder::finish`]) becomes one Anthropic `error` event and
/// ends the stream. Never panics, whatever it is fed.
#[derive(Debug)]
pub struct StreamEncoder {
    model: String,
    splitter: EventSplitter,
    started: bool,
    open: Option<Open>,
    /// Anthropic's block index of the open block; the next block gets the one after.
    index: u64,
    /// OpenAI tool index → Anthropic block index, for argument deltas.
    tools: BTreeMap<u64, u64>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    finished: bool,
}

impl StreamEncoder {
    /// An encoder for one answer to a request for `model` (the name the client asked for).
    pub fn new(model: &str) -> Self {
        StreamEncoder {
            model: model.to_owned(),
            splitter: EventSplitter::default(),
            started: false,
            open: None,
            index: 0,
            tools: BTreeMap::new(),
            finish_reason: None,
            usage: None,
            finished: false,
        }
    }

    /// Feeds the next bytes of the OpenAI stream; returns the Anthropic events completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        feed_events(self, chunk, |t| &mut t.splitter, Self::event)
    }

    /// Called when the OpenAI stream ends: an error event if it stopped before `[DONE]`.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.finished {
            self.fail(
                &mut out,
                502,
                "the upstream stream ended before it was complete",
            );
        }
        out
    }

    /// Whether the stream has ended (properly or with an error event).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        if data == b"[DONE]" {
            self.end(out);
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else {
            self.fail(out, 502, "the upstream sent an unreadable stream event");
            return;
        };
        if let Some(err) = chunk.get("error") {
            let status = error_status(err);
            let body = json!({ "error": err }).to_string();
            self.emit_error(out, &encode_error(status, body.as_bytes()));
            return;
        }
        self.start(&chunk, out);
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        if let Some(delta) = choice.get("delta") {
            self.delta(delta, out);
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(f.to_owned());
        }
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = message_id(chunk.get("id").and_then(Value::as_str));
        let message = json!({
            "id": id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(None),
        });
        write(
            out,
            "message_start",
            &json!({"type": "message_start", "message": message}),
        );
    }

    fn delta(&mut self, delta: &Value, out: &mut Vec<u8>) {
        let text_of = |k: &str| {
            delta
                .get(k)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
        };
        if let Some(t) = text_of("reasoning_content").or_else(|| text_of("reasoning")) {
            self.open_block(
                Open::Thinking,
                out,
                json!({"type": "thinking", "thinking": ""}),
            );
            self.block_delta(out, json!({"type": "thinking_delta", "thinking": t}));
        }
        if let Some(t) = text_of("content").or_else(|| text_of("refusal")) {
            self.open_block(Open::Text, out, json!({"type": "text", "text": ""}));
            self.block_delta(out, json!({"type": "text_delta", "text": t}));
        }
        let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) else {
            return;
        };
        for call in calls {
            let k = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let f = call.get("function");
            if !self.tools.contains_key(&k) {
                let id = call.get("id").and_then(Value::as_str).unwrap_or("");
                let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
                let block =
                    json!({"type": "tool_use", "id": id, "name": name.unwrap_or(""), "input": {}});
                self.open_block(Open::Tool(k), out, block);
                self.tools.insert(k, self.index);
            }
            let args = f.and_then(|f| f.get("arguments")).and_then(Value::as_str);
            if let (Some(args), Some(&index)) = (args.filter(|a| !a.is_empty()), self.tools.get(&k))
            {
                let d = json!({"type": "input_json_delta", "partial_json": args});
                write(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": d}),
                );
            }
        }
    }

    /// Makes `kind` the open block, closing another one first.
    fn open_block(&mut self, kind: Open, out: &mut Vec<u8>, block: Value) {
        if self.open == Some(kind) {
            return;
        }
        if self.open.is_some() {
            self.close_block(out);
            self.index += 1;
        }
        self.open = Some(kind);
        let ev =
            json!({"type": "content_block_start", "index": self.index, "content_block": block});
        write(out, "content_block_start", &ev);
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            let ev = json!({"type": "content_block_stop", "index": self.index});
            write(out, "content_block_stop", &ev);
        }
    }

    fn block_delta(&mut self, out: &mut Vec<u8>, delta: Value) {
        let ev = json!({"type": "content_block_delta", "index": self.index, "delta": delta});
        write(out, "content_block_delta", &ev);
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        self.start(&Value::Null, out);
        self.close_block(out);
        let reason = self.finish_reason.as_deref().map(stop_reason);
        let ev = json!({
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": null},
            "usage": usage(self.usage.as_ref()),
        });
        write(out, "message_delta", &ev);
        write(out, "message_stop", &json!({"type": "message_stop"}));
        self.finished = true;
    }

    fn fail(&mut self, out: &mut Vec<u8>, status: u16, message: &str) {
        let body = json!({"error": {"message": message}}).to_string();
        self.emit_error(out, &encode_error(status, body.as_bytes()));
    }

    fn emit_error(&mut self, out: &mut Vec<u8>, error: &Value) {
        write(out, "error", error);
        self.finished = true;
    }
}

/// The status an OpenAI error object stands for, so its Anthropic `type` matches what the
/// same error would be answered with outside a stream.
fn error_status(err: &Value) -> u16 {
    let kind = err.get("type").and_then(Value::as_str).unwrap_or("");
    let code = err.get("code").and_then(Value::as_str).unwrap_or("");
    match (kind, code) {
        (_, "rate_limit_exceeded") | ("requests", _) | ("insufficient_quota", _) => 429,
        (_, "overloaded") => 529,
        ("invalid_request_error", _) => 400,
        ("permission_error", _) => 403,
        ("authentication_error", _) => 401,
        _ => 500,
    }
}

/// One Anthropic SSE event.
fn write(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}
