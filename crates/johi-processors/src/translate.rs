//! Protocol translation: the exchange → the upstream request in the target's protocol.
//!
//! Per attempt, because a fallback may land on a provider that speaks another protocol.
//! Headers are built fresh for the destination: the enrichment headers, the provider's own
//! extras, and only the client headers the provider allow-lists — never the client's
//! credentials, which authenticate it to Johi, not to the provider.

use async_trait::async_trait;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::HeaderValue;
use johi_core::model::Protocol;
use johi_core::{Exchange, Facet, FacetSet};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};
use johi_providers::openai;

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
        match provider.protocol {
            Protocol::OpenAi => {
                let uri = openai::upstream_uri(&provider.base_url, ex.api)
                    .map_err(|e| ProcessorError(format!("bad upstream URL: {e}")))?;
                let body = openai::encode_request(&mut ex.body, &upstream_model)
                    .map_err(|e| ProcessorError(format!("could not encode the request: {e}")))?;
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
                ex.upstream.uri = Some(uri);
                ex.upstream.headers = headers;
                ex.upstream.body = body;
            }
        }
        Ok(Verdict::Continue)
    }
}
