//! Raw config → validated [`Config`], collecting every error with its path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use johi_core::model::{
    KeyPlacement, ModelRegistry, ModelRoute, Protocol, Provider, Secret, Target, Timeouts,
    Tokenizer,
};
use johi_core::RouteSet;
use johi_pipeline::{FailureMode, ShortResponse};

use crate::raw::{RawConfig, RawPipelineEntry, RawProvider};
use crate::{
    AdminSettings, AuditConfig, Config, ConfigErrors, DevConfig, EnrichConfig, KeyStoreTarget,
    LedgerSettings, LedgerTarget, LimitStoreSettings, PipelineEntry, ServerConfig, TlsFiles,
    DEFAULT_PIPELINE,
};

/// Default listener when the file names none.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default body limit: 4 MiB, room for long prompts and inline images.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default admin listener: loopback only, so the admin API is never exposed by omission.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Default key store file, next to the config file.
pub const DEFAULT_KEY_STORE: &str = "johi-keys.db";
/// Shortest admin token accepted: a guessable token would open every key and figure.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// Validates `raw`; relative paths are resolved against `base_dir`.
pub fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let resolve = |p: &str| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            base_dir.join(p)
        }
    };

    let listen = parse_addr(
        raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
        "server.listen",
        &mut errors,
    );
    let tls = raw.server.tls.map(|t| {
        let files = TlsFiles {
            cert_file: resolve(&t.cert_file),
            key_file: resolve(&t.key_file),
            client_ca: t.client_ca.as_deref().map(resolve),
            client_auth_required: match t.client_auth.as_deref() {
                None | Some("optional") => false,
                Some("required") => true,
                Some(other) => {
                    errors.push(format!(
                        "server.tls.client_auth: '{other}' is not optional or required"
                    ));
                    false
                }
            },
        };
        if files.client_auth_required && files.client_ca.is_none() {
            errors.push(
                "server.tls.client_auth: 'required' needs server.tls.client_ca to verify certificates against".into(),
            );
        }
        for (field, path) in [
            ("cert_file", Some(&files.cert_file)),
            ("key_file", Some(&files.key_file)),
            ("client_ca", files.client_ca.as_ref()),
        ] {
            let Some(path) = path else { continue };
            if !path.is_file() {
                errors.push(format!(
                    "server.tls.{field}: no such file {}",
                    path.display()
                ));
            }
        }
        files
    });
    let max_body_bytes = raw.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        errors.push("server.max_body_bytes: must be greater than zero".into());
    }
    let server = ServerConfig {
        listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        tls,
        max_body_bytes,
        drain_timeout: raw.server.drain_timeout.unwrap_or(Duration::from_secs(30)),
        reload_poll_interval: raw
            .server
            .reload_poll_interval
            .unwrap_or(Duration::from_secs(1)),
        shutdown_delay: raw.server.shutdown_delay.unwrap_or(Duration::ZERO),
    };

    let mut providers: HashMap<String, Arc<Provider>> = HashMap::new();
    let mut provider_list = Vec::new();
    for (name, p) in raw.providers {
        if let Some(provider) = provider(&name, p, &resolve, &mut errors) {
            let provider = Arc::new(provider);
            providers.insert(name, provider.clone());
            provider_list.push(provider);
        }
    }

    let mut routes = Vec::new();
    for (name, m) in raw.models {
        let path = format!("models.{name}");
        if m.targets.is_empty() {
            errors.push(format!("{path}.targets: a model needs at least one target"));
            continue;
        }
        let mut targets = Vec::new();
        for (i, t) in m.targets.into_iter().enumerate() {
            let Some(provider) = providers.get(&t.provider) else {
                let mut known: Vec<_> = providers.keys().map(String::as_str).collect();
                known.sort_unstable();
                errors.push(format!(
                    "{path}.targets[{i}].provider: unknown provider '{}' (known: {})",
                    t.provider,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ));
                continue;
            };
            if t.model.is_empty() {
                errors.push(format!("{path}.targets[{i}].model: must not be empty"));
            }
            targets.push(Target {
                provider: provider.clone(),
                model: t.model,
                weight: t.weight.unwrap_or(1),
            });
        }
        if !targets.is_empty() && targets.iter().all(|t| t.weight == 0) {
            errors.push(format!(
                "{path}.targets: at least one target needs a weight above zero"
            ));
        }
        let max_attempts = m.max_attempts.unwrap_or(targets.len().max(1) as u32);
        if max_attempts == 0 {
            errors.push(format!("{path}.max_attempts: must be at least 1"));
        }
        let pricing = m
            .pricing
            .and_then(|p| crate::limits::pricing(p, &path, &mut errors));
        let tokenizer = match m.tokenizer.as_deref() {
            None | Some("auto") => targets
                .first()
                .and_then(|t| Tokenizer::for_openai_model(&t.model))
                .unwrap_or(Tokenizer::Estimate),
            Some("o200k_base") => Tokenizer::O200kBase,
            Some("cl100k_base") => Tokenizer::Cl100kBase,
            Some("estimate") => Tokenizer::Estimate,
            Some(other) => {
                errors.push(format!("{path}.tokenizer: unknown tokenizer '{other}' (known: auto, o200k_base, cl100k_base, estimate)"));
                Tokenizer::Estimate
            }
        };
        routes.push(ModelRoute {
            name,
            targets,
            max_attempts,
            pricing,
            default_max_tokens: m.default_max_tokens.unwrap_or(1024),
            tokenizer,
            embed_input_type: m.input_type,
        });
    }

    let models = ModelRegistry::new(routes);
    let tenants = crate::auth::tenants(raw.tenants, &models, &mut errors);
    let limits = crate::limits::limits(raw.limits, &models, &mut errors);
    let limit_store = raw.limit_store.map(|l| {
        if !(l.redis.starts_with("redis://") || l.redis.starts_with("rediss://")) {
            errors.push("limit_store.redis: must be a redis:// or rediss:// URL".into());
        }
        let fail_open = match l.on_outage.as_deref() {
            None | Some("fail_open") => true,
            Some("fail_closed") => false,
            Some(other) => {
                errors.push(format!(
                    "limit_store.on_outage: unknown mode '{other}' (known: fail_open, fail_closed)"
                ));
                true
            }
        };
        let prefetch_ppm = l.prefetch.as_deref().and_then(|p| match percent_ppm(p) {
            Some(ppm) if (1..=500_000).contains(&ppm) => Some(ppm),
            _ => {
                errors.push(format!(
                    "limit_store.prefetch: '{p}' is not a share between 0.0001% and 50% (e.g. '1%')"
                ));
                None
            }
        });
        LimitStoreSettings {
            redis_url: l.redis,
            prefix: l.prefix.unwrap_or_else(|| "johi".into()),
            op_timeout: l.op_timeout.unwrap_or(Duration::from_millis(50)),
            lease_ttl: l.lease_ttl.unwrap_or(Duration::from_secs(900)),
            fail_open,
            prefetch_ppm,
        }
    });
    let auth_configured = raw.auth.is_some();
    let client_ca = server.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    let auth = crate::auth::auth(
        raw.auth,
        &crate::auth::Context {
            tenants: &tenants,
            models: &models,
            resolve: &resolve,
            client_ca,
        },
        &mut errors,
    );

    let audit = raw.audit.map(|a| AuditConfig {
        path: resolve(&a.path),
        buffer: a.buffer.unwrap_or(16_384),
    });
    let ledger = raw.ledger.and_then(|l| {
        let target = match (l.sqlite, l.postgres) {
            (Some(path), None) => LedgerTarget::Sqlite(resolve(&path)),
            (None, Some(url))
                if url.starts_with("postgres://") || url.starts_with("postgresql://") =>
            {
                LedgerTarget::Postgres(url)
            }
            (None, Some(_)) => {
                errors.push("ledger.postgres: must be a postgres:// URL".into());
                return None;
            }
            _ => {
                errors
                    .push("ledger: set exactly one of sqlite (a file) and postgres (a URL)".into());
                return None;
            }
        };
        Some(LedgerSettings {
            target,
            batch_size: l.batch_size.unwrap_or(512).max(1),
            flush_interval: l.flush_interval.unwrap_or(Duration::from_secs(1)),
            buffer: l.buffer.unwrap_or(65_536).max(1),
        })
    });
    let pipeline: Vec<PipelineEntry> = match raw.pipeline {
        Some(entries) => entries
            .into_iter()
            .enumerate()
            .filter_map(|(i, e)| pipeline_entry(i, e, &mut errors))
            .collect(),
        None => DEFAULT_PIPELINE
            .iter()
            .filter(|name| **name != "audit" || audit.is_some())
            .filter(|name| **name != "meter" || ledger.is_some())
            .filter(|name| **name != "stream_usage" || ledger.is_some() || !limits.is_empty())
            .map(|name| PipelineEntry {
                name: (*name).to_owned(),
                on_failure: None,
            })
            .collect(),
    };
    if pipeline.iter().any(|e: &PipelineEntry| e.name == "audit") && audit.is_none() {
        errors.push(
            "pipeline: 'audit' is listed but there is no 'audit:' section saying where records go"
                .into(),
        );
    }
    if pipeline.iter().any(|e| e.name == "meter") && ledger.is_none() {
        errors.push(
            "pipeline: 'meter' is listed but there is no 'ledger:' section saying where usage goes"
                .into(),
        );
    }
    if ledger.is_some() && !pipeline.iter().any(|e| e.name == "meter") {
        errors.push(
            "pipeline: 'meter' is missing, but a ledger is configured: nothing would be recorded"
                .into(),
        );
    }
    // A check that is configured but not in the pipeline would not run: refuse the file
    // rather than serve it open.
    let listed = |name: &str| pipeline.iter().any(|e| e.name == name);
    if auth_configured && auth.public_routes != RouteSet::ALL && !listed("authenticate") {
        errors.push(
            "pipeline: 'authenticate' is missing, but auth.public_routes does not make every route public: requests would go unauthenticated".into(),
        );
    }
    if !limits.is_empty() && !listed("limit") {
        errors.push(
            "pipeline: 'limit' is missing, but limits are configured: they would not be enforced"
                .into(),
        );
    }
    if auth.restricts_models && !listed("authorize") {
        errors.push(
            "pipeline: 'authorize' is missing, but credentials are limited to some models (allowed_models): the limit would not be enforced".into(),
        );
    }

    let admin = raw.admin.and_then(|a| {
        let listen = parse_addr(
            a.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN),
            "admin.listen",
            &mut errors,
        );
        if a.token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
            errors.push(format!(
                "admin.token: must be at least {MIN_ADMIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32` in JOHI_ADMIN_TOKEN)"
            ));
        }
        let store = a.key_store.unwrap_or_else(|| DEFAULT_KEY_STORE.to_owned());
        let key_store = if store.starts_with("postgres://") || store.starts_with("postgresql://")
        {
            KeyStoreTarget::Postgres(store)
        } else {
            KeyStoreTarget::Sqlite(resolve(&store))
        };
        let key_refresh_interval = a.key_refresh_interval.unwrap_or(Duration::from_secs(5));
        if key_refresh_interval.is_zero() {
            errors.push("admin.key_refresh_interval: must be greater than zero".into());
        }
        if listen.is_some_and(|l| l == server.listen && l.port() != 0) {
            errors.push(
                "admin.listen: must differ from server.listen (the admin API has its own port)"
                    .into(),
            );
        }
        Some(AdminSettings {
            listen: listen?,
            token_hash: johi_auth::KeyHash::of(&a.token),
            key_store,
            key_refresh_interval,
        })
    });

    let dev = DevConfig {
        mock_upstream: raw
            .dev
            .mock_upstream
            .as_deref()
            .and_then(|a| parse_addr(a, "dev.mock_upstream", &mut errors)),
    };

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        server,
        enrich: EnrichConfig {
            default_organization: raw.enrich.default_organization,
            default_service_tier: raw.enrich.default_service_tier,
        },
        providers: provider_list,
        models,
        tenants,
        auth,
        limits,
        limit_store,
        pipeline,
        audit,
        ledger,
        admin,
        dev,
    })
}

fn parse_addr(value: &str, path: &str, errors: &mut Vec<String>) -> Option<SocketAddr> {
    match value.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.push(format!(
                "{path}: '{value}' is not an address like 127.0.0.1:8080"
            ));
            None
        }
    }
}

fn provider(
    name: &str,
    mut p: RawProvider,
    resolve: &dyn Fn(&str) -> PathBuf,
    errors: &mut Vec<String>,
) -> Option<Provider> {
    let path = format!("providers.{name}");
    let before = errors.len();
    crate::presets::apply(&path, &mut p, errors);
    let protocol = match p.protocol.as_deref().unwrap_or("openai") {
        "openai" => Protocol::OpenAi,
        "anthropic" => Protocol::Anthropic,
        "bedrock" => Protocol::Bedrock,
        "gemini" => Protocol::Gemini,
        "vertex" => Protocol::Vertex,
        "cohere" => Protocol::Cohere,
        other => {
            errors.push(format!(
                "{path}.protocol: unknown protocol '{other}' (known: openai, anthropic, bedrock, gemini, vertex, cohere)"
            ));
            Protocol::OpenAi
        }
    };
    let aws = crate::aws::aws(&path, protocol, p.aws.take(), resolve, errors);
    let vertex = crate::vertex::check(&path, protocol, &p, resolve, errors);
    let raw_base = p
        .base_url
        .clone()
        .or(vertex.base_url)
        .or_else(|| aws.as_ref().map(|a| crate::aws::default_base_url(Some(a))))
        .or_else(|| (protocol == Protocol::Cohere).then(|| "https://api.cohere.com".to_owned()));
    let base_url = match raw_base
        .as_deref()
        .map(|b| b.trim_end_matches('/').parse::<Uri>())
    {
        Some(Ok(uri))
            if matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some() =>
        {
            Some(uri)
        }
        Some(_) => {
            errors.push(format!(
                "{path}.base_url: '{}' is not an http(s) URL",
                raw_base.unwrap_or_default()
            ));
            None
        }
        None => {
            errors.push(format!("{path}.base_url: missing"));
            None
        }
    };
    if base_url.as_ref().and_then(Uri::query).is_some() {
        errors.push(format!("{path}.base_url: must not carry a query string"));
    }
    let azure_api_version = base_url
        .as_ref()
        .and_then(|b| crate::presets::azure_api_version(&p, b.path()));
    if p.azure.is_some() && protocol != Protocol::OpenAi {
        errors.push(format!(
            "{path}.azure: only for the openai protocol (Azure OpenAI)"
        ));
    }
    let key_placement = match p.api_key_header.as_deref() {
        // A Vertex service account authenticates with an OAuth2 token minted from its key.
        _ if vertex.credentials_file.is_some() => {
            KeyPlacement::ServiceAccount(vertex.credentials_file.unwrap_or_default())
        }
        // Anthropic authenticates with the raw key in `x-api-key`, not a bearer token.
        None if protocol == Protocol::Anthropic => {
            KeyPlacement::Header(HeaderName::from_static("x-api-key"))
        }
        // Google's Gemini API (and Vertex's API keys) take the raw key in `x-goog-api-key`.
        None if matches!(protocol, Protocol::Gemini | Protocol::Vertex) => {
            KeyPlacement::Header(HeaderName::from_static("x-goog-api-key"))
        }
        None => KeyPlacement::Bearer,
        Some(h) => match HeaderName::try_from(h) {
            Ok(h) if h == http::header::AUTHORIZATION => KeyPlacement::Bearer,
            Ok(h) => KeyPlacement::Header(h),
            Err(_) => {
                errors.push(format!(
                    "{path}.api_key_header: '{h}' is not a valid header name"
                ));
                KeyPlacement::Bearer
            }
        },
    };
    let api_key = p.api_key.filter(|k| !k.is_empty()).map(Secret::new);
    if let Some(key) = &api_key {
        if HeaderValue::from_str(key.expose()).is_err() {
            errors.push(format!(
                "{path}.api_key: contains characters not allowed in a header"
            ));
        }
    }
    let mut headers = Vec::new();
    for (k, v) in p.headers {
        match (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(k), Ok(v)) => headers.push((k, v)),
            _ => errors.push(format!("{path}.headers.{k}: not a valid header")),
        }
    }
    let mut forward_headers = Vec::new();
    for (i, h) in p.forward_headers.iter().enumerate() {
        match HeaderName::try_from(h.as_str()) {
            Ok(h) if is_credential_header(&h) => errors.push(format!(
                "{path}.forward_headers[{i}]: '{h}' carries the client's credentials to Johi and is never forwarded"
            )),
            Ok(h) => forward_headers.push(h),
            Err(_) => errors.push(format!("{path}.forward_headers[{i}]: '{h}' is not a valid header name")),
        }
    }
    let timeouts = Timeouts {
        connect: p.timeouts.connect.unwrap_or(Duration::from_secs(5)),
        first_byte: p.timeouts.first_byte.unwrap_or(Duration::from_secs(120)),
        total: p.timeouts.total.unwrap_or(Duration::from_secs(600)),
    };
    for (field, d) in [
        ("connect", timeouts.connect),
        ("first_byte", timeouts.first_byte),
        ("total", timeouts.total),
    ] {
        if d.is_zero() {
            errors.push(format!(
                "{path}.timeouts.{field}: must be greater than zero"
            ));
        }
    }
    let ca_file = p.ca_file.map(|f| resolve(&f));
    if let Some(f) = &ca_file {
        if !f.is_file() {
            errors.push(format!("{path}.ca_file: no such file {}", f.display()));
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(Provider {
        name: name.to_owned(),
        protocol,
        base_url: base_url?,
        api_key,
        key_placement,
        headers,
        forward_headers,
        timeouts,
        ca_file,
        aws,
        azure_api_version,
        uris: Default::default(),
    })
}

/// Headers that authenticate the client to Johi; forwarding them would leak a Johi key.
pub fn is_credential_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization"
            | "api-key"
            | "x-api-key"
            | "x-goog-api-key"
            | "proxy-authorization"
            | "cookie"
    )
}

fn pipeline_entry(
    i: usize,
    entry: RawPipelineEntry,
    errors: &mut Vec<String>,
) -> Option<PipelineEntry> {
    match entry {
        RawPipelineEntry::Name(name) => Some(PipelineEntry {
            name,
            on_failure: None,
        }),
        RawPipelineEntry::Detailed(d) => {
            let path = format!("pipeline[{i}]");
            let on_failure = match d.on_failure.as_deref() {
                None => None,
                Some("fail_closed") => Some(FailureMode::FailClosed),
                Some("fail_open") => Some(FailureMode::FailOpen),
                Some("fallback") => {
                    let status = d.fallback_status.and_then(|s| StatusCode::from_u16(s).ok());
                    let Some(status) = status else {
                        errors.push(format!("{path}.fallback_status: a valid HTTP status is required with on_failure: fallback"));
                        return None;
                    };
                    let body = d.fallback_body.unwrap_or_default();
                    let mut headers = HeaderMap::new();
                    headers.insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    Some(FailureMode::Fallback(ShortResponse {
                        status,
                        headers,
                        body: Bytes::from(body),
                    }))
                }
                Some(other) => {
                    errors.push(format!("{path}.on_failure: unknown mode '{other}' (known: fail_closed, fail_open, fallback)"));
                    return None;
                }
            };
            Some(PipelineEntry {
                name: d.name,
                on_failure,
            })
        }
    }
}

/// A percentage written `N%` (decimals allowed, at most four) in millionths: `1%` is 10 000.
fn percent_ppm(text: &str) -> Option<u64> {
    let number = text.trim().strip_suffix('%')?.trim();
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.len() > 4
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let scaled: u64 = format!("{fraction:0<4}").parse().ok()?;
    whole.checked_mul(10_000)?.checked_add(scaled)
}

#[cfg(test)]
mod tests {
    use crate::parse;
    use std::path::Path;

    fn env(name: &str) -> Option<String> {
        (name == "OPENAI_API_KEY").then(|| "sk-live".to_owned())
    }

    #[test]
    fn a_good_file_validates() {
        let cfg = parse(
            r#"
server: { listen: "127.0.0.1:0", drain_timeout: 5s }
auth: { public_routes: ["*"] }
providers:
  openai: { base_url: "https://api.openai.com/v1/", api_key: "${OPENAI_API_KEY}" }
  local:  { base_url: "http://127.0.0.1:8000/v1", api_key_header: api-key }
models:
  gpt-4o:
    targets:
      - { provider: openai, model: gpt-4o-2024-08-06, weight: 3 }
      - { provider: local, model: llama }
"#,
            Path::new("/etc/johi"),
            &env,
        )
        .unwrap();
        let route = cfg.models.get("gpt-4o").unwrap();
        assert_eq!(route.max_attempts, 2);
        assert_eq!(
            route.tokenizer,
            johi_core::model::Tokenizer::O200kBase,
            "auto: the first target is an OpenAI model"
        );
        assert_eq!(
            route.targets[0].provider.base_url,
            "https://api.openai.com/v1"
        );
        assert_eq!(
            route.targets[0].provider.api_key.as_ref().unwrap().expose(),
            "sk-live"
        );
        assert_eq!(cfg.pipeline.len(), 9, "audit is left out when unconfigured");
    }

    #[test]
    fn every_error_is_listed_with_its_path() {
        let err = parse(
            r#"
server: { listen: "nowhere" }
providers:
  openai: { base_url: "ftp://x", forward_headers: [authorization] }
models:
  gpt-4o:
    targets:
      - { provider: openai, model: gpt-4o }
      - { provider: opnai, model: gpt-4o }
  empty: { targets: [] }
pipeline: [enrich, { name: validate, on_failure: sometimes }, audit]
"#,
            Path::new("."),
            &env,
        )
        .unwrap_err();
        let all = err.to_string();
        for expected in [
            "server.listen: 'nowhere' is not an address",
            "providers.openai.base_url: 'ftp://x' is not an http(s) URL",
            "providers.openai.forward_headers[0]: 'authorization' carries the client's credentials",
            "models.gpt-4o.targets[0].provider: unknown provider 'openai'",
            "models.gpt-4o.targets[1].provider: unknown provider 'opnai'",
            "models.empty.targets: a model needs at least one target",
            "pipeline[1].on_failure: unknown mode 'sometimes'",
            "pipeline: 'audit' is listed but there is no 'audit:' section",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn prefetch_is_a_percentage_of_each_limit() {
        for (text, ppm) in [
            ("1%", 10_000),
            ("0.5%", 5_000),
            ("50%", 500_000),
            (".25 %", 2_500),
        ] {
            assert_eq!(super::percent_ppm(text), Some(ppm), "{text}");
        }
        for text in ["1", "%", "1.00001%", "-1%", "1e2%", "one%"] {
            assert_eq!(super::percent_ppm(text), None, "{text}");
        }
        let store = |prefetch: &str| {
            parse(
                &format!(
                    "providers: {{ p: {{ base_url: \"http://127.0.0.1:1/v1\" }} }}\nmodels: {{ a: {{ targets: [{{ provider: p, model: x }}] }} }}\nauth: {{ public_routes: [\"*\"] }}\nlimit_store: {{ redis: \"redis://127.0.0.1:6379\", prefetch: \"{prefetch}\" }}\n"
                ),
                Path::new("."),
                &env,
            )
        };
        let cfg = store("2%").unwrap();
        assert_eq!(cfg.limit_store.unwrap().prefetch_ppm, Some(20_000));
        for bad in ["0%", "60%", "lots"] {
            let err = store(bad).unwrap_err().to_string();
            assert!(
                err.contains("limit_store.prefetch: '"),
                "{bad}: refused with its field named: {err}"
            );
        }
    }

    const HASH: &str = "sha256:8c30032bf85709f583ba2ff715c1bdbeee47a4ddc4ab5fa04d8bd326ea397c78";

    fn auth_config(tenants_and_auth: &str) -> Result<crate::Config, crate::ConfigErrors> {
        let text = format!(
            "providers:\n  p: {{ base_url: \"http://127.0.0.1:1/v1\" }}\nmodels:\n  a: {{ targets: [{{ provider: p, model: x }}] }}\n  b: {{ targets: [{{ provider: p, model: y }}] }}\n{tenants_and_auth}"
        );
        parse(&text, Path::new("."), &env)
    }

    #[test]
    fn keys_resolve_to_identities_with_intersected_model_lists() {
        let cfg = auth_config(&format!(
            r#"
tenants:
  acme:
    allowed_models: [a, b]
    teams:
      search:
        projects:
          web: {{ allowed_models: [a] }}
auth:
  public_routes: [/v1/models]
  api_keys:
    - {{ id: k1, hash: "{HASH}", owner: acme/search/web, user: alice, allowed_models: [a, b], expires_at: "2030-01-01T00:00:00Z" }}
"#
        ))
        .unwrap();
        let key = cfg.auth.authenticator.keys().next().unwrap();
        let who = &key.identity;
        assert_eq!(who.organization.as_deref(), Some("acme"));
        assert_eq!(who.team.as_deref(), Some("search"));
        assert_eq!(who.project.as_deref(), Some("web"));
        assert_eq!(who.user.as_deref(), Some("alice"));
        assert_eq!(who.credential_id.as_deref(), Some("k1"));
        assert_eq!(
            who.allowed_models,
            Some(vec!["a".to_owned()]),
            "org [a,b] ∩ project [a] ∩ key [a,b]"
        );
        assert!(key.expires_at.is_some());
        assert!(cfg.auth.restricts_models);
        assert!(cfg.auth.public_routes.contains(johi_core::Route::Models));
        assert!(!cfg
            .auth
            .public_routes
            .contains(johi_core::Route::ChatCompletions));
        assert!(cfg.pipeline.iter().any(|e| e.name == "authorize"));
    }

    #[test]
    fn auth_mistakes_are_all_listed() {
        let err = auth_config(&format!(
            r#"
tenants:
  acme: {{ teams: {{ search: {{}} }} }}
auth:
  public_routes: [/v1/files]
  api_keys:
    - {{ id: k1, hash: "{HASH}", owner: globex }}
    - {{ id: k1, hash: "md5:00", owner: acme/nope }}
    - {{ id: k3, hash: "{HASH}", owner: acme/search/web }}
    - {{ id: "bad id", hash: "{HASH}", owner: acme, allowed_models: [zzz], allowed_routes: [/v2/x], expires_at: tomorrow }}
"#
        ))
        .unwrap_err()
        .to_string();
        for expected in [
            "auth.public_routes[0]: unknown route '/v1/files'",
            "auth.api_keys[0].owner: unknown organization 'globex'",
            "auth.api_keys[1].id: 'k1' is used by another key",
            "auth.api_keys[1].hash: must start with 'sha256:'",
            "auth.api_keys[1].owner: organization 'acme' has no team 'nope'",
            "auth.api_keys[2].owner: team 'acme/search' has no project 'web'",
            "auth.api_keys[3].id: 'bad id' must be",
            "auth.api_keys[3].allowed_models[0]: unknown model 'zzz'",
            "auth.api_keys[3].allowed_routes[0]: unknown route '/v2/x'",
            "auth.api_keys[3].expires_at: 'tomorrow' is not an RFC 3339",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
    }

    #[test]
    fn a_check_that_is_configured_must_be_in_the_pipeline() {
        let err =
            auth_config("pipeline: [enrich, validate, route, endpoint, translate, credentials]\n")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("auth: missing."), "{err}");

        let err = auth_config(&format!(
            "tenants: {{ acme: {{}} }}\nauth: {{ api_keys: [{{ id: k, hash: \"{HASH}\", owner: acme, allowed_models: [a] }}] }}\npipeline: [enrich, validate, route, endpoint, translate, credentials]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("pipeline: 'authenticate' is missing"), "{err}");
        assert!(err.contains("pipeline: 'authorize' is missing"), "{err}");

        // Everything public and nothing model-limited: a pipeline without them is honest.
        auth_config("auth: { public_routes: [\"*\"] }\npipeline: [enrich, validate, route, endpoint, translate, credentials]\n")
            .unwrap();
    }

    #[test]
    fn limits_and_prices_are_validated_with_paths() {
        let err = parse(
            r#"
auth: { public_routes: ["*"] }
providers:
  p: { base_url: "http://127.0.0.1:1/v1" }
models:
  a: { targets: [{ provider: p, model: x }], pricing: { input: "2.5", output: "1e3" } }
  b: { targets: [{ provider: p, model: y }] }
limits:
  - { id: x, scope: galaxy, window: minute, measure: requests, limit: 1 }
  - { id: x, scope: key, window: fortnight, measure: tokens, limit: 1 }
  - { id: c, scope: key, window: minute, measure: concurrent, limit: 1 }
  - { id: d, scope: model, match: zzz, window: day, measure: cost, limit: "ten", kind: maybe }
  - { id: e, scope: key, window: "rolling soon", measure: requests, limit: 1, kind: soft, fallback: nope }
  - { id: f, scope: model, match: a, window: day, measure: requests, limit: 1, fallback: a }
pipeline: [enrich, validate, route, endpoint, translate, credentials]
"#,
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "models.a.pricing.output: '1e3' is not a price",
            "limits[0].scope: unknown scope 'galaxy'",
            "limits[1].id: 'x' must be non-empty and unique",
            "limits[1].window: 'fortnight' is not minute, hour, day, month",
            "limits[1].measure: unknown measure 'tokens'",
            "limits[2].window: a concurrent limit has no window",
            "limits[3].limit: 'ten' is not a price",
            "limits[3].kind: unknown kind 'maybe'",
            "limits[3].match: unknown model 'zzz'",
            "limits[4].window: 'rolling soon' is not minute",
            "limits[4].fallback: unknown model 'nope'",
            "limits[4].fallback: only a hard limit can fall back",
            "limits[5].fallback: 'a' is the model this limit counts",
            "models.b.pricing: required, because a cost limit is configured",
            "pipeline: 'limit' is missing, but limits are configured",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
    }

    #[test]
    fn the_admin_section_is_validated_and_keeps_only_the_tokens_hash() {
        let base = "auth: { public_routes: [\"*\"] }\nserver: { listen: \"127.0.0.1:8080\" }\n";
        let cfg = parse(
            &format!("{base}admin: {{ token: \"0123456789abcdef\" }}\n"),
            Path::new("/etc/johi"),
            &env,
        )
        .unwrap();
        let admin = cfg.admin.unwrap();
        assert_eq!(admin.listen.to_string(), "127.0.0.1:9090");
        assert_eq!(admin.token_hash, johi_auth::KeyHash::of("0123456789abcdef"));
        assert_eq!(
            admin.key_store,
            crate::KeyStoreTarget::Sqlite("/etc/johi/johi-keys.db".into())
        );
        let cfg = parse(
            &format!("{base}admin: {{ token: \"0123456789abcdef\", key_store: \"postgres://u:p@db/keys\" }}\n"),
            Path::new("."),
            &env,
        )
        .unwrap();
        assert_eq!(
            cfg.admin.unwrap().key_store,
            crate::KeyStoreTarget::Postgres("postgres://u:p@db/keys".into())
        );
        let err = parse(
            &format!("{base}admin: {{ listen: \"127.0.0.1:8080\", token: short, key_refresh_interval: 0s }}\n"),
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "admin.token: must be at least 16 characters",
            "admin.listen: must differ from server.listen",
            "admin.key_refresh_interval: must be greater than zero",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
        assert!(parse(base, Path::new("."), &env).unwrap().admin.is_none());
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let err = parse(
            "models:\n  m:\n    targets: [{provider: p, model: x}]\n    max_attemps: 3\n",
            Path::new("."),
            &env,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("models.m.max_attemps: unknown field `max_attemps`"),
            "{err}"
        );
    }
}
