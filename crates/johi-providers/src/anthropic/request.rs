//! OpenAI Chat Completions request → Anthropic Messages request.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use super::TranslateError;
use crate::openai_shape::{
    base64_data_url, function_tool, image_url, is_web_url, map_parts, map_text_parts, max_tokens,
    message, messages_array, not_text_content, part_kind, part_text, present, refuse_image_detail,
    refuse_unknown_fields, stop_sequences, stream_flags, tool_call, tool_call_id, tools_array,
    unknown_role, PartKind, StopSequences, ToolChoice,
};

/// Top-level request fields the encoder maps (or accepts as a no-op value); any other field
/// is refused, naming it. Anthropic-only extensions (`top_k`, `thinking`) are passed through
/// for clients that know their target. The reasons for the refusals are in `docs/providers.md`.
pub const MAPPED_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "metadata",
    "response_format",
    "n",
    "logprobs",
    "presence_penalty",
    "frequency_penalty",
    "top_k",
    "thinking",
];

/// An Anthropic request ready to send, with what the stream translator must know about the
/// client's wishes (Anthropic has no `stream_options`, so `include_usage` is kept here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRequest {
    /// The JSON body for `POST /v1/messages`.
    pub body: Vec<u8>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Translates an OpenAI Chat Completions body into an Anthropic Messages body for
/// `upstream_model`.
///
/// `default_max_tokens` is used when the client sent neither `max_completion_tokens` nor
/// `max_tokens`: Anthropic requires the field, OpenAI does not, so the configured target
/// decides. Fields Anthropic cannot express are refused with the field's path.
///
/// The body is written from typed structs that borrow the client's values ([`MessagesBody`]),
/// not built as a `Value` tree: this runs on every translated request.
pub fn encode_request(
    body: &Map<String, Value>,
    upstream_model: &str,
    default_max_tokens: u64,
) -> Result<EncodedRequest, TranslateError> {
    refuse_unknown_and_no_op_fields(body)?;
    let (system, messages) = encode_messages(body.get("messages"))?;
    let mut out = MessagesBody {
        model: upstream_model,
        max_tokens: max_tokens(body)?.unwrap_or(default_max_tokens),
        system,
        messages,
        stop_sequences: stop_sequences(body.get("stop"))?,
        temperature: None,
        top_p: None,
        top_k: present(body, "top_k"),
        thinking: present(body, "thinking"),
        tools: present(body, "tools").map(encode_tools).transpose()?,
        tool_choice: tool_choice(body)?,
        metadata: user_id(body)?.map(|user_id| Metadata { user_id }),
        stream: false,
    };
    out.temperature = unit_interval(body, "temperature")?;
    out.top_p = unit_interval(body, "top_p")?;
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

/// A Messages request body, borrowing the client's strings and values; field order is the
/// one Anthropic documents.
#[derive(Serialize)]
struct MessagesBody<'a> {
    model: &'a str,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<Content<'a>>,
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<StopSequences<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

/// One turn of `messages`.
#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Content<'a>,
}

/// Content as Anthropic takes it: a plain string, or blocks.
#[derive(Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(&'a str),
    Blocks(Vec<Block<'a>>),
}

/// One content block.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Image {
        source: ImageSource<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: Content<'a>,
    },
}

impl<'a> Block<'a> {
    fn text(text: &'a str) -> Self {
        Block::Text {
            text,
            cache_control: None,
        }
    }
}

/// Where an image block's bytes are.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

/// A tool definition.
#[derive(Serialize)]
struct Tool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a Value>,
    input_schema: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<&'a Value>,
}

/// `tool_choice`: `auto`, `any`, `tool` (with its name) or `none`.
#[derive(Serialize)]
struct ToolChoiceOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_parallel_tool_use: bool,
}

/// `metadata`: Anthropic's carries only a user id.
#[derive(Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

/// `temperature` and `top_p`: numbers Anthropic accepts from 0 to 1 only.
fn unit_interval<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a Value>, TranslateError> {
    let Some(v) = present(body, field) else {
        return Ok(None);
    };
    let x = v
        .as_f64()
        .ok_or_else(|| TranslateError::invalid(field, "must be a number"))?;
    if !(0.0..=1.0).contains(&x) {
        return Err(TranslateError::unsupported(
            field,
            "Anthropic accepts values from 0 to 1 only",
        ));
    }
    Ok(Some(v))
}

/// Refuses every field outside [`MAPPED_FIELDS`], and the listed fields whose value asks for
/// something Anthropic cannot do (`n > 1`, `logprobs: true`, a non-zero penalty, JSON mode).
fn refuse_unknown_and_no_op_fields(body: &Map<String, Value>) -> Result<(), TranslateError> {
    refuse_unknown_fields(
        body,
        MAPPED_FIELDS,
        "Anthropic's Messages API has no equivalent",
        |key, value| {
            match key {
            "n" if value.as_u64() != Some(1) => Some("Anthropic returns one choice per request"),
            "logprobs" if value.as_bool() != Some(false) => {
                Some("Anthropic does not return log probabilities")
            }
            "presence_penalty" | "frequency_penalty" if value.as_f64() != Some(0.0) => {
                Some("Anthropic has no sampling penalties")
            }
            "response_format" if value.get("type").and_then(Value::as_str) != Some("text") => {
                Some("JSON mode and JSON schemas are not mapped yet; describe the format in the prompt or use a tool")
            }
            _ => None,
        }
        },
    )
}

fn user_id(body: &Map<String, Value>) -> Result<Option<&str>, TranslateError> {
    let mut user = present(body, "user");
    if let Some(meta) = present(body, "metadata") {
        let meta = meta
            .as_object()
            .ok_or_else(|| TranslateError::invalid("metadata", "must be an object"))?;
        for (k, v) in meta {
            if k == "user" || k == "user_id" {
                user = Some(v);
            } else {
                return Err(TranslateError::unsupported(
                    format!("metadata.{k}"),
                    "Anthropic's metadata carries only a user id",
                ));
            }
        }
    }
    match user {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TranslateError::invalid("user", "must be a string")),
    }
}

fn encode_tools(tools: &Value) -> Result<Vec<Tool<'_>>, TranslateError> {
    let tools = tools_array(tools)?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let f = function_tool(tool, &path)?;
        if f.strict == Some(true) {
            return Err(TranslateError::unsupported(
                format!("{path}.function.strict"),
                "strict schemas are not mapped yet",
            ));
        }
        out.push(Tool {
            name: f.name,
            description: f.description,
            input_schema: f.schema_or_empty(),
            cache_control: tool.get("cache_control"),
        });
    }
    Ok(out)
}

fn tool_choice(body: &Map<String, Value>) -> Result<Option<ToolChoiceOut<'_>>, TranslateError> {
    let parallel = match present(body, "parallel_tool_calls") {
        None => true,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| TranslateError::invalid("parallel_tool_calls", "must be a boolean"))?,
    };
    let choice = |kind, name| ToolChoiceOut {
        kind,
        name,
        disable_parallel_tool_use: !parallel,
    };
    Ok(match present(body, "tool_choice") {
        None if parallel => None,
        None => Some(choice("auto", None)),
        Some(v) => Some(match crate::openai_shape::tool_choice(v)? {
            ToolChoice::Auto => choice("auto", None),
            ToolChoice::None => ToolChoiceOut {
                kind: "none",
                name: None,
                disable_parallel_tool_use: false,
            },
            ToolChoice::Required => choice("any", None),
            ToolChoice::Function(name) => choice("tool", Some(name)),
        }),
    })
}

/// Splits OpenAI's messages into Anthropic's top-level `system` and its turns.
///
/// System and developer messages are hoisted into `system` wherever they stand (Anthropic has
/// no system turn); consecutive `tool` messages become one user turn of `tool_result` blocks.
fn encode_messages(
    messages: Option<&Value>,
) -> Result<(Option<Content<'_>>, Vec<Turn<'_>>), TranslateError> {
    let messages = messages_array(messages)?;
    let mut system: Vec<Block<'_>> = Vec::new();
    let mut turns: Vec<Turn<'_>> = Vec::with_capacity(messages.len());
    let mut tool_results: Vec<Block<'_>> = Vec::new();
    let user = |blocks| Turn {
        role: "user",
        content: Content::Blocks(blocks),
    };
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (m, role) = message(
            m,
            &path,
            &["tool_calls"],
            "Anthropic's messages have no equivalent",
        )?;
        if role == "user" && !tool_results.is_empty() {
            // A user message right after tool results joins their turn (results first, as
            // Anthropic requires), rather than making two user turns in a row.
            let mut blocks = std::mem::take(&mut tool_results);
            match encode_content(m.get("content"), &path)? {
                Content::Text(s) => blocks.push(Block::text(s)),
                Content::Blocks(parts) => blocks.extend(parts),
            }
            turns.push(user(blocks));
            continue;
        }
        if role != "tool" && !tool_results.is_empty() {
            turns.push(user(std::mem::take(&mut tool_results)));
        }
        match role {
            "system" | "developer" => {
                system.extend(text_blocks(m.get("content"), &path)?);
            }
            "user" => turns.push(Turn {
                role: "user",
                content: encode_content(m.get("content"), &path)?,
            }),
            "assistant" => turns.push(encode_assistant(m, &path)?),
            "tool" => tool_results.push(encode_tool_result(m, &path)?),
            _ => return Err(unknown_role(&path, role)),
        }
    }
    if !tool_results.is_empty() {
        turns.push(user(tool_results));
    }
    let system = match system.as_slice() {
        [] => None,
        [Block::Text {
            text,
            cache_control: None,
        }] => Some(Content::Text(text)),
        _ => Some(Content::Blocks(system)),
    };
    Ok((system, turns))
}

/// Content that may only be text (system, developer, tool results) as text blocks.
fn text_blocks<'a>(
    content: Option<&'a Value>,
    path: &str,
) -> Result<Vec<Block<'a>>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(vec![Block::text(s)]),
        Some(Value::Array(parts)) => map_text_parts(parts, path, encode_part),
        _ => Err(not_text_content(path)),
    }
}

/// User content: a string stays a string, parts become blocks.
fn encode_content<'a>(
    content: Option<&'a Value>,
    path: &str,
) -> Result<Content<'a>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(Content::Text(s)),
        Some(Value::Array(parts)) => map_parts(parts, path, encode_part).map(Content::Blocks),
        _ => Err(TranslateError::invalid(
            format!("{path}.content"),
            "must be a string or an array of parts",
        )),
    }
}

/// One content part → one block; `cache_control` is carried over as it is.
fn encode_part<'a>(part: &'a Value, path: &str) -> Result<Block<'a>, TranslateError> {
    let cache_control = part.get("cache_control");
    Ok(match part_kind(part, path)? {
        PartKind::Text => Block::Text {
            text: part_text(part, path)?,
            cache_control,
        },
        PartKind::ImageUrl => Block::Image {
            source: encode_image(part, path)?,
            cache_control,
        },
    })
}

/// `image_url` → an `image` block's source: a `data:` URL becomes a base64 source, an
/// http(s) URL a url source. OpenAI's `detail` has no equivalent and is refused unless `auto`.
fn encode_image<'a>(part: &'a Value, path: &str) -> Result<ImageSource<'a>, TranslateError> {
    let url = image_url(part, path)?;
    refuse_image_detail(part, path, "Anthropic has no image detail setting")?;
    if url.starts_with("data:") {
        let (media_type, data) = base64_data_url(url).ok_or_else(|| {
            TranslateError::invalid(format!("{path}.image_url.url"), "a data URL must be base64")
        })?;
        return Ok(ImageSource::Base64 { media_type, data });
    }
    if is_web_url(url) {
        return Ok(ImageSource::Url { url });
    }
    Err(TranslateError::invalid(
        format!("{path}.image_url.url"),
        "must be a data: or http(s) URL",
    ))
}

/// An assistant turn: its text (if any) then one `tool_use` block per tool call, with the
/// arguments string parsed back into the JSON object Anthropic expects.
fn encode_assistant<'a>(m: &'a Map<String, Value>, path: &str) -> Result<Turn<'a>, TranslateError> {
    let calls = m.get("tool_calls").and_then(Value::as_array);
    let content = m.get("content").filter(|c| !c.is_null());
    let Some(calls) = calls.filter(|c| !c.is_empty()) else {
        return Ok(Turn {
            role: "assistant",
            content: encode_content(content, path)?,
        });
    };
    let mut blocks = match content {
        None => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(c) => text_blocks(Some(c), path)?,
    };
    for (k, call) in calls.iter().enumerate() {
        let call_path = format!("{path}.tool_calls[{k}]");
        let call = tool_call(call, &call_path)?;
        let input = call.input(&call_path)?;
        blocks.push(Block::ToolUse {
            id: call.id,
            name: call.name,
            input,
        });
    }
    Ok(Turn {
        role: "assistant",
        content: Content::Blocks(blocks),
    })
}

fn encode_tool_result<'a>(
    m: &'a Map<String, Value>,
    path: &str,
) -> Result<Block<'a>, TranslateError> {
    let tool_use_id = tool_call_id(m, path)?;
    let content = match m.get("content") {
        Some(Value::String(s)) => Content::Text(s),
        other => Content::Blocks(text_blocks(other, path)?),
    };
    Ok(Block::ToolResult {
        tool_use_id,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(body: Value) -> Result<Value, TranslateError> {
        let Value::Object(map) = body else {
            unreachable!("tests pass objects")
        };
        let out = encode_request(&map, "claude", 100)?;
        Ok(serde_json::from_slice(&out.body).unwrap())
    }

    #[test]
    fn tool_choice_none_and_parallel_off_without_a_choice() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        let v =
            encode(json!({"messages": msgs, "tool_choice": "none", "parallel_tool_calls": false}))
                .unwrap();
        assert_eq!(v["tool_choice"], json!({"type": "none"}));
        let v = encode(json!({"messages": msgs, "parallel_tool_calls": false})).unwrap();
        assert_eq!(
            v["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let err = encode(json!({"messages": msgs, "tool_choice": "sometimes"})).unwrap_err();
        assert_eq!(err.field(), "tool_choice");
    }

    #[test]
    fn nulls_are_absent_and_no_op_values_are_accepted() {
        let v = encode(json!({
            "messages": [{"role": "user", "content": "hi"}],
            "seed": null, "n": 1, "logprobs": false, "frequency_penalty": 0.0,
            "max_tokens": null, "stop": null,
        }))
        .unwrap();
        assert_eq!(v["max_tokens"], 100);
        assert!(v.get("stop_sequences").is_none());
    }

    #[test]
    fn malformed_values_are_invalid_not_unsupported() {
        let msgs = json!([{"role": "user", "content": "hi"}]);
        for (body, field) in [
            (json!({"messages": msgs, "max_tokens": 0}), "max_tokens"),
            (json!({"messages": msgs, "stop": 5}), "stop"),
            (json!({"messages": "hi"}), "messages"),
            (json!({"messages": [{"content": "hi"}]}), "messages[0].role"),
            (
                json!({"messages": msgs, "temperature": "hot"}),
                "temperature",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}),
                "messages[0].content[0].image_url.url",
            ),
        ] {
            match encode(body) {
                Err(TranslateError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
