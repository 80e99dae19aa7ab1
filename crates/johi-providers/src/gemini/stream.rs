//! Gemini's `streamGenerateContent?alt=sse` stream → OpenAI `chat.completion.chunk` events.

use std::collections::BTreeMap;

use johi_core::Usage;
use serde_json::{json, Value};

use super::response::{choice_finish, decode_error, response_id};
use super::{call_id, usage_from_gemini};
use crate::openai_shape::{
    chunk, openai_tool_call, openai_usage_with_reasoning, write_event, write_protocol_error,
};
use crate::sse::{feed_events, EventSplitter};

/// What the translation remembers of one candidate (one OpenAI choice).
#[derive(Debug, Default, Clone, Copy)]
struct Candidate {
    /// Function calls sent so far: the next call's `tool_calls[].index` and `call_<n>` id.
    calls: usize,
    /// Whether a finish reason was sent.
    finished: bool,
}

/// One candidate's content in a stream event, read into OpenAI's delta fields.
#[derive(Debug, Default)]
struct Parts {
    text: Option<String>,
    reasoning: Option<String>,
    calls: Vec<Value>,
}

/// Reads a candidate's parts by the rules of a complete answer (`response::read_parts`: text,
/// thought summaries as reasoning, function calls numbered `call_<n>` when they have no id);
/// `first_call` numbers on from the calls of earlier events. The stream reads its events as
/// `Value`s: one event is small, and the per-event cost meets the bar.
fn read_parts(content: Option<&Value>, first_call: usize) -> Parts {
    let mut out = Parts::default();
    let parts = content
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array);
    for part in parts.into_iter().flatten() {
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
            let slot = if thought {
                &mut out.reasoning
            } else {
                &mut out.text
            };
            slot.get_or_insert_with(String::new).push_str(t);
        } else if let Some(fc) = part.get("functionCall") {
            let n = first_call.saturating_add(out.calls.len());
            out.calls.push(tool_call(fc, n));
        }
    }
    out
}

/// A `functionCall` as an OpenAI tool call, arguments as a JSON string.
fn tool_call(fc: &Value, n: usize) -> Value {
    let name = fc.get("name").and_then(Value::as_str).unwrap_or("");
    let args = fc.get("args").cloned().unwrap_or_else(|| json!({}));
    openai_tool_call(
        &call_id(fc.get("id").and_then(Value::as_str), n),
        name,
        &args.to_string(),
    )
}

/// Translates one Gemini stream into OpenAI chunks as it arrives.
///
/// Each SSE event is a partial `GenerateContentResponse`: text parts become `content`
/// deltas, thought parts `reasoning_content` deltas, and each `functionCall` (Gemini sends
/// them whole) one `tool_calls` delta with its arguments complete. The first event of a
/// candidate is preceded by a role chunk. Gemini's stream has no end marker: the stream is
/// complete when it ends after a finish reason, and then [`StreamTranslator::finish`] writes
/// the usage chunk (when asked) and `data: [DONE]`; ending before one, an error event or an
/// unreadable event each end the stream with one OpenAI error event. It never panics,
/// whatever it is fed.
#[derive(Debug)]
pub struct StreamTranslator {
    model: String,
    created: u64,
    include_usage: bool,
    splitter: EventSplitter,
    id: Option<String>,
    candidates: BTreeMap<u64, Candidate>,
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
            id: None,
            candidates: BTreeMap::new(),
            usage: None,
            finished: false,
        }
    }

    /// Feeds the next chunk of upstream bytes; returns the OpenAI events it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        feed_events(self, chunk, |t| &mut t.splitter, Self::event)
    }

    /// Translates one event's data (a partial response, or an error), appending OpenAI
    /// events to `out`.
    pub fn event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        let Ok(ev) = serde_json::from_slice::<Value>(data) else {
            self.fail(out, "the upstream sent an unreadable stream event");
            return;
        };
        if ev.get("error").is_some() {
            self.finished = true;
            let status = ev
                .pointer("/error/code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            write_event(out, &decode_error(status, data));
            return;
        }
        if self.id.is_none() {
            let id = ev.get("responseId").and_then(Value::as_str);
            self.id = Some(response_id(id, self.created));
        }
        if let Some(u) = ev.get("usageMetadata").and_then(usage_from_gemini) {
            self.usage = Some(u);
        }
        let candidates = ev.get("candidates").and_then(Value::as_array);
        for (i, cand) in candidates.into_iter().flatten().enumerate() {
            let index = cand
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(i as u64);
            self.candidate(index, cand, out);
        }
        if candidates.is_none_or(Vec::is_empty)
            && ev.pointer("/promptFeedback/blockReason").is_some()
        {
            // The prompt was blocked: one choice, filtered, as OpenAI reports it.
            let state = self.candidates.entry(0).or_default();
            if !state.finished {
                state.finished = true;
                let role = json!({"role": "assistant", "content": ""});
                write_event(out, &self.chunk(0, role, Value::Null));
                write_event(out, &self.chunk(0, json!({}), json!("content_filter")));
            }
        }
    }

    fn candidate(&mut self, index: u64, cand: &Value, out: &mut Vec<u8>) {
        let first = !self.candidates.contains_key(&index);
        let mut state = self.candidates.get(&index).copied().unwrap_or_default();
        if state.finished {
            return;
        }
        if first {
            let role = json!({"role": "assistant", "content": ""});
            write_event(out, &self.chunk(index, role, Value::Null));
        }
        let parts = read_parts(cand.get("content"), state.calls);
        if let Some(r) = parts.reasoning {
            write_event(
                out,
                &self.chunk(index, json!({ "reasoning_content": r }), Value::Null),
            );
        }
        if let Some(t) = parts.text.filter(|t| !t.is_empty()) {
            write_event(
                out,
                &self.chunk(index, json!({ "content": t }), Value::Null),
            );
        }
        for call in parts.calls {
            // OpenAI's order: the delta's `index` first, then the call.
            let mut indexed = serde_json::Map::new();
            indexed.insert("index".into(), json!(state.calls));
            if let Value::Object(fields) = call {
                indexed.extend(fields);
            }
            state.calls = state.calls.saturating_add(1);
            let delta = json!({ "tool_calls": [indexed] });
            write_event(out, &self.chunk(index, delta, Value::Null));
        }
        if let Some(reason) = cand.get("finishReason").and_then(Value::as_str) {
            state.finished = true;
            let finish = json!(choice_finish(reason, state.calls > 0));
            write_event(out, &self.chunk(index, json!({}), finish));
        }
        self.candidates.insert(index, state);
    }

    /// The end of the upstream bytes: after a finish reason, the usage chunk (when asked)
    /// and `[DONE]`; before one, an error event, so the client knows the answer is cut short.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        let complete = !self.candidates.is_empty() && self.candidates.values().all(|c| c.finished);
        if !complete {
            self.fail(&mut out, "the upstream stream ended before a finish reason");
            return out;
        }
        self.finished = true;
        if self.include_usage {
            let usage = self
                .usage
                .as_ref()
                .map_or(Value::Null, openai_usage_with_reasoning);
            let mut chunk = self.chunk(0, Value::Null, Value::Null);
            if let Some(obj) = chunk.as_object_mut() {
                obj.insert("choices".into(), json!([]));
                obj.insert("usage".into(), usage);
            }
            write_event(&mut out, &chunk);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        out
    }

    /// Whether the stream is over ([`StreamTranslator::finish`] or an error).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The usage of the latest event that carried `usageMetadata` (Gemini's counts are
    /// cumulative, the last event has the totals); `None` before any.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn fail(&mut self, out: &mut Vec<u8>, message: &str) {
        self.finished = true;
        write_protocol_error(out, message);
    }

    fn chunk(&self, index: u64, delta: Value, finish: Value) -> Value {
        chunk(
            self.id.as_deref().unwrap_or_default(),
            self.created,
            &self.model,
            self.include_usage,
            index,
            delta,
            finish,
        )
    }
}
