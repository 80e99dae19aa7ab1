//! Anthropic's Messages event stream → OpenAI `chat.completion.chunk` events.

use std::collections::BTreeMap;

use johi_core::Usage;
use serde_json::{json, Map, Value};

use super::response::{decode_error, finish_reason};
use super::usage_from_anthropic;
use crate::openai_shape::{chunk, openai_usage, write_event, write_protocol_error};
use crate::sse::{feed_events, EventSplitter};

/// What kind of content block an Anthropic block index carries, so its deltas land in the
/// right OpenAI field.
#[derive(Debug, Clone, Copy)]
enum Block {
    Text,
    Thinking,
    /// A tool call, with its OpenAI `tool_calls[].index` (Anthropic counts all blocks,
    /// OpenAI only tool calls).
    Tool(u64),
    Other,
}

/// Translates one Anthropic Messages stream into OpenAI chunks as it arrives, keeping only
/// what the translation needs between events (the message id, the open blocks, the usage).
///
/// Fed raw upstream bytes ([`StreamTranslator::feed`]) or one event's data at a time
/// ([`StreamTranslator::event`]); it writes complete OpenAI SSE events (`data: …\n\n`),
/// `data: [DONE]` after `message_stop`. An upstream `error` event, an unreadable event or an
/// early end ([`StreamTranslator::finish`]) become one OpenAI error event and end the
/// stream, as Johi's own stream errors do. It never panics, whatever it is fed.
#[derive(Debug)]
pub struct StreamTranslator {
    model: String,
    created: u64,
    include_usage: bool,
    splitter: EventSplitter,
    id: String,
    blocks: BTreeMap<u64, Block>,
    next_tool: u64,
    usage: Option<Map<String, Value>>,
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
            splitter: EventSplitter::default(),
            id: String::new(),
            blocks: BTreeMap::new(),
            next_tool: 0,
            usage: None,
            finished: false,
        }
    }

    /// Feeds the next chunk of upstream bytes; returns the OpenAI events it completes (empty
    /// while an event is still partial).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        feed_events(self, chunk, |t| &mut t.splitter, Self::event)
    }

    /// Translates one Anthropic event, given its `data` (the JSON carries the event's type, so
    /// the `event:` line is not needed), appending OpenAI events to `out`.
    pub fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        let Ok(ev) = serde_json::from_slice::<Value>(data) else {
            self.fail(out, "the upstream sent an unreadable stream event");
            return;
        };
        match ev.get("type").and_then(Value::as_str) {
            Some("message_start") => self.message_start(&ev, out),
            Some("content_block_start") => self.block_start(&ev, out),
            Some("content_block_delta") => self.block_delta(&ev, out),
            Some("message_delta") => self.message_delta(&ev, out),
            Some("message_stop") => self.message_stop(out),
            Some("error") => {
                self.finished = true;
                write_event(out, &decode_error(500, data));
            }
            // `ping`, `content_block_stop`, and event types added later carry nothing for
            // an OpenAI client (Anthropic's versioning policy says to ignore unknown events).
            _ => {}
        }
    }

    /// The end of the upstream bytes: a stream that ended without `message_stop` gets an
    /// error event, so the client knows the answer is cut short.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.finished {
            self.fail(&mut out, "the upstream stream ended before message_stop");
        }
        out
    }

    /// Whether the stream is over (`message_stop`, an error, or [`StreamTranslator::finish`]).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The usage reported so far, in Johi's shape (input from `message_start`, output from
    /// the last `message_delta`); `None` before `message_start`.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
            .as_ref()
            .and_then(|u| usage_from_anthropic(&Value::Object(u.clone())))
    }

    fn fail(&mut self, out: &mut Vec<u8>, message: &str) {
        self.finished = true;
        write_protocol_error(out, message);
    }

    fn message_start(&mut self, ev: &Value, out: &mut Vec<u8>) {
        let msg = ev.get("message");
        if let Some(id) = msg.and_then(|m| m.get("id")).and_then(Value::as_str) {
            self.id = id.to_owned();
        }
        self.merge_usage(msg.and_then(|m| m.get("usage")));
        let chunk = self.chunk(json!({"role": "assistant", "content": ""}), Value::Null);
        write_event(out, &chunk);
    }

    fn block_start(&mut self, ev: &Value, out: &mut Vec<u8>) {
        let Some(index) = ev.get("index").and_then(Value::as_u64) else {
            return;
        };
        let block = ev.get("content_block");
        let text = |k: &str| {
            block
                .and_then(|b| b.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let kind = match block.and_then(|b| b.get("type")).and_then(Value::as_str) {
            Some("text") => {
                let t = text("text");
                if !t.is_empty() {
                    write_event(out, &self.chunk(json!({"content": t}), Value::Null));
                }
                Block::Text
            }
            Some("thinking") => {
                let t = text("thinking");
                if !t.is_empty() {
                    let delta = json!({"reasoning_content": t});
                    write_event(out, &self.chunk(delta, Value::Null));
                }
                Block::Thinking
            }
            Some("tool_use") => {
                let k = self.next_tool;
                self.next_tool = self.next_tool.saturating_add(1);
                let delta = json!({"tool_calls": [{
                    "index": k, "id": text("id"), "type": "function",
                    "function": {"name": text("name"), "arguments": ""},
                }]});
                write_event(out, &self.chunk(delta, Value::Null));
                Block::Tool(k)
            }
            _ => Block::Other,
        };
        self.blocks.insert(index, kind);
    }

    fn block_delta(&mut self, ev: &Value, out: &mut Vec<u8>) {
        let Some(index) = ev.get("index").and_then(Value::as_u64) else {
            return;
        };
        let delta = ev.get("delta");
        let field = |k: &str| delta.and_then(|d| d.get(k)).and_then(Value::as_str);
        let kind = delta.and_then(|d| d.get("type")).and_then(Value::as_str);
        let openai = match (self.blocks.get(&index), kind) {
            (Some(Block::Text), Some("text_delta")) => field("text").map(|t| json!({"content": t})),
            (Some(Block::Thinking), Some("thinking_delta")) => {
                field("thinking").map(|t| json!({"reasoning_content": t}))
            }
            (Some(Block::Tool(k)), Some("input_json_delta")) => field("partial_json")
                .filter(|p| !p.is_empty())
                .map(|p| json!({"tool_calls": [{"index": k, "function": {"arguments": p}}]})),
            // Signatures, citations and deltas of blocks OpenAI cannot show.
            _ => None,
        };
        if let Some(d) = openai {
            write_event(out, &self.chunk(d, Value::Null));
        }
    }

    fn message_delta(&mut self, ev: &Value, out: &mut Vec<u8>) {
        self.merge_usage(ev.get("usage"));
        let reason = ev
            .get("delta")
            .and_then(|d| d.get("stop_reason"))
            .and_then(Value::as_str);
        if let Some(r) = reason {
            write_event(out, &self.chunk(json!({}), json!(finish_reason(r))));
        }
    }

    fn message_stop(&mut self, out: &mut Vec<u8>) {
        self.finished = true;
        if self.include_usage {
            let usage = self.usage().map_or(Value::Null, |u| openai_usage(&u));
            let mut chunk = self.chunk(Value::Null, Value::Null);
            if let Some(obj) = chunk.as_object_mut() {
                obj.insert("choices".into(), json!([]));
                obj.insert("usage".into(), usage);
            }
            write_event(out, &chunk);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// Anthropic's usage counts are cumulative: a later event's field replaces the earlier.
    fn merge_usage(&mut self, usage: Option<&Value>) {
        let Some(fields) = usage.and_then(Value::as_object) else {
            return;
        };
        let mine = self.usage.get_or_insert_with(Map::new);
        for (k, v) in fields {
            if v.is_u64() {
                mine.insert(k.clone(), v.clone());
            }
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> Value {
        chunk(
            &self.id,
            self.created,
            &self.model,
            self.include_usage,
            0,
            delta,
            finish,
        )
    }
}
