//! The batch writer: the one task that takes records off the queue and commits them.
//!
//! It wakes once when a batch opens, then sleeps until the batch is due (`flush_interval`
//! after its first record) or is nudged (the queue holds a full batch, or someone is waiting
//! on a flush or shutdown); then it drains the queue in order, committing a transaction per
//! `batch_size` records. Under load that is a few wake-ups per interval, not one per record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
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

/// What travels through the queue. Markers share the records' queue so that "everything
/// before the marker" is exactly what the writer has taken when it sees the marker.
#[allow(
    clippy::large_enum_variant,
    reason = "records are nearly every message; boxing them would allocate per request"
)]
pub(crate) enum Msg {
    Record(UsageRecord),
    Flush(Reply),
    Stop(Reply),
}

/// The senders' side of a started writer.
pub(crate) struct Started {
    pub tx: mpsc::Sender<Msg>,
    /// Wakes the writer before its batch is due.
    pub nudge: Arc<Notify>,
    /// Records given up on after every retry, in total.
    pub lost: Arc<AtomicU64>,
    /// The writer task, waited for by [`Ledger::shutdown`](crate::Ledger::shutdown).
    pub task: JoinHandle<()>,
}

/// Spawns the writer on a queue of `buffer` records.
pub(crate) fn start(
    store: store::Writer,
    batch_size: usize,
    flush_interval: Duration,
    buffer: usize,
) -> Started {
    let (tx, rx) = mpsc::channel(buffer);
    let nudge = Arc::new(Notify::new());
    let lost = Arc::new(AtomicU64::new(0));
    let writer = Writer {
        store,
        rx,
        nudge: nudge.clone(),
        batch_size,
        flush_interval,
        lost: lost.clone(),
        unreported: 0,
        batch: Vec::with_capacity(batch_size),
    };
    let task = tokio::spawn(writer.run());
    Started {
        tx,
        nudge,
        lost,
        task,
    }
}

/// The writer task's state.
struct Writer {
    store: store::Writer,
    rx: mpsc::Receiver<Msg>,
    nudge: Arc<Notify>,
    batch_size: usize,
    flush_interval: Duration,
    /// Records given up on, in total (shared with [`Ledger::lost`](crate::Ledger::lost)).
    lost: Arc<AtomicU64>,
    /// Records given up on since the last flush or shutdown reported it.
    unreported: u64,
    batch: Vec<UsageRecord>,
}

impl Writer {
    /// Runs until a stop marker, or until every [`Ledger`](crate::Ledger) handle is gone; in
    /// both cases everything queued is written first.
    async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let due = Instant::now() + self.flush_interval;
            if let Some(reply) = self.handle(first).await {
                return self.stop(reply).await;
            }
            if !self.batch.is_empty() {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = self.nudge.notified() => {}
                }
            }
            while let Ok(msg) = self.rx.try_recv() {
                if let Some(reply) = self.handle(msg).await {
                    return self.stop(reply).await;
                }
            }
            self.write_batch().await;
        }
        // Every handle was dropped without a shutdown: still write what was queued.
        self.write_batch().await;
    }

    /// Takes one message; returns the reply of a stop marker.
    async fn handle(&mut self, msg: Msg) -> Option<Reply> {
        match msg {
            Msg::Record(record) => {
                self.batch.push(record);
                if self.batch.len() >= self.batch_size {
                    self.write_batch().await;
                }
                None
            }
            Msg::Flush(reply) => {
                self.write_batch().await;
                let _ = reply.send(self.outcome());
                None
            }
            Msg::Stop(reply) => Some(reply),
        }
    }

    /// Closes the queue (later records are dropped and counted by the senders), writes
    /// everything still in it, and answers every stop marker found on the way.
    async fn stop(mut self, reply: Reply) {
        self.rx.close();
        let mut replies = vec![reply];
        while let Some(msg) = self.rx.recv().await {
            if let Some(reply) = self.handle(msg).await {
                replies.push(reply);
            }
        }
        self.write_batch().await;
        // A loss is reported once, to the first to ask.
        let mut outcome = self.outcome();
        for reply in replies {
            let _ = reply.send(std::mem::replace(&mut outcome, Ok(())));
        }
    }

    /// Whether anything was lost since the last report; resets the count.
    fn outcome(&mut self) -> Result<(), LedgerError> {
        match std::mem::take(&mut self.unreported) {
            0 => Ok(()),
            count => Err(LedgerError::Lost { count }),
        }
    }

    /// Commits the open batch, retrying with backoff; after the last try the records are
    /// counted lost and logged, never dropped silently.
    async fn write_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = Arc::new(std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(self.batch_size),
        ));
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 1..=WRITE_ATTEMPTS {
            let error = match self.store.write(batch.clone()).await {
                Ok(()) => return,
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
    }
}
