//! Johi's key store: the virtual API keys issued through the admin API, persisted so that
//! they survive a restart, as hashes only.
//!
//! # What is kept
//! A [`KeyRecord`] holds a key's ID, its `sha256:` digest, a redacted form for listings
//! (`sk-johi-AbCd…wxyz`), its owner and allowances, and when it was created, expires and was
//! revoked. The secret itself is never written: it is returned once, by the admin API's
//! create call, and exists afterwards only where the operator put it.
//!
//! # Where it is kept
//! One SQLite file (WAL mode, `synchronous=FULL`: a created or revoked key survives a power
//! cut). A PostgreSQL backend, for replicas that share keys, is not written yet.
//!
//! # Reads never touch the disk
//! Every record is loaded at [`KeyDb::open`] and kept in memory; a change is written to the
//! file first and applied in memory only once committed. The request path does not use this
//! crate at all: it reads the resolved keys from `johi_auth::KeyStore`, which the admin API
//! updates after each change here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indexmap::IndexMap;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

/// How long a write waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
";

const COLUMNS: &str = "id, hash, redacted, owner, user_id, allowed_models, allowed_routes, \
                       expires_at, metadata, created_at, revoked_at";

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

/// Why a key store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The SQLite file could not be opened, read or written.
    #[error("key store sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
}

/// The key store: the SQLite file and the records it holds, mirrored in memory. Cheap to
/// clone; clones share the file and the mirror.
#[derive(Clone)]
pub struct KeyDb {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    records: Mutex<IndexMap<String, KeyRecord>>,
}

impl std::fmt::Debug for KeyDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyDb")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl KeyDb {
    /// Opens (creating, with its directory) the SQLite file and its schema, and loads every
    /// record. Runs on the blocking pool.
    pub async fn open(path: &Path) -> Result<KeyDb, KeyStoreError> {
        let path = path.to_path_buf();
        let opened = path.clone();
        let (conn, records) = tokio::task::spawn_blocking(move || open_file(&opened)).await??;
        Ok(KeyDb {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
                records: Mutex::new(records),
            }),
        })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Every record, in the order they were created.
    pub fn records(&self) -> Vec<KeyRecord> {
        self.mirror().values().cloned().collect()
    }

    /// The record with this ID.
    pub fn get(&self, id: &str) -> Option<KeyRecord> {
        self.mirror().get(id).cloned()
    }

    /// Stores a new record; fails with [`KeyStoreError::Duplicate`] if its ID or hash is
    /// taken. Once this returns `Ok` the record is on disk.
    pub async fn insert(&self, record: KeyRecord) -> Result<(), KeyStoreError> {
        if self.mirror().contains_key(&record.id) {
            return Err(KeyStoreError::Duplicate(record.id));
        }
        let stored = record.clone();
        self.blocking(move |conn| {
            let inserted = conn.execute(
                &format!("INSERT INTO johi_api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![
                    stored.id,
                    stored.hash,
                    stored.redacted,
                    stored.owner,
                    stored.user,
                    stored.allowed_models.as_ref().map(serde_json::to_string).transpose()?,
                    stored.allowed_routes.as_ref().map(serde_json::to_string).transpose()?,
                    stored.expires_at,
                    serde_json::to_string(&stored.metadata)?,
                    stored.created_at,
                    stored.revoked_at,
                ],
            );
            match inserted {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(KeyStoreError::Duplicate(stored.id))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await?;
        self.mirror().insert(record.id.clone(), record);
        Ok(())
    }

    /// Marks the key revoked at `at` (RFC 3339) and returns its record; a key already revoked
    /// keeps its first revocation time. `None` if no key has this ID.
    pub async fn revoke(&self, id: &str, at: String) -> Result<Option<KeyRecord>, KeyStoreError> {
        let Some(mut record) = self.get(id) else {
            return Ok(None);
        };
        if record.is_revoked() {
            return Ok(Some(record));
        }
        let key = id.to_owned();
        let when = at.clone();
        self.blocking(move |conn| {
            conn.execute(
                "UPDATE johi_api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![key, when],
            )?;
            Ok(())
        })
        .await?;
        record.revoked_at = Some(at);
        self.mirror().insert(record.id.clone(), record.clone());
        Ok(Some(record))
    }

    fn mirror(&self) -> std::sync::MutexGuard<'_, IndexMap<String, KeyRecord>> {
        // Updates of the mirror are single inserts: a poisoned lock is still consistent.
        self.inner
            .records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` with the connection on the blocking pool, so a slow disk never holds a
    /// runtime thread.
    async fn blocking<T, F>(&self, f: F) -> Result<T, KeyStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, KeyStoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside `f` left no transaction open: the connection is still sound.
            let conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&conn)
        })
        .await?
    }
}

fn open_file(path: &Path) -> Result<(Connection, IndexMap<String, KeyRecord>), KeyStoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let _mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(SCHEMA)?;
    let mut records = IndexMap::new();
    {
        let mut statement = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM johi_api_keys ORDER BY rowid"
        ))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let json_list = |i: usize| -> Result<Option<Vec<String>>, KeyStoreError> {
                let text: Option<String> = row.get(i)?;
                Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
            };
            let metadata: String = row.get(8)?;
            let record = KeyRecord {
                id: row.get(0)?,
                hash: row.get(1)?,
                redacted: row.get(2)?,
                owner: row.get(3)?,
                user: row.get(4)?,
                allowed_models: json_list(5)?,
                allowed_routes: json_list(6)?,
                expires_at: row.get(7)?,
                metadata: serde_json::from_str(&metadata)?,
                created_at: row.get(9)?,
                revoked_at: row.get(10)?,
            };
            records.insert(record.id.clone(), record);
        }
    }
    Ok((conn, records))
}

#[cfg(test)]
mod tests;
