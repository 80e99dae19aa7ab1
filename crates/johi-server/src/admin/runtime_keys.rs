//! Keys and tenants created through the admin API: the persisted records ([`KeyDb`]) and
//! the resolved entries the request path reads ([`KeyStore`], the config's merged tenant
//! tree), kept in step.
//!
//! A record names its owner and models by name; what they mean (the tenants' model lists)
//! comes from the config. So the entries are resolved again whenever a config is loaded, and
//! a record whose owner or models the new config lacks is refused (and logged) until they
//! come back, exactly as a config key naming them would be refused.

use std::sync::Arc;

use johi_auth::{ApiKeyEntry, KeyStore};
use johi_config::raw::RawApiKey;
use johi_config::{Config, KeyStoreTarget};
use johi_keystore::{KeyDb, KeyRecord, KeyStoreBackend};

use crate::Shared;

/// The key store of one gateway process: opened at start, kept across reloads.
pub struct RuntimeKeys {
    /// The persisted records.
    pub db: KeyDb,
    /// What the authenticator consults on every request.
    pub store: KeyStore,
    /// Held by whatever changes the store or rebuilds the map from it (create, revoke,
    /// refresh, reload), so a rebuild from an older read never drops a newer change.
    changes: tokio::sync::Mutex<()>,
}

impl RuntimeKeys {
    /// Opens the key store (creating the SQLite file or the table) and loads its records;
    /// entries are resolved when the first config is built.
    pub async fn open(target: &KeyStoreTarget) -> Result<RuntimeKeys, String> {
        let backend = match target {
            KeyStoreTarget::Sqlite(path) => KeyStoreBackend::Sqlite { path: path.clone() },
            KeyStoreTarget::Postgres(url) => KeyStoreBackend::Postgres { url: url.clone() },
        };
        // The error never includes the URL (it may hold a password).
        let db = KeyDb::open(&backend)
            .await
            .map_err(|e| format!("admin.key_store: {e}"))?;
        Ok(RuntimeKeys {
            db,
            store: KeyStore::new(),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    /// Takes the change lock (see the field); hold it from the database write to the map
    /// update.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    /// Re-reads a shared key store and re-resolves every key (and, when they changed, the
    /// run-time tenants) against the current config, so keys and tenants created or removed
    /// through another replica take effect here.
    pub async fn refresh(&self, shared: &Shared) -> Result<(), String> {
        let _changes = self.lock().await;
        let before = self.db.tenants();
        self.db.refresh().await.map_err(|e| e.to_string())?;
        if self.db.tenants() != before {
            self.apply_tenants(shared);
        } else {
            let config = shared.runtime.load_full().config.clone();
            self.store.replace(self.resolve_all(&config));
        }
        Ok(())
    }

    /// Merges the stored run-time tenants into `config.tenants` (the config's own win) and
    /// points its JWT verifier at the merged tree. Call with the change lock held.
    pub fn merge_tenants(&self, config: &mut Config) {
        let records = self.db.tenants();
        let runtime = records
            .iter()
            .map(|r| (r.path.as_str(), r.allowed_models.clone()));
        let (merged, skipped) = config.tenants.with_runtime(runtime, &config.models);
        for problem in skipped {
            tracing::warn!(%problem, "a run-time tenant does not fit the current config and is left out until it does");
        }
        config.tenants = merged;
        if let Some(jwt) = config.auth.authenticator.jwt() {
            jwt.settings().tenants.replace(&config.tenants.index());
        }
    }

    /// Makes the running config see the stored run-time tenants: merges them, re-resolves
    /// the run-time keys (whose owners and allowances depend on them) and swaps the runtime
    /// snapshot (same pipeline, new config). Call with the change lock held.
    pub fn apply_tenants(&self, shared: &Shared) {
        let current = shared.runtime.load_full();
        let mut config = Config::clone(&current.config);
        self.merge_tenants(&mut config);
        self.store.replace(self.resolve_all(&config));
        shared.runtime.store(Arc::new(current.with_config(config)));
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
