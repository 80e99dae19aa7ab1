//! Credential injection: the target provider's key, attached last and for that destination
//! only. The builder enforces that nothing but observers runs after this processor, so a
//! request carrying a key can no longer be redirected elsewhere.

use async_trait::async_trait;
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue};
use johi_core::model::KeyPlacement;
use johi_core::{Exchange, Facet, FacetSet};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};

const API_KEY: HeaderName = HeaderName::from_static("api-key");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// See the module docs.
pub struct Credentials {
    contract: Contract,
}

impl Default for Credentials {
    fn default() -> Self {
        Self::new()
    }
}

impl Credentials {
    /// Builds the processor.
    pub fn new() -> Self {
        Credentials {
            contract: Contract {
                name: "credentials",
                category: Category::Mutate,
                reads: FacetSet::of(&[Facet::Endpoint]),
                writes: FacetSet::of(&[Facet::Credentials]),
                retry: RetryScope::EveryAttempt,
                on_failure: FailureMode::FailClosed,
            },
        }
    }
}

#[async_trait]
impl Processor for Credentials {
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
        let headers = &mut ex.upstream.headers;
        // Whatever credential-shaped header an earlier step left is removed, unless it is
        // the provider's own configured header: only this destination's key goes out.
        for name in [AUTHORIZATION, API_KEY, X_API_KEY] {
            if !provider.headers.iter().any(|(h, _)| *h == name) {
                headers.remove(&name);
            }
        }
        if let Some(key) = &provider.api_key {
            let (name, value) = match &provider.key_placement {
                KeyPlacement::Bearer => (AUTHORIZATION, format!("Bearer {}", key.expose())),
                KeyPlacement::Header(name) => (name.clone(), key.expose().to_owned()),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                ProcessorError(format!(
                    "provider '{}' has a key that is not a valid header",
                    provider.name
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        // AWS providers are signed over the final URL and body, so after everything else.
        if let (Some(aws), Some(uri)) = (&provider.aws, &ex.upstream.uri) {
            let now = std::time::SystemTime::now();
            crate::sigv4::sign_request(aws, uri, &mut ex.upstream.headers, &ex.upstream.body, now)
                .map_err(|e| ProcessorError(format!("provider '{}': {e}", provider.name)))?;
        }
        Ok(Verdict::Continue)
    }
}
