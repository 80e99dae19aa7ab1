//! Johi's configuration.
//!
//! A YAML file is read into [`raw`] serde types (unknown fields are errors), `${ENV}`
//! references in string values are resolved ([`interpolate`]), and one function,
//! [`validate::validate`], turns the result into a [`Config`] whose types make bad states
//! unrepresentable. Every problem is collected with its path, so an operator fixes a file
//! in one pass: `models.gpt-4o.targets[1].provider: unknown provider 'opnai'`.

pub mod auth;
mod aws;
pub mod interpolate;
mod jwt;
pub mod limits;
pub mod presets;
pub mod raw;
pub mod tenants;
pub mod validate;
mod vertex;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use johi_core::model::{ModelRegistry, Provider};
use johi_pipeline::FailureMode;

pub use auth::{AuthConfig, Tenants};
pub use limits::{LimitRule, Measure, Scope};
pub use tenants::TenantError;

/// The processors run when the config does not list its own, in their required order.
pub const DEFAULT_PIPELINE: [&str; 12] = [
    "enrich",
    "authenticate",
    "validate",
    "stream_usage",
    "route",
    "authorize",
    "limit",
    "endpoint",
    "translate",
    "credentials",
    "meter",
    "audit",
];

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listener and process settings.
    pub server: ServerConfig,
    /// Request enrichment settings.
    pub enrich: EnrichConfig,
    /// Providers in configured order.
    pub providers: Vec<Arc<Provider>>,
    /// Logical models.
    pub models: ModelRegistry,
    /// Organisations, teams and projects.
    pub tenants: Tenants,
    /// Credentials and public routes.
    pub auth: AuthConfig,
    /// Rate limits and budgets.
    pub limits: Vec<LimitRule>,
    /// Where limit counters live; `None` is this process's memory.
    pub limit_store: Option<LimitStoreSettings>,
    /// Processor names in order, with failure-mode overrides.
    pub pipeline: Vec<PipelineEntry>,
    /// Where audit records go; `None` disables the audit processor.
    pub audit: Option<AuditConfig>,
    /// Where usage records go; `None` disables the meter processor.
    pub ledger: Option<LedgerSettings>,
    /// The admin API; `None` when the config has no `admin:` section (no admin listener).
    pub admin: Option<AdminSettings>,
    /// Development conveniences.
    pub dev: DevConfig,
}

/// The admin API's settings. `listen` and `key_store` apply at start (a reload that changes
/// them is refused); the token applies from the next admin request after a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Address of the admin listener, separate from the public one so it can stay on
    /// loopback or a private network.
    pub listen: SocketAddr,
    /// SHA-256 of the admin token: the token itself is not kept after load, and a presented
    /// token is compared by digest in constant time.
    pub token_hash: johi_auth::KeyHash,
    /// Where keys issued through the admin API are kept.
    pub key_store: KeyStoreTarget,
    /// How often a shared (PostgreSQL) key store is re-read, so that keys issued or revoked
    /// through another replica take effect here.
    pub key_refresh_interval: Duration,
}

/// Where the admin API keeps the keys it issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStoreTarget {
    /// A SQLite file: one gateway.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (a secret: never logged), shared by replicas.
    Postgres(String),
}

/// Listener and process settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// TLS certificate and key; plain HTTP when absent.
    pub tls: Option<TlsFiles>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long in-flight requests (streams included) may run on after SIGTERM.
    pub drain_timeout: Duration,
    /// How often the config file is checked for changes.
    pub reload_poll_interval: Duration,
    /// After SIGTERM, how long to keep accepting (with `/readyz` at 503) before closing
    /// the listener, so load balancers stop routing here first.
    pub shutdown_delay: Duration,
}

/// PEM files for the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert_file: PathBuf,
    /// Private key.
    pub key_file: PathBuf,
    /// CA certificates client certificates are verified against; no client certificates
    /// are asked for when absent.
    pub client_ca: Option<PathBuf>,
    /// Whether a client must present a certificate (otherwise it may present a key or token).
    pub client_auth_required: bool,
}

/// Request enrichment settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichConfig {
    /// Organisation used when the client names none.
    pub default_organization: Option<String>,
    /// Service tier used when the client names none.
    pub default_service_tier: Option<String>,
}

/// One pipeline step as configured.
#[derive(Debug, Clone)]
pub struct PipelineEntry {
    /// Processor name.
    pub name: String,
    /// Failure-mode override.
    pub on_failure: Option<FailureMode>,
}

/// Audit record sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// JSON-lines file, appended to.
    pub path: PathBuf,
    /// Records queued before new ones are dropped (and counted) rather than block a request.
    pub buffer: usize,
}

/// Limit counters in Redis. They apply at start; a reload keeps the store opened then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitStoreSettings {
    /// Redis URL (a secret: never logged).
    pub redis_url: String,
    /// Key prefix, so several gateways (or environments) can share one Redis.
    pub prefix: String,
    /// Longest wait for one Redis operation before it counts as an outage.
    pub op_timeout: Duration,
    /// How long a concurrency lease outlives a crashed replica.
    pub lease_ttl: Duration,
    /// Whether an outage counts in memory (`true`) or refuses with a 503 (`false`).
    pub fail_open: bool,
    /// The share of each windowed limit a replica reserves ahead per trip to Redis, in
    /// millionths (`prefetch: 1%` is 10 000); `None` checks every request in Redis.
    pub prefetch_ppm: Option<u64>,
}

/// Where the usage ledger is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerTarget {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (a secret: never logged).
    Postgres(String),
}

/// Usage ledger settings. They apply at start; a reload keeps the ledger opened then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSettings {
    /// The database.
    pub target: LedgerTarget,
    /// Records per transaction.
    pub batch_size: usize,
    /// Longest wait before a record is committed.
    pub flush_interval: Duration,
    /// Records queued before new ones are dropped and counted.
    pub buffer: usize,
}

/// Development conveniences.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevConfig {
    /// Start the bundled mock upstream in-process on this address.
    pub mock_upstream: Option<SocketAddr>,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(e)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads, interpolates and validates a config file. Relative paths inside it are resolved
/// against the file's directory, so a config means the same wherever Johi is started.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))?;
    load_text(path, &text)
}

/// [`load`] for a caller that has already read the file at `path` (the server keeps the
/// text to tell later whether the file changed): one read, and the text kept is the text
/// parsed.
pub fn load_text(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(text, &base, &|name| std::env::var(name).ok())
}

/// Parses config text; `env` resolves `${VAR}` references (injected for tests).
pub fn parse(
    text: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| ConfigErrors(vec![format!("invalid YAML: {e}")]))?;
    interpolate::interpolate(&mut value, env)?;
    let raw: raw::RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ConfigErrors(vec![if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }])
    })?;
    validate::validate(raw, base_dir)
}
