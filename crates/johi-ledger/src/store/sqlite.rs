//! SQLite: one file in WAL mode, a writer connection and a reader connection, every call on
//! the blocking pool so a slow disk never holds a runtime thread.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::ToSqlOutput;
use rusqlite::{params_from_iter, Connection, ToSql};

use super::{stored, COLUMNS, SCHEMA};
use crate::query::{spend_sql, Dialect, Param, SpendQuery, SpendRow, SUMS};
use crate::{LedgerError, UsageRecord};

/// How long a connection waits for the other's lock (a WAL checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type Shared = Arc<Mutex<Connection>>;

/// The writer's connection.
pub(crate) struct Writer {
    conn: Shared,
}

/// The readers' connection; queries take turns on it, never on the writer's.
pub(crate) struct Reader {
    conn: Shared,
}

/// Runs `f` on the blocking pool with the connection.
async fn blocking<T, F>(conn: &Shared, f: F) -> Result<T, LedgerError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, LedgerError> + Send + 'static,
{
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        // A panic inside `f` rolled its transaction back while unwinding: the connection
        // itself is still sound.
        let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    })
    .await?
}

fn connect(path: &PathBuf) -> Result<Connection, LedgerError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Opens (creating) the file and the schema, then the reader.
pub(crate) async fn open(path: PathBuf) -> Result<(Writer, Reader), LedgerError> {
    let (writer, reader) = tokio::task::spawn_blocking(move || -> Result<_, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let writer = connect(&path)?;
        // WAL: readers and the writer do not block each other. FULL: a committed batch
        // survives a power cut, not only a crash (one fsync per batch, not per record).
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "ledger: SQLite refused WAL mode; readers will wait for the writer");
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.execute_batch(SCHEMA)?;
        let reader = connect(&path)?;
        Ok((writer, reader))
    })
    .await??;
    Ok((
        Writer {
            conn: Arc::new(Mutex::new(writer)),
        },
        Reader {
            conn: Arc::new(Mutex::new(reader)),
        },
    ))
}

impl Writer {
    pub(crate) async fn write(&mut self, batch: Arc<Vec<UsageRecord>>) -> Result<(), LedgerError> {
        blocking(&self.conn, move |conn| Ok(insert(conn, &batch)?)).await
    }
}

/// Rows per multi-row `INSERT`: one statement step for many records amortises SQLite's
/// per-statement work (reset, bind, unbind), about a sixth of a record's insert cost.
const ROWS_PER_STATEMENT: usize = 16;
/// Columns per record, as in [`COLUMNS`].
const COLUMNS_PER_ROW: usize = 18;

/// `INSERT INTO johi_usage (…) VALUES (?, …), (?, …)…` for `rows` records.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; COLUMNS_PER_ROW].join(", "));
    format!(
        "INSERT INTO johi_usage ({COLUMNS}) VALUES {}",
        vec![row; rows].join(", ")
    )
}

/// Binds `record` to the parameters starting at `first` (1-based), in [`COLUMNS`] order.
///
/// One typed call per column rather than a loop over `&dyn ToSql`: this runs for every
/// record, and the typed calls compile to the matching `sqlite3_bind_*` directly.
fn bind(
    statement: &mut rusqlite::Statement<'_>,
    first: usize,
    r: &UsageRecord,
) -> rusqlite::Result<()> {
    let s = statement;
    s.raw_bind_parameter(first, r.at_unix_ms)?;
    s.raw_bind_parameter(first + 1, r.request_id.as_str())?;
    s.raw_bind_parameter(first + 2, r.organization.as_deref())?;
    s.raw_bind_parameter(first + 3, r.team.as_deref())?;
    s.raw_bind_parameter(first + 4, r.project.as_deref())?;
    s.raw_bind_parameter(first + 5, r.user.as_deref())?;
    s.raw_bind_parameter(first + 6, r.key_id.as_deref())?;
    s.raw_bind_parameter(first + 7, r.api.as_str())?;
    s.raw_bind_parameter(first + 8, r.model.as_str())?;
    s.raw_bind_parameter(first + 9, r.provider.as_deref())?;
    s.raw_bind_parameter(first + 10, r.upstream_model.as_deref())?;
    s.raw_bind_parameter(first + 11, r.status)?;
    s.raw_bind_parameter(first + 12, stored(r.input_tokens))?;
    s.raw_bind_parameter(first + 13, stored(r.output_tokens))?;
    s.raw_bind_parameter(first + 14, stored(r.cached_input_tokens))?;
    s.raw_bind_parameter(first + 15, stored(r.reasoning_tokens))?;
    s.raw_bind_parameter(first + 16, r.cost_micros)?;
    s.raw_bind_parameter(first + 17, r.usage_source.as_str())?;
    const _: () = assert!(COLUMNS_PER_ROW == 18, "bind every column");
    Ok(())
}

fn insert(conn: &mut Connection, batch: &[UsageRecord]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut chunks = batch.chunks_exact(ROWS_PER_STATEMENT);
        let mut many = tx.prepare_cached(&insert_sql(ROWS_PER_STATEMENT))?;
        for chunk in &mut chunks {
            for (i, record) in chunk.iter().enumerate() {
                bind(&mut many, 1 + i * COLUMNS_PER_ROW, record)?;
            }
            many.raw_execute()?;
        }
        let mut one = tx.prepare_cached(&insert_sql(1))?;
        for record in chunks.remainder() {
            bind(&mut one, 1, record)?;
            one.raw_execute()?;
        }
    }
    tx.commit()
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Param::Int(v) => v.to_sql(),
            Param::Text(s) => s.to_sql(),
        }
    }
}

impl Reader {
    pub(crate) async fn spend(&self, query: &SpendQuery) -> Result<Vec<SpendRow>, LedgerError> {
        let sql = spend_sql(query, Dialect::Sqlite);
        let groups = query.group_by.len();
        blocking(&self.conn, move |conn| {
            let mut statement = conn.prepare_cached(&sql.text)?;
            let rows = statement.query_map(params_from_iter(&sql.params), |row| {
                let group = (0..groups)
                    .map(|i| row.get(i))
                    .collect::<rusqlite::Result<_>>()?;
                let mut sums = [0; SUMS];
                for (i, sum) in sums.iter_mut().enumerate() {
                    *sum = row.get(groups + i)?;
                }
                Ok(SpendRow::from_sums(group, sums))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_insert_statement_has_one_parameter_per_column_and_row() {
        assert_eq!(COLUMNS.split(',').count(), COLUMNS_PER_ROW);
        let sql = insert_sql(ROWS_PER_STATEMENT);
        assert_eq!(
            sql.matches('?').count(),
            COLUMNS_PER_ROW * ROWS_PER_STATEMENT
        );
    }
}
