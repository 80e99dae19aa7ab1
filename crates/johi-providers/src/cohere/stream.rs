//! Cohere's v2 chat event stream → OpenAI `chat.completion.chunk` events.

use std::collections::BTreeMap;

use johi_core::Usage;
use serde_json::{json, Value};

use super::response::{decode_error, finish_reason};
use super::usage_from_cohere;
use crate::openai_shape::{chunk, openai_usage_with_reasoning, write_event, write_protocol_error};
use crate::sse::{feed_events, EventSplitter};

/// Translates one Cohere chat stream into OpenAI chunks as it arrives, keeping only what the
/// translation needs between events (the message id, the tool-call indices, the usage).
///
/// Fed raw upstream bytes ([`StreamTranslator::feed`]) or one event's data at a time
/// ([`StreamTranslator::event`]); it writes complete OpenAI SSE events, `data: [DONE]`
/// after `message-end`. An upstream `ERROR` finish, an error event, an unreadable event or an
/// early end ([`StreamTranslator::finish`]) become one OpenAI error event and end the
/// stream. It never panics, whatever it is fed.
#[derive(Debug)]
pub struct StreamTranslator {
    model: String,
    created: u64,
    include_usage: bool,
    splitter: EventSplitter,
    id: String,
    /// Cohere's tool-call index → OpenAI's `tool_calls[].index`.
    tools: BTreeMap<u64, u64>,
    last_tool: Option<u64>,
    usage: Option<Usage>,
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
            tools: BTreeMap::new(),
            last_tool: None,
            usage: None,
            finished: false,
        }
    }

    /// Feeds the next chunk of upstream bytes; returns the OpenAI events it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        feed_events(self, chunk, |t| &mut t.splitter, Self::event)
    }

    /// Translates one Cohere event, given its `data` (the JSON names its own `type`),
    /// appending OpenAI events to `out`.
    pub fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.finished || data == b"[DONE]" {
            return;
        }
        let Ok(ev) = serde_json::from_slice::<Value>(data) else {
            self.fail(out, "the upstream sent an unreadable stream event");
            return;
        };
        let message = ev.get("delta").and_then(|d| d.get("message"));
        match ev.get("type").and_then(Value::as_str) {
            Some("message-start") => {
                if let Some(id) = ev.get("id").and_then(Value::as_str) {
                    self.id = id.to_owned();
                }
                let delta = json!({"role": "assistant", "content": ""});
                write_event(out, &self.chunk(delta, Value::Null));
            }
            Some("content-start" | "content-delta") => {
                self.content(message.and_then(|m| m.get("content")), out);
            }
            Some("tool-plan-delta") => {
                let plan = message
                    .and_then(|m| m.get("tool_plan"))
                    .and_then(Value::as_str);
                if let Some(p) = plan.filter(|p| !p.is_empty()) {
                    let delta = json!({"reasoning_content": p});
                    write_event(out, &self.chunk(delta, Value::Null));
                }
            }
            Some("tool-call-start") => {
                let call = message.and_then(|m| m.get("tool_calls"));
                self.tool_start(ev.get("index").and_then(Value::as_u64), call, out);
            }
            Some("tool-call-delta") => {
                let call = message.and_then(|m| m.get("tool_calls"));
                self.tool_delta(ev.get("index").and_then(Value::as_u64), call, out);
            }
            Some("message-end") => self.message_end(ev.get("delta"), out),
            Some("error") => {
                self.finished = true;
                write_event(out, &decode_error(500, data));
            }
            // `content-end`, `tool-call-end`, citations and `debug` carry nothing an OpenAI
            // client can show; event types added later are ignored likewise.
            _ => {}
        }
    }

    /// The end of the upstream bytes: a stream that ended without `message-end` gets an
    /// error event, so the client knows the answer is cut short.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.finished {
            self.fail(&mut out, "the upstream stream ended before message-end");
        }
        out
    }

    /// Whether the stream is over (`message-end`, an error, or [`StreamTranslator::finish`]).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The usage Cohere reported in `message-end`, in Johi's shape (see
    /// [`super::usage_from_cohere`]); `None` before it.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn fail(&mut self, out: &mut Vec<u8>, message: &str) {
        self.finished = true;
        write_protocol_error(out, message);
    }

    /// A content part (start or delta): text is `content`, thinking is `reasoning_content`.
    fn content(&mut self, content: Option<&Value>, out: &mut Vec<u8>) {
        let field = |k: &str| content.and_then(|c| c.get(k)).and_then(Value::as_str);
        let delta = if let Some(t) = field("text").filter(|t| !t.is_empty()) {
            json!({"content": t})
        } else if let Some(t) = field("thinking").filter(|t| !t.is_empty()) {
            json!({"reasoning_content": t})
        } else {
            return;
        };
        write_event(out, &self.chunk(delta, Value::Null));
    }

    fn tool_start(&mut self, index: Option<u64>, call: Option<&Value>, out: &mut Vec<u8>) {
        let k = u64::try_from(self.tools.len()).unwrap_or(u64::MAX);
        let cohere_index = index.unwrap_or(k);
        self.tools.insert(cohere_index, k);
        self.last_tool = Some(k);
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_owned();
        let f = call.and_then(|c| c.get("function"));
        let delta = json!({"tool_calls": [{
            "index": k,
            "id": text(call.and_then(|c| c.get("id"))),
            "type": "function",
            "function": {
                "name": text(f.and_then(|f| f.get("name"))),
                "arguments": text(f.and_then(|f| f.get("arguments"))),
            },
        }]});
        write_event(out, &self.chunk(delta, Value::Null));
    }

    fn tool_delta(&mut self, index: Option<u64>, call: Option<&Value>, out: &mut Vec<u8>) {
        let k = match index {
            Some(i) => self.tools.get(&i).copied(),
            None => self.last_tool,
        };
        let args = call
            .and_then(|c| c.get("function"))
            .and_then(|f| f.get("arguments"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty());
        if let (Some(k), Some(a)) = (k, args) {
            let delta = json!({"tool_calls": [{"index": k, "function": {"arguments": a}}]});
            write_event(out, &self.chunk(delta, Value::Null));
        }
    }

    fn message_end(&mut self, delta: Option<&Value>, out: &mut Vec<u8>) {
        self.finished = true;
        if let Some(u) = delta
            .and_then(|d| d.get("usage"))
            .and_then(usage_from_cohere)
        {
            self.usage = Some(u);
        }
        let reason = delta
            .and_then(|d| d.get("finish_reason"))
            .and_then(Value::as_str)
            .unwrap_or("COMPLETE");
        let Some(finish) = finish_reason(reason) else {
            let message = delta
                .and_then(|d| d.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("Cohere reported an ERROR finishing the answer");
            self.fail(out, message);
            return;
        };
        write_event(out, &self.chunk(json!({}), json!(finish)));
        if self.include_usage {
            let usage = self
                .usage
                .map_or(Value::Null, |u| openai_usage_with_reasoning(&u));
            let mut chunk = self.chunk(Value::Null, Value::Null);
            if let Some(obj) = chunk.as_object_mut() {
                obj.insert("choices".into(), json!([]));
                obj.insert("usage".into(), usage);
            }
            write_event(out, &chunk);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
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
