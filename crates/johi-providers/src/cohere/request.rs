//! OpenAI Chat Completions request → Cohere v2 chat request.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use super::TranslateError;
use crate::openai_shape::{
    function_tool, image_url, is_web_url, map_parts, map_text_parts, max_tokens, message,
    messages_array, not_text_content, part_kind, part_text, present, refuse_unknown_fields,
    stop_sequences, stream_flags, tool_call, tool_call_id, tools_array, unknown_role, PartKind,
    StopSequences, ToolCallOut,
};

/// Top-level request fields the encoder maps (or accepts as a no-op value); any other field
/// is refused, naming it. The reasons for the refusals are in `docs/providers.md`.
pub const MAPPED_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "response_format",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "n",
    "logprobs",
];

/// A Cohere chat request ready to send, with what the stream translator must know about the
/// client's wishes (Cohere has no `stream_options`, so `include_usage` is kept here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRequest {
    /// The JSON body for `POST /v2/chat`.
    pub body: Vec<u8>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Translates an OpenAI Chat Completions body into a Cohere v2 chat body for
/// `upstream_model`. Fields Cohere cannot express are refused with the field's path.
///
/// The body is written from typed structs that borrow the client's values ([`ChatBody`]),
/// not built as a `Value` tree: this runs on every translated request.
pub fn encode_request(
    body: &Map<String, Value>,
    upstream_model: &str,
) -> Result<EncodedRequest, TranslateError> {
    refuse_unknown_and_no_op_fields(body)?;
    let number = |field| match present(body, field) {
        Some(v) if !v.is_number() => Err(TranslateError::invalid(field, "must be a number")),
        v => Ok(v),
    };
    let mut out = ChatBody {
        model: upstream_model,
        messages: encode_messages(body.get("messages"))?,
        max_tokens: max_tokens(body)?,
        stop_sequences: stop_sequences(present(body, "stop"))?,
        temperature: number("temperature")?,
        frequency_penalty: number("frequency_penalty")?,
        presence_penalty: number("presence_penalty")?,
        seed: number("seed")?,
        p: top_p(body)?,
        response_format: response_format(present(body, "response_format"))?,
        tools: None,
        strict_tools: false,
        tool_choice: None,
        stream: false,
    };
    if let Some(tools) = present(body, "tools") {
        let (tools, strict) = encode_tools(tools)?;
        out.tools = Some(tools);
        out.strict_tools = strict;
    }
    out.tool_choice = tool_choice(body)?;
    let (stream, include_usage) = stream_flags(body)?;
    out.stream = stream;
    let body =
        serde_json::to_vec(&out).map_err(|e| TranslateError::invalid("body", e.to_string()))?;
    Ok(EncodedRequest {
        body,
        stream,
        include_usage,
    })
}

/// A v2 chat body, borrowing the client's strings and values; field order is the one the
/// `Value`-built body had (Cohere's documented order).
#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<StopSequences<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    strict_tools: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

/// One message. Which fields a role carries: system and user `content`; tool
/// `tool_call_id` and `content`; assistant `tool_plan`, `content` and `tool_calls`.
#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_plan: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallOut<'a>>>,
}

impl<'a> Message<'a> {
    fn new(role: &'static str, content: Content<'a>) -> Self {
        Message {
            role,
            tool_call_id: None,
            tool_plan: None,
            content: Some(content),
            tool_calls: None,
        }
    }
}

/// Content as Cohere takes it: a plain string, or parts.
#[derive(Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(&'a str),
    Parts(Vec<Part<'a>>),
}

/// One content part, written as OpenAI writes it (Cohere adds `thinking`).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl<'a> },
    Thinking { thinking: &'a str },
}

#[derive(Serialize)]
struct ImageUrl<'a> {
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

/// `response_format`: JSON mode, constrained by a schema when the client gave one.
#[derive(Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    json_schema: Option<&'a Value>,
}

/// A tool definition: OpenAI's shape.
#[derive(Serialize)]
struct Tool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Function<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a Value>,
}

/// `top_p` as Cohere's `p`, which takes values from 0.01 to 0.99 only.
fn top_p(body: &Map<String, Value>) -> Result<Option<&Value>, TranslateError> {
    let Some(v) = present(body, "top_p") else {
        return Ok(None);
    };
    let p = v
        .as_f64()
        .ok_or_else(|| TranslateError::invalid("top_p", "must be a number"))?;
    if !(0.01..=0.99).contains(&p) {
        return Err(TranslateError::unsupported(
            "top_p",
            "Cohere's `p` accepts values from 0.01 to 0.99 only",
        ));
    }
    Ok(Some(v))
}

/// Refuses every field outside [`MAPPED_FIELDS`], and the listed fields whose value asks for
/// something Cohere's chat cannot do (`n > 1`, `logprobs: true`).
fn refuse_unknown_and_no_op_fields(body: &Map<String, Value>) -> Result<(), TranslateError> {
    refuse_unknown_fields(
        body,
        MAPPED_FIELDS,
        "Cohere's v2 chat API has no equivalent",
        |key, value| match key {
            "n" if value.as_u64() != Some(1) => Some("Cohere returns one choice per request"),
            "logprobs" if value.as_bool() != Some(false) => {
                Some("Cohere's log probabilities are per token id and are not translated")
            }
            _ => None,
        },
    )
}

/// `text` is Cohere's default; `json_object` is the same; a `json_schema` becomes a
/// `json_object` constrained by the schema (Cohere's way of writing it).
fn response_format(format: Option<&Value>) -> Result<Option<ResponseFormat<'_>>, TranslateError> {
    let Some(format) = format else {
        return Ok(None);
    };
    let json_object = |json_schema| {
        Some(ResponseFormat {
            kind: "json_object",
            json_schema,
        })
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(json_object(None)),
        Some("json_schema") => {
            let schema = format
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    TranslateError::invalid("response_format.json_schema.schema", "missing")
                })?;
            Ok(json_object(Some(schema)))
        }
        Some(other) => Err(TranslateError::unsupported(
            "response_format.type",
            format!("`{other}` has no Cohere equivalent"),
        )),
        None => Err(TranslateError::invalid("response_format.type", "missing")),
    }
}

/// OpenAI's function tools have Cohere's shape already; `strict` becomes the request-wide
/// `strict_tools`, so it must be the same on every tool.
fn encode_tools(tools: &Value) -> Result<(Vec<Tool<'_>>, bool), TranslateError> {
    let tools = tools_array(tools)?;
    let mut out = Vec::with_capacity(tools.len());
    let mut strict: Option<bool> = None;
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let f = function_tool(tool, &path)?;
        let this_strict = f.strict.unwrap_or(false);
        if strict.is_some_and(|s| s != this_strict) {
            return Err(TranslateError::unsupported(
                format!("{path}.function.strict"),
                "Cohere's strict_tools applies to every tool: set strict on all or none",
            ));
        }
        strict = Some(this_strict);
        out.push(Tool {
            kind: "function",
            function: Function {
                name: f.name,
                description: f.description,
                parameters: f.parameters,
            },
        });
    }
    Ok((out, strict.unwrap_or(false)))
}

/// `auto` is Cohere's default; `none` and `required` are `NONE` and `REQUIRED`. Naming one
/// function, or turning parallel calls off, cannot be expressed.
fn tool_choice(body: &Map<String, Value>) -> Result<Option<&'static str>, TranslateError> {
    if let Some(v) = present(body, "parallel_tool_calls") {
        match v.as_bool() {
            Some(true) => {}
            Some(false) => {
                return Err(TranslateError::unsupported(
                    "parallel_tool_calls",
                    "Cohere cannot turn parallel tool calls off",
                ))
            }
            None => {
                return Err(TranslateError::invalid(
                    "parallel_tool_calls",
                    "must be a boolean",
                ))
            }
        }
    }
    match present(body, "tool_choice") {
        None => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(None),
            "none" => Ok(Some("NONE")),
            "required" => Ok(Some("REQUIRED")),
            _ => Err(TranslateError::invalid(
                "tool_choice",
                "must be auto, none, required or a function",
            )),
        },
        Some(_) => Err(TranslateError::unsupported(
            "tool_choice",
            "Cohere cannot be made to call one named function (only REQUIRED or NONE)",
        )),
    }
}

/// OpenAI's messages as Cohere's: the same roles (developer is system), in place.
fn encode_messages(messages: Option<&Value>) -> Result<Vec<Message<'_>>, TranslateError> {
    let messages = messages_array(messages)?;
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (m, role) = message(
            m,
            &path,
            &["tool_calls", "reasoning_content", "refusal"],
            "Cohere's messages have no equivalent",
        )?;
        let encoded = match role {
            "system" | "developer" => {
                Message::new("system", text_content(m.get("content"), &path)?)
            }
            "user" => Message::new("user", user_content(m.get("content"), &path)?),
            "assistant" => encode_assistant(m, &path)?,
            "tool" => {
                let id = tool_call_id(m, &path)?;
                Message {
                    tool_call_id: Some(id),
                    ..Message::new("tool", text_content(m.get("content"), &path)?)
                }
            }
            _ => return Err(unknown_role(&path, role)),
        };
        out.push(encoded);
    }
    Ok(out)
}

/// Content that may only be text: a string stays a string, text parts become text parts.
fn text_content<'a>(content: Option<&'a Value>, path: &str) -> Result<Content<'a>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(Content::Text(s)),
        Some(Value::Array(parts)) => map_text_parts(parts, path, text_part).map(Content::Parts),
        _ => Err(not_text_content(path)),
    }
}

fn text_part<'a>(part: &'a Value, path: &str) -> Result<Part<'a>, TranslateError> {
    Ok(Part::Text {
        text: part_text(part, path)?,
    })
}

/// User content: text and `image_url` parts, which Cohere writes as OpenAI does.
fn user_content<'a>(content: Option<&'a Value>, path: &str) -> Result<Content<'a>, TranslateError> {
    let Some(Value::Array(parts)) = content else {
        return text_content(content, path);
    };
    map_parts(parts, path, |p, part_path| match part_kind(p, part_path)? {
        PartKind::Text => text_part(p, part_path),
        PartKind::ImageUrl => image_part(p, part_path),
    })
    .map(Content::Parts)
}

fn image_part<'a>(part: &'a Value, path: &str) -> Result<Part<'a>, TranslateError> {
    let image = part.get("image_url");
    let url = image_url(part, path)?;
    if !(url.starts_with("data:") || is_web_url(url)) {
        return Err(TranslateError::invalid(
            format!("{path}.image_url.url"),
            "must be a data: or http(s) URL",
        ));
    }
    let detail = match image.and_then(|i| i.get("detail")).filter(|d| !d.is_null()) {
        None => None,
        Some(Value::String(d)) if matches!(d.as_str(), "auto" | "low" | "high") => Some(d.as_str()),
        Some(_) => {
            return Err(TranslateError::invalid(
                format!("{path}.image_url.detail"),
                "must be auto, low or high",
            ))
        }
    };
    Ok(Part::ImageUrl {
        image_url: ImageUrl { url, detail },
    })
}

/// An assistant turn. Its `reasoning_content` is Cohere's `tool_plan` beside tool calls (the
/// plan Cohere wrote before calling them, so a tool loop round-trips), or a `thinking` part
/// before the text otherwise (a reasoning model's thoughts).
fn encode_assistant<'a>(
    m: &'a Map<String, Value>,
    path: &str,
) -> Result<Message<'a>, TranslateError> {
    let calls = m
        .get("tool_calls")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    let reasoning = match m.get("reasoning_content").filter(|r| !r.is_null()) {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()).filter(|s| !s.is_empty()),
        Some(_) => {
            return Err(TranslateError::invalid(
                format!("{path}.reasoning_content"),
                "must be a string",
            ))
        }
    };
    let content = match m.get("content").filter(|c| !c.is_null()) {
        None => None,
        Some(Value::String(s)) if s.is_empty() && calls.is_some() => None,
        Some(c) => Some(text_content(Some(c), path)?),
    };
    let mut out = Message {
        role: "assistant",
        tool_call_id: None,
        tool_plan: None,
        content: None,
        tool_calls: None,
    };
    match (calls, reasoning) {
        (Some(_), Some(plan)) => {
            out.tool_plan = Some(plan);
            out.content = content;
        }
        (None, Some(thought)) => {
            let mut parts = vec![Part::Thinking { thinking: thought }];
            match content {
                Some(Content::Text(s)) => parts.push(Part::Text { text: s }),
                Some(Content::Parts(more)) => parts.extend(more),
                None => {}
            }
            out.content = Some(Content::Parts(parts));
        }
        (_, None) => out.content = content,
    }
    if let Some(calls) = calls {
        out.tool_calls = Some(encode_tool_calls(calls, path)?);
    }
    Ok(out)
}

/// OpenAI's tool calls have Cohere's shape; the arguments string is checked to be JSON.
fn encode_tool_calls<'a>(
    calls: &'a [Value],
    path: &str,
) -> Result<Vec<ToolCallOut<'a>>, TranslateError> {
    let mut out = Vec::with_capacity(calls.len());
    for (k, call) in calls.iter().enumerate() {
        let call_path = format!("{path}.tool_calls[{k}]");
        let call = tool_call(call, &call_path)?;
        let args = if call.arguments.trim().is_empty() {
            "{}"
        } else {
            call.arguments
        };
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(args) {
            return Err(TranslateError::invalid(
                format!("{call_path}.function.arguments"),
                e.to_string(),
            ));
        }
        out.push(ToolCallOut::function(
            Cow::Borrowed(call.id),
            Cow::Borrowed(call.name),
            Cow::Borrowed(args),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(body: Value) -> Result<Value, TranslateError> {
        let Value::Object(map) = body else {
            unreachable!("tests pass objects")
        };
        let out = encode_request(&map, "command-a")?;
        Ok(serde_json::from_slice(&out.body).unwrap())
    }

    #[test]
    fn nulls_are_absent_and_no_op_values_are_accepted() {
        let v = encode(json!({
            "messages": [{"role": "user", "content": "hi"}],
            "user": null, "n": 1, "logprobs": false, "tool_choice": "auto",
            "parallel_tool_calls": true, "max_tokens": null, "stop": null,
            "response_format": {"type": "text"},
        }))
        .unwrap();
        assert_eq!(
            v,
            json!({"model": "command-a", "messages": [{"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn malformed_values_are_invalid_not_unsupported() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        for (body, field) in [
            (json!({"messages": msgs, "max_tokens": 0}), "max_tokens"),
            (json!({"messages": msgs, "stop": 5}), "stop"),
            (json!({"messages": "hi"}), "messages"),
            (json!({"messages": [{"content": "hi"}]}), "messages[0].role"),
            (json!({"messages": msgs, "seed": "s"}), "seed"),
            (json!({"messages": msgs, "top_p": "x"}), "top_p"),
            (
                json!({"messages": msgs, "tool_choice": "maybe"}),
                "tool_choice",
            ),
            (
                json!({"messages": msgs, "response_format": {"type": "json_schema"}}),
                "response_format.json_schema.schema",
            ),
        ] {
            match encode(body) {
                Err(TranslateError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn top_p_bounds_are_cohere_s() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        for ok in [0.01, 0.5, 0.99] {
            assert_eq!(
                encode(json!({"messages": msgs, "top_p": ok})).unwrap()["p"],
                ok
            );
        }
        for bad in [0.0, 0.001, 1.0] {
            let err = encode(json!({"messages": msgs, "top_p": bad})).unwrap_err();
            assert!(matches!(err, TranslateError::Unsupported { .. }), "{bad}");
            assert_eq!(err.field(), "top_p");
        }
    }
}
