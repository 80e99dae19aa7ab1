//! SQLite: one file in WAL mode, a writer connection and a reader connection, every call on
//! the blocking pool so a slow disk never holds a runtime thread.
//!
//! A request's row (`johi_usage_rows`) holds its time, request ID, status, tokens and cost,
//! and refers by ID to its *labels* (`johi_usage_labels`: tenant, key, API, model, provider,
//! upstream model, usage source), which consecutive requests share. That halves the columns
//! SQLite encodes per request and the bytes it writes. The writer remembers the labels'
//! IDs, so a request with labels already stored costs no lookup in the database. The view
//! `johi_usage` joins the two back into one row per request, for queries by hand.
//!
//! The usage table has no index. Each row is one insert into one B-tree that only grows at
//! its end; two indexes (on time, and on project and time) made that three inserts and about
//! a third of the ledger's CPU per request. A time range is found through
//! `johi_usage_marks` instead: the writer knows the row IDs a batch gets (SQLite gives a new
//! row the largest ID plus one; checked) and notes, per run of consecutive rows made in the
//! same minute, that minute and the rows' first and last row ID. A batch adds one or two
//! marks, whatever its size. A query reads the marks of the minutes it spans and then those
//! rows by row ID, checking every row's own time ([`spend_sql`]). A ledger written before
//! the marks gets marks for its rows the same way when it is first opened
//! ([`MIGRATE_TO_MARKS`]), and loses the indexes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::ToSqlOutput;
use rusqlite::{
    params, params_from_iter, Connection, OptionalExtension, ToSql, TransactionBehavior,
};

use super::stored;
use crate::query::{mark_minute, spend_sql, Dialect, Param, SpendQuery, SpendRow, SUMS};
use crate::{LedgerError, UsageRecord, UsageSource};

/// How long a connection waits for the other's lock (a WAL checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type Shared = Arc<Mutex<Connection>>;

/// The writer's connection and the label IDs it knows.
pub(crate) struct Writer {
    state: Arc<Mutex<(Connection, LabelIds)>>,
}

/// The readers' connection; queries take turns on it, never on the writer's.
pub(crate) struct Reader {
    conn: Shared,
}

/// The rows and their labels (see the module docs). The labels' index finds a label set not
/// in the writer's memory (one lookup per new set).
const ROWS_AND_LABELS: &str = "
CREATE TABLE IF NOT EXISTS johi_usage_labels (
    id INTEGER PRIMARY KEY,
    organization TEXT,
    team TEXT,
    project TEXT,
    user_id TEXT,
    key_id TEXT,
    api TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT,
    upstream_model TEXT,
    usage_source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS johi_usage_labels_all ON johi_usage_labels
    (model, key_id, organization, team, project, user_id, api, provider, upstream_model, usage_source);
CREATE TABLE IF NOT EXISTS johi_usage_rows (
    at_unix_ms INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    labels INTEGER NOT NULL,
    status INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_micros INTEGER NOT NULL
);
";

/// One row per request with every column, as the usage table had before the labels: for
/// queries by hand (docs/ledger.md).
const USAGE_VIEW: &str = "
CREATE VIEW IF NOT EXISTS johi_usage AS
    SELECT r.rowid AS row_id, r.at_unix_ms, r.request_id, l.organization, l.team, l.project,
        l.user_id, l.key_id, l.api, l.model, l.provider, l.upstream_model, r.status,
        r.input_tokens, r.output_tokens, r.cached_input_tokens, r.reasoning_tokens,
        r.cost_micros, l.usage_source
    FROM johi_usage_rows r JOIN johi_usage_labels l ON l.id = r.labels;
";

/// For a ledger written before the labels, whose `johi_usage` is a table of whole rows: a
/// label set per distinct combination, each row moved to `johi_usage_rows` with its row ID
/// kept (the marks name rows by ID), then the old table dropped. `IS` matches NULLs.
const MIGRATE_TO_LABELS: &str = "
INSERT INTO johi_usage_labels (organization, team, project, user_id, key_id, api, model,
        provider, upstream_model, usage_source)
    SELECT DISTINCT organization, team, project, user_id, key_id, api, model, provider,
        upstream_model, usage_source
    FROM johi_usage;
INSERT INTO johi_usage_rows (rowid, at_unix_ms, request_id, labels, status, input_tokens,
        output_tokens, cached_input_tokens, reasoning_tokens, cost_micros)
    SELECT u.rowid, u.at_unix_ms, u.request_id, l.id, u.status, u.input_tokens,
        u.output_tokens, u.cached_input_tokens, u.reasoning_tokens, u.cost_micros
    FROM johi_usage u JOIN johi_usage_labels l
        ON l.model = u.model AND l.key_id IS u.key_id AND l.organization IS u.organization
        AND l.team IS u.team AND l.project IS u.project AND l.user_id IS u.user_id
        AND l.api = u.api AND l.provider IS u.provider
        AND l.upstream_model IS u.upstream_model AND l.usage_source = u.usage_source;
DROP TABLE johi_usage;
";

/// The marks table (see the module docs) and its index, which grows at its end too.
const MARKS: &str = "
CREATE TABLE IF NOT EXISTS johi_usage_marks (
    minute INTEGER NOT NULL,
    first_row INTEGER NOT NULL,
    last_row INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS johi_usage_marks_minute ON johi_usage_marks (minute);
";

/// For a ledger written before the marks: a mark per run of consecutive rows (in row ID
/// order) in the same minute, floored as [`mark_minute`] does; then the indexes the marks
/// replace are dropped. A run is found as rows whose position overall minus their position
/// within their minute is the same (rows were written in batches, roughly in time order, so
/// runs are long and marks few).
const MIGRATE_TO_MARKS: &str = "
INSERT INTO johi_usage_marks (minute, first_row, last_row)
    SELECT minute, MIN(rowid), MAX(rowid)
    FROM (
        SELECT rowid, minute,
            ROW_NUMBER() OVER (ORDER BY rowid)
                - ROW_NUMBER() OVER (PARTITION BY minute ORDER BY rowid) AS run
        FROM (
            SELECT rowid, (at_unix_ms - (((at_unix_ms % 60000) + 60000) % 60000)) / 60000 AS minute
            FROM johi_usage
        )
    )
    GROUP BY minute, run;
DROP INDEX IF EXISTS johi_usage_at;
DROP INDEX IF EXISTS johi_usage_project_at;
";

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
        let mut writer = connect(&path)?;
        // WAL: readers and the writer do not block each other. FULL: a committed batch
        // survives a power cut, not only a crash (one fsync per batch, not per record).
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "ledger: SQLite refused WAL mode; readers will wait for the writer");
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        create_schema(&mut writer)?;
        let reader = connect(&path)?;
        Ok((writer, reader))
    })
    .await??;
    Ok((
        Writer {
            state: Arc::new(Mutex::new((writer, LabelIds::default()))),
        },
        Reader {
            conn: Arc::new(Mutex::new(reader)),
        },
    ))
}

/// Creates the tables, the marks and the view; a ledger from before the labels (whose
/// `johi_usage` is a table) gets its marks if it has none, then its labels. In one
/// transaction, so a crash half-way leaves the old ledger as it was.
fn create_schema(conn: &mut Connection) -> Result<(), LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let exists = |kind: &str, name: &str| -> rusqlite::Result<bool> {
        tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = ?1 AND name = ?2)",
            [kind, name],
            |row| row.get(0),
        )
    };
    let whole_rows = exists("table", "johi_usage")?;
    let had_marks = exists("table", "johi_usage_marks")?;
    tx.execute_batch(MARKS)?;
    if whole_rows && !had_marks {
        tx.execute_batch(MIGRATE_TO_MARKS)?;
    }
    tx.execute_batch(ROWS_AND_LABELS)?;
    if whole_rows {
        let rows: i64 = tx.query_row("SELECT COUNT(*) FROM johi_usage", [], |row| row.get(0))?;
        tracing::info!(
            rows,
            "ledger: moving the usage rows to the labelled layout (once)"
        );
        tx.execute_batch(MIGRATE_TO_LABELS)?;
    }
    tx.execute_batch(USAGE_VIEW)?;
    tx.commit()?;
    Ok(())
}

impl Writer {
    pub(crate) async fn write(&mut self, batch: Arc<Vec<UsageRecord>>) -> Result<(), LedgerError> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside rolled its transaction back while unwinding; `insert` forgets the
            // label IDs that transaction made, so both halves are still sound.
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            let (conn, labels) = &mut *state;
            Ok(insert(conn, labels, &batch)?)
        })
        .await?
    }
}

/// Rows per multi-row `INSERT`: one statement step for many records amortises SQLite's
/// per-statement work (reset, bind, unbind).
const ROWS_PER_STATEMENT: usize = 16;
/// A row's columns, as bound by [`bind`].
const ROW_COLUMNS: &str = "at_unix_ms, request_id, labels, status, input_tokens, \
    output_tokens, cached_input_tokens, reasoning_tokens, cost_micros";
/// Columns per row, as in [`ROW_COLUMNS`].
const COLUMNS_PER_ROW: usize = 9;

/// The two insert statements' text, built once: [`insert`] looks its statements up by it
/// in the connection's cache for every batch.
static INSERT_MANY: LazyLock<String> = LazyLock::new(|| insert_sql(ROWS_PER_STATEMENT));
static INSERT_ONE: LazyLock<String> = LazyLock::new(|| insert_sql(1));

/// `INSERT INTO johi_usage_rows (…) VALUES (?, …), (?, …)…` for `rows` records.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", ["?"; COLUMNS_PER_ROW].join(", "));
    format!(
        "INSERT INTO johi_usage_rows ({ROW_COLUMNS}) VALUES {}",
        vec![row; rows].join(", ")
    )
}

/// Most label sets the writer remembers; past it, it starts over (a set it forgot is found
/// again through the labels' index, never stored twice).
const REMEMBERED_LABELS: usize = 65_536;

/// What `johi_usage_labels` holds, as the writer last saw it: each label set's ID.
#[derive(Default)]
pub(crate) struct LabelIds {
    ids: HashMap<Labels, i64, foldhash::fast::RandomState>,
}

/// One record's labels (what its row refers to by ID).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Labels {
    organization: Option<Arc<str>>,
    team: Option<Arc<str>>,
    project: Option<Arc<str>>,
    user: Option<Arc<str>>,
    key_id: Option<Arc<str>>,
    api: Cow<'static, str>,
    model: Arc<str>,
    provider: Option<Arc<str>>,
    upstream_model: Option<Arc<str>>,
    usage_source: UsageSource,
}

impl Labels {
    fn of(r: &UsageRecord) -> Labels {
        Labels {
            organization: r.organization.clone(),
            team: r.team.clone(),
            project: r.project.clone(),
            user: r.user.clone(),
            key_id: r.key_id.clone(),
            api: r.api.clone(),
            model: r.model.clone(),
            provider: r.provider.clone(),
            upstream_model: r.upstream_model.clone(),
            usage_source: r.usage_source,
        }
    }
}

/// Whether two records have the same labels, without building them: consecutive records
/// mostly do, and their names are shared strings (compared by address first).
fn same_labels(a: &UsageRecord, b: &UsageRecord) -> bool {
    a.usage_source == b.usage_source
        && a.model == b.model
        && a.key_id == b.key_id
        && a.organization == b.organization
        && a.team == b.team
        && a.project == b.project
        && a.user == b.user
        && a.api == b.api
        && a.provider == b.provider
        && a.upstream_model == b.upstream_model
}

impl LabelIds {
    /// The ID of `record`'s labels, stored in `tx` if they are new; `added` collects what
    /// was remembered, to be forgotten if `tx` rolls back.
    fn id(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        record: &UsageRecord,
        added: &mut Vec<Labels>,
    ) -> rusqlite::Result<i64> {
        let labels = Labels::of(record);
        if let Some(&id) = self.ids.get(&labels) {
            return Ok(id);
        }
        let values = params![
            labels.organization.as_deref(),
            labels.team.as_deref(),
            labels.project.as_deref(),
            labels.user.as_deref(),
            labels.key_id.as_deref(),
            labels.api.as_ref(),
            &*labels.model,
            labels.provider.as_deref(),
            labels.upstream_model.as_deref(),
            labels.usage_source.as_str(),
        ];
        let found: Option<i64> = tx
            .prepare_cached(
                "SELECT id FROM johi_usage_labels WHERE model = ?7 AND key_id IS ?5 \
                 AND organization IS ?1 AND team IS ?2 AND project IS ?3 AND user_id IS ?4 \
                 AND api = ?6 AND provider IS ?8 AND upstream_model IS ?9 \
                 AND usage_source = ?10 LIMIT 1",
            )?
            .query_row(values, |row| row.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                tx.prepare_cached(
                    "INSERT INTO johi_usage_labels (organization, team, project, user_id, \
                     key_id, api, model, provider, upstream_model, usage_source) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?
                .execute(values)?;
                tx.last_insert_rowid()
            }
        };
        if self.ids.len() >= REMEMBERED_LABELS {
            self.ids.clear();
        }
        self.ids.insert(labels.clone(), id);
        added.push(labels);
        Ok(id)
    }
}

/// Binds `record` (whose labels have ID `labels`) to the parameters starting at `first`
/// (1-based), in [`ROW_COLUMNS`] order, skipping every parameter that already holds the
/// value: `held` is the record and labels ID the previous execution of the statement bound
/// there (`None`: bind every column, as on a statement just taken from the cache). SQLite
/// keeps bindings across executions, and consecutive records share their labels.
///
/// One typed call per column rather than a loop over `&dyn ToSql`: this runs for every
/// record, and the typed calls compile to the matching `sqlite3_bind_*` directly.
fn bind(
    statement: &mut rusqlite::Statement<'_>,
    first: usize,
    (record, labels): (&UsageRecord, i64),
    held: Option<(&UsageRecord, i64)>,
) -> rusqlite::Result<()> {
    let mut slots = Slots {
        statement,
        first,
        record,
        held: held.map(|(r, _)| r),
    };
    slots.int(0, |r| r.at_unix_ms)?;
    slots.text(1, |r| &*r.request_id)?;
    slots.id(2, labels, held.map(|(_, id)| id))?;
    slots.int(3, |r| i64::from(r.status))?;
    slots.int(4, |r| stored(r.input_tokens))?;
    slots.int(5, |r| stored(r.output_tokens))?;
    slots.int(6, |r| stored(r.cached_input_tokens))?;
    slots.int(7, |r| stored(r.reasoning_tokens))?;
    slots.int(8, |r| r.cost_micros)?;
    const _: () = assert!(COLUMNS_PER_ROW == 9, "bind every column");
    Ok(())
}

/// One record's parameters in a statement, and what the previous execution left in them.
struct Slots<'a, 's> {
    statement: &'a mut rusqlite::Statement<'s>,
    first: usize,
    record: &'a UsageRecord,
    held: Option<&'a UsageRecord>,
}

impl Slots<'_, '_> {
    fn int(&mut self, column: usize, field: fn(&UsageRecord) -> i64) -> rusqlite::Result<()> {
        self.put(column, field)
    }

    fn text(&mut self, column: usize, field: fn(&UsageRecord) -> &str) -> rusqlite::Result<()> {
        self.put(column, field)
    }

    /// A value that is not the record's own (its labels' ID), with what the slot holds.
    fn id(&mut self, column: usize, value: i64, held: Option<i64>) -> rusqlite::Result<()> {
        if held != Some(value) {
            self.statement
                .raw_bind_parameter(self.first + column, value)?;
        }
        Ok(())
    }

    /// Binds the record's `field` to its parameter unless the parameter already holds it.
    fn put<'r, T: ToSql + PartialEq + 'r>(
        &mut self,
        column: usize,
        field: fn(&'r UsageRecord) -> T,
    ) -> rusqlite::Result<()>
    where
        Self: 'r,
    {
        let value = field(self.record);
        if self.held.map(field).as_ref() != Some(&value) {
            self.statement
                .raw_bind_parameter(self.first + column, value)?;
        }
        Ok(())
    }
}

/// The marks for `batch`, whose rows are numbered from `first_row`: `(minute, first row,
/// last row)` per run of consecutive records made in the same minute.
fn marks(batch: &[UsageRecord], first_row: i64) -> Vec<(i64, i64, i64)> {
    let mut marks: Vec<(i64, i64, i64)> = Vec::new();
    for (row, record) in (first_row..).zip(batch) {
        let minute = mark_minute(record.at_unix_ms);
        match marks.last_mut() {
            Some((m, _, last)) if *m == minute => *last = row,
            _ => marks.push((minute, row, row)),
        }
    }
    marks
}

/// Inserts `batch` in one transaction. If it fails, the label IDs it remembered are
/// forgotten: the rows that gave them were rolled back with it.
fn insert(
    conn: &mut Connection,
    labels: &mut LabelIds,
    batch: &[UsageRecord],
) -> rusqlite::Result<()> {
    let mut added = Vec::new();
    let inserted = insert_rows(conn, labels, &mut added, batch);
    if inserted.is_err() {
        for forgotten in &added {
            labels.ids.remove(forgotten);
        }
    }
    inserted
}

fn insert_rows(
    conn: &mut Connection,
    labels: &mut LabelIds,
    added: &mut Vec<Labels>,
    batch: &[UsageRecord],
) -> rusqlite::Result<()> {
    // Immediate: the write lock from the start, so nobody else inserts in between. SQLite
    // numbers a new row one past the largest row ID (checked below: the marks depend on it).
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let first_row: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(rowid), 0) + 1 FROM johi_usage_rows")?
        .query_row([], |row| row.get(0))?;
    // Each record with its labels ID; a record with its predecessor's labels needs no lookup.
    let mut rows: Vec<(&UsageRecord, i64)> = Vec::with_capacity(batch.len());
    for record in batch {
        let id = match rows.last() {
            Some(&(before, id)) if same_labels(before, record) => id,
            _ => labels.id(&tx, record, added)?,
        };
        rows.push((record, id));
    }
    {
        // What a statement from the cache holds is not relied on: each starts by binding
        // every column.
        let mut chunks = rows.chunks_exact(ROWS_PER_STATEMENT);
        let mut many = tx.prepare_cached(&INSERT_MANY)?;
        let mut held: Option<&[(&UsageRecord, i64)]> = None;
        for chunk in &mut chunks {
            for (i, &row) in chunk.iter().enumerate() {
                bind(&mut many, 1 + i * COLUMNS_PER_ROW, row, held.map(|h| h[i]))?;
            }
            many.raw_execute()?;
            held = Some(chunk);
        }
        let mut one = tx.prepare_cached(&INSERT_ONE)?;
        let mut held: Option<(&UsageRecord, i64)> = None;
        for &row in chunks.remainder() {
            bind(&mut one, 1, row, held)?;
            one.raw_execute()?;
            held = Some(row);
        }
    }
    let rows = i64::try_from(batch.len()).unwrap_or(i64::MAX);
    if !batch.is_empty() && tx.last_insert_rowid() != first_row.saturating_add(rows - 1) {
        // Rolled back (the transaction is dropped) and retried by the writer.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL),
            Some("ledger: the batch's rows were not numbered in sequence".into()),
        ));
    }
    {
        let mut mark = tx.prepare_cached(
            "INSERT INTO johi_usage_marks (minute, first_row, last_row) VALUES (?1, ?2, ?3)",
        )?;
        for (minute, first, last) in marks(batch, first_row) {
            mark.execute(params![minute, first, last])?;
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
    use crate::query::Dimension;

    /// Every time-bounded spend query reads the marks through their index and the usage
    /// rows by row ID: never a scan of the usage table, nor an index SQLite builds for the
    /// query (which would read the whole table).
    #[test]
    fn time_bounded_queries_read_rows_by_id() {
        let mut conn = Connection::open_in_memory().unwrap();
        create_schema(&mut conn).unwrap();
        for (from, to) in [(Some(1), Some(2)), (Some(1), None), (None, Some(2))] {
            for filter in [vec![], vec![(Dimension::Project, "search".to_owned())]] {
                let query = SpendQuery {
                    from_unix_ms: from,
                    to_unix_ms: to,
                    group_by: vec![Dimension::Project, Dimension::Model],
                    filter,
                };
                let sql = spend_sql(&query, Dialect::Sqlite);
                let mut plan = conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))
                    .unwrap();
                let steps: Vec<String> = plan
                    .query_map(params_from_iter(&sql.params), |row| row.get(3))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                let reads: Vec<&String> = steps
                    .iter()
                    .filter(|s| s.starts_with("SEARCH") || s.starts_with("SCAN"))
                    .collect();
                assert_eq!(reads.len(), 3, "{steps:?}");
                assert!(
                    reads[0]
                        .starts_with("SEARCH johi_usage_marks USING INDEX johi_usage_marks_minute"),
                    "{steps:?}"
                );
                assert_eq!(
                    reads[1],
                    "SEARCH johi_usage_rows USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
                    "{steps:?}"
                );
                assert_eq!(
                    reads[2], "SEARCH johi_usage_labels USING INTEGER PRIMARY KEY (rowid=?)",
                    "{steps:?}"
                );
            }
        }
    }

    #[test]
    fn a_mark_per_run_of_records_in_one_minute() {
        let at = |at_unix_ms| UsageRecord {
            at_unix_ms,
            request_id: Arc::from(""),
            organization: None,
            team: None,
            project: None,
            user: None,
            key_id: None,
            api: "".into(),
            model: "".into(),
            provider: None,
            upstream_model: None,
            status: 200,
            input_tokens: 0,
            output_tokens: 0,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
            cost_micros: 0,
            usage_source: crate::UsageSource::None,
        };
        let batch = [at(60_000), at(119_999), at(120_000), at(60_001), at(-1)];
        assert_eq!(
            marks(&batch, 7),
            [(1, 7, 8), (2, 9, 9), (1, 10, 10), (-1, 11, 11)]
        );
        assert!(marks(&[], 1).is_empty());
    }

    /// A parameter keeps its value from the statement's previous execution only when the
    /// record in that slot has the same value: every column of every record reads back as
    /// written, whatever changes from record to record (text, NULL and back, numbers), over
    /// full 16-row statements and the single-row rest, in two batches (the second on the
    /// cached statements).
    #[test]
    fn every_column_reads_back_as_written_when_binds_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connect(&dir.path().join("ledger.db")).unwrap();
        create_schema(&mut conn).unwrap();
        // Field k of record i changes every (k + 2) records, so slots see runs of equal
        // values and changes at different moments; odd runs of the nullable ones are NULL.
        let varying = |i: usize, k: usize| (i / (k + 2)) % 3;
        let text = |i: usize, k: usize, name: &str| {
            let v = varying(i, k);
            (v != 1).then(|| format!("{name}-{v}").into())
        };
        let record = |i: usize| UsageRecord {
            at_unix_ms: 1_700_000_000_000 + varying(i, 0) as i64,
            request_id: format!("req-{}", varying(i, 1)).into(),
            organization: text(i, 2, "org"),
            team: text(i, 3, "team"),
            project: text(i, 4, "project"),
            user: text(i, 5, "user"),
            key_id: text(i, 6, "key"),
            api: format!("api-{}", varying(i, 7)).into(),
            model: format!("model-{}", varying(i, 8)).into(),
            provider: text(i, 9, "provider"),
            upstream_model: text(i, 10, "upstream"),
            status: 200 + varying(i, 11) as u16,
            input_tokens: varying(i, 12) as u64,
            output_tokens: varying(i, 13) as u64,
            cached_input_tokens: varying(i, 14) as u64,
            reasoning_tokens: varying(i, 15) as u64,
            cost_micros: varying(i, 16) as i64,
            usage_source: [
                crate::UsageSource::Reported,
                crate::UsageSource::Counted,
                crate::UsageSource::None,
            ][varying(i, 17)],
        };
        let records: Vec<UsageRecord> = (0..100).map(record).collect();
        let mut labels = LabelIds::default();
        insert(&mut conn, &mut labels, &records[..53]).unwrap();
        insert(&mut conn, &mut labels, &records[53..]).unwrap();
        // Forgotten label IDs are found again in the table, not stored twice.
        let stored_labels = |conn: &Connection| -> i64 {
            conn.query_row("SELECT COUNT(*) FROM johi_usage_labels", [], |row| {
                row.get(0)
            })
            .unwrap()
        };
        let distinct = stored_labels(&conn);
        insert(&mut conn, &mut LabelIds::default(), &records).unwrap();
        assert_eq!(stored_labels(&conn), distinct);
        let records: Vec<UsageRecord> = records.iter().chain(&records).cloned().collect();

        let columns = crate::store::COLUMNS;
        let mut statement = conn
            .prepare(&format!("SELECT {columns} FROM johi_usage ORDER BY row_id"))
            .unwrap();
        let stored: Vec<UsageRecord> = statement
            .query_map([], |row| {
                let count = |i| row.get::<_, i64>(i).map(|v| v as u64);
                let source: String = row.get(17)?;
                Ok(UsageRecord {
                    at_unix_ms: row.get(0)?,
                    request_id: row.get::<_, String>(1)?.into(),
                    organization: row.get(2)?,
                    team: row.get(3)?,
                    project: row.get(4)?,
                    user: row.get(5)?,
                    key_id: row.get(6)?,
                    api: row.get::<_, String>(7)?.into(),
                    model: row.get(8)?,
                    provider: row.get(9)?,
                    upstream_model: row.get(10)?,
                    status: row.get(11)?,
                    input_tokens: count(12)?,
                    output_tokens: count(13)?,
                    cached_input_tokens: count(14)?,
                    reasoning_tokens: count(15)?,
                    cost_micros: row.get(16)?,
                    usage_source: source.parse().unwrap(),
                })
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stored, records);
    }

    /// A batch whose transaction fails takes its new label sets with it: the writer forgets
    /// their IDs, so the retried batch stores them again and every row finds its labels.
    #[test]
    fn a_failed_batch_forgets_the_labels_it_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connect(&dir.path().join("ledger.db")).unwrap();
        create_schema(&mut conn).unwrap();
        let record = |model: &str| UsageRecord {
            at_unix_ms: 1_700_000_000_000,
            request_id: "req".into(),
            organization: Some("acme".into()),
            team: None,
            project: None,
            user: None,
            key_id: Some("k".into()),
            api: "chat.completions".into(),
            model: model.into(),
            provider: None,
            upstream_model: None,
            status: 200,
            input_tokens: 1,
            output_tokens: 2,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
            cost_micros: 3,
            usage_source: crate::UsageSource::Reported,
        };
        let mut labels = LabelIds::default();
        insert(&mut conn, &mut labels, &[record("a")]).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON johi_usage_rows \
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .unwrap();
        let batch = [record("a"), record("b"), record("c")];
        assert!(insert(&mut conn, &mut labels, &batch).is_err());
        conn.execute_batch("DROP TRIGGER refuse").unwrap();
        insert(&mut conn, &mut labels, &batch).unwrap();
        let models: Vec<String> = conn
            .prepare("SELECT model FROM johi_usage ORDER BY row_id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(models, ["a", "a", "b", "c"]);
    }

    #[test]
    fn the_insert_statement_has_one_parameter_per_column_and_row() {
        assert_eq!(ROW_COLUMNS.split(',').count(), COLUMNS_PER_ROW);
        let sql = insert_sql(ROWS_PER_STATEMENT);
        assert_eq!(
            sql.matches('?').count(),
            COLUMNS_PER_ROW * ROWS_PER_STATEMENT
        );
    }
}
