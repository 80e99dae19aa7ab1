//! Bedrock ConverseStream (`application/vnd.amazon.eventstream` frames) → OpenAI
//! `chat.completion.chunk` events.

use std::collections::BTreeMap;

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::Message;
use bytes::{Buf, BytesMut};
use johi_core::Usage;
use serde_json::{json, Value};

use super::response::{error_kind, finish_reason};
use super::{response_id, usage_from_bedrock};
use crate::openai_shape::{chunk, openai_usage, write_event, write_protocol_error};

/// The largest event-stream frame accepted (AWS caps messages at 16 MiB): a larger length
/// prefix is a broken or hostile stream, refused before anything is buffered for it.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// The smallest valid frame: the 12-byte prelude and the 4-byte message CRC.
const MIN_FRAME_BYTES: usize = 16;

/// Translates one ConverseStream response into OpenAI chunks as its bytes arrive.
///
/// Frames are reassembled from chunks split anywhere, their CRCs checked (by the AWS
/// event-stream decoder), and their size capped at [`MAX_FRAME_BYTES`]. Converse sends
/// `messageStop` (the stop reason) *before* `metadata` (the usage), so `data: [DONE]` is
/// written after `metadata`, or by [`StreamTranslator::finish`] when the stream ends after
/// `messageStop` without it. An exception frame, a corrupt frame or an early end become one
/// OpenAI error event and end the stream. It never panics, whatever it is fed.
#[derive(Debug)]
pub struct StreamTranslator {
    model: String,
    created: u64,
    include_usage: bool,
    buf: BytesMut,
    id: Option<String>,
    /// Converse block index → OpenAI `tool_calls[].index`, for tool-use blocks.
    tools: BTreeMap<u64, u64>,
    next_tool: u64,
    usage: Option<Usage>,
    stopped: bool,
    finished: bool,
}

impl StreamTranslator {
    /// A translator for one response. `model` is the name the client asked for, `created` the
    /// Unix time to stamp on every chunk, and `include_usage` the client's
    /// `stream_options.include_usage` (a final chunk with the usage and no choices).
    pub fn new(model: &str, created: u64, include_usage: bool) -> Self {
        StreamTranslator {
            model: model.to_owned(),
            created,
            include_usage,
            buf: BytesMut::new(),
            id: None,
            tools: BTreeMap::new(),
            next_tool: 0,
            usage: None,
            stopped: false,
            finished: false,
        }
    }

    /// Feeds the next chunk of upstream bytes; returns the OpenAI events of the frames it
    /// completes (empty while a frame is still partial).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.buf.extend_from_slice(chunk);
        while !self.finished && self.buf.len() >= 4 {
            let len = [0, 1, 2, 3].map(|i| self.buf.get(i).copied().unwrap_or(0));
            let len = u32::from_be_bytes(len) as usize;
            if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&len) {
                self.fail(
                    &mut out,
                    "the upstream sent an event-stream frame of impossible length",
                );
                break;
            }
            if self.buf.len() < len {
                break;
            }
            let frame = self.buf.split_to(len).freeze();
            match read_message_from(frame.chunk()) {
                Ok(message) => self.message(&message, &mut out),
                Err(_) => self.fail(&mut out, "the upstream sent a corrupt event-stream frame"),
            }
        }
        out
    }

    /// The end of the upstream bytes: `[DONE]` after `messageStop` (usage or not), else an
    /// error event, so the client knows the answer is cut short.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished {
        } else if self.stopped && self.buf.is_empty() {
            self.done(&mut out);
        } else {
            self.fail(&mut out, "the upstream stream ended before messageStop");
        }
        out
    }

    /// Whether the stream is over (`[DONE]` or an error written).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The usage from the `metadata` event, in Johi's shape; `None` before it.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn message(&mut self, message: &Message, out: &mut Vec<u8>) {
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
        };
        let payload: Option<Value> = serde_json::from_slice(message.payload()).ok();
        match header(":message-type").as_deref() {
            Some("event") => {}
            Some("exception") => {
                let name = header(":exception-type");
                let text = payload
                    .as_ref()
                    .and_then(|p| p.get("message").or_else(|| p.get("Message")))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                return self.upstream_error(out, name.as_deref(), text);
            }
            _ => {
                let text = header(":error-message");
                return self.upstream_error(out, header(":error-code").as_deref(), text);
            }
        }
        let Some(ev) = payload else {
            return self.fail(out, "the upstream sent an unreadable stream event");
        };
        if self.id.is_none() {
            self.id = Some(response_id(message.payload(), self.created));
        }
        match header(":event-type").as_deref() {
            Some("messageStart") => {
                let chunk = self.chunk(json!({"role": "assistant", "content": ""}), Value::Null);
                write_event(out, &chunk);
            }
            Some("contentBlockStart") => self.block_start(&ev, out),
            Some("contentBlockDelta") => self.block_delta(&ev, out),
            Some("messageStop") => {
                self.stopped = true;
                let reason = ev.get("stopReason").and_then(Value::as_str).unwrap_or("");
                write_event(out, &self.chunk(json!({}), json!(finish_reason(reason))));
            }
            Some("metadata") => {
                self.usage = ev.get("usage").and_then(usage_from_bedrock);
                if self.stopped {
                    self.done(out);
                }
            }
            // `contentBlockStop`, and event types added later, carry nothing for an OpenAI
            // client.
            _ => {}
        }
    }

    fn block_start(&mut self, ev: &Value, out: &mut Vec<u8>) {
        let (Some(index), Some(tool)) = (
            ev.get("contentBlockIndex").and_then(Value::as_u64),
            ev.pointer("/start/toolUse"),
        ) else {
            return;
        };
        let k = self.next_tool;
        self.next_tool = self.next_tool.saturating_add(1);
        self.tools.insert(index, k);
        let text = |f: &str| tool.get(f).and_then(Value::as_str).unwrap_or("");
        let delta = json!({"tool_calls": [{
            "index": k, "id": text("toolUseId"), "type": "function",
            "function": {"name": text("name"), "arguments": ""},
        }]});
        write_event(out, &self.chunk(delta, Value::Null));
    }

    fn block_delta(&mut self, ev: &Value, out: &mut Vec<u8>) {
        let index = ev.get("contentBlockIndex").and_then(Value::as_u64);
        let Some(delta) = ev.get("delta") else {
            return;
        };
        let openai = if let Some(t) = delta.get("text").and_then(Value::as_str) {
            Some(json!({ "content": t }))
        } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str) {
            let k = index.and_then(|i| self.tools.get(&i));
            k.filter(|_| !input.is_empty())
                .map(|k| json!({"tool_calls": [{"index": k, "function": {"arguments": input}}]}))
        } else {
            // Reasoning signatures and redacted reasoning are opaque to an OpenAI client.
            delta
                .pointer("/reasoningContent/text")
                .and_then(Value::as_str)
                .map(|t| json!({ "reasoning_content": t }))
        };
        if let Some(d) = openai {
            write_event(out, &self.chunk(d, Value::Null));
        }
    }

    fn done(&mut self, out: &mut Vec<u8>) {
        self.finished = true;
        if self.include_usage {
            let usage = self.usage.as_ref().map_or(Value::Null, openai_usage);
            let mut chunk = self.chunk(Value::Null, Value::Null);
            if let Some(obj) = chunk.as_object_mut() {
                obj.insert("choices".into(), json!([]));
                obj.insert("usage".into(), usage);
            }
            write_event(out, &chunk);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn upstream_error(&mut self, out: &mut Vec<u8>, name: Option<&str>, text: Option<String>) {
        self.finished = true;
        let (typ, code) = error_kind(name, 500);
        let message = text.unwrap_or_else(|| {
            format!(
                "the upstream stream reported {}",
                name.unwrap_or("an error")
            )
        });
        write_event(
            out,
            &json!({"error": {"message": message, "type": typ, "param": null, "code": code}}),
        );
    }

    fn fail(&mut self, out: &mut Vec<u8>, message: &str) {
        self.finished = true;
        write_protocol_error(out, message);
    }

    fn chunk(&self, delta: Value, finish: Value) -> Value {
        chunk(
            self.id.as_deref().unwrap_or(""),
            self.created,
            &self.model,
            self.include_usage,
            0,
            delta,
            finish,
        )
    }
}
