//! The config file's shape, exactly as written. Unknown fields are errors, so a typo
//! (`max_attemps`) is reported instead of silently ignored.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Listener settings.
    #[serde(default)]
    pub server: RawServer,
    /// Enrichment settings.
    #[serde(default)]
    pub enrich: RawEnrich,
    /// Providers by name.
    #[serde(default)]
    pub providers: IndexMap<String, RawProvider>,
    /// Logical models by name.
    #[serde(default)]
    pub models: IndexMap<String, RawModel>,
    /// Organisations, their teams and projects.
    #[serde(default)]
    pub tenants: IndexMap<String, RawOrganization>,
    /// Credentials and public routes. Required: a gateway without it would be open.
    pub auth: Option<RawAuth>,
    /// Rate limits and budgets.
    #[serde(default)]
    pub limits: Vec<RawLimit>,
    /// Where limit counters live (memory when absent).
    pub limit_store: Option<RawLimitStore>,
    /// Processor order; the default pipeline when absent.
    pub pipeline: Option<Vec<RawPipelineEntry>>,
    /// Audit sink.
    pub audit: Option<RawAudit>,
    /// Usage ledger.
    pub ledger: Option<RawLedger>,
    /// The admin API (off when absent).
    pub admin: Option<RawAdmin>,
    /// Development conveniences.
    #[serde(default)]
    pub dev: RawDev,
}

/// `admin:` — the admin API on its own listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `host:port` of the admin listener (default `127.0.0.1:9090`).
    pub listen: Option<String>,
    /// The admin bearer token, usually `${JOHI_ADMIN_TOKEN}`.
    pub token: String,
    /// Where keys issued through the API are kept: a SQLite file (default `johi-keys.db`)
    /// or a `postgres://` URL shared by replicas.
    pub key_store: Option<String>,
    /// How often a PostgreSQL key store is re-read (default `5s`).
    #[serde(default, with = "humantime_serde")]
    pub key_refresh_interval: Option<Duration>,
}

/// `server:`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// `host:port`
    pub listen: Option<String>,
    /// TLS files.
    pub tls: Option<RawTls>,
    /// Body limit in bytes.
    pub max_body_bytes: Option<usize>,
    /// Drain deadline, e.g. `30s`.
    #[serde(default, with = "humantime_serde")]
    pub drain_timeout: Option<Duration>,
    /// Poll interval for config changes, e.g. `1s`.
    #[serde(default, with = "humantime_serde")]
    pub reload_poll_interval: Option<Duration>,
    /// Keep accepting this long after SIGTERM, e.g. `5s`.
    #[serde(default, with = "humantime_serde")]
    pub shutdown_delay: Option<Duration>,
}

/// `server.tls:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
    /// PEM CA certificates that client certificates are verified against (mTLS).
    pub client_ca: Option<String>,
    /// `optional` (default: a client may connect without a certificate and use a key or
    /// token instead) or `required`.
    pub client_auth: Option<String>,
}

/// `enrich:`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEnrich {
    /// Organisation when the client sends none.
    pub default_organization: Option<String>,
    /// Service tier when the client sends none.
    pub default_service_tier: Option<String>,
}

/// `providers.<name>:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// A well-known provider (`openai`, `azure`, `groq`, `ollama`, …) whose protocol, base URL
    /// and key header fill the fields left out here (see `crate::presets`).
    pub preset: Option<String>,
    /// Wire protocol (`openai`, `anthropic`, `bedrock`, `gemini`, `vertex` or `cohere`;
    /// default `openai`).
    pub protocol: Option<String>,
    /// Base URL ending in the API version, e.g. `https://api.openai.com/v1`. Required unless
    /// a preset or the protocol gives one (`cohere`, `bedrock` from its region, `vertex` from
    /// its project and location).
    pub base_url: Option<String>,
    /// Key, usually `${ENV_VAR}`; an empty value means none.
    pub api_key: Option<String>,
    /// Send the key raw in this header instead of `Authorization: Bearer`.
    pub api_key_header: Option<String>,
    /// Extra headers on every request.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Client headers allowed through to this provider.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Deadlines.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Extra PEM roots.
    pub ca_file: Option<String>,
    /// AWS region and keys, for `protocol: bedrock` (SigV4).
    pub aws: Option<RawAws>,
    /// Vertex AI settings (`protocol: vertex` only).
    pub vertex: Option<RawVertex>,
    /// Azure OpenAI settings.
    pub azure: Option<RawAzure>,
}

/// `providers.<name>.vertex:`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawVertex {
    /// Google Cloud project id (builds the base URL).
    pub project: Option<String>,
    /// Region, e.g. `us-central1` (builds the base URL).
    pub location: Option<String>,
    /// Service-account key file (JSON): requests carry an OAuth2 token minted from it.
    pub credentials_file: Option<String>,
}

/// `providers.<name>.aws:` — SigV4 signing for Bedrock.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    /// Region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// Access key id, usually `${AWS_ACCESS_KEY_ID}`; read from the environment when absent.
    pub access_key_id: Option<String>,
    /// Secret access key, usually `${AWS_SECRET_ACCESS_KEY}`.
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Named profile of the shared AWS config/credentials files (instead of static keys).
    pub profile: Option<String>,
    /// A shared credentials file to read instead of `~/.aws/credentials`.
    pub credentials_file: Option<String>,
}

/// `providers.<name>.azure:` — the provider is Azure OpenAI (deployment URLs, `api-version`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAzure {
    /// The `api-version` query parameter (default `2024-10-21`).
    pub api_version: Option<String>,
}

/// `providers.<name>.timeouts:`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// Connection establishment.
    #[serde(default, with = "humantime_serde")]
    pub connect: Option<Duration>,
    /// Until the response head.
    #[serde(default, with = "humantime_serde")]
    pub first_byte: Option<Duration>,
    /// Until the last byte.
    #[serde(default, with = "humantime_serde")]
    pub total: Option<Duration>,
}

/// `models.<name>:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Targets in fallback order.
    pub targets: Vec<RawTarget>,
    /// Attempt limit; defaults to the number of targets.
    pub max_attempts: Option<u32>,
    /// Prices in US dollars per million tokens.
    pub pricing: Option<RawPricing>,
    /// Output tokens reserved when a request sets no `max_tokens` (default 1024).
    pub default_max_tokens: Option<u64>,
    /// `o200k_base`, `cl100k_base`, `estimate`, or `auto` (default: from the first
    /// target's model name when it is one of OpenAI's, else `estimate`).
    pub tokenizer: Option<String>,
    /// Embedding `input_type` for protocols that take one (Cohere, default
    /// `search_document`; Vertex, as `task_type`, none by default).
    pub input_type: Option<String>,
}

/// `models.<name>.pricing:` — US dollars per million tokens, as decimals.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    /// Input tokens.
    pub input: serde_yaml_ng::Value,
    /// Output tokens.
    pub output: serde_yaml_ng::Value,
    /// Cached input tokens (default: the input price).
    pub cached_input: Option<serde_yaml_ng::Value>,
}

/// `limits[i]:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    /// Stable name (counters are keyed by it).
    pub id: String,
    /// `organization`, `team`, `project`, `user`, `key` or `model`.
    pub scope: String,
    /// Only this scope instance (e.g. one organisation); default: each instance separately.
    #[serde(rename = "match")]
    pub match_: Option<String>,
    /// `minute`, `hour`, `day`, `month`, a duration like `10m`, or `rolling <duration>`;
    /// not for `concurrent`.
    pub window: Option<String>,
    /// `requests`, `concurrent`, `input_tokens`, `output_tokens`, `total_tokens` or `cost`.
    pub measure: String,
    /// The ceiling: a count, or US dollars for `cost`.
    pub limit: serde_yaml_ng::Value,
    /// `hard` (429) or `soft` (served, flagged).
    pub kind: Option<String>,
    /// Extra room above the limit, same unit.
    pub burst: Option<serde_yaml_ng::Value>,
    /// Budget tip: the model a request goes to instead of a 429 when this limit is full.
    pub fallback: Option<String>,
}

/// `models.<name>.targets[i]:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Provider name.
    pub provider: String,
    /// Upstream model name.
    pub model: String,
    /// Share of first attempts (default 1).
    pub weight: Option<u32>,
}

/// One `pipeline:` entry: a name, or a name with options.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPipelineEntry {
    /// Just the processor's name.
    Name(String),
    /// The name with a failure-mode override.
    Detailed(RawPipelineDetail),
}

/// `pipeline[i]:` in its long form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipelineDetail {
    /// Processor name.
    pub name: String,
    /// `fail_closed`, `fail_open` or `fallback`.
    pub on_failure: Option<String>,
    /// With `fallback`: the response's status.
    pub fallback_status: Option<u16>,
    /// With `fallback`: the response's JSON body.
    pub fallback_body: Option<String>,
}

/// `audit:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// JSON-lines file.
    pub path: String,
    /// Queue length.
    pub buffer: Option<usize>,
}

/// `dev:`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDev {
    /// Start the mock upstream in-process on this address.
    pub mock_upstream: Option<String>,
}

/// `tenants.<organization>:`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOrganization {
    /// Models every credential of this organisation is limited to.
    pub allowed_models: Option<Vec<String>>,
    /// Teams by name.
    #[serde(default)]
    pub teams: IndexMap<String, RawTeam>,
}

/// `tenants.<organization>.teams.<team>:`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTeam {
    /// Models every credential of this team is limited to.
    pub allowed_models: Option<Vec<String>>,
    /// Projects by name.
    #[serde(default)]
    pub projects: IndexMap<String, RawProject>,
}

/// `tenants.<organization>.teams.<team>.projects.<project>:`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawProject {
    /// Models every credential of this project is limited to.
    pub allowed_models: Option<Vec<String>>,
}

/// `auth:`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Routes served without a credential (`"*"` for all).
    #[serde(default)]
    pub public_routes: Vec<String>,
    /// Virtual API keys, by hash.
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
    /// JSON Web Tokens from an identity provider.
    pub jwt: Option<RawJwt>,
    /// TLS client certificates (needs `server.tls.client_ca`).
    pub mtls: Option<RawMtls>,
}

/// `auth.jwt:` — exactly one of `jwks_file`, `jwks_url` and `hs256_secret`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required member of `aud`.
    pub audience: Option<String>,
    /// Accepted algorithms: `HS256`, `RS256`, `ES256`.
    pub algorithms: Option<Vec<String>>,
    /// JWKS file (relative to the config file's directory).
    pub jwks_file: Option<String>,
    /// JWKS URL, fetched in the background.
    pub jwks_url: Option<String>,
    /// How often `jwks_url` is refetched, e.g. `5m`.
    #[serde(default, with = "humantime_serde")]
    pub refresh: Option<Duration>,
    /// Shortest time between two refetches caused by an unknown `kid`, e.g. `30s`.
    #[serde(default, with = "humantime_serde")]
    pub min_refetch_interval: Option<Duration>,
    /// HS256 shared secret, as `${ENV_VAR}`.
    pub hs256_secret: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, e.g. `30s`.
    #[serde(default, with = "humantime_serde")]
    pub leeway: Option<Duration>,
    /// Which claims name the tenant and user.
    pub claims: Option<RawJwtClaims>,
    /// How many verified tokens are remembered (0: verify every token every time).
    pub cache_size: Option<usize>,
}

/// `auth.jwt.claims:` — claim names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwtClaims {
    /// Organisation (required).
    pub organization: Option<String>,
    /// Team.
    pub team: Option<String>,
    /// Project.
    pub project: Option<String>,
    /// End user.
    pub user: Option<String>,
    /// A list of models the token is limited to.
    pub allowed_models: Option<String>,
}

/// `auth.mtls:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMtls {
    /// Certificate names and the identities they map to.
    #[serde(default)]
    pub identities: Vec<RawMtlsIdentity>,
}

/// `auth.mtls.identities[i]:` — exactly one of `san` and `cn`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMtlsIdentity {
    /// Stable ID, recorded as the credential.
    pub id: String,
    /// A subject alternative name (DNS, URI or email) the certificate carries.
    pub san: Option<String>,
    /// The certificate subject's common name.
    pub cn: Option<String>,
    /// `organization[/team[/project]]`.
    pub owner: String,
    /// End user.
    pub user: Option<String>,
    /// Models the certificate may call.
    pub allowed_models: Option<Vec<String>>,
    /// Routes the certificate may call.
    pub allowed_routes: Option<Vec<String>>,
}

/// `auth.api_keys[i]:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    /// Stable ID, recorded in place of the key.
    pub id: String,
    /// `sha256:<hex>` of the key (`johi keys generate` prints it).
    pub hash: String,
    /// `organization[/team[/project]]` the key belongs to.
    pub owner: String,
    /// End user the key belongs to.
    pub user: Option<String>,
    /// Models the key may call.
    pub allowed_models: Option<Vec<String>>,
    /// Routes the key may call.
    pub allowed_routes: Option<Vec<String>>,
    /// RFC 3339 instant after which the key is refused.
    pub expires_at: Option<String>,
    /// Refuse the key.
    #[serde(default)]
    pub revoked: bool,
    /// Labels for operators.
    #[serde(default)]
    pub metadata: IndexMap<String, String>,
}

/// `ledger:` — exactly one of `sqlite` and `postgres`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    /// SQLite file (relative to the config file's directory).
    pub sqlite: Option<String>,
    /// PostgreSQL URL, usually `${DATABASE_URL}`.
    pub postgres: Option<String>,
    /// Records per transaction.
    pub batch_size: Option<usize>,
    /// Longest wait before a record is committed.
    #[serde(default, with = "humantime_serde")]
    pub flush_interval: Option<Duration>,
    /// Queue length.
    pub buffer: Option<usize>,
}

/// `limit_store:` — counters in Redis, shared by replicas.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimitStore {
    /// `redis://host:port/db`, usually `${REDIS_URL}`.
    pub redis: String,
    /// Key prefix.
    pub prefix: Option<String>,
    /// Longest wait for one Redis operation.
    #[serde(default, with = "humantime_serde")]
    pub op_timeout: Option<Duration>,
    /// How long a concurrency lease outlives a crashed replica.
    #[serde(default, with = "humantime_serde")]
    pub lease_ttl: Option<Duration>,
    /// `fail_open` (count in memory meanwhile) or `fail_closed` (503).
    pub on_outage: Option<String>,
    /// Share of each windowed limit a replica counts ahead per trip, e.g. `1%`.
    pub prefetch: Option<String>,
}
