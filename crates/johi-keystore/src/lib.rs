//! Johi's key store: the virtual API keys and the tenants created through the admin API,
//! persisted so that they survive a restart (keys as hashes only).
//!
//! # What is kept
//! A [`KeyRecord`] holds a key's ID, its `sha256:` digest, a redacted form for listings
//! (`sk-johi-AbCd…wxyz`), its owner and allowances, and when it was created, expires and was
//! revoked. The secret itself is never written: it is returned once, by the admin API's
//! create call, and exists afterwards only where the operator put it. A [`TenantRecord`] is
//! an organisation, team or project created at run time (its path and model allowance); the
//! gateway merges these with the config's `tenants:`.
//!
//! # Where it is kept
//! One SQLite file (WAL mode, `synchronous=FULL`: a created or revoked key survives a power
//! cut), the single-node default; or a PostgreSQL table that several gateway replicas share
//! ([`KeyDb::is_shared`]): each replica then re-reads it with [`KeyDb::refresh`] on an
//! interval, so a key issued or revoked through one replica reaches the others within it.
//!
//! # Reads never touch the database
//! Every record is loaded at [`KeyDb::open`] and kept in memory; a change is written to the
//! database first and applied in memory only once committed. Changes and refreshes take
//! turns (one async lock), so a refresh never undoes a change made while it read. The
//! request path does not use this crate at all: it reads the resolved keys from
//! `johi_auth::KeyStore`, which the admin API updates after each change here.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

mod postgres;
mod sqlite;

/// The table, the same in both databases (text columns; lists and maps as JSON).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS johi_api_keys (
    id             TEXT PRIMARY KEY,
    hash           TEXT NOT NULL UNIQUE,
    redacted       TEXT NOT NULL,
    owner          TEXT NOT NULL,
    user_id        TEXT,
    allowed_models TEXT,
    allowed_routes TEXT,
    expires_at     TEXT,
    metadata       TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    revoked_at     TEXT
);
CREATE TABLE IF NOT EXISTS johi_tenants (
    path           TEXT PRIMARY KEY,
    allowed_models TEXT,
    created_at     TEXT NOT NULL
);
";

/// The tenant table's columns in the order every statement reads and writes them.
const TENANT_COLUMNS: &str = "path, allowed_models, created_at";

/// The columns in the order every statement reads and writes them.
const COLUMNS: &str = "id, hash, redacted, owner, user_id, allowed_models, allowed_routes, \
                       expires_at, metadata, created_at, revoked_at";

/// Where the keys are kept.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyStoreBackend {
    /// A SQLite file (created with its directory if missing): one gateway.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database shared by several gateway replicas (no TLS, as for the ledger).
    Postgres {
        /// A `postgres://user:password@host:port/database` URL.
        url: String,
    },
}

impl fmt::Debug for KeyStoreBackend {
    /// Never prints the password in a PostgreSQL URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyStoreBackend::Sqlite { path } => {
                f.debug_struct("Sqlite").field("path", path).finish()
            }
            KeyStoreBackend::Postgres { url } => {
                let host = url.rfind('@').map_or("", |at| &url[at..]);
                f.debug_struct("Postgres")
                    .field("url", &format!("postgres://***{host}"))
                    .finish()
            }
        }
    }
}

/// One issued key, as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Stable ID, recorded in audit and usage records in place of the key.
    pub id: String,
    /// `sha256:<64 hex>` of the key: what a request's key is checked against.
    pub hash: String,
    /// The key shortened for display (`sk-johi-AbCd…wxyz`), so an operator can tell keys
    /// apart in a listing without the secret.
    pub redacted: String,
    /// `organization[/team[/project]]` the key speaks for.
    pub owner: String,
    /// End user the key belongs to.
    pub user: Option<String>,
    /// Models the key may call (`None`: whatever its tenants allow).
    pub allowed_models: Option<Vec<String>>,
    /// Routes the key may call (`None`: every route).
    pub allowed_routes: Option<Vec<String>>,
    /// RFC 3339 UTC instant after which the key is refused.
    pub expires_at: Option<String>,
    /// Labels for operators; never used for decisions.
    pub metadata: IndexMap<String, String>,
    /// RFC 3339 UTC instant the key was issued.
    pub created_at: String,
    /// RFC 3339 UTC instant the key was revoked; a revoked key is kept so listings show it.
    pub revoked_at: Option<String>,
}

impl KeyRecord {
    /// Whether the key has been revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// A record's columns as text, in [`COLUMNS`] order: what both backends bind.
type Row = [Option<String>; 11];

impl KeyRecord {
    fn to_row(&self) -> Result<Row, KeyStoreError> {
        Ok([
            Some(self.id.clone()),
            Some(self.hash.clone()),
            Some(self.redacted.clone()),
            Some(self.owner.clone()),
            self.user.clone(),
            self.allowed_models
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
            self.allowed_routes
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
            self.expires_at.clone(),
            Some(serde_json::to_string(&self.metadata)?),
            Some(self.created_at.clone()),
            self.revoked_at.clone(),
        ])
    }

    fn from_row(row: Row) -> Result<KeyRecord, KeyStoreError> {
        let [id, hash, redacted, owner, user, models, routes, expires_at, metadata, created_at, revoked_at] =
            row;
        let list = |text: Option<String>| -> Result<Option<Vec<String>>, KeyStoreError> {
            Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
        };
        Ok(KeyRecord {
            id: id.unwrap_or_default(),
            hash: hash.unwrap_or_default(),
            redacted: redacted.unwrap_or_default(),
            owner: owner.unwrap_or_default(),
            user,
            allowed_models: list(models)?,
            allowed_routes: list(routes)?,
            expires_at,
            metadata: serde_json::from_str(metadata.as_deref().unwrap_or("{}"))?,
            created_at: created_at.unwrap_or_default(),
            revoked_at,
        })
    }
}

/// One tenant created at run time, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// `organization[/team[/project]]`; its parent existed when it was created.
    pub path: String,
    /// Models its credentials are limited to (`None`: whatever its parents allow).
    pub allowed_models: Option<Vec<String>>,
    /// RFC 3339 UTC instant the tenant was created.
    pub created_at: String,
}

/// A tenant's columns as text, in [`TENANT_COLUMNS`] order.
type TenantRow = [Option<String>; 3];

impl TenantRecord {
    fn to_row(&self) -> Result<TenantRow, KeyStoreError> {
        Ok([
            Some(self.path.clone()),
            self.allowed_models
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
            Some(self.created_at.clone()),
        ])
    }

    fn from_row(row: TenantRow) -> Result<TenantRecord, KeyStoreError> {
        let [path, models, created_at] = row;
        Ok(TenantRecord {
            path: path.unwrap_or_default(),
            allowed_models: models.map(|t| serde_json::from_str(&t)).transpose()?,
            created_at: created_at.unwrap_or_default(),
        })
    }
}

/// Why a key store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The SQLite file could not be opened, read or written.
    #[error("key store sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL database could not be reached, read or written.
    #[error("key store postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The file's directory could not be created.
    #[error("key store file: {0}")]
    Io(#[from] std::io::Error),
    /// A stored list or map column is not the JSON this crate writes.
    #[error("key store: a stored record is malformed: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The blocking task running a SQLite call panicked or was cancelled.
    #[error("key store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Another stored key already has this ID or hash.
    #[error("a key with ID '{0}' (or the same hash) already exists")]
    Duplicate(String),
    /// Another stored tenant already has this path.
    #[error("a tenant '{0}' already exists")]
    DuplicateTenant(String),
}

/// One database, whichever it is.
enum Store {
    Sqlite(sqlite::Sqlite),
    // Boxed: the client's configuration is a few hundred bytes, the SQLite handle one pointer.
    Postgres(Box<postgres::Postgres>),
}

impl Store {
    async fn load(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        match self {
            Store::Sqlite(s) => s.load().await,
            Store::Postgres(p) => p.load().await,
        }
    }

    async fn insert(&self, record: &KeyRecord) -> Result<(), KeyStoreError> {
        match self {
            Store::Sqlite(s) => s.insert(record).await,
            Store::Postgres(p) => p.insert(record).await,
        }
    }

    async fn revoke(&self, id: &str, at: &str) -> Result<Option<KeyRecord>, KeyStoreError> {
        match self {
            Store::Sqlite(s) => s.revoke(id, at).await,
            Store::Postgres(p) => p.revoke(id, at).await,
        }
    }

    async fn load_tenants(&self) -> Result<Vec<TenantRecord>, KeyStoreError> {
        match self {
            Store::Sqlite(s) => s.load_tenants().await,
            Store::Postgres(p) => p.load_tenants().await,
        }
    }

    async fn insert_tenant(&self, record: &TenantRecord) -> Result<(), KeyStoreError> {
        match self {
            Store::Sqlite(s) => s.insert_tenant(record).await,
            Store::Postgres(p) => p.insert_tenant(record).await,
        }
    }

    async fn delete_tenant(&self, path: &str) -> Result<bool, KeyStoreError> {
        match self {
            Store::Sqlite(s) => s.delete_tenant(path).await,
            Store::Postgres(p) => p.delete_tenant(path).await,
        }
    }
}

/// The key store: a database and the records it holds, mirrored in memory. Cheap to clone;
/// clones share the database and the mirror.
#[derive(Clone)]
pub struct KeyDb {
    inner: Arc<Inner>,
}

struct Inner {
    backend: KeyStoreBackend,
    store: Store,
    records: Mutex<IndexMap<String, KeyRecord>>,
    /// The run-time tenants by path, in creation order (a parent before its children).
    tenants: Mutex<IndexMap<String, TenantRecord>>,
    /// Changes and refreshes take turns, so a refresh never replaces the mirror with a read
    /// made before a change that has since been applied to it.
    turn: tokio::sync::Mutex<()>,
}

impl fmt::Debug for KeyDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyDb")
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

impl KeyDb {
    /// Opens the database (creating the SQLite file and its directory, or the table), and
    /// loads every record.
    pub async fn open(backend: &KeyStoreBackend) -> Result<KeyDb, KeyStoreError> {
        let store = match backend {
            KeyStoreBackend::Sqlite { path } => Store::Sqlite(sqlite::Sqlite::open(path).await?),
            KeyStoreBackend::Postgres { url } => {
                Store::Postgres(Box::new(postgres::Postgres::open(url).await?))
            }
        };
        let records = index(store.load().await?);
        let tenants = index_tenants(store.load_tenants().await?);
        Ok(KeyDb {
            inner: Arc::new(Inner {
                backend: backend.clone(),
                store,
                records: Mutex::new(records),
                tenants: Mutex::new(tenants),
                turn: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Whether other processes may change the store (PostgreSQL): then [`KeyDb::refresh`]
    /// should run on an interval.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.backend, KeyStoreBackend::Postgres { .. })
    }

    /// Every record, in the order they were created.
    pub fn records(&self) -> Vec<KeyRecord> {
        self.mirror().values().cloned().collect()
    }

    /// The record with this ID.
    pub fn get(&self, id: &str) -> Option<KeyRecord> {
        self.mirror().get(id).cloned()
    }

    /// Re-reads every record and tenant, to see what other replicas changed.
    pub async fn refresh(&self) -> Result<(), KeyStoreError> {
        let _turn = self.inner.turn.lock().await;
        let records = index(self.inner.store.load().await?);
        let tenants = index_tenants(self.inner.store.load_tenants().await?);
        *self.mirror() = records;
        *lock(&self.inner.tenants) = tenants;
        Ok(())
    }

    /// Every run-time tenant, in creation order (so a parent comes before its children).
    pub fn tenants(&self) -> Vec<TenantRecord> {
        lock(&self.inner.tenants).values().cloned().collect()
    }

    /// Stores a new tenant; fails with [`KeyStoreError::DuplicateTenant`] if its path is
    /// taken. The caller checks that its parent exists. Once this returns `Ok` it is committed.
    pub async fn insert_tenant(&self, record: TenantRecord) -> Result<(), KeyStoreError> {
        let _turn = self.inner.turn.lock().await;
        if lock(&self.inner.tenants).contains_key(&record.path) {
            return Err(KeyStoreError::DuplicateTenant(record.path));
        }
        self.inner.store.insert_tenant(&record).await?;
        lock(&self.inner.tenants).insert(record.path.clone(), record);
        Ok(())
    }

    /// Deletes the tenant with this path; `false` if there was none. The caller checks that
    /// nothing references it.
    pub async fn delete_tenant(&self, path: &str) -> Result<bool, KeyStoreError> {
        let _turn = self.inner.turn.lock().await;
        let deleted = self.inner.store.delete_tenant(path).await?;
        lock(&self.inner.tenants).shift_remove(path);
        Ok(deleted)
    }

    /// Stores a new record; fails with [`KeyStoreError::Duplicate`] if its ID or hash is
    /// taken. Once this returns `Ok` the record is committed.
    pub async fn insert(&self, record: KeyRecord) -> Result<(), KeyStoreError> {
        let _turn = self.inner.turn.lock().await;
        if self.mirror().contains_key(&record.id) {
            return Err(KeyStoreError::Duplicate(record.id));
        }
        self.inner.store.insert(&record).await?;
        self.mirror().insert(record.id.clone(), record);
        Ok(())
    }

    /// Marks the key revoked at `at` (RFC 3339) and returns its record; a key already revoked
    /// keeps its first revocation time. `None` if no key has this ID. Asks the database, not
    /// the mirror, so a key issued through another replica can be revoked before this one
    /// has refreshed.
    pub async fn revoke(&self, id: &str, at: String) -> Result<Option<KeyRecord>, KeyStoreError> {
        let _turn = self.inner.turn.lock().await;
        let record = self.inner.store.revoke(id, &at).await?;
        if let Some(record) = &record {
            self.mirror().insert(record.id.clone(), record.clone());
        }
        Ok(record)
    }

    fn mirror(&self) -> std::sync::MutexGuard<'_, IndexMap<String, KeyRecord>> {
        lock(&self.inner.records)
    }
}

/// Locks a mirror. Its updates are single assignments: a poisoned lock is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn index(records: Vec<KeyRecord>) -> IndexMap<String, KeyRecord> {
    records.into_iter().map(|r| (r.id.clone(), r)).collect()
}

fn index_tenants(records: Vec<TenantRecord>) -> IndexMap<String, TenantRecord> {
    records.into_iter().map(|r| (r.path.clone(), r)).collect()
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
