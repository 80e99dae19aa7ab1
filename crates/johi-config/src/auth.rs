//! `tenants:` and `auth:` → the validated tenant tree and the [`Authenticator`].
//!
//! Every credential resolves here, at load, to the [`Identity`] it speaks for: its tenants
//! checked to exist and its model allowance already intersected with theirs. A request then
//! only looks its key up.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;
use johi_auth::{
    ApiKeyEntry, Authenticator, CertificateName, KeyHash, MtlsIdentities, TenantIndex,
};
use johi_core::model::ModelRegistry;
use johi_core::{AuthMethod, Identity, Route, RouteSet};

use crate::raw::{RawApiKey, RawAuth, RawMtls, RawOrganization};

/// The tenant tree: organisations → teams → projects, each with an optional model allowance.
#[derive(Debug, Clone, Default)]
pub struct Tenants {
    /// Organisations by name, in configured order (then those created at run time).
    pub organizations: IndexMap<String, Organization>,
    /// Paths of the tenants created at run time (the admin API) rather than declared in the
    /// config file, so listings can say where each came from and a merge can be redone
    /// against a new config (see [`Tenants::with_runtime`]).
    pub runtime: BTreeSet<String>,
}

/// One organisation.
#[derive(Debug, Clone, Default)]
pub struct Organization {
    /// Models its credentials are limited to (`None`: any).
    pub allowed_models: Option<Vec<String>>,
    /// Teams by name.
    pub teams: IndexMap<String, Team>,
}

/// One team.
#[derive(Debug, Clone, Default)]
pub struct Team {
    /// Models its credentials are limited to (`None`: any).
    pub allowed_models: Option<Vec<String>>,
    /// Projects by name, with their model allowance.
    pub projects: IndexMap<String, Option<Vec<String>>>,
}

/// Validated `auth:` settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Checks credentials; shared by the `authenticate` processor and the `/v1/models` routes.
    pub authenticator: Arc<Authenticator>,
    /// Routes that accept requests without a credential.
    pub public_routes: RouteSet,
    /// Whether any credential is limited to some models (then `authorize` must run).
    pub restricts_models: bool,
}

impl Default for AuthConfig {
    /// Nothing public, no credentials: every request is refused.
    fn default() -> Self {
        AuthConfig {
            authenticator: Arc::new(Authenticator::default()),
            public_routes: RouteSet::NONE,
            restricts_models: false,
        }
    }
}

/// Validates `tenants:`; model names must be configured models.
pub(crate) fn tenants(
    raw: IndexMap<String, RawOrganization>,
    models: &ModelRegistry,
    errors: &mut Vec<String>,
) -> Tenants {
    let mut organizations = IndexMap::new();
    for (org_name, org) in raw {
        let path = format!("tenants.{org_name}");
        check_name(&org_name, &path, errors);
        let mut teams = IndexMap::new();
        for (team_name, team) in org.teams {
            let path = format!("{path}.teams.{team_name}");
            check_name(&team_name, &path, errors);
            let mut projects = IndexMap::new();
            for (project_name, project) in team.projects {
                let path = format!("{path}.projects.{project_name}");
                check_name(&project_name, &path, errors);
                let allowed = model_list(project.allowed_models, &path, models, errors);
                projects.insert(project_name, allowed);
            }
            let allowed_models = model_list(team.allowed_models, &path, models, errors);
            teams.insert(
                team_name,
                Team {
                    allowed_models,
                    projects,
                },
            );
        }
        let allowed_models = model_list(org.allowed_models, &path, models, errors);
        organizations.insert(
            org_name,
            Organization {
                allowed_models,
                teams,
            },
        );
    }
    Tenants {
        organizations,
        runtime: BTreeSet::new(),
    }
}

/// What validating `auth:` needs from the rest of the config.
pub(crate) struct Context<'a> {
    /// The validated tenant tree.
    pub tenants: &'a Tenants,
    /// The configured models.
    pub models: &'a ModelRegistry,
    /// Resolves a path relative to the config file's directory.
    pub resolve: &'a dyn Fn(&str) -> PathBuf,
    /// Whether the listener verifies client certificates (`server.tls.client_ca`).
    pub client_ca: bool,
}

/// Validates `auth:`. Its absence is an error: a gateway that serves without credentials
/// must say so (`public_routes: ["*"]`), never be open by omission.
pub(crate) fn auth(raw: Option<RawAuth>, cx: &Context<'_>, errors: &mut Vec<String>) -> AuthConfig {
    let Some(raw) = raw else {
        errors.push(
            "auth: missing. Add api_keys (see `johi keys generate`), jwt or mtls, or `auth: { public_routes: [\"*\"] }` to serve every route without credentials"
                .into(),
        );
        return AuthConfig::default();
    };
    let public_routes = route_list(&raw.public_routes, "auth.public_routes", errors);
    let mut keys = Vec::new();
    let (mut ids, mut hashes) = (HashSet::new(), HashSet::new());
    let mut restricts_models = false;
    for (i, key) in raw.api_keys.into_iter().enumerate() {
        let path = format!("auth.api_keys[{i}]");
        if !ids.insert(key.id.clone()) {
            errors.push(format!("{path}.id: '{}' is used by another key", key.id));
        }
        if let Some(entry) = api_key(key, &path, cx, errors) {
            if !hashes.insert(entry.hash.clone()) {
                errors.push(format!("{path}.hash: another key has the same hash"));
            }
            restricts_models |= entry.identity.allowed_models.is_some();
            keys.push(entry);
        }
    }
    let mut authenticator = Authenticator::new(keys, public_routes);
    if let Some(jwt) = raw.jwt {
        if let Some((verifier, restricts)) = crate::jwt::jwt(jwt, cx, errors) {
            restricts_models |= restricts;
            authenticator = authenticator.with_jwt(verifier);
        }
    }
    if let Some(raw_mtls) = raw.mtls {
        let (identities, restricts) = mtls(raw_mtls, cx, errors);
        restricts_models |= restricts;
        authenticator = authenticator.with_mtls(identities);
    }
    AuthConfig {
        authenticator: Arc::new(authenticator),
        public_routes,
        restricts_models,
    }
}

/// Resolves a key issued at run time (the admin API) exactly as a configured one: owner
/// against the tenant tree, models against the configured models, allowances intersected.
/// Each error starts with the field it is about (`owner: unknown organization 'globex'`).
pub fn resolve_key(
    key: RawApiKey,
    tenants: &Tenants,
    models: &ModelRegistry,
) -> Result<ApiKeyEntry, Vec<String>> {
    let mut errors = Vec::new();
    let no_files = |path: &str| PathBuf::from(path);
    let cx = Context {
        tenants,
        models,
        resolve: &no_files,
        client_ca: false,
    };
    let entry = api_key(key, "", &cx, &mut errors);
    match entry {
        Some(entry) if errors.is_empty() => Ok(entry),
        _ => Err(errors
            .into_iter()
            .map(|e| e.strip_prefix('.').map(str::to_owned).unwrap_or(e))
            .collect()),
    }
}

/// What a key and a certificate identity share: an owner, a user, model and route lists.
struct Grant {
    method: AuthMethod,
    id: String,
    owner: String,
    user: Option<String>,
    allowed_models: Option<Vec<String>>,
    allowed_routes: Option<Vec<String>>,
}

/// The identity a grant speaks for, its tenants checked and its allowance intersected;
/// `None` (with errors) if anything is wrong.
fn grant_identity(
    grant: Grant,
    path: &str,
    cx: &Context<'_>,
    errors: &mut Vec<String>,
) -> Option<Identity> {
    let before = errors.len();
    check_name(&grant.id, &format!("{path}.id"), errors);
    let (owner, inherited) = owner(&grant.owner, &format!("{path}.owner"), cx.tenants, errors);
    let own = model_list(grant.allowed_models, path, cx.models, errors);
    let allowed_models = inherited
        .into_iter()
        .chain(own)
        .reduce(|a, b| a.into_iter().filter(|m| b.contains(m)).collect());
    let allowed_routes = match grant.allowed_routes {
        Some(routes) => route_list(&routes, &format!("{path}.allowed_routes"), errors),
        None => RouteSet::ALL,
    };
    if let Some(user) = &grant.user {
        check_name(user, &format!("{path}.user"), errors);
    }
    if errors.len() > before {
        return None;
    }
    let [organization, team, project] = owner;
    Some(Identity {
        method: grant.method,
        credential_id: Some(grant.id),
        organization,
        team,
        project,
        user: grant.user,
        allowed_models,
        allowed_routes,
    })
}

fn api_key(
    key: RawApiKey,
    path: &str,
    cx: &Context<'_>,
    errors: &mut Vec<String>,
) -> Option<ApiKeyEntry> {
    let hash = KeyHash::parse(&key.hash)
        .map_err(|e| errors.push(format!("{path}.hash: {e}")))
        .ok();
    let expires_at = key.expires_at.as_deref().and_then(|t| {
        humantime::parse_rfc3339(t)
            .map_err(|e| {
                errors.push(format!(
                    "{path}.expires_at: '{t}' is not an RFC 3339 UTC instant like 2027-01-31T00:00:00Z ({e})"
                ))
            })
            .ok()
    });
    let identity = grant_identity(
        Grant {
            method: AuthMethod::ApiKey,
            id: key.id.clone(),
            owner: key.owner,
            user: key.user,
            allowed_models: key.allowed_models,
            allowed_routes: key.allowed_routes,
        },
        path,
        cx,
        errors,
    )?;
    Some(ApiKeyEntry {
        identity: Arc::new(identity),
        id: key.id,
        hash: hash?,
        expires_at,
        revoked: key.revoked,
        metadata: key.metadata.into_iter().collect(),
    })
}

/// Validates `auth.mtls`: the identities and whether any is limited to some models.
fn mtls(raw: RawMtls, cx: &Context<'_>, errors: &mut Vec<String>) -> (MtlsIdentities, bool) {
    if !cx.client_ca {
        errors.push(
            "auth.mtls: client certificates are only asked for with server.tls.client_ca; set it, or remove auth.mtls".into(),
        );
    }
    let mut identities = MtlsIdentities::default();
    let mut restricts = false;
    let mut ids = HashSet::new();
    for (i, entry) in raw.identities.into_iter().enumerate() {
        let path = format!("auth.mtls.identities[{i}]");
        if !ids.insert(entry.id.clone()) {
            errors.push(format!(
                "{path}.id: '{}' is used by another identity",
                entry.id
            ));
        }
        let name = match (entry.san, entry.cn) {
            (Some(san), None) if !san.is_empty() => Some(CertificateName::San(san)),
            (None, Some(cn)) if !cn.is_empty() => Some(CertificateName::CommonName(cn)),
            _ => {
                errors.push(format!("{path}: set exactly one of san and cn, not empty"));
                None
            }
        };
        let identity = grant_identity(
            Grant {
                method: AuthMethod::Mtls,
                id: entry.id,
                owner: entry.owner,
                user: entry.user,
                allowed_models: entry.allowed_models,
                allowed_routes: entry.allowed_routes,
            },
            &path,
            cx,
            errors,
        );
        if let (Some(name), Some(identity)) = (name, identity) {
            restricts |= identity.allowed_models.is_some();
            let shown = format!("{name:?}");
            if !identities.insert(name, Arc::new(identity)) {
                errors.push(format!("{path}: {shown} is mapped by another identity"));
            }
        }
    }
    (identities, restricts)
}

/// Resolves `org[/team[/project]]` against the tenant tree: the three names (absent levels
/// `None`) and the model allowances inherited from each level that sets one.
fn owner(
    text: &str,
    path: &str,
    tenants: &Tenants,
    errors: &mut Vec<String>,
) -> ([Option<String>; 3], Vec<Vec<String>>) {
    let parts: Vec<&str> = text.split('/').collect();
    let mut names = [None, None, None];
    let mut inherited = Vec::new();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        errors.push(format!(
            "{path}: '{text}' is not organization[/team[/project]]"
        ));
        return (names, inherited);
    }
    let Some(org) = tenants.organizations.get(parts[0]) else {
        errors.push(format!(
            "{path}: unknown organization '{}' (declare it under tenants:)",
            parts[0]
        ));
        return (names, inherited);
    };
    names[0] = Some(parts[0].to_owned());
    inherited.extend(org.allowed_models.clone());
    if let Some(team_name) = parts.get(1) {
        let Some(team) = org.teams.get(*team_name) else {
            errors.push(format!(
                "{path}: organization '{}' has no team '{team_name}'",
                parts[0]
            ));
            return (names, inherited);
        };
        names[1] = Some((*team_name).to_owned());
        inherited.extend(team.allowed_models.clone());
        if let Some(project_name) = parts.get(2) {
            let Some(project) = team.projects.get(*project_name) else {
                errors.push(format!(
                    "{path}: team '{}/{team_name}' has no project '{project_name}'",
                    parts[0]
                ));
                return (names, inherited);
            };
            names[2] = Some((*project_name).to_owned());
            inherited.extend(project.clone());
        }
    }
    (names, inherited)
}

impl Tenants {
    /// Every owner path with its inherited model allowance, for credentials whose tenants
    /// are only known at request time (JWTs).
    pub fn index(&self) -> TenantIndex {
        let mut paths = Vec::new();
        let narrow = johi_auth::tenants::intersect_models;
        for (org_name, org) in &self.organizations {
            paths.push((org_name.clone(), org.allowed_models.clone()));
            for (team_name, team) in &org.teams {
                let team_models = narrow(org.allowed_models.clone(), team.allowed_models.clone());
                paths.push((format!("{org_name}/{team_name}"), team_models.clone()));
                for (project_name, project) in &team.projects {
                    paths.push((
                        format!("{org_name}/{team_name}/{project_name}"),
                        narrow(team_models.clone(), project.clone()),
                    ));
                }
            }
        }
        paths.into_iter().collect()
    }
}

pub(crate) fn model_list(
    list: Option<Vec<String>>,
    path: &str,
    models: &ModelRegistry,
    errors: &mut Vec<String>,
) -> Option<Vec<String>> {
    let list = list?;
    for (i, m) in list.iter().enumerate() {
        if models.get(m).is_none() {
            errors.push(format!(
                "{path}.allowed_models[{i}]: unknown model '{m}' (declare it under models:)"
            ));
        }
    }
    Some(list)
}

fn route_list(list: &[String], path: &str, errors: &mut Vec<String>) -> RouteSet {
    let mut set = RouteSet::NONE;
    for (i, r) in list.iter().enumerate() {
        if r == "*" {
            set = RouteSet::ALL;
        } else if let Some(route) = Route::from_path(r) {
            set = set.with(route);
        } else {
            let known: Vec<_> = Route::ALL.iter().map(|r| r.path()).collect();
            errors.push(format!(
                "{path}[{i}]: unknown route '{r}' (known: *, {})",
                known.join(", ")
            ));
        }
    }
    set
}

/// Names end up in headers, logs and ledger keys: keep them plain.
pub(crate) fn check_name(name: &str, path: &str, errors: &mut Vec<String>) {
    let plain = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'));
    if !plain {
        errors.push(format!(
            "{path}: '{name}' must be 1-128 characters of letters, digits and - _ . : @"
        ));
    }
}
