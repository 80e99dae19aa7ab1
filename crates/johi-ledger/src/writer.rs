//! The queue and the batch writer: records wait in one vector behind a lock, and one task
//! takes them all at once and commits them.
//!
//! A record is pushed with one short lock and no allocation (the vector keeps its
//! capacity from batch to batch). The writer is woken when a batch opens (its first record),
//! fills (`batch_size` records), or a flush, shutdown or close arrives; otherwise it sleeps
//! until the batch is due (`flush_interval` after its first record). It then swaps the
//! whole vector for an empty one and commits it, a transaction per `batch_size` records.
//! Under load that is a few wake-ups per interval and no per-record work on the writer's
//! side: a channel would have moved every record twice (in, then out into a batch) and
//! woken nobody more often.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::store;
use crate::{LedgerError, UsageRecord};

/// Tries per batch before its records are given up on and reported lost.
const WRITE_ATTEMPTS: u32 = 5;

/// Pause before the first retry; doubled on each further one (0.1 + 0.2 + 0.4 + 0.8 s: a
/// database restart or a lock held for a second is ridden out).
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Whoever waits for a flush or shutdown: told whether everything before it was committed.
pub(crate) type Reply = oneshot::Sender<Result<(), LedgerError>>;

/// A request to the writer that waits for everything queued before it.
pub(crate) enum Marker {
    /// Commit everything queued, then answer.
    Flush(Reply),
    /// Commit everything queued, answer, and stop; later records are refused.
    Stop(Reply),
}

/// Why [`Queue::push`] refused a record.
pub(crate) enum Refused {
    /// `buffer` records are already waiting: the writer is behind.
    Full,
    /// The ledger was shut down (or every handle dropped).
    Closed,
}

/// Records and markers waiting for the writer.
pub(crate) struct Queue {
    waiting: Mutex<Waiting>,
    /// Wakes the writer: a batch opened or filled, or a marker or the close arrived.
    nudge: Notify,
    batch_size: usize,
    /// Most records waiting at once; more are refused ([`Refused::Full`]).
    buffer: usize,
}

struct Waiting {
    records: Vec<UsageRecord>,
    /// When the oldest waiting record arrived: its batch is due a flush interval later.
    since: Option<Instant>,
    /// Flushes and stops, answered once everything queued before them is committed.
    markers: Vec<Marker>,
    /// No record or marker is taken any more; the writer writes what waits and stops.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Every change under the lock is a push or a swap: a panic cannot leave it torn.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a record, or drops it (outside the lock) and says why.
    pub(crate) fn push(&self, record: UsageRecord) -> Result<(), Refused> {
        let mut waiting = self.lock();
        let refused = if waiting.closed {
            Some(Refused::Closed)
        } else if waiting.records.len() >= self.buffer {
            Some(Refused::Full)
        } else {
            None
        };
        if let Some(refused) = refused {
            drop(waiting);
            drop(record);
            return Err(refused);
        }
        waiting.records.push(record);
        let queued = waiting.records.len();
        if queued == 1 {
            waiting.since = Some(Instant::now());
        }
        drop(waiting);
        // The first record starts the batch's clock; a full batch is written at once.
        if queued == 1 || queued == self.batch_size {
            self.nudge.notify_one();
        }
        Ok(())
    }

    /// Queues a marker; gives it back if the queue is closed (the writer has stopped or is
    /// stopping, so nobody would answer it). A stop closes the queue.
    pub(crate) fn mark(&self, marker: Marker) -> Result<(), Marker> {
        let mut waiting = self.lock();
        if waiting.closed {
            return Err(marker);
        }
        waiting.closed = matches!(marker, Marker::Stop(_));
        waiting.markers.push(marker);
        drop(waiting);
        self.nudge.notify_one();
        Ok(())
    }

    /// Closes the queue without a stop marker (the last handle is gone): the writer still
    /// writes what waits.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.nudge.notify_one();
    }
}

/// The senders' side of a started writer.
pub(crate) struct Started {
    pub queue: Arc<Queue>,
    /// Records given up on after every retry, in total.
    pub lost: Arc<AtomicU64>,
    /// The writer task, waited for by [`Ledger::shutdown`](crate::Ledger::shutdown).
    pub task: JoinHandle<()>,
}

/// Spawns the writer over a queue of at most `buffer` records.
pub(crate) fn start(
    store: store::Writer,
    batch_size: usize,
    flush_interval: Duration,
    buffer: usize,
) -> Started {
    let queue = Arc::new(Queue {
        waiting: Mutex::new(Waiting {
            records: Vec::with_capacity(batch_size.min(buffer)),
            since: None,
            markers: Vec::new(),
            closed: false,
        }),
        nudge: Notify::new(),
        batch_size,
        buffer,
    });
    let lost = Arc::new(AtomicU64::new(0));
    let writer = Writer {
        store,
        queue: queue.clone(),
        batch_size,
        flush_interval,
        lost: lost.clone(),
        unreported: 0,
    };
    let task = tokio::spawn(writer.run());
    Started { queue, lost, task }
}

/// The writer task's state.
struct Writer {
    store: store::Writer,
    queue: Arc<Queue>,
    batch_size: usize,
    flush_interval: Duration,
    /// Records given up on, in total (shared with [`Ledger::lost`](crate::Ledger::lost)).
    lost: Arc<AtomicU64>,
    /// Records given up on since the last flush or shutdown reported it.
    unreported: u64,
}

/// What the writer takes from the queue in one go.
struct Taken {
    records: Vec<UsageRecord>,
    markers: Vec<Marker>,
    closed: bool,
}

/// Closes the queue when the writer ends, however it ends (a panic included), and drops
/// the markers nobody will answer: their waiters learn the ledger is closed instead of
/// waiting forever.
struct CloseOnExit(Arc<Queue>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        let mut waiting = self.0.lock();
        waiting.closed = true;
        waiting.markers.clear();
    }
}

impl Writer {
    /// Runs until the queue is closed (a stop marker, or every [`Ledger`](crate::Ledger)
    /// handle gone); everything queued before that is written first.
    async fn run(mut self) {
        let _close = CloseOnExit(self.queue.clone());
        let mut spare = Vec::with_capacity(self.batch_size);
        loop {
            let Taken {
                mut records,
                markers,
                closed,
            } = self.take(spare).await;
            self.write_all(&mut records).await;
            // Keep the vector for the next batch unless a backlog grew it far past one.
            spare = if records.capacity() <= self.batch_size.saturating_mul(4) {
                records
            } else {
                Vec::with_capacity(self.batch_size)
            };
            let mut stops = Vec::new();
            for marker in markers {
                match marker {
                    Marker::Flush(reply) => {
                        let _ = reply.send(self.outcome());
                    }
                    Marker::Stop(reply) => stops.push(reply),
                }
            }
            // A stop is answered after every flush queued with it; a loss not yet reported
            // goes to the first stop.
            for reply in stops {
                let _ = reply.send(self.outcome());
            }
            if closed {
                return;
            }
        }
    }

    /// Waits until the open batch is full or due, or a marker or the close arrived, then
    /// takes everything waiting, leaving `spare` (empty) in its place.
    async fn take(&self, spare: Vec<UsageRecord>) -> Taken {
        let mut spare = Some(spare);
        loop {
            // A `notify_one` while nobody waits is kept for the next wait, so a nudge between
            // the check and the wait below is not lost.
            let nudged = self.queue.nudge.notified();
            let due = {
                let mut waiting = self.queue.lock();
                let due = waiting.since.map(|since| since + self.flush_interval);
                let ready = waiting.closed
                    || !waiting.markers.is_empty()
                    || waiting.records.len() >= self.batch_size
                    || due.is_some_and(|due| due <= Instant::now());
                if ready {
                    let records =
                        std::mem::replace(&mut waiting.records, spare.take().unwrap_or_default());
                    waiting.since = None;
                    return Taken {
                        records,
                        markers: std::mem::take(&mut waiting.markers),
                        closed: waiting.closed,
                    };
                }
                due
            };
            match due {
                Some(due) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = nudged => {}
                    }
                }
                None => nudged.await,
            }
        }
    }

    /// Commits `records` a transaction per `batch_size` records, in order, and leaves the
    /// vector empty.
    async fn write_all(&mut self, records: &mut Vec<UsageRecord>) {
        while records.len() > self.batch_size {
            // Only when the writer fell behind by more than a batch.
            let rest = records.split_off(self.batch_size);
            let batch = std::mem::replace(records, rest);
            self.write_batch(batch).await;
        }
        let batch = std::mem::take(records);
        *records = self.write_batch(batch).await;
    }

    /// Whether anything was lost since the last report; resets the count.
    fn outcome(&mut self) -> Result<(), LedgerError> {
        match std::mem::take(&mut self.unreported) {
            0 => Ok(()),
            count => Err(LedgerError::Lost { count }),
        }
    }

    /// Commits one batch, retrying with backoff; after the last try the records are
    /// counted lost and logged, never dropped silently. Gives the vector back, emptied, for
    /// the next batch.
    async fn write_batch(&mut self, batch: Vec<UsageRecord>) -> Vec<UsageRecord> {
        if batch.is_empty() {
            return batch;
        }
        let batch = Arc::new(batch);
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 1..=WRITE_ATTEMPTS {
            let error = match self.store.write(batch.clone()).await {
                Ok(()) => break,
                Err(error) => error,
            };
            if attempt < WRITE_ATTEMPTS {
                tracing::warn!(%error, attempt, records = batch.len(), retry_in = ?delay, "ledger: batch write failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            } else {
                let count = batch.len() as u64;
                tracing::error!(%error, attempts = WRITE_ATTEMPTS, lost = count, "ledger: batch write failed; records lost");
                self.lost.fetch_add(count, Ordering::Relaxed);
                self.unreported += count;
            }
        }
        // The store's copy of the handle is gone once its write returned.
        let mut emptied = Arc::try_unwrap(batch).unwrap_or_default();
        emptied.clear();
        emptied
    }
}
