//! PostgreSQL: a writer connection that inserts a whole batch with one statement (arrays
//! unnested into rows, so any batch size is one round trip and one prepared statement), and a
//! reader connection. Both reconnect on the next use after the server went away.

use std::sync::{Arc, Mutex, PoisonError};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::{stored, COLUMNS, POSTGRES_INDEXES, TABLE};
use crate::query::{spend_sql, Dialect, Param, SpendQuery, SpendRow, SUMS};
use crate::{LedgerError, UsageRecord};

/// Serialises schema creation across gateway replicas starting at once (a concurrent
/// `CREATE TABLE IF NOT EXISTS` can fail on PostgreSQL's catalog). Any fixed number will do.
const SCHEMA_LOCK: i64 = 0x6a6f_6869_6c65_6467; // "johiledg"

/// The writer's connection and its prepared insert.
pub(crate) struct Writer {
    config: Config,
    client: Option<(Client, Statement)>,
}

/// The readers' connection, shared: tokio-postgres pipelines concurrent queries on it.
pub(crate) struct Reader {
    config: Config,
    client: Mutex<Option<Arc<Client>>>,
}

/// Connects without TLS (see docs/ledger.md). The connection task ends when its `Client` is
/// dropped or the server goes away, so nothing needs to wait for it at shutdown.
async fn connect(config: &Config) -> Result<Client, LedgerError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "ledger: PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// Parses the URL, creates the schema, and returns both sides connected.
pub(crate) async fn open(url: &str) -> Result<(Writer, Reader), LedgerError> {
    let config: Config = url.parse()?;
    let mut client = connect(&config).await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(TABLE).await?;
    tx.batch_execute(POSTGRES_INDEXES).await?;
    tx.commit().await?;
    let insert = prepare_insert(&client).await?;
    let reader = Reader {
        client: Mutex::new(Some(Arc::new(connect(&config).await?))),
        config: config.clone(),
    };
    let writer = Writer {
        config,
        client: Some((client, insert)),
    };
    Ok((writer, reader))
}

async fn prepare_insert(client: &Client) -> Result<Statement, LedgerError> {
    let text = format!(
        "INSERT INTO johi_usage ({COLUMNS}) SELECT * FROM UNNEST(\
         $1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], \
         $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::INTEGER[], $13::BIGINT[], \
         $14::BIGINT[], $15::BIGINT[], $16::BIGINT[], $17::BIGINT[], $18::TEXT[])"
    );
    Ok(client.prepare(&text).await?)
}

impl Writer {
    pub(crate) async fn write(&mut self, batch: &[UsageRecord]) -> Result<(), LedgerError> {
        if !matches!(&self.client, Some((client, _)) if !client.is_closed()) {
            let client = connect(&self.config).await?;
            let insert = prepare_insert(&client).await?;
            self.client = Some((client, insert));
        }
        let Some((client, insert)) = &mut self.client else {
            return Err(LedgerError::Closed);
        };

        let at = column(batch, |r| r.at_unix_ms);
        let request_id = column(batch, |r| &*r.request_id);
        let organization = column(batch, |r| r.organization.as_deref());
        let team = column(batch, |r| r.team.as_deref());
        let project = column(batch, |r| r.project.as_deref());
        let user = column(batch, |r| r.user.as_deref());
        let key_id = column(batch, |r| r.key_id.as_deref());
        let api = column(batch, |r| r.api.as_ref());
        let model = column(batch, |r| &*r.model);
        let provider = column(batch, |r| r.provider.as_deref());
        let upstream_model = column(batch, |r| r.upstream_model.as_deref());
        let status = column(batch, |r| i32::from(r.status));
        let input = column(batch, |r| stored(r.input_tokens));
        let output = column(batch, |r| stored(r.output_tokens));
        let cached = column(batch, |r| stored(r.cached_input_tokens));
        let reasoning = column(batch, |r| stored(r.reasoning_tokens));
        let cost = column(batch, |r| r.cost_micros);
        let source = column(batch, |r| r.usage_source.as_str());
        let params: [&(dyn ToSql + Sync); 18] = [
            &at,
            &request_id,
            &organization,
            &team,
            &project,
            &user,
            &key_id,
            &api,
            &model,
            &provider,
            &upstream_model,
            &status,
            &input,
            &output,
            &cached,
            &reasoning,
            &cost,
            &source,
        ];
        // One statement is already atomic; the explicit transaction states the contract
        // (a batch is all or nothing) where a later change could add a second statement.
        let tx = client.transaction().await?;
        tx.execute(&*insert, &params).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// One field of every record: the array bound to one `UNNEST` argument.
fn column<'a, T>(batch: &'a [UsageRecord], field: impl Fn(&'a UsageRecord) -> T) -> Vec<T> {
    batch.iter().map(field).collect()
}

impl Reader {
    async fn client(&self) -> Result<Arc<Client>, LedgerError> {
        let current = self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match current {
            Some(client) if !client.is_closed() => Ok(client),
            _ => {
                let client = Arc::new(connect(&self.config).await?);
                *self.client.lock().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
                Ok(client)
            }
        }
    }

    pub(crate) async fn spend(&self, query: &SpendQuery) -> Result<Vec<SpendRow>, LedgerError> {
        let sql = spend_sql(query, Dialect::Postgres);
        let params: Vec<&(dyn ToSql + Sync)> = sql
            .params
            .iter()
            .map(|p| -> &(dyn ToSql + Sync) {
                match p {
                    Param::Int(v) => v,
                    Param::Text(s) => s,
                }
            })
            .collect();
        let groups = query.group_by.len();
        let client = self.client().await?;
        let rows = client.query(&sql.text, &params).await?;
        rows.iter()
            .map(|row| {
                let group = (0..groups)
                    .map(|i| row.try_get(i))
                    .collect::<Result<_, _>>()?;
                let mut sums = [0; SUMS];
                for (i, sum) in sums.iter_mut().enumerate() {
                    *sum = row.try_get(groups + i)?;
                }
                Ok(SpendRow::from_sums(group, sums))
            })
            .collect()
    }
}
