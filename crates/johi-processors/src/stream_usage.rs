//! Metered streams: ask the provider for the stream's usage when the client did not.
//!
//! A stream reports its token usage only if the request sets
//! `stream_options.include_usage`. Budgets and the ledger need that figure, so for a
//! streaming request without it this processor sets it, and marks the exchange so the relay
//! removes the extra usage event before the client sees it: the client receives exactly the
//! stream it asked for, and Johi charges what the provider says was used.
//!
//! It runs only when something meters (limits or a ledger are configured); it changes the
//! body, so such requests are re-serialised rather than forwarded byte for byte.

use async_trait::async_trait;
use johi_core::{Exchange, Facet, FacetSet};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};
use serde_json::{Map, Value};

/// See the module docs.
pub struct StreamUsage {
    contract: Contract,
}

impl Default for StreamUsage {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamUsage {
    /// Builds the processor.
    pub fn new() -> Self {
        StreamUsage {
            contract: Contract {
                name: "stream_usage",
                category: Category::Mutate,
                reads: FacetSet::of(&[Facet::Params]),
                writes: FacetSet::of(&[Facet::Params]),
                retry: RetryScope::Once,
                on_failure: FailureMode::FailClosed,
            },
        }
    }
}

/// Whether the client already asked for usage in its stream.
fn usage_requested(body: &Map<String, Value>) -> bool {
    body.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

#[async_trait]
impl Processor for StreamUsage {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    async fn on_request(&self, ex: &mut Exchange) -> Result<Verdict, ProcessorError> {
        if !ex.stream || !ex.api.can_stream() || usage_requested(ex.body()) {
            return Ok(Verdict::Continue);
        }
        let options = ex
            .body_mut()
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        // Not an object: the provider will refuse it with its own 400; leave it be.
        if let Value::Object(options) = options {
            options.insert("include_usage".into(), Value::Bool(true));
            ex.usage_event_added = true;
        }
        Ok(Verdict::Continue)
    }
}
