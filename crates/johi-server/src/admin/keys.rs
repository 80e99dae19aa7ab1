//! `/admin/v1/keys`: issue, list, read and revoke virtual API keys at run time.
//!
//! A created key is written to the key store, then added to the in-memory map the
//! authenticator reads: it authenticates from the next request, with no reload. Revocation
//! goes the same way (store, then map). The secret is returned once, in the create response;
//! only its hash and a redacted form are kept.

use std::time::SystemTime;

use axum::extract::rejection::{BytesRejection, FailedToBufferBody, PathRejection};
use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use indexmap::IndexMap;
use johi_auth::key::{generate, redacted};
use johi_auth::ApiKeyEntry;
use johi_keystore::{KeyRecord, KeyStoreError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::runtime_keys::{resolve, RuntimeKeys};
use super::{json, AdminError, AdminState};

/// `POST /admin/v1/keys` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    /// Stable ID; generated from the key's hash when absent.
    id: Option<String>,
    /// `organization[/team[/project]]`: from the config's `tenants:` or created at run time.
    owner: String,
    user: Option<String>,
    allowed_models: Option<Vec<String>>,
    allowed_routes: Option<Vec<String>>,
    /// RFC 3339 UTC.
    expires_at: Option<String>,
    #[serde(default)]
    metadata: IndexMap<String, String>,
}

impl AdminState {
    /// The run-time keys, or why there are none (the admin API runs only with them, so this
    /// is a bug guard rather than a configuration state).
    pub(super) fn runtime_keys(&self) -> Result<&RuntimeKeys, AdminError> {
        self.loader
            .keys
            .as_deref()
            .ok_or_else(|| AdminError::Internal {
                message: "the key store is not open".into(),
            })
    }
}

/// `POST /admin/v1/keys`: issues a key; the response carries the secret, once.
pub(super) async fn create(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let keys = state.runtime_keys()?;
    let body = read_body(body)?;
    let request: CreateKey = parse_json(&body)?;
    let runtime = state.shared.runtime.load_full();
    let config = &runtime.config;
    let generated = generate().map_err(|message| AdminError::Internal { message })?;
    let hash = generated.hash.to_string();
    let id = request.id.unwrap_or_else(|| {
        // `sha256:` + the first 12 hex digits: unique in practice, and says nothing of the key.
        format!("key_{}", &hash[7..19])
    });
    if config.auth.authenticator.has_key_id(&id) {
        return Err(AdminError::Conflict {
            message: format!("key ID '{id}' is used by a key in the config file"),
            code: "key_id_taken",
        });
    }
    let record = KeyRecord {
        id: id.clone(),
        hash,
        redacted: redacted(&generated.secret),
        owner: request.owner,
        user: request.user,
        allowed_models: request.allowed_models,
        allowed_routes: request.allowed_routes,
        expires_at: request.expires_at,
        metadata: request.metadata,
        created_at: now_rfc3339(),
        revoked_at: None,
    };
    let entry = resolve(&record, config).map_err(invalid_fields)?;
    let changes = keys.lock().await;
    keys.db.insert(record.clone()).await.map_err(store_error)?;
    keys.store.insert(entry);
    drop(changes);
    tracing::info!(key = %id, owner = %record.owner, "admin: key created");
    let mut view = record_view(&record);
    view["key"] = Value::String(generated.secret);
    Ok(json(StatusCode::CREATED, view))
}

/// `GET /admin/v1/keys`: every key, issued here or in the config; never a secret.
pub(super) async fn list(State(state): State<AdminState>) -> Result<Response, AdminError> {
    let keys = state.runtime_keys()?;
    let runtime = state.shared.runtime.load_full();
    let mut data: Vec<Value> = runtime
        .config
        .auth
        .authenticator
        .keys()
        .map(config_view)
        .collect();
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    data.extend(keys.db.records().iter().map(record_view));
    Ok(json(
        StatusCode::OK,
        json!({"object": "list", "data": data}),
    ))
}

/// `GET /admin/v1/keys/{id}`.
pub(super) async fn get_one(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, AdminError> {
    let keys = state.runtime_keys()?;
    let id = key_id(id)?;
    if let Some(record) = keys.db.get(&id) {
        return Ok(json(StatusCode::OK, record_view(&record)));
    }
    let runtime = state.shared.runtime.load_full();
    let configured = runtime
        .config
        .auth
        .authenticator
        .keys()
        .find(|k| k.id == id);
    match configured {
        Some(entry) => Ok(json(StatusCode::OK, config_view(entry))),
        None => Err(key_not_found(&id)),
    }
}

/// `POST /admin/v1/keys/{id}/revoke`: refused from the next request on. Revoking a revoked
/// key changes nothing and answers the same.
pub(super) async fn revoke(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, AdminError> {
    let keys = state.runtime_keys()?;
    let id = key_id(id)?;
    let runtime = state.shared.runtime.load_full();
    if keys.db.get(&id).is_none() && runtime.config.auth.authenticator.has_key_id(&id) {
        return Err(AdminError::Conflict {
            message: format!(
                "key '{id}' is defined in the config file: set `revoked: true` on it there"
            ),
            code: "key_in_config",
        });
    }
    let changes = keys.lock().await;
    let record = keys
        .db
        .revoke(&id, now_rfc3339())
        .await
        .map_err(store_error)?
        .ok_or_else(|| key_not_found(&id))?;
    match johi_auth::KeyHash::parse(&record.hash) {
        Ok(hash) => keys.store.remove(&hash),
        Err(e) => tracing::error!(key = %id, error = %e, "a stored key has a malformed hash"),
    }
    drop(changes);
    tracing::info!(key = %id, "admin: key revoked");
    Ok(json(StatusCode::OK, record_view(&record)))
}

/// The `{id}` path segment, or a 400 if it is not valid percent-encoded UTF-8.
fn key_id(id: Result<Path<String>, PathRejection>) -> Result<String, AdminError> {
    id.map(|Path(id)| id).map_err(|e| AdminError::BadRequest {
        message: format!("the key ID in the path is not valid: {e}"),
        param: Some("id".into()),
        code: "invalid_value",
    })
}

/// The request body, or why it could not be read (too large: 413).
pub(super) fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, AdminError> {
    body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            AdminError::TooLarge {
                limit: super::MAX_BODY_BYTES,
            }
        }
        other => AdminError::BadRequest {
            message: format!("the request body could not be read: {other}"),
            param: None,
            code: "invalid_body",
        },
    })
}

/// Parses a JSON body; a malformed one is a 400 naming the field at fault.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        AdminError::BadRequest {
            message: format!("the request body is not valid: {inner}"),
            param: (path != ".").then_some(path),
            code: "invalid_json",
        }
    })
}

/// Config validation's `field: message` errors as one 400 naming the first field.
fn invalid_fields(errors: Vec<String>) -> AdminError {
    let param = errors
        .first()
        .and_then(|e| e.split_once(':'))
        .map(|(field, _)| field.to_owned());
    AdminError::BadRequest {
        message: errors.join("; "),
        param,
        code: "invalid_value",
    }
}

/// A key store failure as the admin API reports it.
pub(super) fn store_error(error: KeyStoreError) -> AdminError {
    match error {
        KeyStoreError::Duplicate(id) => AdminError::Conflict {
            message: format!("key ID '{id}' is already taken"),
            code: "key_id_taken",
        },
        KeyStoreError::DuplicateTenant(path) => AdminError::Conflict {
            message: format!("tenant '{path}' already exists"),
            code: "tenant_exists",
        },
        KeyStoreError::Task(e) => AdminError::Internal {
            message: format!("the key store task failed: {e}"),
        },
        e @ (KeyStoreError::Sqlite(_)
        | KeyStoreError::Postgres(_)
        | KeyStoreError::Io(_)
        | KeyStoreError::Malformed(_)) => {
            tracing::error!(error = %e, "admin: key store failure");
            AdminError::Unavailable {
                message: format!("the key store could not be written: {e}"),
                code: "key_store_unavailable",
            }
        }
    }
}

fn key_not_found(id: &str) -> AdminError {
    AdminError::NotFound {
        message: format!("No key with ID '{id}'"),
        code: "key_not_found",
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A stored key as the API shows it: everything but the secret and the hash.
fn record_view(record: &KeyRecord) -> Value {
    json!({
        "object": "api_key",
        "id": record.id,
        "source": "admin",
        "redacted_key": record.redacted,
        "owner": record.owner,
        "user": record.user,
        "allowed_models": record.allowed_models,
        "allowed_routes": record.allowed_routes,
        "metadata": record.metadata,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked": record.is_revoked(),
        "revoked_at": record.revoked_at,
    })
}

/// A config key as the API shows it. Config keys have no redacted form (only their hash was
/// ever given to Johi) and no creation time.
fn config_view(entry: &ApiKeyEntry) -> Value {
    let who = &entry.identity;
    let owner: Vec<&str> = [&who.organization, &who.team, &who.project]
        .into_iter()
        .filter_map(|p| p.as_deref())
        .collect();
    let metadata: IndexMap<&str, &str> = entry
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    json!({
        "object": "api_key",
        "id": entry.id,
        "source": "config",
        "redacted_key": null,
        "owner": owner.join("/"),
        "user": who.user,
        "allowed_models": who.allowed_models,
        "allowed_routes": null,
        "metadata": metadata,
        "created_at": null,
        "expires_at": entry.expires_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        "revoked": entry.revoked,
        "revoked_at": null,
    })
}
