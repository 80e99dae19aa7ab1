//! `providers.<name>.preset`: the protocol, base URL and key header of well-known providers,
//! so a config names the vendor instead of copying its URL.
//!
//! A preset only fills what the provider's own fields leave out: a `protocol`, `base_url` or
//! `api_key_header` written beside `preset` wins. Hosted presets need an `api_key` (refused at
//! load otherwise, with the path named); local servers (vLLM, Ollama, TGI, LM Studio) get
//! their usual localhost URL and need none.

use crate::raw::{RawAzure, RawProvider};

/// The Azure OpenAI API version used when a provider says `preset: azure` (or `azure: {}`)
/// without choosing one: the GA version current when this was written.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// What a preset fills in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The preset's name in config.
    pub name: &'static str,
    /// Wire protocol.
    pub protocol: &'static str,
    /// Base URL; `None` when it is the customer's own (Azure's resource URL).
    pub base_url: Option<&'static str>,
    /// Header carrying the raw key; `None` for `Authorization: Bearer`.
    pub key_header: Option<&'static str>,
    /// Whether the provider is a hosted service that needs a key.
    pub hosted: bool,
}

const fn hosted(name: &'static str, protocol: &'static str, base_url: &'static str) -> Preset {
    Preset {
        name,
        protocol,
        base_url: Some(base_url),
        key_header: None,
        hosted: true,
    }
}

const fn local(name: &'static str, base_url: &'static str) -> Preset {
    Preset {
        name,
        protocol: "openai",
        base_url: Some(base_url),
        key_header: None,
        hosted: false,
    }
}

/// Every preset, in the order the documentation lists them.
pub const PRESETS: &[Preset] = &[
    hosted("openai", "openai", "https://api.openai.com/v1"),
    Preset {
        name: "azure",
        protocol: "openai",
        base_url: None,
        key_header: Some("api-key"),
        hosted: true,
    },
    Preset {
        name: "anthropic",
        protocol: "anthropic",
        base_url: Some("https://api.anthropic.com"),
        key_header: Some("x-api-key"),
        hosted: true,
    },
    hosted("mistral", "openai", "https://api.mistral.ai/v1"),
    hosted("groq", "openai", "https://api.groq.com/openai/v1"),
    hosted("together", "openai", "https://api.together.xyz/v1"),
    hosted(
        "fireworks",
        "openai",
        "https://api.fireworks.ai/inference/v1",
    ),
    hosted("deepseek", "openai", "https://api.deepseek.com/v1"),
    hosted("xai", "openai", "https://api.x.ai/v1"),
    hosted("openrouter", "openai", "https://openrouter.ai/api/v1"),
    hosted("perplexity", "openai", "https://api.perplexity.ai"),
    hosted("cerebras", "openai", "https://api.cerebras.ai/v1"),
    hosted("nvidia", "openai", "https://integrate.api.nvidia.com/v1"),
    // Gemini's own protocol (not its OpenAI-compatible endpoint): every field and the usage
    // details (cached, thinking tokens) translate exactly.
    Preset {
        name: "gemini",
        protocol: "gemini",
        base_url: Some("https://generativelanguage.googleapis.com/v1beta"),
        key_header: Some("x-goog-api-key"),
        hosted: true,
    },
    hosted("cohere", "cohere", "https://api.cohere.com"),
    local("vllm", "http://localhost:8000/v1"),
    local("ollama", "http://localhost:11434/v1"),
    local("tgi", "http://localhost:8080/v1"),
    local("lmstudio", "http://localhost:1234/v1"),
];

/// The preset called `name`.
pub fn get(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// Fills the provider's unset fields from its `preset`, collecting errors with their paths:
/// an unknown preset, an Azure preset without a `base_url`, a hosted preset without a key.
pub(crate) fn apply(path: &str, p: &mut RawProvider, errors: &mut Vec<String>) {
    let Some(name) = p.preset.as_deref() else {
        return;
    };
    let Some(preset) = get(name) else {
        let known: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        errors.push(format!(
            "{path}.preset: unknown preset '{name}' (known: {})",
            known.join(", ")
        ));
        return;
    };
    if p.protocol.is_none() {
        p.protocol = Some(preset.protocol.to_owned());
    }
    if p.base_url.is_none() {
        match preset.base_url {
            Some(url) => p.base_url = Some(url.to_owned()),
            None => errors.push(format!(
                "{path}.base_url: required by preset '{name}' (e.g. https://my-resource.openai.azure.com)"
            )),
        }
    }
    if p.api_key_header.is_none() {
        p.api_key_header = preset.key_header.map(str::to_owned);
    }
    if preset.name == "azure" && p.azure.is_none() {
        p.azure = Some(RawAzure::default());
    }
    let has_key = p.api_key.as_deref().is_some_and(|k| !k.is_empty());
    if preset.hosted && !has_key {
        errors.push(format!(
            "{path}.api_key: required by preset '{name}' (a hosted provider)"
        ));
    }
}

/// The Azure OpenAI `api-version` for a provider with an `azure:` block, or `None` when
/// requests use plain OpenAI paths: no `azure:` block, or Azure's v1 API (a base URL ending
/// in `/openai/v1`, which takes no version).
pub(crate) fn azure_api_version(p: &RawProvider, base_path: &str) -> Option<String> {
    let azure = p.azure.as_ref()?;
    if base_path.trim_end_matches('/').ends_with("/openai/v1") {
        return None;
    }
    Some(
        azure
            .api_version
            .clone()
            .unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use johi_core::model::{KeyPlacement, Protocol, Provider};

    use crate::parse;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(provider: &str) -> Result<Arc<Provider>, String> {
        let text = format!(
            "auth: {{ public_routes: [\"*\"] }}\nproviders:\n  p: {provider}\nmodels:\n  m: {{ targets: [{{ provider: p, model: dep-1 }}] }}\n"
        );
        let cfg = parse(&text, Path::new("."), &no_env).map_err(|e| e.to_string())?;
        Ok(cfg.models.get("m").unwrap().targets[0].provider.clone())
    }

    fn header(name: &'static str) -> KeyPlacement {
        KeyPlacement::Header(http::HeaderName::from_static(name))
    }

    #[test]
    fn every_preset_fills_protocol_url_and_key_header() {
        let bearer = KeyPlacement::Bearer;
        for (name, protocol, base, key) in [
            (
                "openai",
                Protocol::OpenAi,
                "https://api.openai.com/v1",
                bearer.clone(),
            ),
            (
                "anthropic",
                Protocol::Anthropic,
                "https://api.anthropic.com",
                header("x-api-key"),
            ),
            (
                "mistral",
                Protocol::OpenAi,
                "https://api.mistral.ai/v1",
                bearer.clone(),
            ),
            (
                "groq",
                Protocol::OpenAi,
                "https://api.groq.com/openai/v1",
                bearer.clone(),
            ),
            (
                "together",
                Protocol::OpenAi,
                "https://api.together.xyz/v1",
                bearer.clone(),
            ),
            (
                "fireworks",
                Protocol::OpenAi,
                "https://api.fireworks.ai/inference/v1",
                bearer.clone(),
            ),
            (
                "deepseek",
                Protocol::OpenAi,
                "https://api.deepseek.com/v1",
                bearer.clone(),
            ),
            (
                "xai",
                Protocol::OpenAi,
                "https://api.x.ai/v1",
                bearer.clone(),
            ),
            (
                "openrouter",
                Protocol::OpenAi,
                "https://openrouter.ai/api/v1",
                bearer.clone(),
            ),
            (
                "perplexity",
                Protocol::OpenAi,
                "https://api.perplexity.ai",
                bearer.clone(),
            ),
            (
                "cerebras",
                Protocol::OpenAi,
                "https://api.cerebras.ai/v1",
                bearer.clone(),
            ),
            (
                "nvidia",
                Protocol::OpenAi,
                "https://integrate.api.nvidia.com/v1",
                bearer.clone(),
            ),
            (
                "gemini",
                Protocol::Gemini,
                "https://generativelanguage.googleapis.com/v1beta",
                KeyPlacement::Header(http::HeaderName::from_static("x-goog-api-key")),
            ),
            (
                "cohere",
                Protocol::Cohere,
                "https://api.cohere.com",
                bearer.clone(),
            ),
        ] {
            let p = load(&format!("{{ preset: {name}, api_key: k }}"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(p.protocol, protocol, "{name}");
            assert_eq!(p.base_url.to_string().trim_end_matches('/'), base, "{name}");
            assert_eq!(p.key_placement, key, "{name}");
            assert_eq!(p.azure_api_version, None, "{name}");
            // A hosted preset without a key is refused, naming the path.
            let err = load(&format!("{{ preset: {name} }}")).unwrap_err();
            assert!(
                err.contains("providers.p.api_key: required by preset"),
                "{name}: {err}"
            );
        }
        for (name, base) in [
            ("vllm", "http://localhost:8000/v1"),
            ("ollama", "http://localhost:11434/v1"),
            ("tgi", "http://localhost:8080/v1"),
            ("lmstudio", "http://localhost:1234/v1"),
        ] {
            let p =
                load(&format!("{{ preset: {name} }}")).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(p.protocol, Protocol::OpenAi, "{name}");
            assert_eq!(p.base_url.to_string().trim_end_matches('/'), base, "{name}");
            assert!(p.api_key.is_none(), "{name}: local servers need no key");
        }
        assert_eq!(super::PRESETS.len(), 19, "every preset is tested");
    }

    #[test]
    fn fields_beside_the_preset_win() {
        let p = load("{ preset: vllm, base_url: \"http://gpu-1:9000/v1\", api_key: k, api_key_header: x-key }").unwrap();
        assert_eq!(p.base_url, "http://gpu-1:9000/v1");
        assert_eq!(p.key_placement, header("x-key"));
        let p = load("{ preset: ollama, protocol: anthropic }").unwrap();
        assert_eq!(p.protocol, Protocol::Anthropic);
        let err = load("{ preset: opnai, base_url: \"http://x\" }").unwrap_err();
        assert!(
            err.contains("providers.p.preset: unknown preset 'opnai'"),
            "{err}"
        );
    }

    #[test]
    fn azure_uses_deployment_urls_an_api_version_and_the_api_key_header() {
        let base = "base_url: \"https://res.openai.azure.com\"";
        let p = load(&format!("{{ preset: azure, {base}, api_key: k }}")).unwrap();
        assert_eq!(p.protocol, Protocol::OpenAi);
        assert_eq!(p.key_placement, header("api-key"));
        assert_eq!(p.azure_api_version.as_deref(), Some("2024-10-21"));
        let p = load(&format!(
            "{{ preset: azure, {base}, api_key: k, azure: {{ api_version: 2025-01-01-preview }} }}"
        ))
        .unwrap();
        assert_eq!(p.azure_api_version.as_deref(), Some("2025-01-01-preview"));
        // Entra ID: a bearer token instead of the key.
        let p = load(&format!(
            "{{ preset: azure, {base}, api_key: t, api_key_header: authorization }}"
        ))
        .unwrap();
        assert_eq!(p.key_placement, KeyPlacement::Bearer);
        // Azure's v1 API: plain OpenAI paths, no version.
        let p = load(
            "{ preset: azure, base_url: \"https://res.openai.azure.com/openai/v1\", api_key: k }",
        )
        .unwrap();
        assert_eq!(p.azure_api_version, None);
        // Without the preset, an `azure:` block alone makes it Azure.
        let p = load(&format!(
            "{{ {base}, api_key: k, api_key_header: api-key, azure: {{}} }}"
        ))
        .unwrap();
        assert_eq!(p.azure_api_version.as_deref(), Some("2024-10-21"));
        let err = load("{ preset: azure, api_key: k }").unwrap_err();
        assert!(
            err.contains("providers.p.base_url: required by preset 'azure'"),
            "{err}"
        );
    }
}
