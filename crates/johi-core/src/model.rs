//! The validated model registry: logical model names → provider targets.
//!
//! Built by `johi-config` from the YAML file; everything here is already checked, so a
//! `ModelRoute` always has at least one target and every target names a real provider.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

/// The wire protocol a provider speaks. One adapter per protocol, not per vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OpenAI's REST API and everything compatible with it (vLLM, Ollama, TGI, Groq …).
    OpenAi,
    /// Anthropic's Messages API (`POST {base}/v1/messages`): chat completions only,
    /// translated both ways by `johi_providers::anthropic`, so OpenAI clients can reach it.
    Anthropic,
    /// AWS Bedrock's Converse API (`POST {base}/model/{id}/converse[-stream]`), SigV4-signed:
    /// chat completions only, translated both ways by `johi_providers::bedrock`.
    Bedrock,
    /// Google's Gemini API (`{base}/models/{model}:generateContent`, key in
    /// `x-goog-api-key`): chat and embeddings, translated by `johi_providers::gemini`.
    Gemini,
    /// Vertex AI's Gemini models: the Gemini wire format under a project and location, with
    /// an OAuth2 token from a service account instead of a key.
    Vertex,
    /// Cohere's v2 API (`POST {base}/v2/chat`, `/v2/embed`): chat completions and embeddings,
    /// translated both ways by `johi_providers::cohere`.
    Cohere,
}

impl Protocol {
    /// Every protocol, in the order config errors list them; a protocol missing here cannot
    /// be configured (config parses names through it), so a new variant is noticed at once.
    pub const ALL: [Protocol; 6] = [
        Protocol::OpenAi,
        Protocol::Anthropic,
        Protocol::Bedrock,
        Protocol::Gemini,
        Protocol::Vertex,
        Protocol::Cohere,
    ];

    /// The protocol written as `name` in config.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The protocol's name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::OpenAi => "openai",
            Protocol::Anthropic => "anthropic",
            Protocol::Bedrock => "bedrock",
            Protocol::Gemini => "gemini",
            Protocol::Vertex => "vertex",
            Protocol::Cohere => "cohere",
        }
    }
}

/// A credential: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How a provider's key is presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlacement {
    /// `Authorization: Bearer <key>` (OpenAI and most compatibles).
    Bearer,
    /// The raw key in a named header (e.g. Azure's `api-key`).
    Header(HeaderName),
    /// `Authorization: Bearer <OAuth2 access token>` minted from the Google service-account
    /// key file at this path (Vertex AI); the token is fetched and cached by the credentials
    /// processor, since it expires.
    ServiceAccount(PathBuf),
}

/// The three deadlines of an upstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connection establishment.
    pub connect: Duration,
    /// From sending the request to receiving the response head.
    pub first_byte: Duration,
    /// From sending the request to the last byte of the response, streams included.
    pub total: Duration,
}

/// One configured upstream provider.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Name from config; appears in errors, audit records and metrics.
    pub name: String,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Base URL, e.g. `https://api.openai.com/v1`; operation paths are appended to it.
    pub base_url: Uri,
    /// The provider's key, if it needs one.
    pub api_key: Option<Secret>,
    /// Where the key goes.
    pub key_placement: KeyPlacement,
    /// Extra headers sent with every request to this provider.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Inbound client headers that may be passed on to this provider (an allow-list).
    pub forward_headers: Vec<HeaderName>,
    /// Deadlines.
    pub timeouts: Timeouts,
    /// Extra PEM roots to trust for this provider (self-hosted servers with a private CA).
    pub ca_file: Option<PathBuf>,
    /// AWS SigV4 signing (Bedrock): region and keys; `None` for every other protocol.
    pub aws: Option<AwsAuth>,
    /// Azure OpenAI's `api-version`, when the provider is Azure with deployment URLs
    /// (`{base}/openai/deployments/{model}/…?api-version=…`); `None` for plain OpenAI paths.
    pub azure_api_version: Option<String>,
    /// The OpenAI-compatible upstream URL of each operation, built once on first use.
    pub uris: UriCache,
}

/// A provider's upstream URL per operation (`{base}/chat/completions`, …), built on first
/// use and then cloned: building one from the base URL and parsing it cost more than a
/// thousand instructions on every request. Starts empty; a new provider (a reload) starts
/// a new cache, and so does a clone, whose base URL may then be changed.
#[derive(Debug, Default)]
pub struct UriCache([std::sync::OnceLock<Uri>; 3]);

impl Clone for UriCache {
    fn clone(&self) -> Self {
        UriCache::default()
    }
}

impl UriCache {
    /// The URL for `api`, built by `build` the first time.
    pub fn get_or_build<E>(
        &self,
        api: crate::Api,
        build: impl FnOnce() -> Result<Uri, E>,
    ) -> Result<Uri, E> {
        let slot = &self.0[match api {
            crate::Api::ChatCompletions => 0,
            crate::Api::Completions => 1,
            crate::Api::Embeddings => 2,
        }];
        if let Some(uri) = slot.get() {
            return Ok(uri.clone());
        }
        let uri = build()?;
        Ok(slot.get_or_init(|| uri).clone())
    }
}

/// What SigV4 needs to sign a request to AWS. Without static keys, credentials come from the
/// standard AWS credential chain (environment, profiles, web identity, ECS, IMDS), or from the
/// named `profile` only, cached until shortly before they expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsAuth {
    /// The region in the credential scope (and the default endpoint's host), e.g. `us-east-1`.
    pub region: String,
    /// The signing service name: `bedrock` for the Bedrock runtime.
    pub service: String,
    /// Static access key id; when absent, the credential chain is used.
    pub access_key_id: Option<Secret>,
    /// Static secret access key, set together with `access_key_id`.
    pub secret_access_key: Option<Secret>,
    /// Session token of static temporary credentials.
    pub session_token: Option<Secret>,
    /// Named profile of the shared config/credentials files; never set with static keys.
    pub profile: Option<String>,
    /// A shared credentials file read instead of `~/.aws/credentials` (or
    /// `AWS_SHARED_CREDENTIALS_FILE`); never set with static keys.
    pub credentials_file: Option<std::path::PathBuf>,
}

/// One place a logical model can be served from.
#[derive(Debug, Clone)]
pub struct Target {
    /// The provider serving it.
    pub provider: Arc<Provider>,
    /// The model name the provider knows it by.
    pub model: String,
    /// Relative share of first attempts.
    pub weight: u32,
}

/// A logical model: what clients name in `model`, and where it may be served from.
#[derive(Debug, Clone)]
pub struct ModelRoute {
    /// The logical name clients use.
    pub name: String,
    /// Targets in fallback order; never empty.
    pub targets: Vec<Target>,
    /// Upper bound on upstream attempts for one request (≥ 1).
    pub max_attempts: u32,
    /// Prices, when configured; what money limits and the ledger charge.
    pub pricing: Option<crate::pricing::Pricing>,
    /// Output tokens to reserve when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// How prompt tokens are counted before the call.
    pub tokenizer: Tokenizer,
    /// The embed `input_type` for this model (Cohere's `input_type`, Vertex's `task_type`;
    /// `None`: the adapter's default), since OpenAI's embeddings request has no such field.
    pub embed_input_type: Option<String>,
}

/// How a model's prompt tokens are counted before the call (to reserve against budgets).
/// After the call the provider's own `usage` is what is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tokenizer {
    /// OpenAI's `o200k_base` BPE (GPT-4o, GPT-4.1, GPT-5, o-series).
    O200kBase,
    /// OpenAI's `cl100k_base` BPE (GPT-4, GPT-3.5, text-embedding-3).
    Cl100kBase,
    /// No known tokenizer: a quarter of the characters (documented estimate).
    #[default]
    Estimate,
}

impl Tokenizer {
    /// The tokenizer's name in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Tokenizer::O200kBase => "o200k_base",
            Tokenizer::Cl100kBase => "cl100k_base",
            Tokenizer::Estimate => "estimate",
        }
    }

    /// The OpenAI tokenizer an upstream model name implies, if it is one of OpenAI's.
    pub fn for_openai_model(model: &str) -> Option<Tokenizer> {
        const O200K: [&str; 7] = ["gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4"];
        const CL100K: [&str; 4] = ["gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada"];
        let is = |prefixes: &[&str]| prefixes.iter().any(|p| model.starts_with(p));
        if is(&O200K) {
            Some(Tokenizer::O200kBase)
        } else if is(&CL100K) {
            Some(Tokenizer::Cl100kBase)
        } else {
            None
        }
    }
}

impl ModelRoute {
    /// The order in which targets are tried: the first is drawn by weight, the rest follow
    /// in configured order. `draw` is a uniform number in `0..total_weight`.
    pub fn attempt_order(&self, draw: u64) -> Vec<usize> {
        let total: u64 = self.targets.iter().map(|t| u64::from(t.weight)).sum();
        let mut first = 0;
        if total > 0 {
            let mut point = draw % total;
            for (i, t) in self.targets.iter().enumerate() {
                if point < u64::from(t.weight) {
                    first = i;
                    break;
                }
                point -= u64::from(t.weight);
            }
        }
        let mut order = Vec::with_capacity(self.targets.len());
        order.push(first);
        order.extend((0..self.targets.len()).filter(|&i| i != first));
        order
    }

    /// Sum of the targets' weights.
    pub fn total_weight(&self) -> u64 {
        self.targets.iter().map(|t| u64::from(t.weight)).sum()
    }
}

/// All logical models, looked up by name on every request.
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    by_name: HashMap<String, Arc<ModelRoute>>,
    names: Vec<String>,
}

impl ModelRegistry {
    /// Builds the registry; `routes` keep their configured order for `/v1/models`.
    pub fn new(routes: Vec<ModelRoute>) -> Self {
        let names = routes.iter().map(|r| r.name.clone()).collect();
        let by_name = routes
            .into_iter()
            .map(|r| (r.name.clone(), Arc::new(r)))
            .collect();
        ModelRegistry { by_name, names }
    }

    /// The route for a logical model name.
    pub fn get(&self, name: &str) -> Option<&Arc<ModelRoute>> {
        self.by_name.get(name)
    }

    /// Logical names in configured order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL is built once per operation and then served from the cache; a failed build
    /// is not remembered.
    #[test]
    fn a_uri_cache_builds_each_operation_once() {
        let cache = UriCache::default();
        let mut builds = 0;
        let failed: Result<Uri, &str> = cache.get_or_build(crate::Api::ChatCompletions, || {
            builds += 1;
            Err("bad")
        });
        assert_eq!(failed, Err("bad"));
        for _ in 0..3 {
            let uri: Result<Uri, &str> = cache.get_or_build(crate::Api::ChatCompletions, || {
                builds += 1;
                Ok(Uri::from_static("http://a/v1/chat/completions"))
            });
            assert_eq!(uri, Ok(Uri::from_static("http://a/v1/chat/completions")));
        }
        let other: Result<Uri, &str> = cache.get_or_build(crate::Api::Embeddings, || {
            builds += 1;
            Ok(Uri::from_static("http://a/v1/embeddings"))
        });
        assert_eq!(other, Ok(Uri::from_static("http://a/v1/embeddings")));
        assert_eq!(builds, 3, "the failure, then one build per operation");
    }

    fn provider(name: &str) -> Arc<Provider> {
        Arc::new(Provider {
            name: name.into(),
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
        })
    }

    #[test]
    fn weighted_first_pick_then_configured_order() {
        let route = ModelRoute {
            name: "m".into(),
            targets: vec![
                Target {
                    provider: provider("a"),
                    model: "x".into(),
                    weight: 1,
                },
                Target {
                    provider: provider("b"),
                    model: "y".into(),
                    weight: 3,
                },
                Target {
                    provider: provider("c"),
                    model: "z".into(),
                    weight: 0,
                },
            ],
            max_attempts: 3,
            pricing: None,
            default_max_tokens: 1024,
            tokenizer: Tokenizer::Estimate,
            embed_input_type: None,
        };
        assert_eq!(route.attempt_order(0), vec![0, 1, 2]);
        assert_eq!(route.attempt_order(1), vec![1, 0, 2]);
        assert_eq!(route.attempt_order(3), vec![1, 0, 2]);
        assert_eq!(route.attempt_order(4), vec![0, 1, 2]);
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("sk-123")), "Secret(***)");
    }
}
