//! `/admin/v1/tenants`: create and delete organisations, teams and projects at run time.
//!
//! A created tenant is written to the key store (next to the run-time keys), then merged into
//! the running config's tenant tree: keys can be issued for it, its model allowance narrows
//! theirs, and JWTs may name it, from the next request, with no reload. Tenants declared in
//! the config file are changed there, never here.

use std::time::SystemTime;

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use johi_config::TenantError;
use johi_keystore::{KeyStoreError, TenantRecord};
use serde::Deserialize;
use serde_json::json;

use super::keys::{parse_json, read_body, store_error};
use super::{json, AdminError, AdminState};

/// `POST /admin/v1/tenants` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    /// `organization[/team[/project]]`; the parent must exist.
    path: String,
    /// Models its credentials are limited to (`None`: whatever the parents allow).
    allowed_models: Option<Vec<String>>,
}

/// `POST /admin/v1/tenants`: creates an organisation, a team or a project.
pub(super) async fn create(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let keys = state.runtime_keys()?;
    let request: CreateTenant = parse_json(&read_body(body)?)?;
    let changes = keys.lock().await;
    if keys.db.is_shared() {
        // The parent may have been created through another replica since this one looked.
        keys.db.refresh().await.map_err(store_error)?;
        keys.apply_tenants(&state.shared);
    }
    let runtime = state.shared.runtime.load_full();
    let config = &runtime.config;
    let mut tenants = config.tenants.clone();
    tenants
        .add_runtime(
            &request.path,
            request.allowed_models.clone(),
            &config.models,
        )
        .map_err(|e| match e {
            TenantError::Invalid { field, message } => AdminError::bad_request(field, message),
            TenantError::NoParent(parent) => AdminError::BadRequest {
                message: format!("the parent tenant '{parent}' does not exist: create it first"),
                param: Some("path".into()),
                code: "parent_not_found",
            },
            TenantError::Exists => {
                store_error(KeyStoreError::DuplicateTenant(request.path.clone()))
            }
        })?;
    let authorizes = config.pipeline.iter().any(|p| p.name == "authorize");
    if request.allowed_models.is_some() && !authorizes {
        return Err(AdminError::bad_request(
            "allowed_models",
            "the tenant would be limited to some models, but the pipeline has no 'authorize' step to enforce it",
        ));
    }
    let record = TenantRecord {
        path: request.path,
        allowed_models: request.allowed_models,
        created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    keys.db
        .insert_tenant(record.clone())
        .await
        .map_err(store_error)?;
    keys.apply_tenants(&state.shared);
    drop(changes);
    tracing::info!(tenant = %record.path, "admin: tenant created");
    Ok(json(
        StatusCode::CREATED,
        json!({
            "object": "tenant",
            "path": record.path,
            "source": "runtime",
            "allowed_models": record.allowed_models,
            "created_at": record.created_at,
        }),
    ))
}

/// `DELETE /admin/v1/tenants/{path}` (the path URL-encoded: `acme%2Fsearch`): removes a
/// run-time tenant no live key and no child tenant refers to. Revoked keys do not hold it
/// (they never authenticate again; their records keep the owner's name for history).
pub(super) async fn delete(
    State(state): State<AdminState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, AdminError> {
    let keys = state.runtime_keys()?;
    let path = path.map(|Path(p)| p).map_err(|e| AdminError::BadRequest {
        message: format!("the tenant path in the URL is not valid: {e}"),
        param: Some("path".into()),
        code: "invalid_value",
    })?;
    let changes = keys.lock().await;
    if keys.db.is_shared() {
        // Another replica may have issued a key for it (or created a child) since this one
        // last looked.
        keys.db.refresh().await.map_err(store_error)?;
        keys.apply_tenants(&state.shared);
    }
    let runtime = state.shared.runtime.load_full();
    let tenants = &runtime.config.tenants;
    let stored = keys.db.tenants().iter().any(|t| t.path == path);
    if !tenants.contains(&path) && !stored {
        return Err(AdminError::NotFound {
            message: format!("No tenant '{path}'"),
            code: "tenant_not_found",
        });
    }
    if tenants.contains(&path) && !tenants.is_runtime(&path) {
        return Err(AdminError::Conflict {
            message: format!(
                "tenant '{path}' is declared in the config file: remove it there (and reload)"
            ),
            code: "tenant_in_config",
        });
    }
    let under = format!("{path}/");
    if tenants.has_children(&path) || keys.db.tenants().iter().any(|t| t.path.starts_with(&under)) {
        return Err(AdminError::Conflict {
            message: format!("tenant '{path}' has teams or projects under it: delete them first"),
            code: "tenant_has_children",
        });
    }
    let users: Vec<String> = keys
        .db
        .records()
        .into_iter()
        .filter(|k| !k.is_revoked() && (k.owner == path || k.owner.starts_with(&under)))
        .map(|k| k.id)
        .collect();
    if !users.is_empty() {
        return Err(AdminError::Conflict {
            message: format!(
                "tenant '{path}' is the owner of live keys ({}): revoke them first",
                users.join(", ")
            ),
            code: "tenant_in_use",
        });
    }
    keys.db.delete_tenant(&path).await.map_err(store_error)?;
    keys.apply_tenants(&state.shared);
    drop(changes);
    tracing::info!(tenant = %path, "admin: tenant deleted");
    Ok(json(
        StatusCode::OK,
        json!({"object": "tenant", "path": path, "deleted": true}),
    ))
}
