//! Counters in this process's memory: the default, and the fallback when Redis is down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;

use crate::{
    counter_key, keep_until, previous_counter_key, weighted, write_counter_key, Charge,
    CounterState, Decision, LimitSpec, LimitStore, Reservation, ReservedEntry, StoreError,
};

/// How many reservations pass between sweeps of counters whose window has ended.
const SWEEP_EVERY: u64 = 4096;

/// Counters in a map behind one mutex. A reservation holds the lock for a few hash lookups
/// (never across an `.await`), which is what makes checking and charging several limits one
/// atomic step.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Keyed by [`counter_key`]; foldhash is seeded per process, so keys built from
    /// callers' names cannot be chosen to collide. Shared keys: a reservation holds its
    /// counters' keys until it is committed.
    counters: HashMap<Arc<str>, Counter, foldhash::fast::RandomState>,
    reservations: u64,
    /// Where a reservation writes each counter's key to look it up, reused.
    scratch: String,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    value: u64,
    expires_at: Option<SystemTime>,
}

impl Counter {
    /// Whether its window is still open at `now` (a gauge always is).
    fn live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live counters (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().counters.len()
    }

    /// Whether no counter is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces each reserved amount by the actual one (see [`LimitStore::commit`]).
    fn apply_commit(&self, reservation: &Reservation, actual: &[u64]) {
        let mut state = self.lock();
        for (i, entry) in reservation.entries.iter().enumerate() {
            let Some(counter) = state.counters.get_mut(&*entry.counter) else {
                continue; // its window ended and was swept: nothing left to correct
            };
            let replacement = if entry.gauge {
                0
            } else {
                actual.get(i).copied().unwrap_or(entry.amount)
            };
            counter.value = counter
                .value
                .saturating_sub(entry.amount)
                .saturating_add(replacement);
        }
    }

    /// Checks and charges in one step under the lock (see [`LimitStore::reserve`]), then
    /// takes the padding asked for (`pads`, aligned with the charges; empty for none) as
    /// [`LimitStore::reserve_padded`] says.
    fn decide(&self, charges: &[Charge], pads: &[u64], now: SystemTime) -> Decision {
        let mut entries: Vec<ReservedEntry> = Vec::with_capacity(charges.len());
        let mut states = Vec::with_capacity(charges.len());
        let mut guard = self.lock();
        let state = &mut *guard;
        state.reservations += 1;
        if state.reservations.is_multiple_of(SWEEP_EVERY) {
            state.counters.retain(|_, c| c.live(now));
        }
        // What each counter holds (with a rolling window's share of its previous bucket):
        // every enforced charge must fit before any is made. A counter already stored lends
        // the reservation its key; only a new one allocates a key.
        for (index, charge) in charges.iter().enumerate() {
            let end = write_counter_key(&mut state.scratch, &charge.spec, &charge.scope_key, now);
            let (counter, value) = match state.counters.get_key_value(state.scratch.as_str()) {
                Some((key, c)) => (key.clone(), if c.live(now) { c.value } else { 0 }),
                None => (Arc::from(state.scratch.as_str()), 0),
            };
            let previous = state.previous(&charge.spec, &charge.scope_key, now);
            let used = value.saturating_add(previous);
            let held = crate::memory::state(&charge.spec, used, end, now);
            if charge.enforce && !fits(&charge.spec, used, charge.amount) {
                return Decision::Denied { index, state: held };
            }
            states.push(held);
            entries.push(ReservedEntry {
                counter,
                amount: charge.amount,
                gauge: charge.spec.window.is_none(),
                expires_at: end,
                lease: None,
            });
        }
        for (i, ((charge, entry), reported)) in charges
            .iter()
            .zip(&mut entries)
            .zip(&mut states)
            .enumerate()
        {
            let pad = match pads.get(i) {
                Some(&pad) if pad > 0 && charge.spec.window.is_some() => pad,
                _ => 0,
            };
            let previous = if pad > 0 {
                state.previous(&charge.spec, &charge.scope_key, now)
            } else {
                0
            };
            let fresh = Counter {
                value: 0,
                expires_at: entry.expires_at.map(|end| keep_until(&charge.spec, end)),
            };
            let counter = match state.counters.get_mut(&*entry.counter) {
                Some(counter) => counter,
                None => state.counters.entry(entry.counter.clone()).or_insert(fresh),
            };
            // An ended window's counter starts over (it read as 0 above).
            if !counter.live(now) {
                *counter = fresh;
            }
            counter.value = counter.value.saturating_add(charge.amount);
            reported.used = reported.used.saturating_add(charge.amount);
            if pad > 0 {
                let cap = charge.spec.limit.saturating_add(charge.spec.burst);
                let taken = if charge.enforce {
                    pad.min(cap.saturating_sub(counter.value.saturating_add(previous)))
                } else {
                    pad
                };
                counter.value = counter.value.saturating_add(taken);
                entry.amount = entry.amount.saturating_add(taken);
                reported.used = reported.used.saturating_add(taken);
            }
        }
        Decision::Granted {
            reservation: Reservation {
                entries,
                fallback: false,
            },
            states,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a counter half-updated (every update
        // is one assignment), so a poisoned lock is safe to keep using.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether `amount` more fits in a counter holding `used` under `spec`. A reservation always
/// needs at least one unit of room, so an exhausted budget refuses even a zero estimate.
pub(crate) fn fits(spec: &LimitSpec, used: u64, amount: u64) -> bool {
    used.saturating_add(amount.max(1)) <= spec.limit.saturating_add(spec.burst)
}

/// A counter's state as reported to the caller.
pub(crate) fn state(
    spec: &LimitSpec,
    used: u64,
    end: Option<SystemTime>,
    now: SystemTime,
) -> CounterState {
    CounterState {
        used,
        limit: spec.limit,
        resets_in: end.map(|end| end.duration_since(now).unwrap_or_default()),
    }
}

#[async_trait]
impl LimitStore for MemoryStore {
    async fn reserve(&self, charges: &[Charge], now: SystemTime) -> Result<Decision, StoreError> {
        Ok(self.decide(charges, &[], now))
    }

    async fn reserve_padded(
        &self,
        charges: &[Charge],
        pads: &[u64],
        now: SystemTime,
    ) -> Result<Decision, StoreError> {
        Ok(self.decide(charges, pads, now))
    }

    fn reserve_now(
        &self,
        charges: &[Charge],
        now: SystemTime,
    ) -> Option<Result<Decision, StoreError>> {
        Some(Ok(self.decide(charges, &[], now)))
    }

    async fn commit(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), StoreError> {
        self.apply_commit(reservation, actual);
        Ok(())
    }

    fn commit_detached(
        &self,
        reservation: &Reservation,
        actual: &[u64],
    ) -> Option<Result<(), StoreError>> {
        self.apply_commit(reservation, actual);
        Some(Ok(()))
    }

    async fn current(
        &self,
        spec: &LimitSpec,
        scope_key: &str,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        let (key, _) = counter_key(spec, scope_key, now);
        let state = self.lock();
        Ok(state
            .value(&key, now)
            .saturating_add(state.previous(spec, scope_key, now)))
    }

    async fn usage(
        &self,
        spec: &LimitSpec,
        now: SystemTime,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let state = self.lock();
        let mut scopes: Vec<&str> = state
            .counters
            .iter()
            .filter(|(_, c)| c.live(now))
            .filter_map(|(key, _)| crate::scope_of_counter(spec, key, now))
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        // What each holds now, as `current` reads it (a rolling window adds its previous
        // bucket's share).
        Ok(scopes
            .into_iter()
            .map(|scope| {
                let used = state
                    .value(&counter_key(spec, scope, now).0, now)
                    .saturating_add(state.previous(spec, scope, now));
                (scope.to_owned(), used)
            })
            .collect())
    }
}

impl State {
    /// What a live counter holds (an absent or ended one holds nothing).
    fn value(&self, key: &str, now: SystemTime) -> u64 {
        self.counters
            .get(key)
            .filter(|c| c.live(now))
            .map_or(0, |c| c.value)
    }

    /// A rolling window's share of its previous bucket (zero for other windows).
    fn previous(&self, spec: &LimitSpec, scope_key: &str, now: SystemTime) -> u64 {
        previous_counter_key(spec, scope_key, now)
            .map_or(0, |(key, weight)| weighted(self.value(&key, now), weight))
    }
}
