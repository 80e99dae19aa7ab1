//! Keys issued through the admin API: the persisted records ([`KeyDb`]) and the resolved
//! entries the request path reads ([`KeyStore`]), kept in step.
//!
//! A record names its owner and models by name; what they mean (the tenants' model lists)
//! comes from the config. So the entries are resolved again whenever a config is loaded, and
//! a record whose owner or models the new config lacks is refused (and logged) until they
//! come back, exactly as a config key naming them would be refused.

use std::sync::Arc;

use johi_auth::{ApiKeyEntry, KeyStore};
use johi_config::raw::RawApiKey;
use johi_config::Config;
use johi_keystore::{KeyDb, KeyRecord};

/// The key store of one gateway process: opened at start, kept across reloads.
pub struct RuntimeKeys {
    /// The persisted records.
    pub db: KeyDb,
    /// What the authenticator consults on every request.
    pub store: KeyStore,
}

impl RuntimeKeys {
    /// Opens the SQLite file (creating it) and loads its records; entries are resolved when
    /// the first config is built.
    pub async fn open(path: &std::path::Path) -> Result<RuntimeKeys, String> {
        let db = KeyDb::open(path)
            .await
            .map_err(|e| format!("admin.key_store {}: {e}", path.display()))?;
        Ok(RuntimeKeys {
            db,
            store: KeyStore::new(),
        })
    }

    /// Makes `config`'s authenticator consult the run-time keys too. The authenticator is
    /// not yet shared when this runs (the config was just loaded), so nothing is copied.
    pub fn attach(&self, config: &mut Config) {
        let authenticator = Arc::make_mut(&mut config.auth.authenticator);
        *authenticator = std::mem::take(authenticator).with_key_store(self.store.clone());
    }

    /// Every live (unrevoked) record resolved against `config`; records that no longer
    /// resolve are left out, with a warning.
    pub fn resolve_all(&self, config: &Config) -> Vec<ApiKeyEntry> {
        self.db
            .records()
            .into_iter()
            .filter(|r| !r.is_revoked())
            .filter_map(|record| match resolve(&record, config) {
                Ok(entry) => Some(entry),
                Err(errors) => {
                    tracing::warn!(
                        key = %record.id,
                        errors = %errors.join("; "),
                        "an admin-issued key does not fit the current config and is refused until it does"
                    );
                    None
                }
            })
            .collect()
    }
}

/// One record as a key entry, checked exactly as a config key is: including that a key
/// limited to some models needs `authorize` in the pipeline, or the limit would not hold.
pub fn resolve(record: &KeyRecord, config: &Config) -> Result<ApiKeyEntry, Vec<String>> {
    let raw = RawApiKey {
        id: record.id.clone(),
        hash: record.hash.clone(),
        owner: record.owner.clone(),
        user: record.user.clone(),
        allowed_models: record.allowed_models.clone(),
        allowed_routes: record.allowed_routes.clone(),
        expires_at: record.expires_at.clone(),
        revoked: record.is_revoked(),
        metadata: record.metadata.clone(),
    };
    let entry = johi_config::auth::resolve_key(raw, &config.tenants, &config.models)?;
    let authorizes = config.pipeline.iter().any(|p| p.name == "authorize");
    if entry.identity.allowed_models.is_some() && !authorizes {
        return Err(vec![
            "allowed_models: the key would be limited to some models, but the pipeline has no 'authorize' step to enforce it".into(),
        ]);
    }
    Ok(entry)
}
