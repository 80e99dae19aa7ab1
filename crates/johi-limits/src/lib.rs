//! Limit counters: *reserve* an estimate before the upstream call, *commit* the real figure
//! after it, *release* on failure.
//!
//! A request usually falls under several limits at once (its key's tokens per minute, its
//! team's money per month, its organisation's concurrent requests). [`LimitStore::reserve`]
//! checks and charges all of them in one atomic step: either every enforced limit has room
//! and all are charged, or none is. So two requests racing for the last tokens of a budget
//! cannot both pass, and a denied request leaves no trace in any counter. That is what keeps
//! budgets from drifting under concurrency, on one node ([`MemoryStore`]) or many
//! ([`RedisStore`], shared by every replica). [`FailoverStore`] puts a local store behind
//! Redis, for the gateway's declared behaviour when Redis cannot be reached.
//! [`PrefetchStore`] lets a replica count a share of each limit ahead, in memory, so that
//! most requests make no round trip to Redis.
//!
//! Counters count whatever the caller measures (requests, tokens, micro-dollars): this crate
//! knows windows and arithmetic, not tokens.

mod failover;
mod memory;
mod prefetch;
mod redis;
mod window;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

pub use self::redis::{RedisOptions, RedisStore, COMMIT_DELAY};
pub use failover::{FailoverStore, OutageMode};
pub use memory::MemoryStore;
pub use prefetch::{PrefetchStore, IDLE_GIVE_BACK};
pub use window::{weighted, Window, WEIGHT_ONE};

/// One configured limit: a window and a ceiling, shared by every scope instance it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    /// Stable name, part of every counter's key (renaming a limit starts it afresh).
    pub id: String,
    /// The period the counter covers; `None` for a gauge (concurrent requests), which is
    /// raised by a reservation and lowered by its release.
    pub window: Option<Window>,
    /// The ceiling within a window.
    pub limit: u64,
    /// Extra room above `limit` that a reservation may use (a burst allowance): the counter
    /// may reach `limit + burst`, and the remaining allowance reported is still computed
    /// against `limit`.
    pub burst: u64,
}

/// One counter to charge: a limit, the scope instance it is counted for, and how much.
#[derive(Debug, Clone)]
pub struct Charge {
    /// The limit.
    pub spec: Arc<LimitSpec>,
    /// The scope instance, e.g. `org:acme` or `key:search-web`; with the spec's id it names
    /// the counter.
    pub scope_key: String,
    /// The amount reserved now (an estimate, corrected by [`LimitStore::commit`]).
    pub amount: u64,
    /// Whether exceeding the limit denies the request (a hard cap) or is only reported
    /// (a soft cap, which is still counted).
    pub enforce: bool,
}

/// The state of one counter after a reservation was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterState {
    /// What the counter holds (including this reservation if it was granted).
    pub used: u64,
    /// The limit (without burst).
    pub limit: u64,
    /// When the current window ends (`None` for gauges): when room comes back.
    pub resets_in: Option<Duration>,
}

impl CounterState {
    /// Room left below the limit (zero when over).
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// Whether the counter is above its limit (a soft cap reports this).
    pub fn over(&self) -> bool {
        self.used > self.limit
    }
}

/// What [`LimitStore::reserve`] decided.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Every enforced limit had room; every charge was applied.
    Granted {
        /// The reservation to commit or release later.
        reservation: Reservation,
        /// Each charge's counter after the reservation, aligned with the charges.
        states: Vec<CounterState>,
    },
    /// An enforced limit had no room; nothing was charged.
    Denied {
        /// Index of the first charge that did not fit.
        index: usize,
        /// That counter's state (without this request).
        state: CounterState,
    },
}

/// A granted reservation: which counters were charged, with how much, in which windows.
/// Committing or releasing it touches exactly those counters, even if the window has
/// turned meanwhile (the charge belongs to the window it was made in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The counters charged, aligned with the charges passed to `reserve`.
    pub entries: Vec<ReservedEntry>,
    /// Whether a [`FailoverStore`] made it on its local store while the primary was down,
    /// so that committing it goes to the store that holds the charge.
    pub fallback: bool,
}

/// One charged counter inside a [`Reservation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedEntry {
    /// The full counter key (spec id, scope key, window start). Shared: the memory store
    /// hands out the key its counter is stored under, so a reservation allocates no key.
    pub counter: Arc<str>,
    /// The amount reserved.
    pub amount: u64,
    /// Whether the counter is a gauge (released on completion whatever the commit says).
    pub gauge: bool,
    /// When the counter may be forgotten (end of its window).
    pub expires_at: Option<SystemTime>,
    /// The gauge lease this entry holds in a shared store ([`RedisStore`]), which the commit
    /// or release gives back; `None` for windowed counters and in [`MemoryStore`].
    pub lease: Option<String>,
}

/// A backend failed (Redis unreachable); the caller applies its configured failure mode.
#[derive(Debug, Clone, thiserror::Error)]
#[error("limit store unavailable: {0}")]
pub struct StoreError(pub String);

/// Where counters live. Implementations must make [`LimitStore::reserve`] atomic across
/// everything that shares the store (threads, or replicas sharing one Redis).
#[async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Checks every enforced charge against its limit and, if all fit, applies all charges.
    async fn reserve(&self, charges: &[Charge], now: SystemTime) -> Result<Decision, StoreError>;

    /// Like [`LimitStore::reserve`], and where every enforced charge fits, also takes up to
    /// `pads[i]` more for charge `i` (windowed counters only), as much as fits under its
    /// limit and burst (all of it for a soft cap), in the same atomic step. The granted
    /// entries' amounts include what was taken. A [`PrefetchStore`] asks for its allotments
    /// this way. Stores that cannot pad in one step get this default: the padded amounts
    /// first, then, if a windowed charge did not fit, the bare ones.
    async fn reserve_padded(
        &self,
        charges: &[Charge],
        pads: &[u64],
        now: SystemTime,
    ) -> Result<Decision, StoreError> {
        reserve_padded_in_two_steps(self, charges, pads, now).await
    }

    /// Reserves without the caller awaiting, when the store can decide at once: `Some` with
    /// what [`LimitStore::reserve`] would answer, or `None` when the caller must await
    /// `reserve` (a store across the network). [`MemoryStore`] decides at once, which spares
    /// every request the boxed future an awaited call costs.
    fn reserve_now(
        &self,
        _charges: &[Charge],
        _now: SystemTime,
    ) -> Option<Result<Decision, StoreError>> {
        None
    }

    /// Replaces each reserved amount by the real one (`actual` aligned with the entries):
    /// the counter moves by `actual - reserved`. Gauges are released.
    async fn commit(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), StoreError>;

    /// Commits without the caller awaiting it, when the store can: `Some` with the outcome
    /// so far, or `None` when the caller must await [`LimitStore::commit`] (on a task of its
    /// own). [`MemoryStore`] applies it at once; [`RedisStore`] queues it and sends it in the
    /// background, coalesced with the others queued meanwhile (or a reservation carries it).
    /// Lets a request's completion hook, which must not wait, skip spawning a task.
    /// [`LimitStore::flush`] sends what is queued.
    fn commit_detached(
        &self,
        _reservation: &Reservation,
        _actual: &[u64],
    ) -> Option<Result<(), StoreError>> {
        None
    }

    /// Sends every commit still queued by [`LimitStore::commit_detached`] and waits for it
    /// to be applied: at graceful shutdown, so that nothing committed is lost.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Gives every reserved amount back (the call failed before anything was used).
    async fn release(&self, reservation: &Reservation) -> Result<(), StoreError> {
        let zeros = vec![0; reservation.entries.len()];
        self.commit(reservation, &zeros).await
    }

    /// What a counter holds now, for admin views and tests.
    async fn current(
        &self,
        spec: &LimitSpec,
        scope_key: &str,
        now: SystemTime,
    ) -> Result<u64, StoreError>;

    /// Every live counter of `spec` in the window containing `now` (for a gauge: every scope
    /// instance with requests in flight), as `(scope_key, used)` sorted by scope key. Read
    /// only, for the admin API: scope instances are not known in advance (users, keys), so
    /// the store is the one that can list them.
    async fn usage(
        &self,
        spec: &LimitSpec,
        now: SystemTime,
    ) -> Result<Vec<(String, u64)>, StoreError>;
}

/// [`LimitStore::reserve_padded`] for a store that cannot pad in one step: the padded
/// amounts first, then, if a padded windowed charge did not fit, the bare ones (a second
/// round trip, near the limit only).
pub(crate) async fn reserve_padded_in_two_steps<S: LimitStore + ?Sized>(
    store: &S,
    charges: &[Charge],
    pads: &[u64],
    now: SystemTime,
) -> Result<Decision, StoreError> {
    let padded: Vec<Charge> = charges
        .iter()
        .zip(pads.iter().chain(std::iter::repeat(&0)))
        .map(|(c, &pad)| Charge {
            amount: c
                .amount
                .saturating_add(if c.spec.window.is_some() { pad } else { 0 }),
            ..c.clone()
        })
        .collect();
    match store.reserve(&padded, now).await? {
        Decision::Denied { index, .. }
            if pads.get(index).is_some_and(|&p| p > 0) && charges[index].spec.window.is_some() =>
        {
            store.reserve(charges, now).await
        }
        decision => Ok(decision),
    }
}

/// A shared store is a store: several [`PrefetchStore`]s (replicas, in tests) over one.
#[async_trait]
impl<T: LimitStore + ?Sized> LimitStore for Arc<T> {
    async fn reserve(&self, charges: &[Charge], now: SystemTime) -> Result<Decision, StoreError> {
        (**self).reserve(charges, now).await
    }

    async fn reserve_padded(
        &self,
        charges: &[Charge],
        pads: &[u64],
        now: SystemTime,
    ) -> Result<Decision, StoreError> {
        (**self).reserve_padded(charges, pads, now).await
    }

    fn reserve_now(
        &self,
        charges: &[Charge],
        now: SystemTime,
    ) -> Option<Result<Decision, StoreError>> {
        (**self).reserve_now(charges, now)
    }

    async fn commit(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), StoreError> {
        (**self).commit(reservation, actual).await
    }

    fn commit_detached(
        &self,
        reservation: &Reservation,
        actual: &[u64],
    ) -> Option<Result<(), StoreError>> {
        (**self).commit_detached(reservation, actual)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        (**self).flush().await
    }

    async fn release(&self, reservation: &Reservation) -> Result<(), StoreError> {
        (**self).release(reservation).await
    }

    async fn current(
        &self,
        spec: &LimitSpec,
        scope_key: &str,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        (**self).current(spec, scope_key, now).await
    }

    async fn usage(
        &self,
        spec: &LimitSpec,
        now: SystemTime,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        (**self).usage(spec, now).await
    }
}

/// The scope key of a counter key made by [`counter_key`] for `spec` in the window containing
/// `now`, if the counter belongs to that limit and window (for a rolling window, its current
/// or its previous bucket: both count now).
pub fn scope_of_counter<'a>(
    spec: &LimitSpec,
    counter: &'a str,
    now: SystemTime,
) -> Option<&'a str> {
    let scoped = counter.strip_prefix(spec.id.as_str())?.strip_prefix('|')?;
    let Some(window) = spec.window else {
        return scoped.strip_suffix("gauge")?.strip_suffix('|');
    };
    let (_, bucket) = scoped.rsplit_once('|')?;
    let start: u64 = bucket.parse().ok()?;
    let current = window.bounds(now).0;
    let previous = window.previous_bucket(now).map(|(start, _)| start);
    (start == current || Some(start) == previous)
        .then(|| &scoped[..scoped.len() - bucket.len() - 1])
}

/// The counter key for `spec` and `scope_key` in the window containing `now`, and when that
/// window ends. Shared by every backend so that they name counters alike.
pub fn counter_key(
    spec: &LimitSpec,
    scope_key: &str,
    now: SystemTime,
) -> (String, Option<SystemTime>) {
    let mut key = String::with_capacity(spec.id.len() + scope_key.len() + 24);
    let end = write_counter_key(&mut key, spec, scope_key, now);
    (key, end)
}

/// [`counter_key`] written into `key` (cleared first), for a caller that reuses one buffer
/// instead of allocating a key per limit per request; returns when the window ends.
pub fn write_counter_key(
    key: &mut String,
    spec: &LimitSpec,
    scope_key: &str,
    now: SystemTime,
) -> Option<SystemTime> {
    // Built by hand rather than with `format!`: this runs for every limit of every request.
    key.clear();
    key.push_str(&spec.id);
    key.push('|');
    key.push_str(scope_key);
    key.push('|');
    match spec.window {
        Some(window) => {
            let (start, end) = window.bounds(now);
            key.push_str(itoa::Buffer::new().format(start));
            Some(end)
        }
        None => {
            key.push_str("gauge");
            None
        }
    }
}

/// For a rolling window: the counter key of the previous bucket and its weight now (see
/// [`Window::previous_bucket`]); `None` for every other window.
pub fn previous_counter_key(
    spec: &LimitSpec,
    scope_key: &str,
    now: SystemTime,
) -> Option<(String, u64)> {
    let (start, weight) = spec.window?.previous_bucket(now)?;
    Some((format!("{}|{}|{}", spec.id, scope_key, start), weight))
}

/// Until when a counter whose window ends at `end` must be kept: a rolling window reads a
/// bucket for one more length after it ends.
pub fn keep_until(spec: &LimitSpec, end: SystemTime) -> SystemTime {
    end + spec.window.map_or(Duration::ZERO, Window::retention)
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
