//! State shared by every connection of one mock: counters, recordings, `fail_first` counters.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::{MockOptions, RecordedRequest, Stats, RECORD_CAPACITY};

/// Lock-free counters; relaxed ordering is enough since they are only ever summed up.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub chat: AtomicU64,
    pub messages: AtomicU64,
    pub converse: AtomicU64,
    pub completions: AtomicU64,
    pub embeddings: AtomicU64,
    pub models: AtomicU64,
    pub streams_started: AtomicU64,
    pub streams_completed: AtomicU64,
    pub streams_cancelled: AtomicU64,
    pub connections: AtomicU64,
}

impl Counters {
    fn all(&self) -> [&AtomicU64; 11] {
        [
            &self.requests,
            &self.chat,
            &self.messages,
            &self.converse,
            &self.completions,
            &self.embeddings,
            &self.models,
            &self.streams_started,
            &self.streams_completed,
            &self.streams_cancelled,
            &self.connections,
        ]
    }
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Everything one mock instance shares between its connections.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Whether requests are recorded at all (off for the benchmark).
    pub record: bool,
    pub counters: Counters,
    /// Source of the `chatcmpl-mock-N` / `cmpl-mock-N` ids.
    ids: AtomicU64,
    records: Mutex<VecDeque<RecordedRequest>>,
    /// Requests seen so far per `fail_key`, for the `fail_first` knob.
    fail_counts: Mutex<HashMap<String, u64>>,
}

/// Locks a mutex, ignoring poisoning: the data (counters, recordings) stays usable even if
/// a holder panicked, and the mock must never take a test down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn new(options: &MockOptions) -> Self {
        Shared {
            record: options.record,
            counters: Counters::default(),
            ids: AtomicU64::new(1),
            records: Mutex::new(VecDeque::new()),
            fail_counts: Mutex::new(HashMap::new()),
        }
    }

    /// The next id number for a completion object.
    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            requests: get(&c.requests),
            chat: get(&c.chat),
            messages: get(&c.messages),
            converse: get(&c.converse),
            completions: get(&c.completions),
            embeddings: get(&c.embeddings),
            models: get(&c.models),
            streams_started: get(&c.streams_started),
            streams_completed: get(&c.streams_completed),
            streams_cancelled: get(&c.streams_cancelled),
            connections: get(&c.connections),
        }
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.records).iter().cloned().collect()
    }

    /// Appends a recording, evicting the oldest beyond [`RECORD_CAPACITY`].
    pub(crate) fn push_record(&self, request: RecordedRequest) {
        let mut records = lock(&self.records);
        while records.len() >= RECORD_CAPACITY {
            records.pop_front();
        }
        records.push_back(request);
    }

    pub(crate) fn reset(&self) {
        for counter in self.counters.all() {
            counter.store(0, Ordering::Relaxed);
        }
        lock(&self.records).clear();
        lock(&self.fail_counts).clear();
    }

    /// Counts one more `fail_first` request under `key` and says whether it must fail
    /// (it is among the first `first` requests with that key).
    pub(crate) fn should_fail(&self, key: &str, first: u32) -> bool {
        let mut counts = lock(&self.fail_counts);
        let seen = counts.entry(key.to_owned()).or_insert(0);
        *seen += 1;
        *seen <= u64::from(first)
    }
}
