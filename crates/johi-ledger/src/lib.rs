//! Johi's usage ledger: every request's usage and cost, kept in SQLite (one file, the
//! default) or PostgreSQL (shared by many gateway replicas), queried for spend and exported
//! for chargeback.
//!
//! # Recording never waits
//! The gateway calls [`Ledger::record`] from a request's completion hook, which must not
//! block or await: `record` pushes the record onto a bounded queue (one short lock, no
//! allocation) and returns.
//! If the writer has fallen `buffer` records behind, the record is dropped and counted
//! ([`Ledger::dropped`]), with an error logged at most every ten seconds: a slow database
//! costs usage data, never request latency.
//!
//! # Batching
//! One background task (see `writer.rs`) takes records off the queue and commits them in
//! batches of up to `batch_size`, one transaction each, at most `flush_interval` after a
//! batch's first record. A transaction per batch rather than per record is what makes
//! thousands of requests a second cheap for SQLite, whose cost is the commit's fsync. A
//! failed batch is retried with backoff; if it still fails, its records are counted in
//! [`Ledger::lost`], logged, and reported by the next [`Ledger::flush`] or
//! [`Ledger::shutdown`] — never discarded silently.
//!
//! # Durability
//! [`Ledger::flush`] sends a marker through the same queue and resolves once every record
//! queued before it is committed, so a query after `flush` sees them. [`Ledger::shutdown`]
//! does the same, closes the queue and stops the writer: on graceful shutdown nothing that
//! `record` accepted is lost. SQLite runs in WAL mode with `synchronous=FULL`, so a
//! committed batch also survives a power cut.
//!
//! # Money
//! Costs are integers in micro-units of the price currency (1 USD = 1 000 000 micros), summed
//! as integers by the database and rendered with [`format_micros`]: no float ever touches an
//! amount, so totals are exact however many requests they add up.
//!
//! # Queries
//! [`Ledger::spend`] sums requests, tokens and cost over a half-open time range, grouped by
//! any of the [`Dimension`]s and filtered by equality on them. Column names come from a fixed
//! list and every value is a bound parameter. Queries use their own connection, so they never
//! wait behind the writer. [`Ledger::chargeback_csv`] is the monthly per-project export.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod chargeback;
mod error;
mod query;
mod record;
mod store;
mod writer;

pub use chargeback::format_micros;
pub use error::LedgerError;
pub use query::{
    parse_instant_ms, Dimension, InvalidMonth, InvalidSpendQuery, SpendQuery, SpendRow,
    UnknownDimension, YearMonth,
};
pub use record::{UnknownUsageSource, UsageRecord, UsageSource};

use writer::{Marker, Queue, Refused};

/// Default records per transaction.
pub const DEFAULT_BATCH_SIZE: usize = 512;
/// Default longest wait between a record and its commit.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default queue length: about a minute of headroom at a thousand requests a second.
pub const DEFAULT_BUFFER: usize = 65_536;

/// How often a full queue is logged; drops in between are only counted.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Where the ledger is kept.
#[derive(Clone, PartialEq, Eq)]
pub enum LedgerBackend {
    /// A SQLite file (created with its directory if missing): the single-node default, no
    /// server to run.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database, for several replicas writing one ledger. The table lives in
    /// the connection's `search_path`: to keep several ledgers in one database, give each a
    /// schema with `?options=-csearch_path%3Dmy_schema` in the URL.
    Postgres {
        /// A `postgres://user:password@host:port/database` URL (no TLS; see docs/ledger.md).
        url: String,
    },
}

impl fmt::Debug for LedgerBackend {
    /// Never prints the password in a PostgreSQL URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerBackend::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            LedgerBackend::Postgres { url } => {
                let shown = match (url.split_once("://"), url.rfind('@')) {
                    (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
                    _ => url.clone(),
                };
                f.debug_struct("Postgres").field("url", &shown).finish()
            }
        }
    }
}

/// How the ledger is kept and how its writer batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Where the records go.
    pub backend: LedgerBackend,
    /// Most records per transaction ([`DEFAULT_BATCH_SIZE`]).
    pub batch_size: usize,
    /// Longest a record waits in memory before its batch is committed
    /// ([`DEFAULT_FLUSH_INTERVAL`]): what a crash, as opposed to a graceful shutdown, can lose.
    pub flush_interval: Duration,
    /// Records the queue holds before [`Ledger::record`] drops ([`DEFAULT_BUFFER`]).
    pub buffer: usize,
}

impl LedgerConfig {
    /// The backend with the default batching.
    pub fn new(backend: LedgerBackend) -> LedgerConfig {
        LedgerConfig {
            backend,
            batch_size: DEFAULT_BATCH_SIZE,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            buffer: DEFAULT_BUFFER,
        }
    }
}

/// A handle on the ledger: cheap to clone, shared by every request.
///
/// The writer stops at [`Ledger::shutdown`], or when the last handle is dropped (it still
/// writes what was queued then, but nobody waits for it: call `shutdown` on a graceful exit).
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Arc<Queue>,
    dropped: AtomicU64,
    lost: Arc<AtomicU64>,
    /// When a drop was last logged, as `DROP_LOG_INTERVAL`s since `opened` plus one (0: never).
    drop_logged: AtomicU64,
    opened: std::time::Instant,
    reader: store::Reader,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Shared {
    /// The last handle is gone: the writer writes what waits and stops.
    fn drop(&mut self) {
        self.queue.close();
    }
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("dropped", &self.dropped())
            .field("lost", &self.lost())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Connects, creates the schema if it is missing (idempotent, so every start runs it) and
    /// starts the writer task.
    pub async fn open(config: LedgerConfig) -> Result<Ledger, LedgerError> {
        let (store, reader) = store::open(&config.backend).await?;
        let batch_size = config.batch_size.max(1);
        let writer::Started { queue, lost, task } = writer::start(
            store,
            batch_size,
            config.flush_interval,
            config.buffer.max(1),
        );
        Ok(Ledger {
            shared: Arc::new(Shared {
                queue,
                dropped: AtomicU64::new(0),
                lost,
                drop_logged: AtomicU64::new(0),
                opened: std::time::Instant::now(),
                reader,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// Queues a record for the writer and returns at once: never blocks, never awaits. If the
    /// queue is full (or the ledger shut down) the record is dropped and counted in
    /// [`Ledger::dropped`].
    pub fn record(&self, record: UsageRecord) {
        let shared = &*self.shared;
        if let Err(refused) = shared.queue.push(record) {
            let dropped = shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            self.log_drop(dropped, matches!(refused, Refused::Closed));
        }
    }

    /// Logs a drop unless one was logged in the last `DROP_LOG_INTERVAL`, so a flood of drops
    /// is one line every few seconds, not one per request.
    fn log_drop(&self, dropped: u64, stopped: bool) {
        let shared = &*self.shared;
        let interval = DROP_LOG_INTERVAL.as_millis().max(1);
        let slot = (shared.opened.elapsed().as_millis() / interval) as u64 + 1;
        let last = shared.drop_logged.load(Ordering::Relaxed);
        if last == slot
            || shared
                .drop_logged
                .compare_exchange(last, slot, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if stopped {
            tracing::error!(dropped, "ledger: record after shutdown dropped");
        } else {
            tracing::error!(dropped, "ledger: queue full, the writer is behind; records dropped (counted, logged at most every 10 s)");
        }
    }

    /// Records dropped by [`Ledger::record`] because the queue was full or the ledger had shut
    /// down, since [`Ledger::open`].
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Records accepted but not written: their batch failed every retry.
    pub fn lost(&self) -> u64 {
        self.shared.lost.load(Ordering::Relaxed)
    }

    /// Resolves once every record queued before the call is committed, so queries see it.
    /// Fails with [`LedgerError::Lost`] if records were lost since the last flush.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .queue
            .mark(Marker::Flush(reply))
            .map_err(|_| LedgerError::Closed)?;
        answer.await.map_err(|_| LedgerError::Closed)?
    }

    /// Writes everything queued, stops the writer and waits for it. Other handles' later
    /// records are dropped and counted. Calling it on a ledger already shut down is a no-op.
    pub async fn shutdown(self) -> Result<(), LedgerError> {
        let (reply, answer) = oneshot::channel();
        let outcome = match self.shared.queue.mark(Marker::Stop(reply)) {
            Ok(()) => answer.await.map_err(|_| LedgerError::Closed)?,
            Err(_) => Ok(()),
        };
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.await?;
        }
        outcome
    }

    /// Sums requests, tokens and cost per group. Rows are sorted by their group values
    /// (unattributed first); with no `group_by` there is exactly one row, zeros if nothing
    /// matched. Sees what was committed: call [`Ledger::flush`] first to include records
    /// just recorded.
    pub async fn spend(&self, query: &SpendQuery) -> Result<Vec<SpendRow>, LedgerError> {
        let mut rows = self.shared.reader.spend(query).await?;
        query::sort_rows(&mut rows);
        Ok(rows)
    }

    /// The chargeback for a calendar month (UTC): one CSV row per (organization, team,
    /// project), sorted by them, with columns `month, organization, team, project, requests,
    /// input_tokens, output_tokens, cached_input_tokens, cost_micros, cost` (`cost` in
    /// currency units with six decimals). `project` restricts it to one project.
    pub async fn chargeback_csv(
        &self,
        month: YearMonth,
        project: Option<&str>,
    ) -> Result<String, LedgerError> {
        let rows = self.spend(&chargeback::query(month, project)).await?;
        chargeback::render(month, &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_postgres_password() {
        let backend = LedgerBackend::Postgres {
            url: "postgres://johi:s3cret@db.internal:5432/johi".into(),
        };
        let shown = format!("{backend:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("@db.internal:5432/johi"), "{shown}");
    }
}
