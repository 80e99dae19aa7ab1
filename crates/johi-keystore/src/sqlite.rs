//! SQLite: one connection, every call on the blocking pool so a slow disk never holds a
//! runtime thread.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{params_from_iter, Connection, OptionalExtension};

use crate::{
    KeyRecord, KeyStoreError, Row, TenantRecord, TenantRow, COLUMNS, SCHEMA, TENANT_COLUMNS,
};

/// How long a write waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

impl Sqlite {
    /// Opens (creating, with its directory) the file in WAL mode with `synchronous=FULL`, and
    /// the table.
    pub(crate) async fn open(path: &Path) -> Result<Sqlite, KeyStoreError> {
        let path = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, KeyStoreError> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let conn = Connection::open(&path)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            let _mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.execute_batch(SCHEMA)?;
            Ok(conn)
        })
        .await??;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Every record, in insertion order.
    pub(crate) async fn load(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        self.blocking(|conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM johi_api_keys ORDER BY rowid"
            ))?;
            let rows = statement
                .query_map([], read_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(KeyRecord::from_row).collect()
        })
        .await
    }

    pub(crate) async fn insert(&self, record: &KeyRecord) -> Result<(), KeyStoreError> {
        let row = record.to_row()?;
        let duplicate = KeyStoreError::Duplicate(record.id.clone());
        self.blocking(move |conn| {
            insert_row(
                conn,
                &format!(
                    "INSERT INTO johi_api_keys ({COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                &row,
                duplicate,
            )
        })
        .await
    }

    /// Every run-time tenant, in creation order.
    pub(crate) async fn load_tenants(&self) -> Result<Vec<TenantRecord>, KeyStoreError> {
        self.blocking(|conn| {
            let mut statement = conn.prepare(&format!(
                "SELECT {TENANT_COLUMNS} FROM johi_tenants ORDER BY rowid"
            ))?;
            let rows = statement
                .query_map([], |row| -> rusqlite::Result<TenantRow> {
                    Ok([row.get(0)?, row.get(1)?, row.get(2)?])
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(TenantRecord::from_row).collect()
        })
        .await
    }

    pub(crate) async fn insert_tenant(&self, record: &TenantRecord) -> Result<(), KeyStoreError> {
        let row = record.to_row()?;
        let duplicate = KeyStoreError::DuplicateTenant(record.path.clone());
        self.blocking(move |conn| {
            insert_row(
                conn,
                &format!("INSERT INTO johi_tenants ({TENANT_COLUMNS}) VALUES (?1, ?2, ?3)"),
                &row,
                duplicate,
            )
        })
        .await
    }

    pub(crate) async fn delete_tenant(&self, path: &str) -> Result<bool, KeyStoreError> {
        let path = path.to_owned();
        self.blocking(move |conn| {
            Ok(conn.execute("DELETE FROM johi_tenants WHERE path = ?1", [&path])? > 0)
        })
        .await
    }

    pub(crate) async fn revoke(
        &self,
        id: &str,
        at: &str,
    ) -> Result<Option<KeyRecord>, KeyStoreError> {
        let (id, at) = (id.to_owned(), at.to_owned());
        self.blocking(move |conn| {
            let row = conn
                .query_row(
                    &format!(
                        "UPDATE johi_api_keys SET revoked_at = COALESCE(revoked_at, ?2) \
                         WHERE id = ?1 RETURNING {COLUMNS}"
                    ),
                    [&id, &at],
                    read_row,
                )
                .optional()?;
            row.map(KeyRecord::from_row).transpose()
        })
        .await
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, KeyStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, KeyStoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside `f` left no transaction open: the connection is still sound.
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&conn)
        })
        .await?
    }
}

/// Runs an insert; a uniqueness violation becomes `duplicate`.
fn insert_row(
    conn: &Connection,
    sql: &str,
    row: &[Option<String>],
    duplicate: KeyStoreError,
) -> Result<(), KeyStoreError> {
    match conn.execute(sql, params_from_iter(row.iter())) {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(duplicate)
        }
        Err(e) => Err(e.into()),
    }
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let mut out: Row = Default::default();
    for (i, cell) in out.iter_mut().enumerate() {
        *cell = row.get(i)?;
    }
    Ok(out)
}
