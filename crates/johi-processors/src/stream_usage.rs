//! Metered streams: ask the provider for the stream's usage when the client did not.
//!
//! A stream reports its token usage only if the request sets
//! `stream_options.include_usage`. Budgets and the ledger need that figure, so for a
//! streaming request without it this processor sets it, and marks the exchange so the relay
//! removes the extra usage event before the client sees it: the client receives exactly the
//! stream it asked for, and Johi charges what the provider says was used.
//!
//! It runs only when something meters (limits or a ledger are configured). While no
//! processor has parsed the body, the option is spliced into the client's bytes (everything
//! else is still forwarded as sent); otherwise it is set in the parsed body, which is then
//! re-serialised.

use async_trait::async_trait;
use johi_core::{Exchange, Facet, FacetSet};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};
use johi_providers::splice;
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

#[async_trait]
impl Processor for StreamUsage {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    fn on_request_now(&self, ex: &mut Exchange) -> Option<Result<Verdict, ProcessorError>> {
        Some(self.request_usage(ex))
    }
}

impl StreamUsage {
    /// The request phase; it never waits (see [`Processor::on_request_now`]).
    fn request_usage(&self, ex: &mut Exchange) -> Result<Verdict, ProcessorError> {
        if !ex.stream || !ex.api.can_stream() || ex.asks_for_stream_usage() {
            return Ok(Verdict::Continue);
        }
        // While nothing has parsed the body and validation saw no `stream_options` at all,
        // the option is appended to the bytes: the body is still forwarded as sent, plus
        // this one member (and the texts validation located, before it, stay where they were).
        if !ex.body_parsed() && ex.stream_usage_requested == Some(false) {
            if let Some(bytes) =
                splice::insert_last(&ex.raw_body, "stream_options", br#"{"include_usage":true}"#)
            {
                ex.raw_body = bytes.into();
                ex.stream_usage_requested = Some(true);
                ex.usage_event_added = true;
                return Ok(Verdict::Continue);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderMap;
    use johi_core::Api;

    fn exchange(body: &str, requested: Option<bool>) -> Exchange {
        let mut ex = Exchange::new(
            Api::ChatCompletions,
            HeaderMap::new(),
            Bytes::from(body.to_owned()),
        );
        ex.stream = true;
        ex.stream_usage_requested = requested;
        ex
    }

    fn include_usage(ex: &Exchange) -> Option<&Value> {
        ex.body().get("stream_options")?.get("include_usage")
    }

    #[tokio::test]
    async fn asks_for_usage_by_splicing_while_the_body_is_unparsed() {
        let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let mut ex = exchange(body, Some(false));
        StreamUsage::new().on_request(&mut ex).await.unwrap();
        assert!(ex.usage_event_added);
        assert!(
            !ex.body_changed(),
            "the bytes are forwarded, not re-serialised"
        );
        assert!(ex.raw_body.starts_with(&body.as_bytes()[..body.len() - 1]));
        assert_eq!(include_usage(&ex), Some(&Value::Bool(true)));
    }

    #[tokio::test]
    async fn leaves_a_stream_that_asked_alone_and_sets_it_in_a_parsed_body() {
        let asked = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let mut ex = exchange(asked, Some(true));
        StreamUsage::new().on_request(&mut ex).await.unwrap();
        assert!(!ex.usage_event_added);
        assert_eq!(ex.raw_body, asked.as_bytes());

        // Unknown to validation (`None`): read from the tree and set there.
        let other = r#"{"model":"m","stream":true,"stream_options":{"x":1}}"#;
        let mut ex = exchange(other, None);
        StreamUsage::new().on_request(&mut ex).await.unwrap();
        assert!(ex.usage_event_added);
        assert!(ex.body_changed());
        assert_eq!(include_usage(&ex), Some(&Value::Bool(true)));
        assert_eq!(ex.body()["stream_options"]["x"], 1);
    }
}
