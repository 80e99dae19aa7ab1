//! Request enrichment: request ID, W3C trace context, organisation and service tier —
//! passed upstream as headers and echoed to the client on every response.

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue};
use johi_config::EnrichConfig;
use johi_core::trace::{fill_random_hex, TraceContext};
use johi_core::{Exchange, Facet, FacetSet};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};

/// Header carrying the request ID both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Header carrying the organisation upstream and back.
pub const ORGANIZATION: HeaderName = HeaderName::from_static("x-johi-organization");
/// Header carrying the service tier upstream and back.
pub const SERVICE_TIER: HeaderName = HeaderName::from_static("x-johi-service-tier");
/// The OpenAI SDK's organisation header, read from the client.
const OPENAI_ORGANIZATION: HeaderName = HeaderName::from_static("openai-organization");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// See the module docs.
pub struct Enrich {
    contract: Contract,
    config: EnrichConfig,
}

impl Enrich {
    /// Builds the processor from `enrich:` settings.
    pub fn new(config: &EnrichConfig) -> Self {
        Enrich {
            contract: Contract {
                name: "enrich",
                category: Category::Mutate,
                reads: FacetSet::EMPTY,
                writes: FacetSet::of(&[Facet::Headers, Facet::Identity]),
                retry: RetryScope::Once,
                on_failure: FailureMode::FailClosed,
            },
            config: config.clone(),
        }
    }
}

/// The request ID for a request with these headers: the client's `x-request-id` if it is
/// acceptable, else a new `req_<24 hex>`. Also used by the server for answers given before
/// the pipeline runs (a body over the limit, an unknown route), so every answer has one.
pub fn request_id(headers: &HeaderMap) -> Arc<str> {
    match headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(id) if acceptable_request_id(id) => Arc::from(id),
        _ => {
            // `req_` and 24 random hex digits, written on the stack: the ID's one allocation
            // is the shared string the audit record and the ledger take references to.
            let mut id = *b"req_000000000000000000000000";
            fill_random_hex(&mut id[4..]);
            Arc::from(std::str::from_utf8(&id).unwrap_or("req_unknown"))
        }
    }
}

/// A client-supplied request ID is kept only if it is short and plain, so it cannot be
/// used to inject anything into logs or upstream headers.
fn acceptable_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn acceptable_label(value: &str) -> bool {
    (1..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
}

/// Sets `name` in both maps from one value: the value is built once and shared (cloning a
/// `HeaderValue` only bumps a reference count).
pub(crate) fn put_both(
    upstream: &mut HeaderMap,
    response: &mut HeaderMap,
    name: HeaderName,
    value: &str,
) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.insert(name.clone(), v.clone());
        upstream.insert(name, v);
    }
}

#[async_trait]
impl Processor for Enrich {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    fn on_request_now(&self, ex: &mut Exchange) -> Option<Result<Verdict, ProcessorError>> {
        Some(self.enrich(ex))
    }
}

impl Enrich {
    /// The request phase; it never waits (see [`Processor::on_request_now`]).
    fn enrich(&self, ex: &mut Exchange) -> Result<Verdict, ProcessorError> {
        ex.request_id = request_id(&ex.inbound_headers);
        let trace = TraceContext::continue_or_start(
            ex.inbound_header(TRACEPARENT),
            ex.inbound_header(TRACESTATE),
        );
        ex.organization = ex
            .inbound_header(OPENAI_ORGANIZATION)
            .or_else(|| ex.inbound_header(ORGANIZATION))
            .filter(|o| acceptable_label(o))
            .map(str::to_owned)
            .or_else(|| self.config.default_organization.clone());
        ex.service_tier = ex
            .inbound_header(SERVICE_TIER)
            .filter(|t| acceptable_label(t))
            .map(str::to_owned)
            .or_else(|| self.config.default_service_tier.clone());

        let traceparent = trace.traceparent();
        let (up, resp) = (&mut ex.upstream_headers, &mut ex.response_headers);
        put_both(up, resp, REQUEST_ID, &ex.request_id);
        put_both(up, resp, TRACEPARENT, &traceparent);
        if let Some(org) = &ex.organization {
            put_both(up, resp, ORGANIZATION, org);
        }
        if let Some(tier) = &ex.service_tier {
            put_both(up, resp, SERVICE_TIER, tier);
        }
        if let Some(state) = trace
            .tracestate
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            up.insert(TRACESTATE, state);
        }
        ex.trace = Some(trace);
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use johi_core::Api;

    fn run(headers: &[(&'static str, &'static str)], config: EnrichConfig) -> Exchange {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_static(v));
        }
        let mut ex = Exchange::new(Api::ChatCompletions, map, Bytes::new());
        let p = Enrich::new(&config);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(p.on_request(&mut ex)).unwrap();
        ex
    }

    #[test]
    fn keeps_a_plain_client_request_id_and_trace() {
        let ex = run(
            &[
                ("x-request-id", "abc-123"),
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
                ("openai-organization", "org-acme"),
            ],
            EnrichConfig {
                default_organization: Some("default".into()),
                default_service_tier: Some("standard".into()),
            },
        );
        assert_eq!(&*ex.request_id, "abc-123");
        assert_eq!(ex.organization.as_deref(), Some("org-acme"));
        let tp = ex.upstream_headers["traceparent"].to_str().unwrap();
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!tp.contains("00f067aa0ba902b7"), "Johi starts its own span");
        assert_eq!(ex.response_headers["x-request-id"], "abc-123");
        assert_eq!(ex.upstream_headers["x-johi-service-tier"], "standard");
    }

    #[test]
    fn replaces_a_hostile_request_id() {
        let ex = run(
            &[("x-request-id", "a b\"c")],
            EnrichConfig {
                default_organization: None,
                default_service_tier: None,
            },
        );
        assert!(ex.request_id.starts_with("req_"));
        assert_eq!(ex.request_id.len(), 28);
        assert!(ex.organization.is_none());
        assert!(!ex.upstream_headers.contains_key("x-johi-organization"));
    }
}
