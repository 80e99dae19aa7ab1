//! Protocol translation: the exchange → the upstream request in the target's protocol.
//!
//! Per attempt, because a fallback may land on a provider that speaks another protocol.
//! Headers are built fresh for the destination: the enrichment headers, the provider's own
//! extras, and only the client headers the provider allow-lists — never the client's
//! credentials, which authenticate it to Johi, not to the provider.

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::HeaderValue;
use johi_core::model::{Protocol, Provider};
use johi_core::{Api, Exchange, Facet, FacetSet, GatewayError};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};
use johi_providers::anthropic::{self, TranslateError, ANTHROPIC_VERSION};
use johi_providers::{openai, splice};

const ANTHROPIC_VERSION_HEADER: http::HeaderName =
    http::HeaderName::from_static("anthropic-version");

/// See the module docs.
pub struct Translate {
    contract: Contract,
}

impl Default for Translate {
    fn default() -> Self {
        Self::new()
    }
}

impl Translate {
    /// Builds the processor.
    pub fn new() -> Self {
        Translate {
            contract: Contract {
                name: "translate",
                category: Category::Mutate,
                reads: FacetSet::of(&[Facet::Prompt, Facet::Params, Facet::Model, Facet::Endpoint]),
                writes: FacetSet::of(&[Facet::Headers]),
                retry: RetryScope::EveryAttempt,
                on_failure: FailureMode::FailClosed,
            },
        }
    }
}

/// The request body for an OpenAI-compatible target: the client's own bytes with the model
/// name swapped in, unless a processor changed the body (then it is re-serialised).
fn upstream_body(ex: &mut Exchange, upstream_model: &str) -> Result<Bytes, ProcessorError> {
    if !ex.body_changed() {
        if let Some(range) = splice::top_level_value(&ex.raw_body, "model") {
            let name = serde_json::to_vec(upstream_model)
                .map_err(|e| ProcessorError(format!("could not encode the model name: {e}")))?;
            return Ok(Bytes::from(splice::splice(&ex.raw_body, range, &name)));
        }
    }
    openai::encode_request(ex.body_mut(), upstream_model)
        .map_err(|e| ProcessorError(format!("could not encode the request: {e}")))
}

#[async_trait]
impl Processor for Translate {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    async fn on_request(&self, ex: &mut Exchange) -> Result<Verdict, ProcessorError> {
        let Some(target) = ex.target() else {
            return Err(ProcessorError(
                "no endpoint picked: 'endpoint' must run first".into(),
            ));
        };
        let provider = target.provider.clone();
        let upstream_model = target.model.clone();
        let default_max_tokens = ex.route.as_ref().map_or(1024, |r| r.default_max_tokens);
        match provider.protocol {
            Protocol::Anthropic => {
                return anthropic_request(ex, &provider, &upstream_model, default_max_tokens);
            }
            Protocol::OpenAi => {
                let uri = openai::upstream_uri(&provider.base_url, ex.api)
                    .map_err(|e| ProcessorError(format!("bad upstream URL: {e}")))?;
                let body = upstream_body(ex, &upstream_model)?;
                ex.upstream.headers = upstream_headers(ex, &provider);
                ex.upstream.uri = Some(uri);
                ex.upstream.body = body;
            }
        }
        Ok(Verdict::Continue)
    }
}

/// The headers for the destination, whatever its protocol: the enrichment headers, the
/// content negotiation, the client headers the provider allow-lists, and the provider's own
/// extras last (they win).
fn upstream_headers(ex: &Exchange, provider: &Provider) -> http::HeaderMap {
    let mut headers = ex.upstream_headers.clone();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        ACCEPT,
        HeaderValue::from_static(if ex.stream {
            "text/event-stream"
        } else {
            "application/json"
        }),
    );
    for name in &provider.forward_headers {
        for value in ex.inbound_headers.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    for (name, value) in &provider.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

/// The upstream request for an Anthropic Messages target, or the 400 that refuses it before
/// anything is sent: only chat completions translate, and a field Anthropic cannot express
/// is named to the client rather than dropped.
fn anthropic_request(
    ex: &mut Exchange,
    provider: &Provider,
    upstream_model: &str,
    default_max_tokens: u64,
) -> Result<Verdict, ProcessorError> {
    if ex.api != Api::ChatCompletions {
        let endpoint = match ex.api {
            Api::Completions => "/v1/completions",
            Api::Embeddings => "/v1/embeddings",
            Api::ChatCompletions => "/v1/chat/completions",
        };
        return Ok(Verdict::Deny(GatewayError::InvalidRequest {
            message: format!(
                "{endpoint} is not supported by model `{}`: its provider speaks Anthropic's Messages API, which serves chat completions only",
                ex.model.as_deref().unwrap_or(upstream_model)
            ),
            param: None,
            code: "unsupported_endpoint",
        }));
    }
    let encoded = match anthropic::encode_request(ex.body(), upstream_model, default_max_tokens) {
        Ok(encoded) => encoded,
        Err(e @ (TranslateError::Unsupported { .. } | TranslateError::Invalid { .. })) => {
            return Ok(Verdict::Deny(GatewayError::InvalidRequest {
                message: e.to_string(),
                param: Some(e.field().to_owned()),
                code: match e {
                    TranslateError::Unsupported { .. } => "unsupported_parameter",
                    _ => "invalid_value",
                },
            }));
        }
        Err(e) => return Err(ProcessorError(format!("could not encode the request: {e}"))),
    };
    let uri = anthropic::messages_uri(&provider.base_url)
        .map_err(|e| ProcessorError(format!("bad upstream URL: {e}")))?;
    let mut headers = upstream_headers(ex, provider);
    // Before the provider's own extras, so a configured `anthropic-version` still wins.
    if !provider
        .headers
        .iter()
        .any(|(name, _)| *name == ANTHROPIC_VERSION_HEADER)
    {
        headers.insert(
            ANTHROPIC_VERSION_HEADER,
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
    }
    ex.upstream.uri = Some(uri);
    ex.upstream.headers = headers;
    ex.upstream.body = Bytes::from(encoded.body);
    Ok(Verdict::Continue)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http::{HeaderMap, Uri};
    use johi_core::model::{KeyPlacement, ModelRoute, Protocol, Provider, Target, Timeouts};
    use johi_core::Api;
    use serde_json::{json, Map, Value};

    use super::*;

    fn exchange(raw: &str) -> Exchange {
        let provider = Arc::new(Provider {
            name: "p".into(),
            protocol: Protocol::OpenAi,
            base_url: Uri::from_static("http://127.0.0.1:1/v1"),
            api_key: None,
            key_placement: KeyPlacement::Bearer,
            headers: vec![],
            forward_headers: vec![],
            timeouts: Timeouts {
                connect: Duration::from_secs(1),
                first_byte: Duration::from_secs(1),
                total: Duration::from_secs(1),
            },
            ca_file: None,
        });
        let mut ex = Exchange::new(
            Api::ChatCompletions,
            HeaderMap::new(),
            Bytes::from(raw.to_owned()),
        );
        let parsed: Map<String, Value> = serde_json::from_str(raw).unwrap();
        ex.set_parsed_body(parsed);
        ex.route = Some(Arc::new(ModelRoute {
            name: "gpt".into(),
            targets: vec![Target {
                provider,
                model: "upstream-name".into(),
                weight: 1,
            }],
            max_attempts: 1,
            pricing: None,
            default_max_tokens: 1024,
            tokenizer: johi_core::model::Tokenizer::Estimate,
        }));
        ex.target_index = Some(0);
        ex
    }

    fn run(ex: &mut Exchange) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(Translate::new().on_request(ex)).unwrap();
    }

    #[test]
    fn the_clients_bytes_go_upstream_with_only_the_model_swapped() {
        let raw = "{\"model\": \"gpt\",\n \"seed\": 123456789012345678901234567890, \"temperature\": 0.70,\n \"messages\": [{\"role\": \"user\", \"content\": \"caf\\u00e9\"}]}";
        let mut ex = exchange(raw);
        run(&mut ex);
        let sent = std::str::from_utf8(&ex.upstream.body).unwrap();
        assert_eq!(
            sent,
            raw.replace("\"model\": \"gpt\"", "\"model\": \"upstream-name\"")
        );
        assert_eq!(
            ex.upstream.uri.as_ref().unwrap(),
            "http://127.0.0.1:1/v1/chat/completions"
        );
    }

    #[test]
    fn a_changed_body_is_reserialised_with_the_change() {
        let mut ex =
            exchange(r#"{"model":"gpt","messages":[{"role":"user","content":"my card is 4111"}]}"#);
        ex.body_mut()["messages"][0]["content"] = json!("my card is [REDACTED]");
        run(&mut ex);
        let sent: Value = serde_json::from_slice(&ex.upstream.body).unwrap();
        assert_eq!(sent["model"], "upstream-name");
        assert_eq!(sent["messages"][0]["content"], "my card is [REDACTED]");
    }
}
