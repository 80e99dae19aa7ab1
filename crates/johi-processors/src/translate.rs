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
use johi_core::model::Provider;
use johi_core::{Exchange, Facet, FacetSet, GatewayError};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};
use johi_providers::codec::{self, EncodeInput};
use johi_providers::{openai, splice, TranslateError};

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
        // Where validation saw the model's value, else a scan of the body for it.
        let found = ex
            .model_span
            .clone()
            .or_else(|| splice::top_level_value(&ex.raw_body, "model"));
        if let Some(range) = found {
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

    fn on_request_now(&self, ex: &mut Exchange) -> Option<Result<Verdict, ProcessorError>> {
        Some(self.translate(ex))
    }
}

impl Translate {
    /// The request phase; it never waits (see [`Processor::on_request_now`]).
    fn translate(&self, ex: &mut Exchange) -> Result<Verdict, ProcessorError> {
        let Some(target) = ex.target() else {
            return Err(ProcessorError(
                "no endpoint picked: 'endpoint' must run first".into(),
            ));
        };
        let provider = target.provider.clone();
        let upstream_model = target.model.clone();
        let default_max_tokens = ex.route.as_ref().map_or(1024, |r| r.default_max_tokens);
        if !codec::supports(provider.protocol, ex.api) {
            return Ok(Verdict::Deny(unsupported_endpoint(
                ex,
                &provider,
                &upstream_model,
            )));
        }
        // An OpenAI-compatible target gets the client's bytes: the body's tree, which the
        // other protocols are written from, is not built for it.
        let encoded = codec::translates(provider.protocol)
            .then(|| {
                let input = EncodeInput {
                    api: ex.api,
                    body: ex.body(),
                    upstream_model: &upstream_model,
                    base_url: &provider.base_url,
                    stream: ex.stream,
                    default_max_tokens,
                    embed_input_type: ex
                        .route
                        .as_ref()
                        .and_then(|r| r.embed_input_type.as_deref()),
                };
                codec::encode(provider.protocol, &input)
            })
            .flatten();
        match encoded {
            None => {
                // An Azure deployment URL names the target's model; any other is the
                // provider's own for the operation, built once.
                let uri = match provider.azure_api_version.as_deref() {
                    Some(version) => openai::provider_uri(
                        &provider.base_url,
                        ex.api,
                        Some(version),
                        &upstream_model,
                    ),
                    None => provider
                        .uris
                        .get_or_build(ex.api, || openai::upstream_uri(&provider.base_url, ex.api)),
                }
                .map_err(|e| ProcessorError(format!("bad upstream URL: {e}")))?;
                let body = upstream_body(ex, &upstream_model)?;
                ex.upstream.headers = upstream_headers(ex, &provider, &[]);
                ex.upstream.uri = Some(uri);
                ex.upstream.body = body;
            }
            Some(Ok(encoded)) => {
                ex.upstream.headers = upstream_headers(ex, &provider, &encoded.headers);
                ex.upstream.uri = Some(encoded.uri);
                ex.upstream.body = Bytes::from(encoded.body);
            }
            Some(Err(e)) => return refused(ex, &provider, e),
        }
        Ok(Verdict::Continue)
    }
}

/// The headers for the destination, whatever its protocol: the enrichment headers, the
/// content negotiation, the client headers the provider allow-lists, the protocol's own
/// headers, and the provider's configured extras last (they win).
fn upstream_headers(
    ex: &Exchange,
    provider: &Provider,
    protocol_headers: &[(http::HeaderName, HeaderValue)],
) -> http::HeaderMap {
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
    for (name, value) in protocol_headers {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &provider.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

/// The 400 for an endpoint the target's protocol does not serve (e.g. embeddings from a
/// Messages-only provider), before anything is sent.
fn unsupported_endpoint(ex: &Exchange, provider: &Provider, upstream_model: &str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: format!(
            "/v1{} is not supported by model `{}`: its provider speaks the {} protocol, which does not serve it",
            ex.api.upstream_path(),
            ex.model.as_deref().unwrap_or(upstream_model),
            provider.protocol.as_str(),
        ),
        param: None,
        code: "unsupported_endpoint",
    }
}

/// A request the adapter could not translate: a field the target cannot express (or a
/// malformed one) is a 400 naming it, never silently dropped; anything else is the
/// processor's own failure.
fn refused(
    ex: &Exchange,
    provider: &Provider,
    e: TranslateError,
) -> Result<Verdict, ProcessorError> {
    let (message, code) = match &e {
        TranslateError::Unsupported { field, reason } => (
            format!(
                "`{field}` is not supported by model `{}` (its provider speaks the {} protocol): {reason}",
                ex.model.as_deref().unwrap_or_default(),
                provider.protocol.as_str(),
            ),
            "unsupported_parameter",
        ),
        TranslateError::Invalid { .. } => (e.to_string(), "invalid_value"),
        TranslateError::Upstream { .. } => {
            return Err(ProcessorError(format!("could not encode the request: {e}")))
        }
    };
    Ok(Verdict::Deny(GatewayError::InvalidRequest {
        message,
        param: Some(e.field().to_owned()),
        code,
    }))
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
            aws: None,
            azure_api_version: None,
            uris: Default::default(),
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
            embed_input_type: None,
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
