//! Test harness: the real gateway and the mock upstream on ephemeral ports, talking real
//! HTTP over loopback. Used by the integration tests; not part of the shipped binary.

// Test support: a set-up step that fails should stop the test at once, loudly.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use johi_core::{Exchange, FacetSet};
use johi_mock::MockUpstream;
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};
use johi_server::{Registry, RunningGateway};
use serde_json::Value;

pub use johi_mock;
pub use johi_server;

/// A running gateway in front of a running mock upstream.
pub struct Harness {
    /// The mock provider.
    pub mock: MockUpstream,
    /// The gateway.
    pub gateway: RunningGateway,
    /// The config file the gateway watches.
    pub config_path: PathBuf,
    /// An HTTP client for talking to the gateway.
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A minimal config: one provider (the mock) and models `m` (mock-small) and `e` (embeddings).
/// `{mock}` in templates is replaced by the mock's base URL, `{mock_root}` by the same without
/// `/v1` (for providers that write their own paths, like Azure), `{dir}` by the temp directory.
pub const BASIC: &str = r#"
server: { listen: "127.0.0.1:0", reload_poll_interval: 100ms, drain_timeout: 10s }
auth: { public_routes: ["*"] }
enrich: { default_organization: org-test }
providers:
  mock: { base_url: "{mock}", api_key: sk-mock-key }
models:
  m: { targets: [{ provider: mock, model: mock-small }] }
  e: { targets: [{ provider: mock, model: mock-embed }] }
audit: { path: "{dir}/audit.jsonl" }
"#;

impl Harness {
    /// Starts the mock and a gateway configured by `template`.
    pub async fn start(template: &str) -> Harness {
        Self::start_with(template, Registry::with_builtins()).await
    }

    /// Like [`Harness::start`], with a custom processor registry.
    pub async fn start_with(template: &str, registry: Registry) -> Harness {
        let mock = MockUpstream::start("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("mock starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("johi.yaml");
        let text = Self::render(template, &mock, &dir);
        std::fs::write(&config_path, text).expect("write config");
        let gateway = johi_server::start(&config_path, registry)
            .await
            .expect("gateway starts");
        Harness {
            mock,
            gateway,
            config_path,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn render(template: &str, mock: &MockUpstream, dir: &tempfile::TempDir) -> String {
        template
            .replace("{mock}", &mock.base_url())
            .replace("{mock_root}", mock.base_url().trim_end_matches("/v1"))
            .replace("{dir}", &dir.path().display().to_string())
    }

    /// Rewrites the config file (for reload tests).
    pub fn write_config(&self, template: &str) {
        let text = Self::render(template, &self.mock, &self._dir);
        std::fs::write(&self.config_path, text).expect("write config");
    }

    /// The temp directory holding the config and the audit file.
    pub fn dir(&self) -> PathBuf {
        self._dir.path().to_path_buf()
    }

    /// `http://127.0.0.1:PORT{path}` on the gateway.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway.addr())
    }

    /// `http://127.0.0.1:PORT{path}` on the admin listener (the config must have `admin:`).
    pub fn admin_url(&self, path: &str) -> String {
        let addr = self
            .gateway
            .admin_addr()
            .expect("the config has an admin: section");
        format!("http://{addr}{path}")
    }

    /// Shuts the gateway down gracefully and starts a new one on the same config file (same
    /// temp directory, same mock): what an operator's restart does.
    pub async fn restart(self) -> Harness {
        self.gateway.shutdown();
        self.gateway.wait().await;
        let gateway = johi_server::start(&self.config_path, Registry::with_builtins())
            .await
            .expect("gateway restarts");
        Harness { gateway, ..self }
    }

    /// POSTs JSON to the gateway.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `GET /v1/models` on the gateway, as JSON.
    pub async fn models(&self) -> Value {
        self.client
            .get(self.url("/v1/models"))
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("models list is JSON")
    }

    /// The model IDs `GET /v1/models` lists, in order.
    pub async fn model_ids(&self) -> Vec<String> {
        let list = self.models().await;
        list["data"]
            .as_array()
            .expect("data is an array")
            .iter()
            .map(|m| m["id"].as_str().expect("id is a string").to_owned())
            .collect()
    }

    /// Shuts the gateway down gracefully, waits for it, and returns every audit record.
    pub async fn finish(self) -> Vec<Value> {
        self.gateway.shutdown();
        let path = self._dir.path().join("audit.jsonl");
        self.gateway.wait().await;
        read_jsonl(&path)
    }

    /// The audit records written so far (call after shutdown for a complete file).
    pub fn audit_records(&self) -> Vec<Value> {
        read_jsonl(&self.dir().join("audit.jsonl"))
    }
}

/// Parses a JSON-lines file; a missing file is empty.
pub fn read_jsonl(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("data:")
                        .map(|d| d.strip_prefix(' ').unwrap_or(d))
                })
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// A processor that counts how often it runs, for retry-scope tests.
pub struct Counting {
    contract: Contract,
    /// Runs so far.
    pub runs: Arc<AtomicUsize>,
    /// Completion hooks so far.
    pub completions: Arc<AtomicUsize>,
    /// What [`Processor::has_request_phase`] answers.
    request_phase: bool,
}

impl Counting {
    /// An observer-like counter with the given name and retry scope. Declares no facets, so
    /// it can be placed anywhere its scope allows.
    pub fn new(name: &'static str, retry: RetryScope) -> Counting {
        let category = if retry == RetryScope::Once {
            Category::AllowDeny
        } else {
            Category::Mutate
        };
        Counting {
            contract: Contract {
                name,
                category,
                reads: FacetSet::EMPTY,
                writes: FacetSet::EMPTY,
                retry,
                on_failure: FailureMode::FailClosed,
            },
            runs: Arc::new(AtomicUsize::new(0)),
            completions: Arc::new(AtomicUsize::new(0)),
            request_phase: true,
        }
    }

    /// An observer that says it has no request phase (as audit and metering do): the
    /// runner must never call its `on_request` (which would still count), only its hook.
    pub fn completion_only(name: &'static str) -> Counting {
        let mut counting = Counting::new(name, RetryScope::Once);
        counting.contract.category = Category::Observe;
        counting.request_phase = false;
        counting
    }

    /// Runs so far.
    pub fn count(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Processor for Counting {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    fn has_request_phase(&self) -> bool {
        self.request_phase
    }

    async fn on_request(&self, _exchange: &mut Exchange) -> Result<Verdict, ProcessorError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(Verdict::Continue)
    }

    fn on_complete(&self, _exchange: &Exchange, _outcome: &johi_core::exchange::Outcome) {
        self.completions.fetch_add(1, Ordering::SeqCst);
    }
}

/// A processor that rewrites the prompt shorter (every message's content becomes
/// `replacement`), to prove the limiter counts the prompt as sent, not as received.
pub struct Shrinking {
    contract: Contract,
    replacement: String,
}

impl Shrinking {
    /// A `shrink` processor (reads and writes the `prompt` facet, once per request).
    pub fn new(replacement: &str) -> Shrinking {
        Shrinking {
            contract: Contract {
                name: "shrink",
                category: Category::Mutate,
                reads: FacetSet::of(&[johi_core::Facet::Prompt]),
                writes: FacetSet::of(&[johi_core::Facet::Prompt]),
                retry: RetryScope::Once,
                on_failure: FailureMode::FailClosed,
            },
            replacement: replacement.to_owned(),
        }
    }
}

#[async_trait]
impl Processor for Shrinking {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    async fn on_request(&self, exchange: &mut Exchange) -> Result<Verdict, ProcessorError> {
        if let Some(Value::Array(messages)) = exchange.body_mut().get_mut("messages") {
            for message in messages {
                if let Some(content) = message.get_mut("content") {
                    *content = Value::String(self.replacement.clone());
                }
            }
        }
        Ok(Verdict::Continue)
    }
}

/// A processor that panics, to prove a panic becomes a 500 and the process keeps serving.
pub struct Panicking(Contract);

impl Default for Panicking {
    fn default() -> Self {
        Panicking(Contract {
            name: "panic",
            category: Category::AllowDeny,
            reads: FacetSet::EMPTY,
            writes: FacetSet::EMPTY,
            retry: RetryScope::Once,
            on_failure: FailureMode::FailClosed,
        })
    }
}

#[async_trait]
impl Processor for Panicking {
    fn contract(&self) -> &Contract {
        &self.0
    }

    #[allow(clippy::panic)]
    async fn on_request(&self, exchange: &mut Exchange) -> Result<Verdict, ProcessorError> {
        if exchange.inbound_header("x-test-panic").is_some() {
            panic!("test-induced panic");
        }
        Ok(Verdict::Continue)
    }
}
