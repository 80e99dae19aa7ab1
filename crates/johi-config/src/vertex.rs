//! The `vertex:` block of a provider: where a Vertex AI endpoint is and how Johi signs in.

use std::path::PathBuf;

use johi_core::model::Protocol;

use crate::raw::RawProvider;

/// What the `vertex:` block contributes to a provider.
#[derive(Debug, Default)]
pub(crate) struct Vertex {
    /// `https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/google`,
    /// when project and location are given.
    pub base_url: Option<String>,
    /// The service-account key file, resolved and checked.
    pub credentials_file: Option<PathBuf>,
}

/// Checks the block against the protocol. A `vertex` provider needs `project` and
/// `location`, or an explicit `base_url` (which wins: tests and private endpoints use it); a
/// key file must parse as a service-account key, and excludes `api_key`. Other protocols may
/// not carry the block at all.
pub(crate) fn check(
    path: &str,
    protocol: Protocol,
    p: &RawProvider,
    resolve: &dyn Fn(&str) -> PathBuf,
    errors: &mut Vec<String>,
) -> Vertex {
    let Some(v) = &p.vertex else {
        if protocol == Protocol::Vertex && p.base_url.is_none() {
            errors.push(format!(
                "{path}.vertex: a vertex provider needs vertex.project and vertex.location, or a base_url"
            ));
        }
        return Vertex::default();
    };
    if protocol != Protocol::Vertex {
        errors.push(format!(
            "{path}.vertex: only allowed with protocol: vertex (this provider speaks {})",
            protocol.as_str()
        ));
        return Vertex::default();
    }
    let base_url = match (v.project.as_deref(), v.location.as_deref()) {
        (Some(project), Some(location)) => {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            };
            if !ok(project) || !ok(location) {
                errors.push(format!(
                    "{path}.vertex: project and location may hold only letters, digits, '-', '_' and '.'"
                ));
            }
            Some(format!(
                "https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/google"
            ))
        }
        // An explicit base_url wins (tests, private endpoints).
        _ if p.base_url.is_some() => None,
        _ => {
            errors.push(format!(
                "{path}.vertex: a vertex provider needs vertex.project and vertex.location, or a base_url"
            ));
            None
        }
    };
    let credentials_file = v.credentials_file.as_deref().map(resolve);
    if let Some(file) = &credentials_file {
        if let Err(e) = johi_auth::google::ServiceAccountKey::from_file(file) {
            errors.push(format!("{path}.vertex.credentials_file: {e}"));
        }
        if p.api_key.as_deref().is_some_and(|k| !k.is_empty()) || p.api_key_header.is_some() {
            errors.push(format!(
                "{path}.vertex.credentials_file: a service account replaces api_key and api_key_header; set only one"
            ));
        }
    }
    Vertex {
        base_url,
        credentials_file,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use johi_core::model::{KeyPlacement, Protocol};

    use crate::parse;

    fn env(_: &str) -> Option<String> {
        None
    }

    fn load(providers: &str, dir: &Path) -> Result<crate::Config, crate::ConfigErrors> {
        parse(
            &format!(
                "auth: {{ public_routes: [\"*\"] }}\nproviders:\n{providers}\nmodels:\n  m: {{ targets: [{{ provider: p, model: gemini-2.5-flash }}] }}\n"
            ),
            dir,
            &env,
        )
    }

    #[test]
    fn gemini_keys_go_in_x_goog_api_key() {
        let config = load(
            "  p: { protocol: gemini, base_url: \"https://generativelanguage.googleapis.com/v1beta\", api_key: k }",
            Path::new("."),
        )
        .unwrap();
        let p = &config.providers[0];
        assert_eq!(p.protocol, Protocol::Gemini);
        assert_eq!(
            p.key_placement,
            KeyPlacement::Header(http::HeaderName::from_static("x-goog-api-key"))
        );
    }

    #[test]
    fn a_vertex_base_url_is_built_from_project_and_location_unless_given() {
        let config = load(
            "  p: { protocol: vertex, api_key: k, vertex: { project: my-proj, location: europe-west4 } }",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            config.providers[0].base_url.to_string(),
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-proj/locations/europe-west4/publishers/google"
        );
        let config = load(
            "  p: { protocol: vertex, base_url: \"http://127.0.0.1:9/v1\", api_key: k, vertex: { project: a, location: b } }",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            config.providers[0].base_url.to_string(),
            "http://127.0.0.1:9/v1"
        );
    }

    #[test]
    fn vertex_mistakes_are_listed_with_their_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.json"), "{\"client_email\": \"x\"}").unwrap();
        for (providers, want) in [
            (
                "  p: { protocol: vertex, api_key: k }",
                "providers.p.vertex: a vertex provider needs vertex.project and vertex.location, or a base_url",
            ),
            (
                "  p: { protocol: vertex, vertex: { project: a } }",
                "providers.p.vertex: a vertex provider needs vertex.project and vertex.location, or a base_url",
            ),
            (
                "  p: { protocol: gemini, base_url: \"https://x/v1beta\", vertex: { project: a, location: b } }",
                "providers.p.vertex: only allowed with protocol: vertex (this provider speaks gemini)",
            ),
            (
                "  p: { protocol: vertex, vertex: { project: a, location: b, credentials_file: bad.json } }",
                "providers.p.vertex.credentials_file: not a service-account key file",
            ),
            (
                "  p: { protocol: vertex, vertex: { project: a, location: b, region: c } }",
                "providers.p.vertex.region: unknown field `region`",
            ),
        ] {
            let err = load(providers, dir.path()).unwrap_err().to_string();
            assert!(err.contains(want), "{providers}\n{err}");
        }
    }

    #[test]
    fn a_service_account_key_file_means_oauth_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let pem = include_str!("../../johi-auth/tests/fixtures/test-only-service-account.pem");
        let key = serde_json::json!({
            "client_email": "sa@p.iam.gserviceaccount.com", "private_key": pem,
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        std::fs::write(dir.path().join("sa.json"), key.to_string()).unwrap();
        let config = load(
            "  p: { protocol: vertex, vertex: { project: a, location: b, credentials_file: sa.json } }",
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            config.providers[0].key_placement,
            KeyPlacement::ServiceAccount(dir.path().join("sa.json"))
        );
        let err = load(
            "  p: { protocol: vertex, api_key: k, vertex: { project: a, location: b, credentials_file: sa.json } }",
            dir.path(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("set only one"), "{err}");
    }
}
