//! OpenAI Chat Completions request → Bedrock Converse request.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::openai_shape::{
    base64_data_url, function_tool, image_url, is_web_url, map_parts, map_text_parts, max_tokens,
    message, messages_array, not_text_content, part_kind, part_text, present, refuse_image_detail,
    refuse_unknown_fields, stop_sequences, stream_flags, tool_call, tool_call_id, tool_choice,
    tools_array, unknown_role, PartKind, StopSequences, ToolChoice,
};
use crate::TranslateError;

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
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "metadata",
    "n",
    "logprobs",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
];

/// Translates an OpenAI Chat Completions body into a Converse body (the model is in the
/// URL, not the body). Fields Converse cannot express are refused with the field's path.
///
/// The body is written from typed structs that borrow the client's values
/// ([`ConverseBody`]), not built as a `Value` tree: this runs on every translated request.
pub fn encode_request(body: &Map<String, Value>) -> Result<Vec<u8>, TranslateError> {
    refuse_unknown_and_no_op_fields(body)?;
    let (system, messages) = encode_messages(body.get("messages"))?;
    let out = ConverseBody {
        messages,
        system,
        inference_config: inference_config(body)?,
        tool_config: tool_config(body)?,
        request_metadata: request_metadata(body)?,
    };
    // `stream` is only checked here; the body is the same either way.
    stream_flags(body)?;
    serde_json::to_vec(&out).map_err(|e| TranslateError::invalid("body", e.to_string()))
}

/// A Converse request body, borrowing the client's strings and values.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConverseBody<'a> {
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    #[serde(skip_serializing_if = "InferenceConfig::is_empty")]
    inference_config: InferenceConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_metadata: Option<RequestMetadata<'a>>,
}

/// One turn of `messages`.
#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

/// One content block: Converse's blocks are objects with one key naming their kind.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Block<'a> {
    Text(&'a str),
    Image {
        format: &'static str,
        source: ImageBytes<'a>,
    },
    #[serde(rename_all = "camelCase")]
    ToolUse {
        tool_use_id: &'a str,
        name: &'a str,
        input: Value,
    },
    #[serde(rename_all = "camelCase")]
    ToolResult {
        tool_use_id: &'a str,
        content: Vec<Block<'a>>,
    },
}

/// An image's base64 bytes, as the client sent them.
#[derive(Serialize)]
struct ImageBytes<'a> {
    bytes: &'a str,
}

/// `inferenceConfig`: the sampling settings Converse shares across models.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<StopSequences<'a>>,
}

impl InferenceConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_none()
    }
}

/// `toolConfig`: the tools and the choice among them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    tools: Vec<ToolSpecEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'a>>,
}

/// `{"toolSpec": {...}}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpecEntry<'a> {
    tool_spec: ToolSpec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a Value>,
    input_schema: JsonSchema<'a>,
}

/// `inputSchema`: Converse wraps the JSON schema in `{"json": …}`.
#[derive(Serialize)]
struct JsonSchema<'a> {
    json: Cow<'a, Value>,
}

/// `toolChoice`: `{"auto": {}}`, `{"any": {}}` or `{"tool": {"name"}}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ToolChoiceOut<'a> {
    Auto {},
    Any {},
    Tool { name: &'a str },
}

/// `requestMetadata`: string pairs, in the client's order, `user` last.
struct RequestMetadata<'a>(Vec<(&'a str, &'a str)>);

impl Serialize for RequestMetadata<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().copied())
    }
}

/// Refuses every field outside [`MAPPED_FIELDS`], and the listed fields whose value asks for
/// something Converse cannot do (`n > 1`, `logprobs`, a non-zero penalty, JSON mode).
fn refuse_unknown_and_no_op_fields(body: &Map<String, Value>) -> Result<(), TranslateError> {
    refuse_unknown_fields(
        body,
        MAPPED_FIELDS,
        "Bedrock's Converse API has no equivalent",
        |key, value| {
            match key {
            "n" if value.as_u64() != Some(1) => Some("Converse returns one choice per request"),
            "logprobs" if value.as_bool() != Some(false) => {
                Some("Converse does not return log probabilities")
            }
            "presence_penalty" | "frequency_penalty" if value.as_f64() != Some(0.0) => {
                Some("Converse has no sampling penalties")
            }
            "response_format" if value.get("type").and_then(Value::as_str) != Some("text") => {
                Some("JSON mode and JSON schemas are not mapped; describe the format in the prompt or use a tool")
            }
            "parallel_tool_calls" if value.as_bool() != Some(true) => {
                Some("Converse cannot turn parallel tool calls off")
            }
            _ => None,
        }
        },
    )
}

fn inference_config(body: &Map<String, Value>) -> Result<InferenceConfig<'_>, TranslateError> {
    let mut out = InferenceConfig {
        max_tokens: max_tokens(body)?,
        ..InferenceConfig::default()
    };
    for field in ["temperature", "top_p"] {
        if let Some(v) = present(body, field) {
            v.as_f64()
                .ok_or_else(|| TranslateError::invalid(field, "must be a number"))?;
            if field == "temperature" {
                out.temperature = Some(v);
            } else {
                out.top_p = Some(v);
            }
        }
    }
    out.stop_sequences = stop_sequences(body.get("stop"))?;
    Ok(out)
}

/// `user` and string `metadata` values → Converse's `requestMetadata` (kept with the
/// invocation log, which is where OpenAI's `user` ends up too).
fn request_metadata(
    body: &Map<String, Value>,
) -> Result<Option<RequestMetadata<'_>>, TranslateError> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    if let Some(meta) = present(body, "metadata") {
        let meta = meta
            .as_object()
            .ok_or_else(|| TranslateError::invalid("metadata", "must be an object"))?;
        for (k, v) in meta {
            let s = v.as_str().ok_or_else(|| {
                TranslateError::invalid(format!("metadata.{k}"), "must be a string")
            })?;
            out.push((k, s));
        }
    }
    if let Some(user) = present(body, "user") {
        let s = user
            .as_str()
            .ok_or_else(|| TranslateError::invalid("user", "must be a string"))?;
        // `user` wins over a `metadata.user`, in that entry's place.
        match out.iter_mut().find(|(k, _)| *k == "user") {
            Some(entry) => entry.1 = s,
            None => out.push(("user", s)),
        }
    }
    Ok((!out.is_empty()).then_some(RequestMetadata(out)))
}

fn tool_config(body: &Map<String, Value>) -> Result<Option<ToolConfig<'_>>, TranslateError> {
    let Some(tools) = present(body, "tools") else {
        if present(body, "tool_choice").is_some_and(|c| c.as_str() != Some("none")) {
            return Err(TranslateError::invalid(
                "tool_choice",
                "needs `tools` to choose from",
            ));
        }
        return Ok(None);
    };
    let tools = tools_array(tools)?;
    let mut specs = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        specs.push(tool_spec(tool, &format!("tools[{i}]"))?);
    }
    let tool_choice =
        match present(body, "tool_choice") {
            None => None,
            Some(v) => match tool_choice(v)? {
                ToolChoice::Auto => Some(ToolChoiceOut::Auto {}),
                ToolChoice::Required => Some(ToolChoiceOut::Any {}),
                ToolChoice::None => return Err(TranslateError::unsupported(
                    "tool_choice",
                    "Converse cannot forbid tool use while tools are declared; leave the tools out",
                )),
                ToolChoice::Function(name) => Some(ToolChoiceOut::Tool { name }),
            },
        };
    Ok(Some(ToolConfig {
        tools: specs,
        tool_choice,
    }))
}

fn tool_spec<'a>(tool: &'a Value, path: &str) -> Result<ToolSpecEntry<'a>, TranslateError> {
    let f = function_tool(tool, path)?;
    if f.strict == Some(true) {
        return Err(TranslateError::unsupported(
            format!("{path}.function.strict"),
            "Converse has no strict schema mode",
        ));
    }
    Ok(ToolSpecEntry {
        tool_spec: ToolSpec {
            name: f.name,
            description: f.description,
            input_schema: JsonSchema {
                json: f.schema_or_empty(),
            },
        },
    })
}

/// Splits OpenAI's messages into Converse's top-level `system` and its turns.
///
/// System and developer messages are hoisted into `system` wherever they stand (Converse has
/// no system turn); consecutive `tool` messages become one user turn of `toolResult` blocks,
/// and a user message right after them joins that turn, as do consecutive messages of one role.
#[allow(clippy::type_complexity)]
fn encode_messages(
    messages: Option<&Value>,
) -> Result<(Vec<Block<'_>>, Vec<Turn<'_>>), TranslateError> {
    let messages = messages_array(messages)?;
    let mut system = Vec::new();
    let mut turns = Vec::with_capacity(messages.len());
    let mut results: Vec<Block<'_>> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let (m, role) = message(
            m,
            &path,
            &["tool_calls"],
            "Converse's messages have no equivalent",
        )?;
        if role != "tool" && role != "user" && !results.is_empty() {
            push_turn(&mut turns, "user", std::mem::take(&mut results));
        }
        match role {
            "system" | "developer" => system.extend(text_blocks(m.get("content"), &path)?),
            "user" => {
                let mut blocks = std::mem::take(&mut results);
                blocks.extend(user_blocks(m.get("content"), &path)?);
                push_turn(&mut turns, "user", blocks);
            }
            "assistant" => push_turn(&mut turns, "assistant", encode_assistant(m, &path)?),
            "tool" => results.push(encode_tool_result(m, &path)?),
            _ => return Err(unknown_role(&path, role)),
        }
    }
    if !results.is_empty() {
        push_turn(&mut turns, "user", results);
    }
    Ok((system, turns))
}

/// Appends a turn, or joins the previous one when it has the same role: Converse requires
/// user and assistant turns to alternate, OpenAI does not (two user messages in a row, a
/// user message after another one that only carried tool results).
fn push_turn<'a>(turns: &mut Vec<Turn<'a>>, role: &'static str, blocks: Vec<Block<'a>>) {
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => turns.push(Turn {
            role,
            content: blocks,
        }),
    }
}

/// Content that may only be text (system, developer, tool results) as `{text}` blocks.
fn text_blocks<'a>(
    content: Option<&'a Value>,
    path: &str,
) -> Result<Vec<Block<'a>>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(vec![Block::Text(s)]),
        Some(Value::Array(parts)) => map_text_parts(parts, path, text_part),
        _ => Err(not_text_content(path)),
    }
}

fn text_part<'a>(part: &'a Value, path: &str) -> Result<Block<'a>, TranslateError> {
    Ok(Block::Text(part_text(part, path)?))
}

fn user_blocks<'a>(
    content: Option<&'a Value>,
    path: &str,
) -> Result<Vec<Block<'a>>, TranslateError> {
    let Some(Value::Array(parts)) = content else {
        return text_blocks(content, path);
    };
    map_parts(parts, path, |p, part_path| match part_kind(p, part_path)? {
        PartKind::Text => text_part(p, part_path),
        PartKind::ImageUrl => encode_image(p, part_path),
    })
}

/// `image_url` with a base64 `data:` URL → an `image` block. Converse takes image bytes
/// (or S3 locations), never a web URL, so http(s) URLs are refused rather than fetched.
fn encode_image<'a>(part: &'a Value, path: &str) -> Result<Block<'a>, TranslateError> {
    let url_path = format!("{path}.image_url.url");
    let url = image_url(part, path)?;
    refuse_image_detail(part, path, "Converse has no image detail setting")?;
    if is_web_url(url) {
        return Err(TranslateError::unsupported(
            url_path,
            "Converse takes image bytes, not URLs; send a base64 data: URL",
        ));
    }
    let (media_type, data) = base64_data_url(url)
        .ok_or_else(|| TranslateError::invalid(url_path.as_str(), "must be a base64 data: URL"))?;
    let format = match media_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(TranslateError::unsupported(
                url_path,
                format!("Converse takes png, jpeg, gif or webp images, not {other}"),
            ))
        }
    };
    Ok(Block::Image {
        format,
        source: ImageBytes { bytes: data },
    })
}

/// An assistant turn's blocks: its text (if any) then one `toolUse` block per tool call, with the
/// arguments string parsed back into the JSON object Converse expects.
fn encode_assistant<'a>(
    m: &'a Map<String, Value>,
    path: &str,
) -> Result<Vec<Block<'a>>, TranslateError> {
    let content = m.get("content").filter(|c| !c.is_null());
    let mut blocks = match content {
        None => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(c) => text_blocks(Some(c), path)?,
    };
    let calls = m.get("tool_calls").and_then(Value::as_array);
    for (k, call) in calls.into_iter().flatten().enumerate() {
        let call_path = format!("{path}.tool_calls[{k}]");
        let call = tool_call(call, &call_path)?;
        let input = call.input(&call_path)?;
        blocks.push(Block::ToolUse {
            tool_use_id: call.id,
            name: call.name,
            input,
        });
    }
    if blocks.is_empty() {
        return Err(TranslateError::invalid(
            format!("{path}.content"),
            "an assistant message needs content or tool calls",
        ));
    }
    Ok(blocks)
}

fn encode_tool_result<'a>(
    m: &'a Map<String, Value>,
    path: &str,
) -> Result<Block<'a>, TranslateError> {
    let tool_use_id = tool_call_id(m, path)?;
    let content = text_blocks(m.get("content"), path)?;
    Ok(Block::ToolResult {
        tool_use_id,
        content,
    })
}
