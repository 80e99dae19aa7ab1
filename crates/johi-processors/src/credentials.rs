//! Credential injection: the target provider's key, attached last and for that destination
//! only. The builder enforces that nothing but observers runs after this processor, so a
//! request carrying a key can no longer be redirected elsewhere.
//!
//! A Vertex AI provider signs in with a service account instead of a key: its OAuth2 token
//! comes from a [`TokenSource`] built at load, cached until shortly before it expires and
//! fetched once for concurrent requests. A token that cannot be had is a 502 naming the
//! provider (the request is not sent without credentials).
//!
//! A Bedrock provider is signed with SigV4: with its static keys from config when it has them,
//! else with credentials from the AWS credential chain ([`AwsCredentialSource`], one per
//! provider, cached the same way). Credentials that cannot be had are likewise a 502.

use std::collections::HashMap;
use std::sync::Arc;

use crate::aws_chain::AwsCredentialSource;
use crate::sigv4::static_credentials;
use async_trait::async_trait;
use aws_credential_types::Credentials as AwsCredentials;
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue};
use johi_auth::google::{ServiceAccountKey, TokenSource};
use johi_core::model::AwsAuth;
use johi_core::model::{KeyPlacement, Provider};
use johi_core::{Exchange, Facet, FacetSet, GatewayError};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};

const API_KEY: HeaderName = HeaderName::from_static("api-key");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

/// See the module docs.
pub struct Credentials {
    contract: Contract,
    /// Service-account token sources by provider name (or why the key file failed to load).
    tokens: HashMap<String, Result<Arc<TokenSource>, String>>,
    /// AWS credential-chain sources by provider name, for Bedrock providers without static keys.
    aws: HashMap<String, Arc<AwsCredentialSource>>,
}

impl Default for Credentials {
    fn default() -> Self {
        Self::new()
    }
}

impl Credentials {
    /// Builds the processor for providers that use keys only.
    pub fn new() -> Self {
        Self::for_providers(&[])
    }

    /// Builds the processor with a token source for every provider that signs in with a
    /// service account. Nothing is fetched until a request needs a token.
    pub fn for_providers(providers: &[Arc<Provider>]) -> Self {
        let tokens = providers
            .iter()
            .filter_map(|p| match &p.key_placement {
                KeyPlacement::ServiceAccount(file) => Some((
                    p.name.clone(),
                    ServiceAccountKey::from_file(file)
                        .and_then(TokenSource::new)
                        .map(Arc::new),
                )),
                KeyPlacement::Bearer | KeyPlacement::Header(_) => None,
            })
            .collect();
        let aws = providers
            .iter()
            .filter_map(|p| {
                let aws = p.aws.as_ref()?;
                static_credentials(aws)
                    .is_none()
                    .then(|| (p.name.clone(), Arc::new(AwsCredentialSource::new(aws))))
            })
            .collect();
        Credentials {
            tokens,
            aws,
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

    /// A provider whose key is in its config is served at once; a service account's token
    /// or AWS credentials go to [`Processor::on_request`] (they may have to be fetched).
    fn on_request_now(&self, ex: &mut Exchange) -> Option<Result<Verdict, ProcessorError>> {
        let Some(target) = ex.target() else {
            return Some(Err(ProcessorError(
                "no endpoint picked: 'endpoint' must run first".into(),
            )));
        };
        let provider = &target.provider;
        if matches!(provider.key_placement, KeyPlacement::ServiceAccount(_))
            || provider.aws.is_some()
        {
            return None;
        }
        let provider = provider.clone();
        Some(put_credential(ex, &provider, None, None))
    }

    async fn on_request(&self, ex: &mut Exchange) -> Result<Verdict, ProcessorError> {
        let Some(target) = ex.target() else {
            return Err(ProcessorError(
                "no endpoint picked: 'endpoint' must run first".into(),
            ));
        };
        let provider = target.provider.clone();
        let token = match &provider.key_placement {
            // The token and credential-chain futures are large and rarely awaited: boxed, so
            // that every request's future (boxed by `async_trait`) is not copied at their size.
            KeyPlacement::ServiceAccount(_) => match Box::pin(self.token(&provider)).await {
                Ok(token) => Some(token),
                Err(e) => return Ok(Verdict::Deny(e)),
            },
            KeyPlacement::Bearer | KeyPlacement::Header(_) => None,
        };
        let aws_credentials = match &provider.aws {
            Some(aws) => match Box::pin(self.aws_credentials(&provider, aws)).await {
                Ok(credentials) => Some((aws, credentials)),
                Err(e) => return Ok(Verdict::Deny(e)),
            },
            None => None,
        };
        put_credential(ex, &provider, token, aws_credentials)
    }
}

impl Credentials {
    /// The provider's current access token, or the 502 that names it.
    async fn token(&self, provider: &Provider) -> Result<Arc<str>, GatewayError> {
        let fail = |detail: String| GatewayError::UpstreamConnect {
            provider: provider.name.clone(),
            detail: format!("could not get an access token for its service account: {detail}"),
        };
        match self.tokens.get(&provider.name) {
            Some(Ok(source)) => source.token().await.map_err(fail),
            Some(Err(e)) => Err(fail(e.clone())),
            None => Err(fail("no token source was built for it".into())),
        }
    }

    /// The Bedrock provider's credentials: its static keys, else the credential chain's (or
    /// the 502 that names it).
    async fn aws_credentials(
        &self,
        provider: &Provider,
        aws: &AwsAuth,
    ) -> Result<AwsCredentials, GatewayError> {
        if let Some(credentials) = static_credentials(aws) {
            return Ok(credentials);
        }
        let fail = |detail: String| GatewayError::UpstreamConnect {
            provider: provider.name.clone(),
            detail: format!("could not get AWS credentials: {detail}"),
        };
        match self.aws.get(&provider.name) {
            Some(source) => source.credentials().await.map_err(fail),
            None => Err(fail("no credential source was built for it".into())),
        }
    }
}

/// Puts `provider`'s credential on the attempt's request: its key (or `token`, a service
/// account's), in place of any credential-shaped header an earlier step left, and the AWS
/// signature last.
fn put_credential(
    ex: &mut Exchange,
    provider: &Provider,
    token: Option<Arc<str>>,
    aws_credentials: Option<(&AwsAuth, AwsCredentials)>,
) -> Result<Verdict, ProcessorError> {
    let headers = &mut ex.upstream.headers;
    // Whatever credential-shaped header an earlier step left is removed, unless it is
    // the provider's own configured header: only this destination's key goes out.
    for name in [AUTHORIZATION, API_KEY, X_API_KEY, X_GOOG_API_KEY] {
        if !provider.headers.iter().any(|(h, _)| *h == name) {
            headers.remove(&name);
        }
    }
    let credential = match (&provider.key_placement, &provider.api_key, token) {
        (KeyPlacement::ServiceAccount(_), _, Some(token)) => {
            Some((AUTHORIZATION, format!("Bearer {token}")))
        }
        (KeyPlacement::Bearer, Some(key), _) => {
            Some((AUTHORIZATION, format!("Bearer {}", key.expose())))
        }
        (KeyPlacement::Header(name), Some(key), _) => Some((name.clone(), key.expose().to_owned())),
        _ => None,
    };
    if let Some((name, value)) = credential {
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
    if let (Some((aws, credentials)), Some(uri)) = (aws_credentials, &ex.upstream.uri) {
        let now = std::time::SystemTime::now();
        crate::sigv4::sign_request(
            aws,
            credentials,
            uri,
            &mut ex.upstream.headers,
            &ex.upstream.body,
            now,
        )
        .map_err(|e| ProcessorError(format!("provider '{}': {e}", provider.name)))?;
    }
    Ok(Verdict::Continue)
}
