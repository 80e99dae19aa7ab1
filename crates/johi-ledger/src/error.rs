//! The ledger's one error type.

/// Why a ledger operation failed.
///
/// Recording never fails (a record that cannot be queued is counted in
/// [`Ledger::dropped`](crate::Ledger::dropped)); these are the errors of opening, flushing,
/// shutting down and querying.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The SQLite store failed (opening the file, the schema, a write or a query).
    #[error("ledger sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL store failed (the URL, connecting, the schema, a write or a query).
    #[error("ledger postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Creating the SQLite file's directory failed.
    #[error("ledger file: {0}")]
    Io(#[from] std::io::Error),
    /// Writing the chargeback CSV failed.
    #[error("ledger csv: {0}")]
    Csv(#[from] csv::Error),
    /// Batches were given up on after every retry: these records are not in the store. Reported
    /// by the next [`Ledger::flush`](crate::Ledger::flush) or
    /// [`Ledger::shutdown`](crate::Ledger::shutdown) after the loss.
    #[error("{count} usage records could not be written after retries and were lost")]
    Lost {
        /// How many records were lost since the last report.
        count: u64,
    },
    /// The writer has stopped (after [`Ledger::shutdown`](crate::Ledger::shutdown)).
    #[error("the ledger writer has stopped")]
    Closed,
    /// A background task (the writer, or a blocking SQLite call) panicked or was cancelled.
    #[error("ledger task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl LedgerError {
    /// A low-cardinality name for metric labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            LedgerError::Sqlite(_) => "sqlite",
            LedgerError::Postgres(_) => "postgres",
            LedgerError::Io(_) => "io",
            LedgerError::Csv(_) => "csv",
            LedgerError::Lost { .. } => "lost",
            LedgerError::Closed => "closed",
            LedgerError::Task(_) => "task",
        }
    }
}
