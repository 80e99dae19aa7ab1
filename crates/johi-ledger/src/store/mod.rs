//! The two stores behind one shape: a writer that commits a batch in one transaction, and a
//! reader with its own connection so queries never wait behind the writer.

use std::sync::Arc;

use crate::query::{SpendQuery, SpendRow};
use crate::{LedgerBackend, LedgerError, UsageRecord};

mod postgres;
mod sqlite;

/// The usage table, the same text for both backends (SQLite maps `BIGINT` to `INTEGER`).
/// Idempotent, so every start runs it. How each backend finds a time range in it differs:
/// PostgreSQL indexes it ([`POSTGRES_INDEXES`]), SQLite keeps marks instead (see
/// [`sqlite`]'s module docs).
const TABLE: &str = "
CREATE TABLE IF NOT EXISTS johi_usage (
    at_unix_ms BIGINT NOT NULL,
    request_id TEXT NOT NULL,
    organization TEXT,
    team TEXT,
    project TEXT,
    user_id TEXT,
    key_id TEXT,
    api TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT,
    upstream_model TEXT,
    status INTEGER NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL,
    usage_source TEXT NOT NULL
);
";

/// PostgreSQL's indexes on [`TABLE`]. Both grow at their end (time, and time within a
/// project), so a batch dirties a few pages. An index on `request_id` (random text) would
/// dirty a page per record and cost more CPU than the rest of the write put together
/// (measured with the load benchmark): a request is found by time range and request ID
/// instead.
const POSTGRES_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS johi_usage_at ON johi_usage (at_unix_ms);
CREATE INDEX IF NOT EXISTS johi_usage_project_at ON johi_usage (project, at_unix_ms);
";

/// The inserted columns, in the order both backends bind them.
const COLUMNS: &str = "at_unix_ms, request_id, organization, team, project, user_id, key_id, \
    api, model, provider, upstream_model, status, input_tokens, output_tokens, \
    cached_input_tokens, reasoning_tokens, cost_micros, usage_source";

/// Token counts are `u64` in Rust and `BIGINT` in the store; no real count reaches 2^63, but
/// saturate rather than wrap if one ever did.
fn stored(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The writing side, owned by the writer task.
#[allow(clippy::large_enum_variant, reason = "one per ledger")]
pub(crate) enum Writer {
    Sqlite(sqlite::Writer),
    Postgres(postgres::Writer),
}

/// The reading side, shared by every [`Ledger`](crate::Ledger) handle.
#[allow(clippy::large_enum_variant, reason = "one per ledger")]
pub(crate) enum Reader {
    Sqlite(sqlite::Reader),
    Postgres(postgres::Reader),
}

/// Connects, creates the schema and returns both sides.
pub(crate) async fn open(backend: &LedgerBackend) -> Result<(Writer, Reader), LedgerError> {
    match backend {
        LedgerBackend::Sqlite { path } => {
            let (writer, reader) = sqlite::open(path.clone()).await?;
            Ok((Writer::Sqlite(writer), Reader::Sqlite(reader)))
        }
        LedgerBackend::Postgres { url } => {
            let (writer, reader) = postgres::open(url).await?;
            Ok((Writer::Postgres(writer), Reader::Postgres(reader)))
        }
    }
}

impl Writer {
    /// Commits the whole batch in one transaction, or nothing of it.
    pub(crate) async fn write(&mut self, batch: Arc<Vec<UsageRecord>>) -> Result<(), LedgerError> {
        match self {
            Writer::Sqlite(writer) => writer.write(batch).await,
            Writer::Postgres(writer) => writer.write(&batch).await,
        }
    }
}

impl Reader {
    /// Runs a spend query; rows come back unsorted.
    pub(crate) async fn spend(&self, query: &SpendQuery) -> Result<Vec<SpendRow>, LedgerError> {
        match self {
            Reader::Sqlite(reader) => reader.spend(query).await,
            Reader::Postgres(reader) => reader.spend(query).await,
        }
    }
}
