//! Body validation: content type, JSON, required fields and message roles.
//!
//! It reads the body once and so *produces* the `prompt`, `params` and `model` facets every
//! later processor reads. A chat request is checked in one pass that builds nothing
//! ([`fast`]); the body's tree is built only if a later processor asks for it (or the quick
//! pass cannot vouch for the body, and the general check here builds it to word the error). Checks are limited to
//! what every OpenAI-compatible upstream would refuse anyway, so a clear 400 naming the field
//! comes back at once instead of after a round trip; everything else is left to the upstream.

use async_trait::async_trait;
use johi_core::{Api, Exchange, Facet, FacetSet, GatewayError};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};
use serde_json::{Map, Value};

mod fast;

/// Roles OpenAI's chat API accepts.
pub const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// See the module docs.
pub struct Validate {
    contract: Contract,
}

impl Default for Validate {
    fn default() -> Self {
        Self::new()
    }
}

impl Validate {
    /// Builds the processor.
    pub fn new() -> Self {
        Validate {
            contract: Contract {
                name: "validate",
                category: Category::AllowDeny,
                reads: FacetSet::EMPTY,
                writes: FacetSet::of(&[Facet::Prompt, Facet::Params, Facet::Model]),
                retry: RetryScope::Once,
                on_failure: FailureMode::FailClosed,
            },
        }
    }
}

#[async_trait]
impl Processor for Validate {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    fn on_request_now(&self, ex: &mut Exchange) -> Option<Result<Verdict, ProcessorError>> {
        Some(self.validate(ex))
    }
}

impl Validate {
    /// The request phase; it never waits (see [`Processor::on_request_now`]).
    fn validate(&self, ex: &mut Exchange) -> Result<Verdict, ProcessorError> {
        Ok(match check(ex) {
            Ok(()) => Verdict::Continue,
            Err(e) => Verdict::Deny(e),
        })
    }
}

fn check(ex: &mut Exchange) -> Result<(), GatewayError> {
    let content_type = ex.inbound_header(http::header::CONTENT_TYPE);
    let is_json = content_type.is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json")
    });
    if !is_json {
        return Err(GatewayError::UnsupportedMediaType {
            found: content_type.map(str::to_owned),
        });
    }
    if ex.api == Api::ChatCompletions {
        if let Some(accepted) = fast::chat(&ex.raw_body) {
            ex.model = Some(accepted.model);
            ex.stream = accepted.stream;
            ex.stream_usage_requested = accepted.stream_usage_requested;
            ex.prompt_spans = accepted.prompt;
            ex.model_span = accepted.model_span;
            return Ok(());
        }
    }
    check_tree(ex)
}

/// The general check: builds the body's tree, checks it, and words the error for the first
/// thing wrong. On success the tree is kept in the exchange, so it is not parsed again.
fn check_tree(ex: &mut Exchange) -> Result<(), GatewayError> {
    let body: Value = serde_json::from_slice(&ex.raw_body).map_err(|e| GatewayError::InvalidRequest {
        message: format!(
            "We could not parse the JSON body of your request ({e}). The body must be a JSON object."
        ),
        param: None,
        code: "invalid_json",
    })?;
    let Value::Object(body) = body else {
        return Err(GatewayError::InvalidRequest {
            message: "The request body must be a JSON object.".into(),
            param: None,
            code: "invalid_json",
        });
    };

    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(GatewayError::InvalidRequest {
                message: "You must provide a model parameter.".into(),
                param: Some("model".into()),
                code: "missing_required_parameter",
            })
        }
        Some(_) => return Err(GatewayError::invalid("'model' must be a string.", "model")),
    };

    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(GatewayError::invalid(
                "'stream' must be a boolean.",
                "stream",
            ))
        }
    };
    if stream && !ex.api.can_stream() {
        return Err(GatewayError::invalid(
            format!("'stream' is not supported for {}.", ex.api),
            "stream",
        ));
    }
    if !stream && body.get("stream_options").is_some_and(|v| !v.is_null()) {
        return Err(GatewayError::invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        ));
    }
    check_params(&body)?;

    match ex.api {
        Api::ChatCompletions => check_messages(&body)?,
        Api::Completions => check_prompt(&body, "prompt")?,
        Api::Embeddings => check_prompt(&body, "input")?,
    }

    ex.model = Some(model);
    ex.stream = stream;
    ex.set_parsed_body(body);
    Ok(())
}

fn check_params(body: &Map<String, Value>) -> Result<(), GatewayError> {
    for field in ["max_tokens", "max_completion_tokens", "n"] {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {}
            Some(_) => {
                return Err(GatewayError::invalid(
                    format!("'{field}' must be an integer of at least 1."),
                    field,
                ))
            }
        }
    }
    for (field, max) in [("temperature", 2.0), ("top_p", 1.0)] {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_f64().is_some_and(|x| (0.0..=max).contains(&x)) => {}
            Some(_) => {
                return Err(GatewayError::invalid(
                    format!("'{field}' must be a number from 0 to {max}."),
                    field,
                ))
            }
        }
    }
    Ok(())
}

fn check_messages(body: &Map<String, Value>) -> Result<(), GatewayError> {
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(GatewayError::invalid(
                "'messages' must contain at least one message.",
                "messages",
            ))
        }
        None | Some(Value::Null) => {
            return Err(GatewayError::InvalidRequest {
                message: "Missing required parameter: 'messages'.".into(),
                param: Some("messages".into()),
                code: "missing_required_parameter",
            })
        }
        Some(_) => {
            return Err(GatewayError::invalid(
                "'messages' must be an array.",
                "messages",
            ))
        }
    };
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(message) = message else {
            return Err(GatewayError::invalid(
                format!("messages[{i}] must be an object."),
                format!("messages[{i}]"),
            ));
        };
        let role = match message.get("role") {
            Some(Value::String(r)) => r.as_str(),
            None => {
                return Err(GatewayError::InvalidRequest {
                    message: format!("Missing required parameter: 'messages[{i}].role'."),
                    param: Some(format!("messages[{i}].role")),
                    code: "missing_required_parameter",
                })
            }
            Some(_) => {
                return Err(GatewayError::invalid(
                    format!("messages[{i}].role must be a string."),
                    format!("messages[{i}].role"),
                ))
            }
        };
        if !ROLES.contains(&role) {
            return Err(GatewayError::invalid(
                format!(
                    "Invalid value '{role}' for messages[{i}].role: expected one of {}.",
                    ROLES.join(", ")
                ),
                format!("messages[{i}].role"),
            ));
        }
        let content = message.get("content");
        let content_optional = role == "assistant"
            && (message.contains_key("tool_calls")
                || message.contains_key("function_call")
                || message.contains_key("refusal")
                || matches!(content, None | Some(Value::Null)));
        match content {
            Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => {
                for (j, part) in parts.iter().enumerate() {
                    if !part.get("type").is_some_and(Value::is_string) {
                        return Err(GatewayError::invalid(
                            format!("messages[{i}].content[{j}] must be an object with a 'type'."),
                            format!("messages[{i}].content[{j}].type"),
                        ));
                    }
                }
            }
            None | Some(Value::Null) if content_optional => {}
            None | Some(Value::Null) => {
                return Err(GatewayError::InvalidRequest {
                    message: format!("Missing required parameter: 'messages[{i}].content'."),
                    param: Some(format!("messages[{i}].content")),
                    code: "missing_required_parameter",
                })
            }
            Some(_) => {
                return Err(GatewayError::invalid(
                    format!("messages[{i}].content must be a string or an array of content parts."),
                    format!("messages[{i}].content"),
                ))
            }
        }
        if role == "tool" && !message.get("tool_call_id").is_some_and(Value::is_string) {
            return Err(GatewayError::InvalidRequest {
                message: format!("Missing required parameter: 'messages[{i}].tool_call_id'."),
                param: Some(format!("messages[{i}].tool_call_id")),
                code: "missing_required_parameter",
            });
        }
    }
    Ok(())
}

/// `prompt` (completions) and `input` (embeddings): a string, or a non-empty array of
/// strings, token IDs, or arrays of token IDs.
fn check_prompt(body: &Map<String, Value>, field: &str) -> Result<(), GatewayError> {
    let ok = match body.get(field) {
        Some(Value::String(_)) => true,
        Some(Value::Array(items)) => {
            !items.is_empty()
                && (items.iter().all(Value::is_string)
                    || items.iter().all(Value::is_u64)
                    || items.iter().all(|i| {
                        i.as_array()
                            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_u64))
                    }))
        }
        None | Some(Value::Null) => {
            return Err(GatewayError::InvalidRequest {
                message: format!("Missing required parameter: '{field}'."),
                param: Some(field.to_owned()),
                code: "missing_required_parameter",
            })
        }
        Some(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(GatewayError::invalid(
            format!("'{field}' must be a string, or a non-empty array of strings, token IDs, or token-ID arrays."),
            field,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};
    use johi_core::model::Tokenizer;

    fn validate(api: Api, body: &str) -> Result<Exchange, GatewayError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        let mut ex = Exchange::new(api, headers, Bytes::from(body.to_owned()));
        check(&mut ex).map(|()| ex)
    }

    fn param(r: Result<Exchange, GatewayError>) -> Option<String> {
        match r {
            Err(GatewayError::InvalidRequest { param, .. }) => param,
            Err(other) => Some(format!("unexpected {other:?}")),
            Ok(_) => Some("accepted".into()),
        }
    }

    #[test]
    fn accepts_a_full_chat_request() {
        let ex = validate(
            Api::ChatCompletions,
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[
                {"role":"system","content":"s"},
                {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"42"}]}"#,
        )
        .unwrap();
        assert!(ex.stream);
        assert_eq!(ex.model.as_deref(), Some("m"));
    }

    #[test]
    fn names_the_bad_field() {
        let cases = [
            (r#"{"messages":[{"role":"user","content":"x"}]}"#, "model"),
            (r#"{"model":"m"}"#, "messages"),
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"},{"content":"y"}]}"#,
                "messages[1].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
                "messages[0].tool_call_id",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
                "stream",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{}}"#,
                "stream_options",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                param(validate(Api::ChatCompletions, body)).as_deref(),
                Some(expected),
                "{body}"
            );
        }
        assert_eq!(
            param(validate(Api::Embeddings, r#"{"model":"m"}"#)).as_deref(),
            Some("input")
        );
        assert_eq!(
            param(validate(Api::Embeddings, r#"{"model":"m","input":[]}"#)).as_deref(),
            Some("input")
        );
        assert_eq!(
            param(validate(
                Api::Embeddings,
                r#"{"model":"m","input":"x","stream":true}"#
            ))
            .as_deref(),
            Some("stream")
        );
        assert_eq!(
            param(validate(
                Api::Completions,
                r#"{"model":"m","prompt":[1,"a"]}"#
            ))
            .as_deref(),
            Some("prompt")
        );
        assert!(validate(Api::Embeddings, r#"{"model":"m","input":[[1,2],[3]]}"#).is_ok());
    }

    /// The one-pass check only ever accepts what the general check accepts, with the same
    /// model and stream flag, and does accept the ordinary requests.
    #[test]
    fn the_quick_check_is_never_more_lenient_than_the_general_one() {
        let user = r#"{"role":"user","content":"hi"}"#;
        let mut bodies: Vec<String> = vec![
            format!(r#"{{"model":"m","messages":[{user}]}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"stream":true}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"stream":true,"stream_options":{{"include_usage":true}}}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"stream":true,"stream_options":{{"include_usage":false}}}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"stream":false,"stream_options":null}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"stream_options":{{}}}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"stream":true,"stream_options":null}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"stream":null,"max_tokens":null,"n":2,"temperature":0,"top_p":1}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"max_tokens":1.0}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"max_tokens":-1}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"max_completion_tokens":0}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"temperature":2.0000001}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"temperature":-0.0,"top_p":"1"}}"#),
            format!(r#"{{"model":"","messages":[{user}]}}"#),
            format!(r#"{{"model":null,"messages":[{user}]}}"#),
            format!(r#"{{"model":7,"messages":[{user}]}}"#),
            format!(r#"{{"model":"a","model":"b","messages":[{user}]}}"#),
            format!(r#"{{"model":"a","messages":[],"messages":[{user}]}}"#),
            format!(r#"{{"model":"a","messages":[{user}],"messages":[]}}"#),
            format!(r#"{{"model":"m\u00e9\n","messages":[{user}]}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"user":"\ud800"}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"user":"\ud83d\ude00"}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"seed":1e400}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"seed":-1e-400}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"x":{}}}"#, "[".repeat(140) + &"]".repeat(140)),
            format!(r#"{{"model":"m","messages":[{user}],"x":{}}}"#, "[".repeat(100) + &"]".repeat(100)),
            format!(r#"{{"model":"m","messages":[{user}]}} x"#),
            format!(r#"{{"model":"m","messages":[{user}]}}  "#),
            format!(r#"{{"model":"m","messages":[{user}],}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"x":"tab	in string"}}"#),
            format!(r#"{{"model":"m","messages":[{user}],"x":"\q"}}"#),
            format!(r#"{{"mod\u0065l":"m","messages":[{user}]}}"#),
            format!(r#"[{user}]"#),
            r#"{"model":"m","messages":{"role":"user","content":"x"}}"#.into(),
            r#"{"model":"m","messages":[null]}"#.into(),
            r#"{"model":"m","messages":[["user"]]}"#.into(),
            r#"{"model":"m","messages":[{"role":"assistant"}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"assistant","content":null,"refusal":null}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[]}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"assistant","content":7,"tool_calls":[]}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":null}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":[]}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text"},{"text":"x"}]}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":1}]}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":["x"]}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":{"type":"text"}}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"tool","content":"x","tool_call_id":"c"}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"tool","content":"x","tool_call_id":null}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"User","content":"x"}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","role":"wizard","content":"x"}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"wizard","role":"user","content":"x"}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":"x","content":null}]}"#.into(),
            r#"{"model":"m","max_tokens":5,"max_completion_tokens":6,"messages":[{"role":"user","name":"ann","content":[{"type":"text","text":"hello there"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"high"}},{"type":"input_audio","input_audio":{"data":"AAAA"}}]},{"role":"assistant","content":"data:x","tool_calls":[{"id":"c1","type":"function","function":{"name":"lookup","arguments":"{\"q\": 1}"}}]},{"role":"tool","tool_call_id":"c1","content":"forty two","extra":{"file":"zzz","n":[1,"deep text"]}}]}"#.into(),
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","name":"ann","content":[{"type":"text","text":"hello there"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"high"}}]},{"role":"assistant","content":"data:x","tool_calls":[{"id":"c1","type":"function","function":{"name":"lookup","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"forty two","extra":{"file":"zzz","n":[1,"deep text"]}}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":"first"}],"messages":[{"role":"user","content":"second one"}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":"caf\u00e9"}]}"#.into(),
        ];
        let valid_utf8 = bodies.len();
        let mut deferred = Vec::new();
        let mut inexact = Vec::new();
        let mut spliced = 0;
        bodies.push(format!(r#"{{"model":"m","messages":[{user}],"x":"\xff"}}"#));
        for (i, body) in bodies.iter().enumerate() {
            let mut raw = body.clone().into_bytes();
            if i >= valid_utf8 {
                // An invalid UTF-8 byte inside a string the checks do not read.
                let at = raw.windows(4).position(|w| w == br"\xff").unwrap();
                raw.splice(at..at + 4, [0xff]);
            }
            let quick = fast::chat(&raw);
            if let Some(span) = quick.as_ref().and_then(|q| q.model_span.clone()) {
                // Where the translation splices the upstream's name: what the splice's own
                // scan finds.
                assert_eq!(
                    Some(span),
                    johi_providers::splice::top_level_value(&raw, "model"),
                    "{body}"
                );
                spliced += 1;
            }
            let mut ex = Exchange::new(Api::ChatCompletions, HeaderMap::new(), Bytes::from(raw));
            let general = check_tree(&mut ex);
            if let Some(quick) = quick {
                assert!(
                    general.is_ok(),
                    "quick accepted, general refused: {body}: {general:?}"
                );
                assert_eq!(Some(quick.model), ex.model, "{body}");
                assert_eq!(quick.stream, ex.stream, "{body}");
                if let Some(spans) = &quick.prompt {
                    // A key repeated inside a message is counted each time (the tree keeps
                    // the last): the estimate can only be higher then, never lower.
                    let repeats = [r#""user","role""#, r#""wizard","role""#, r#""x","content""#]
                        .iter()
                        .any(|r| body.contains(r));
                    for tokenizer in [Tokenizer::Estimate, Tokenizer::O200kBase] {
                        let spans =
                            crate::tokens::estimate_from_spans(tokenizer, &ex.raw_body, spans);
                        let tree = crate::tokens::count_input_tokens(tokenizer, ex.api, ex.body());
                        if repeats {
                            assert!(spans.is_some_and(|n| n > tree), "{body}");
                        } else {
                            assert_eq!(spans, Some(tree), "{body}");
                        }
                    }
                    let cap = |f: &str| ex.body().get(f).and_then(Value::as_u64);
                    assert_eq!(spans.max_tokens, cap("max_tokens"), "{body}");
                    assert_eq!(
                        spans.max_completion_tokens,
                        cap("max_completion_tokens"),
                        "{body}"
                    );
                } else {
                    inexact.push(body.as_str());
                }
                if let Some(asked) = quick.stream_usage_requested {
                    let in_tree = ex
                        .body()
                        .get("stream_options")
                        .and_then(|o| o.get("include_usage"))
                        == Some(&Value::Bool(true));
                    assert_eq!(asked, in_tree, "{body}");
                    if !asked {
                        assert!(!ex.body().contains_key("stream_options"), "{body}");
                    }
                }
            } else if general.is_ok() {
                deferred.push(body.as_str());
            }
        }
        // Every body the general check accepts took the quick path, but for the one shape
        // the quick check leaves to it (a stream with `stream_options: null`).
        assert_eq!(
            deferred,
            [bodies[1].replace("true}", r#"true,"stream_options":null}"#)]
        );
        // Texts with escapes are kept unescaped: every accepted body has its prompt located.
        assert!(inexact.is_empty(), "{inexact:?}");
        assert!(spliced > 0, "some bodies give the model's place");
        assert!(bodies.iter().any(|b| b.contains(r"\n")));
    }

    /// Random edits of real requests (bytes deleted, repeated or replaced by JSON's own
    /// punctuation, quotes, escapes and other values): whatever the quick check accepts, the
    /// general one accepts too, with the same model, stream flag and prompt token count.
    #[test]
    fn random_edits_never_make_the_quick_check_more_lenient() {
        let seeds = [
            r#"{"model":"m","stream":true,"max_tokens":64,"temperature":0.2,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"hi there"},{"type":"image_url","image_url":{"url":"data:x"}}]}]}"#,
            r#"{"model":"gpt","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"42"}],"n":1,"top_p":1}"#,
        ];
        let pieces: [&[u8]; 16] = [
            b"\"",
            b"\\",
            b"\\u00e9",
            b"\\ud800",
            b",",
            b":",
            b"{",
            b"}",
            b"[",
            b"]",
            b"null",
            b"1e400",
            b"-1",
            b"\"role\":\"user\"",
            b"\"content\":",
            b"\xff",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        let (mut accepted, mut tried) = (0, 0);
        for round in 0..20_000 {
            let mut body = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(0..body.len());
                match rng.u8(0..3) {
                    0 => {
                        let end = (at + rng.usize(1..8)).min(body.len());
                        body.drain(at..end);
                    }
                    1 => {
                        let piece = pieces[rng.usize(0..pieces.len())];
                        body.splice(at..at, piece.iter().copied());
                    }
                    _ => {
                        let end = (at + rng.usize(1..6)).min(body.len());
                        let copy = body[at..end].to_vec();
                        body.splice(at..at, copy);
                    }
                }
                if body.is_empty() {
                    break;
                }
            }
            tried += 1;
            let Some(quick) = fast::chat(&body) else {
                continue;
            };
            accepted += 1;
            let text = String::from_utf8_lossy(&body).into_owned();
            let mut ex = Exchange::new(Api::ChatCompletions, HeaderMap::new(), Bytes::from(body));
            assert!(
                check_tree(&mut ex).is_ok(),
                "quick accepted, general refused: {text}"
            );
            assert_eq!(Some(quick.model), ex.model, "{text}");
            assert_eq!(quick.stream, ex.stream, "{text}");
            if let Some(spans) = &quick.prompt {
                let counted =
                    crate::tokens::estimate_from_spans(Tokenizer::Estimate, &ex.raw_body, spans);
                let tree =
                    crate::tokens::count_input_tokens(Tokenizer::Estimate, ex.api, ex.body());
                assert!(counted.is_some_and(|n| n >= tree), "{text}");
            }
        }
        // The edits leave enough bodies valid for the comparison to mean something.
        assert!(accepted > tried / 20, "{accepted} of {tried}");
    }

    #[test]
    fn refuses_bad_json_and_wrong_content_type() {
        assert!(matches!(
            validate(Api::ChatCompletions, "{\"model\":"),
            Err(GatewayError::InvalidRequest {
                code: "invalid_json",
                ..
            })
        ));
        assert!(matches!(
            validate(Api::ChatCompletions, "[1]"),
            Err(GatewayError::InvalidRequest {
                code: "invalid_json",
                ..
            })
        ));
        let mut ex = Exchange::new(
            Api::ChatCompletions,
            HeaderMap::new(),
            Bytes::from_static(b"{}"),
        );
        assert!(matches!(
            check(&mut ex),
            Err(GatewayError::UnsupportedMediaType { found: None })
        ));
    }

    /// The model's place is given only where the splice's own scan would find the same
    /// place: never for an escaped key (it may spell `model`), a repeated `model` or a
    /// value with escapes, which the translation re-serialises instead.
    #[test]
    fn the_model_span_is_given_only_where_the_splice_finds_it() {
        let cases = [
            (
                r#"{"model":"gpt-x","messages":[{"role":"user","content":"hi"}]}"#,
                true,
            ),
            (
                r#"{ "messages":[{"role":"user","content":"hi"}], "model" : "m" }"#,
                true,
            ),
            (
                r#"{"model":"g\u0070t","messages":[{"role":"user","content":"hi"}]}"#,
                false,
            ),
            (
                r#"{"mod\u0065l":"a","model":"b","messages":[{"role":"user","content":"hi"}]}"#,
                false,
            ),
            (
                r#"{"model":"a","model":"b","messages":[{"role":"user","content":"hi"}]}"#,
                false,
            ),
            (
                r#"{"model":"a","x\n":1,"messages":[{"role":"user","content":"hi"}]}"#,
                false,
            ),
        ];
        for (body, spliceable) in cases {
            let accepted = fast::chat(body.as_bytes()).expect(body);
            assert_eq!(accepted.model_span.is_some(), spliceable, "{body}");
            if let Some(span) = accepted.model_span {
                assert_eq!(
                    Some(span.clone()),
                    johi_providers::splice::top_level_value(body.as_bytes(), "model"),
                    "{body}"
                );
                assert!(body[span].starts_with('"'), "{body}");
            }
        }
    }
}
