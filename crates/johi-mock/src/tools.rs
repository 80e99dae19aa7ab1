//! The mock's tool-call convention, shared by every protocol's route so that end-to-end
//! tests can exercise tool use through any adapter.
//!
//! When a chat request declares tools and its last message is not a tool result, the mock
//! answers with one call to the *first* declared tool, with arguments made from that tool's
//! JSON schema: every `required` property set to `"mock"` (string), `1` (number, integer),
//! `true` (boolean), `[]` (array), `{}` (object) — `null` for any other or missing type.
//! The finish reason is the protocol's tool-use reason; streamed, the arguments come in two
//! deltas, split in the middle. When the last message is a tool result, the mock gives its
//! normal deterministic text reply.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::body::EventSource;

/// The call the mock makes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    /// The tool's name.
    pub name: String,
    /// The arguments object.
    pub input: Value,
    /// The arguments as a JSON string, as OpenAI's `function.arguments` carries them.
    pub arguments: String,
}

impl ToolCall {
    fn new(name: &str, schema: Option<&Value>) -> ToolCall {
        let input = arguments(schema);
        ToolCall {
            name: name.to_owned(),
            arguments: input.to_string(),
            input,
        }
    }

    /// The arguments string in the two streamed deltas (split in the middle, on a character
    /// boundary).
    pub(crate) fn halves(&self) -> (&str, &str) {
        let mut mid = self.arguments.len() / 2;
        while !self.arguments.is_char_boundary(mid) {
            mid += 1;
        }
        self.arguments.split_at(mid)
    }

    /// Completion tokens the call is counted as: one per four characters of arguments.
    pub(crate) fn tokens(&self) -> u64 {
        (self.arguments.len() as u64).div_ceil(4).max(1)
    }
}

/// The arguments object for a tool's JSON schema.
pub(crate) fn arguments(schema: Option<&Value>) -> Value {
    let mut out = Map::new();
    let required = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        let kind = schema
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.get(name))
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str);
        let value = match kind {
            Some("string") => Value::from("mock"),
            Some("number") | Some("integer") => Value::from(1),
            Some("boolean") => Value::Bool(true),
            Some("array") => Value::Array(Vec::new()),
            Some("object") => Value::Object(Map::new()),
            _ => Value::Null,
        };
        out.insert(name.to_owned(), value);
    }
    Value::Object(out)
}

/// The call for an OpenAI chat request (`tools[0].function`), unless the last message is a
/// `tool` result.
pub(crate) fn openai_call(body: &Value) -> Option<ToolCall> {
    let function = body.get("tools")?.get(0)?.get("function")?;
    let last = body.get("messages")?.as_array()?.last()?;
    if last.get("role").and_then(Value::as_str) == Some("tool") {
        return None;
    }
    let name = function.get("name")?.as_str()?;
    Some(ToolCall::new(name, function.get("parameters")))
}

/// The call for an Anthropic Messages request (`tools[0]`), unless the last message is a
/// user turn carrying a `tool_result` block.
pub(crate) fn anthropic_call(body: &Value) -> Option<ToolCall> {
    let tool = body.get("tools")?.get(0)?;
    let last = body.get("messages")?.as_array()?.last()?;
    let has_result = last
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|blocks| {
            blocks
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        });
    if has_result {
        return None;
    }
    let name = tool.get("name")?.as_str()?;
    Some(ToolCall::new(name, tool.get("input_schema")))
}

/// The call for a Bedrock Converse request (`toolConfig.tools[0].toolSpec`), unless the last
/// message is a user turn carrying a `toolResult` block.
pub(crate) fn bedrock_call(body: &Value) -> Option<ToolCall> {
    let spec = body.pointer("/toolConfig/tools/0/toolSpec")?;
    let last = body.get("messages")?.as_array()?.last()?;
    let has_result = last
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|blocks| blocks.iter().any(|b| b.get("toolResult").is_some()));
    if has_result {
        return None;
    }
    let name = spec.get("name")?.as_str()?;
    Some(ToolCall::new(name, spec.pointer("/inputSchema/json")))
}

/// A stream whose few events are built up front (a tool call is four to six events).
pub(crate) struct Prebuilt {
    /// The encoded events.
    pub events: Vec<Bytes>,
    /// Whether `data: [DONE]` follows (OpenAI), or not (Anthropic).
    pub done: bool,
}

impl EventSource for Prebuilt {
    fn len(&self) -> usize {
        self.events.len()
    }

    fn event(&self, i: usize) -> Bytes {
        self.events.get(i).cloned().unwrap_or_default()
    }

    fn done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_properties_get_a_value_per_type() {
        let schema = json!({"type": "object", "properties": {
            "s": {"type": "string"}, "n": {"type": "number"}, "i": {"type": "integer"},
            "b": {"type": "boolean"}, "a": {"type": "array"}, "o": {"type": "object"},
            "optional": {"type": "string"}},
            "required": ["s", "n", "i", "b", "a", "o"]});
        assert_eq!(
            arguments(Some(&schema)),
            json!({"s": "mock", "n": 1, "i": 1, "b": true, "a": [], "o": {}})
        );
        assert_eq!(arguments(None), json!({}));
    }

    #[test]
    fn a_tool_result_last_means_no_call() {
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
        let call =
            openai_call(&json!({"tools": tools, "messages": [{"role": "user", "content": "x"}]}));
        assert_eq!(call.map(|c| c.name), Some("f".to_owned()));
        let done = json!({"tools": tools, "messages": [{"role": "tool", "tool_call_id": "c", "content": "r"}]});
        assert!(openai_call(&done).is_none());
        let tools = json!([{"name": "g", "input_schema": {"type": "object"}}]);
        let call = anthropic_call(
            &json!({"tools": tools, "messages": [{"role": "user", "content": "x"}]}),
        );
        assert_eq!(call.map(|c| c.name), Some("g".to_owned()));
        let done = json!({"tools": tools, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]}]});
        assert!(anthropic_call(&done).is_none());
    }

    #[test]
    fn halves_rejoin() {
        let call = ToolCall::new(
            "f",
            Some(&json!({"properties": {"city": {"type": "string"}}, "required": ["city"]})),
        );
        let (a, b) = call.halves();
        assert!(!a.is_empty() && !b.is_empty());
        assert_eq!(format!("{a}{b}"), call.arguments);
    }
}
