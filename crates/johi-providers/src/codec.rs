//! The one place that answers "which protocol?" on the way to and from a provider.
//!
//! The `translate` processor and the relay call these functions with the target's
//! [`Protocol`]; they never name a protocol themselves, so adding an adapter means adding an
//! arm here and nothing on the request path. OpenAI-compatible targets are the identity: their
//! requests are the client's own bytes (spliced by the processor), their answers pass
//! untouched, so most functions here answer `None` for them.

use http::{HeaderName, HeaderValue, Uri};
use johi_core::model::Protocol;
use johi_core::{Api, Usage};
use serde_json::{Map, Value};

use crate::{anthropic, bedrock, cohere, gemini, TranslateError};

/// What an adapter needs to write an upstream request.
#[derive(Debug, Clone, Copy)]
pub struct EncodeInput<'a> {
    /// The client's endpoint (chat, completions, embeddings).
    pub api: Api,
    /// The client's parsed request body (OpenAI's shape), after every mutating processor.
    pub body: &'a Map<String, Value>,
    /// The model name the provider knows the target by.
    pub upstream_model: &'a str,
    /// The provider's configured base URL.
    pub base_url: &'a Uri,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// `max_tokens` for protocols that require it when the client sent none.
    pub default_max_tokens: u64,
    /// The model's configured embedding `input_type` (Cohere requires one).
    pub embed_input_type: Option<&'a str>,
}

/// An upstream request in the target's protocol, ready for the credentials processor.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Where it goes.
    pub uri: Uri,
    /// The body, in the target's wire format.
    pub body: Vec<u8>,
    /// Protocol headers (e.g. `anthropic-version`), added before the provider's own extras,
    /// so a configured header still wins.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A translated answer: the OpenAI body's bytes and the usage Johi meters, read from the
/// provider's answer once (the client is shown the same numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The OpenAI answer (`chat.completion`, or an embeddings list), serialised.
    pub body: Vec<u8>,
    /// The provider's usage, in Johi's one shape; `None` when it reported none.
    pub usage: Option<Usage>,
}

/// Translates one upstream stream into OpenAI `chat.completion.chunk` SSE events as it
/// arrives. Fed raw upstream bytes (SSE or a binary framing, per protocol); writes whole
/// OpenAI events, `data: [DONE]` at a proper end, one error event on a broken one. Never
/// panics, whatever it is fed.
pub trait StreamTranslate: Send {
    /// The OpenAI events completed by the next chunk of upstream bytes.
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8>;
    /// Called when the upstream ends: an error event if the stream stopped short.
    fn finish(&mut self) -> Vec<u8>;
    /// The usage the provider reported, once it has.
    fn usage(&self) -> Option<Usage>;
}

impl StreamTranslate for bedrock::StreamTranslator {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        bedrock::StreamTranslator::feed(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        bedrock::StreamTranslator::finish(self)
    }
    fn usage(&self) -> Option<Usage> {
        bedrock::StreamTranslator::usage(self)
    }
}

impl StreamTranslate for cohere::StreamTranslator {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        cohere::StreamTranslator::feed(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        cohere::StreamTranslator::finish(self)
    }
    fn usage(&self) -> Option<Usage> {
        cohere::StreamTranslator::usage(self)
    }
}

impl StreamTranslate for anthropic::StreamTranslator {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        anthropic::StreamTranslator::feed(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        anthropic::StreamTranslator::finish(self)
    }
    fn usage(&self) -> Option<Usage> {
        anthropic::StreamTranslator::usage(self)
    }
}

impl StreamTranslate for gemini::StreamTranslator {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        gemini::StreamTranslator::feed(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        gemini::StreamTranslator::finish(self)
    }
    fn usage(&self) -> Option<Usage> {
        gemini::StreamTranslator::usage(self)
    }
}

/// Whether answers from `protocol` are translated (and so re-serialised) by Johi.
pub fn translates(protocol: Protocol) -> bool {
    match protocol {
        Protocol::OpenAi => false,
        Protocol::Anthropic
        | Protocol::Bedrock
        | Protocol::Gemini
        | Protocol::Vertex
        | Protocol::Cohere => true,
    }
}

/// Whether a provider of `protocol` can serve the client's endpoint.
pub fn supports(protocol: Protocol, api: Api) -> bool {
    match protocol {
        Protocol::OpenAi => true,
        Protocol::Anthropic => api == Api::ChatCompletions,
        // Vertex embeds through `:predict`, the Gemini API through `:batchEmbedContents`,
        // Bedrock through `InvokeModel` (Titan and Cohere models; others are refused by the
        // encoder, which knows the model id).
        Protocol::Bedrock | Protocol::Gemini | Protocol::Vertex | Protocol::Cohere => {
            matches!(api, Api::ChatCompletions | Api::Embeddings)
        }
    }
}

/// The upstream request for a translating protocol; `None` for OpenAI-compatible targets,
/// whose body is the client's own (see the `translate` processor).
pub fn encode(
    protocol: Protocol,
    input: &EncodeInput<'_>,
) -> Option<Result<Encoded, TranslateError>> {
    match protocol {
        Protocol::OpenAi => None,
        Protocol::Anthropic => Some(encode_anthropic(input)),
        Protocol::Bedrock => Some(encode_bedrock(input)),
        Protocol::Gemini => Some(encode_gemini(input, gemini::Method::BatchEmbed)),
        Protocol::Vertex => Some(encode_gemini(input, gemini::Method::Predict)),
        Protocol::Cohere => Some(encode_cohere(input)),
    }
}

/// Converse's body and URL; the `accept` header names the event stream for a stream (it
/// replaces the SSE one the translate processor sets). Embeddings are `InvokeModel` with the
/// model family's body. Signing happens later, per attempt, on whichever was written.
fn encode_bedrock(input: &EncodeInput<'_>) -> Result<Encoded, TranslateError> {
    if input.api == Api::Embeddings {
        let body =
            bedrock::encode_embeddings(input.body, input.upstream_model, input.embed_input_type)?;
        let uri = bedrock::invoke_uri(input.base_url, input.upstream_model)
            .map_err(|e| TranslateError::invalid("base_url", e.to_string()))?;
        return Ok(Encoded {
            uri,
            body,
            headers: vec![(
                http::header::ACCEPT,
                HeaderValue::from_static("application/json"),
            )],
        });
    }
    let body = bedrock::encode_request(input.body)?;
    let uri = bedrock::converse_uri(input.base_url, input.upstream_model, input.stream)
        .map_err(|e| TranslateError::invalid("base_url", e.to_string()))?;
    let accept = if input.stream {
        HeaderValue::from_static(bedrock::EVENT_STREAM_CONTENT_TYPE)
    } else {
        HeaderValue::from_static("application/json")
    };
    Ok(Encoded {
        uri,
        body,
        headers: vec![(http::header::ACCEPT, accept)],
    })
}

/// Gemini's body and method URL (`:generateContent`, `:streamGenerateContent?alt=sse`, and
/// `embed` for embeddings). Vertex differs by its base URL and credentials, and by its
/// embeddings method: `:predict` (with the model's `input_type` as `task_type`) where the
/// Gemini API has `:batchEmbedContents`.
fn encode_gemini(
    input: &EncodeInput<'_>,
    embed: gemini::Method,
) -> Result<Encoded, TranslateError> {
    let (method, body) = match input.api {
        Api::Embeddings if embed == gemini::Method::Predict => (
            embed,
            gemini::encode_predict_embeddings(input.body, input.embed_input_type)?,
        ),
        Api::Embeddings => (
            embed,
            gemini::encode_embeddings(input.body, input.upstream_model)?,
        ),
        Api::ChatCompletions | Api::Completions => {
            let encoded = gemini::encode_request(input.body)?;
            let method = if input.stream {
                gemini::Method::Stream
            } else {
                gemini::Method::Generate
            };
            (method, encoded.body)
        }
    };
    let uri = gemini::method_uri(input.base_url, input.upstream_model, method)
        .map_err(|e| TranslateError::invalid("model", e.to_string()))?;
    Ok(Encoded {
        uri,
        body,
        headers: Vec::new(),
    })
}

fn encode_cohere(input: &EncodeInput<'_>) -> Result<Encoded, TranslateError> {
    let (uri, body) = if input.api == Api::Embeddings {
        let body =
            cohere::encode_embed_request(input.body, input.upstream_model, input.embed_input_type)?;
        (cohere::embed_uri(input.base_url), body)
    } else {
        let encoded = cohere::encode_request(input.body, input.upstream_model)?;
        (cohere::chat_uri(input.base_url), encoded.body)
    };
    let uri = uri.map_err(|e| TranslateError::invalid("base_url", e.to_string()))?;
    Ok(Encoded {
        uri,
        body,
        headers: Vec::new(),
    })
}

fn encode_anthropic(input: &EncodeInput<'_>) -> Result<Encoded, TranslateError> {
    let encoded =
        anthropic::encode_request(input.body, input.upstream_model, input.default_max_tokens)?;
    let uri = anthropic::messages_uri(input.base_url)
        .map_err(|e| TranslateError::invalid("base_url", e.to_string()))?;
    Ok(Encoded {
        uri,
        body: encoded.body,
        headers: vec![(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(anthropic::ANTHROPIC_VERSION),
        )],
    })
}

/// A complete upstream answer in OpenAI's shape, as bytes with its usage; `None` for
/// OpenAI-compatible targets.
/// `model` is the name the client asked for, `created` the Unix time to stamp, `request` the
/// client's request body (some answers depend on it, e.g. an embeddings `encoding_format`).
pub fn decode_response(
    protocol: Protocol,
    api: Api,
    request: &Map<String, Value>,
    body: &[u8],
    model: &str,
    created: u64,
) -> Option<Result<Decoded, TranslateError>> {
    match protocol {
        Protocol::OpenAi => None,
        Protocol::Anthropic => Some(anthropic::decode_response(body, model, created)),
        Protocol::Bedrock if api == Api::Embeddings => {
            Some(bedrock::decode_embeddings(body, request, model))
        }
        Protocol::Bedrock => Some(bedrock::decode_response(body, model, created)),
        Protocol::Gemini | Protocol::Vertex => Some(match api {
            Api::Embeddings if protocol == Protocol::Vertex => {
                gemini::decode_predict_embeddings(body, request, model)
            }
            Api::Embeddings => gemini::decode_embeddings(body, request, model),
            Api::ChatCompletions | Api::Completions => {
                gemini::decode_response(body, model, created)
            }
        }),
        Protocol::Cohere if api == Api::Embeddings => {
            Some(cohere::decode_embed_response(body, model))
        }
        Protocol::Cohere => Some(cohere::decode_response(body, model, created)),
    }
}

/// The stream translator for a translating protocol; `None` for OpenAI-compatible targets,
/// whose events pass untouched.
pub fn stream_translator(
    protocol: Protocol,
    model: &str,
    created: u64,
    include_usage: bool,
) -> Option<Box<dyn StreamTranslate>> {
    match protocol {
        Protocol::OpenAi => None,
        Protocol::Anthropic => Some(Box::new(anthropic::StreamTranslator::new(
            model,
            created,
            include_usage,
        ))),
        Protocol::Bedrock => Some(Box::new(bedrock::StreamTranslator::new(
            model,
            created,
            include_usage,
        ))),
        Protocol::Gemini | Protocol::Vertex => Some(Box::new(gemini::StreamTranslator::new(
            model,
            created,
            include_usage,
        ))),
        Protocol::Cohere => Some(Box::new(cohere::StreamTranslator::new(
            model,
            created,
            include_usage,
        ))),
    }
}

/// An upstream error body in OpenAI's error shape (its status is kept by the caller);
/// `None` for OpenAI-compatible targets, whose errors pass as they are.
pub fn decode_error(protocol: Protocol, status: u16, body: &[u8]) -> Option<Value> {
    match protocol {
        Protocol::OpenAi => None,
        Protocol::Anthropic => Some(anthropic::decode_error(status, body)),
        Protocol::Bedrock => Some(bedrock::decode_error(status, body)),
        Protocol::Gemini | Protocol::Vertex => Some(gemini::decode_error(status, body)),
        Protocol::Cohere => Some(cohere::decode_error(status, body)),
    }
}

/// The response header in which the provider names its request id (passed to the client as
/// `x-upstream-request-id`).
pub fn request_id_header(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::OpenAi => "x-request-id",
        Protocol::Anthropic => "request-id",
        Protocol::Bedrock => "x-amzn-requestid",
        // Google sends no request id header; its answers carry `responseId` in the body.
        Protocol::Gemini | Protocol::Vertex => "x-request-id",
        Protocol::Cohere => cohere::REQUEST_ID_HEADER,
    }
}
