//! PostgreSQL: one connection (reconnected on the next use after the server went away), for
//! replicas that share their keys.

use std::sync::{Arc, Mutex, PoisonError};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls};

use crate::{
    KeyRecord, KeyStoreError, Row, TenantRecord, TenantRow, COLUMNS, SCHEMA, TENANT_COLUMNS,
};

/// Serialises table creation across replicas starting at once (a concurrent `CREATE TABLE
/// IF NOT EXISTS` can fail on PostgreSQL's catalog). Any fixed number will do.
const SCHEMA_LOCK: i64 = 0x6a6f_6869_6b65_7973; // "johikeys"

pub(crate) struct Postgres {
    config: Config,
    client: Mutex<Option<Arc<Client>>>,
}

/// Connects without TLS (as the ledger does). The connection task ends when its `Client` is
/// dropped or the server goes away, so nothing needs to wait for it at shutdown.
async fn connect(config: &Config) -> Result<Client, KeyStoreError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "key store: PostgreSQL connection closed");
        }
    });
    Ok(client)
}

impl Postgres {
    /// Parses the URL, connects and creates the table.
    pub(crate) async fn open(url: &str) -> Result<Postgres, KeyStoreError> {
        let config: Config = url.parse()?;
        let mut client = connect(&config).await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await?;
        tx.batch_execute(SCHEMA).await?;
        tx.commit().await?;
        Ok(Postgres {
            config,
            client: Mutex::new(Some(Arc::new(client))),
        })
    }

    /// The connection, reconnecting if the last one closed.
    async fn client(&self) -> Result<Arc<Client>, KeyStoreError> {
        let current = self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(client) = current.filter(|c| !c.is_closed()) {
            return Ok(client);
        }
        let client = Arc::new(connect(&self.config).await?);
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
        Ok(client)
    }

    /// Every record, in creation order (then ID, for records of the same second).
    pub(crate) async fn load(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM johi_api_keys ORDER BY created_at, id"),
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| KeyRecord::from_row(read_row(row)?))
            .collect()
    }

    pub(crate) async fn insert(&self, record: &KeyRecord) -> Result<(), KeyStoreError> {
        let sql = format!(
            "INSERT INTO johi_api_keys ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        let duplicate = KeyStoreError::Duplicate(record.id.clone());
        self.insert_row(&sql, &record.to_row()?, duplicate).await
    }

    /// Every run-time tenant, in creation order (then path, for tenants of the same second).
    pub(crate) async fn load_tenants(&self) -> Result<Vec<TenantRecord>, KeyStoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {TENANT_COLUMNS} FROM johi_tenants ORDER BY created_at, path"),
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let cells: TenantRow = [row.try_get(0)?, row.try_get(1)?, row.try_get(2)?];
                TenantRecord::from_row(cells)
            })
            .collect()
    }

    pub(crate) async fn insert_tenant(&self, record: &TenantRecord) -> Result<(), KeyStoreError> {
        let sql = format!("INSERT INTO johi_tenants ({TENANT_COLUMNS}) VALUES ($1, $2, $3)");
        let duplicate = KeyStoreError::DuplicateTenant(record.path.clone());
        self.insert_row(&sql, &record.to_row()?, duplicate).await
    }

    pub(crate) async fn delete_tenant(&self, path: &str) -> Result<bool, KeyStoreError> {
        let deleted = self
            .client()
            .await?
            .execute("DELETE FROM johi_tenants WHERE path = $1", &[&path])
            .await?;
        Ok(deleted > 0)
    }

    /// Runs an insert; a uniqueness violation becomes `duplicate`.
    async fn insert_row(
        &self,
        sql: &str,
        row: &[Option<String>],
        duplicate: KeyStoreError,
    ) -> Result<(), KeyStoreError> {
        let params: Vec<&(dyn ToSql + Sync)> =
            row.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        match self.client().await?.execute(sql, &params).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(duplicate),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn revoke(
        &self,
        id: &str,
        at: &str,
    ) -> Result<Option<KeyRecord>, KeyStoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "UPDATE johi_api_keys SET revoked_at = COALESCE(revoked_at, $2) \
                     WHERE id = $1 RETURNING {COLUMNS}"
                ),
                &[&id, &at],
            )
            .await?;
        row.map(|r| KeyRecord::from_row(read_row(&r)?)).transpose()
    }
}

fn read_row(row: &tokio_postgres::Row) -> Result<Row, KeyStoreError> {
    let mut out: Row = Default::default();
    for (i, cell) in out.iter_mut().enumerate() {
        *cell = row.try_get(i)?;
    }
    Ok(out)
}
