//! Counting ahead: a replica reserves a share of each windowed limit in the shared store and
//! serves its next requests from it, without a round trip.
//!
//! Why: with every check in Redis, every limited request waits one network round trip plus
//! the reservation script (see bench/README.md: on the benchmark VM, 0.13 ms over the memory
//! store, more than a `PING`). With `prefetch`, a trip to Redis also reserves `share` × the
//! limit for this replica (its *allotment*); the requests after it are charged against the
//! allotment in memory until it runs out, and corrections (the real usage replacing the
//! estimate) go back into it. So most requests make no round trip at all, and Redis sees a
//! fraction of the traffic.
//!
//! What holds, and what it costs:
//!
//! * **Never more than the limit.** An allotment is charged in the shared store, under the
//!   same atomic check as any reservation, before this replica hands any of it out. So
//!   everything the replicas serve, allotments included, still fits under the limit.
//! * **Refused a little early, at most.** A counter in Redis includes what replicas hold and
//!   have not used, so near the end of a budget one replica may be refused while another
//!   holds an unused allotment: about `share × limit` per replica (at most that plus two
//!   requests' estimates: a trip's own unused estimate joins the allotment), less as
//!   allotments are given back. The padding gives way: a trip takes the request's charge and as much of
//!   the allotment as still fits, in the same atomic step and round trip
//!   ([`LimitStore::reserve_padded`]), so a request that fits is never refused for the
//!   padding's sake.
//! * **Given back when idle.** An allotment unused for [`IDLE_GIVE_BACK`] goes back to the
//!   shared store, and so does every allotment at graceful shutdown ([`LimitStore::flush`]).
//!   A replica that crashes keeps its allotments counted until their window ends.
//! * **Reported as counted.** Remaining-allowance headers report the shared counter as of
//!   this replica's last trip, less what it still holds; the admin API reads the shared
//!   counter, which includes the replicas' allotments.
//! * **An outage starts with a request that needs Redis.** Requests that fit an allotment
//!   are served while Redis is unreachable (they were charged in Redis before); the first
//!   one that needs a trip fails, and the [`FailoverStore`](crate::FailoverStore) around
//!   this store then applies its outage mode to every request until Redis is back.
//! * **Gauges are not prefetched.** A concurrent-requests limit is a count of requests in
//!   flight, not an amount to hand out: every reservation that has one goes to the shared
//!   store, as without prefetch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use crate::{
    write_counter_key, Charge, CounterState, Decision, LimitSpec, LimitStore, Reservation,
    ReservedEntry, StoreError,
};

/// How long an allotment may sit unused before it is given back to the shared store.
pub const IDLE_GIVE_BACK: Duration = Duration::from_secs(1);

/// A shared store (Redis) with allotments counted ahead in this replica. See the module docs.
pub struct PrefetchStore<S> {
    shared: Arc<Shared<S>>,
    sweeper: Option<tokio::task::AbortHandle>,
}

struct Shared<S> {
    inner: S,
    /// The allotment share of a limit, in millionths.
    share_ppm: u64,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Keyed by counter key (a window's counter, so a new window starts without allotment).
    allotments: HashMap<Arc<str>, Allotment, foldhash::fast::RandomState>,
    /// Where a reservation writes each counter's key to look it up, reused.
    scratch: String,
}

/// One counter's allotment in this replica.
#[derive(Debug, Clone, Copy)]
struct Allotment {
    /// Charged in the shared store, not yet handed to a request.
    left: u64,
    /// What the shared counter held after this replica's last trip (its allotment included).
    seen_used: u64,
    /// When the counter's window ends (its entries' `expires_at`).
    window_end: Option<SystemTime>,
    /// When a request last took from it or gave to it.
    touched: Instant,
}

impl<S: LimitStore> PrefetchStore<S> {
    /// Counts ahead on `inner`, `share_ppm` millionths of each windowed limit per trip (at
    /// least one unit). Must be called within a Tokio runtime: a task gives idle allotments
    /// back every quarter of [`IDLE_GIVE_BACK`].
    pub fn new(inner: S, share_ppm: u64) -> Self {
        let shared = Arc::new(Shared {
            inner,
            share_ppm,
            held: Mutex::new(Held::default()),
        });
        let sweeper = tokio::spawn(sweep(Arc::downgrade(&shared))).abort_handle();
        Self {
            shared,
            sweeper: Some(sweeper),
        }
    }

    /// The shared store.
    pub fn inner(&self) -> &S {
        &self.shared.inner
    }

    /// What this replica holds unused of `spec`'s counter for `scope_key` now (for tests and
    /// diagnostics).
    pub fn held(&self, spec: &LimitSpec, scope_key: &str, now: SystemTime) -> u64 {
        let mut held = self.shared.lock();
        let held = &mut *held;
        write_counter_key(&mut held.scratch, spec, scope_key, now);
        held.allotments
            .get(held.scratch.as_str())
            .map_or(0, |a| a.left)
    }

    /// Gives every allotment idle since `before` back to the shared store (all of them with
    /// `None`), and forgets those whose window has ended.
    pub async fn give_back(&self, before: Option<Instant>) -> Result<(), StoreError> {
        self.shared.give_back(before, SystemTime::now()).await
    }
}

impl<S> Drop for PrefetchStore<S> {
    fn drop(&mut self) {
        if let Some(sweeper) = self.sweeper.take() {
            sweeper.abort();
        }
    }
}

/// Every quarter of [`IDLE_GIVE_BACK`], gives idle allotments back, until the store is gone.
/// Each pass walks the whole map under the lock (estimated, not measured: ~10 ns an entry,
/// a millisecond for 100 000 live allotments). Past that, keep them in an idle-ordered
/// queue instead.
async fn sweep<S: LimitStore>(shared: Weak<Shared<S>>) {
    let mut tick = tokio::time::interval(IDLE_GIVE_BACK / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let idle_since = Instant::now().checked_sub(IDLE_GIVE_BACK);
        if let Some(before) = idle_since {
            if let Err(error) = shared.give_back(Some(before), SystemTime::now()).await {
                // The allotment stays counted until its window ends: refused early, never
                // over. The outage itself is the failover store's to report.
                tracing::debug!(%error, "could not give an idle limit allotment back");
            }
        }
    }
}

impl<S: LimitStore> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Held> {
        // Every update is a plain assignment to one allotment: a poisoned lock is consistent.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The allotment padding for `spec`: its share of the limit, at least one unit.
    fn padding(&self, spec: &LimitSpec) -> u64 {
        let share = u128::from(spec.limit) * u128::from(self.share_ppm) / 1_000_000;
        u64::try_from(share).unwrap_or(u64::MAX).max(1)
    }

    /// Serves the reservation from allotments if every charge is windowed and fits in its
    /// allotment; `None` when a trip to the shared store is needed.
    fn take_local(&self, charges: &[Charge], now: SystemTime) -> Option<Decision> {
        if charges.iter().any(|c| c.spec.window.is_none()) {
            return None;
        }
        let mut guard = self.lock();
        let held = &mut *guard;
        let mut keys: Vec<Arc<str>> = Vec::with_capacity(charges.len());
        for charge in charges {
            write_counter_key(&mut held.scratch, &charge.spec, &charge.scope_key, now);
            let (key, allotment) = held.allotments.get_key_value(held.scratch.as_str())?;
            if allotment.window_end.is_some_and(|end| end <= now) {
                return None;
            }
            keys.push(key.clone());
        }
        // Each counter must give what all its charges take (one counter may be charged
        // twice), and, as in the stores, at least one unit: an exhausted budget refuses even
        // a zero estimate.
        for key in &keys {
            let need: u64 = charges
                .iter()
                .zip(&keys)
                .filter(|(_, k)| Arc::ptr_eq(k, key))
                .map(|(c, _)| c.amount)
                .fold(0, u64::saturating_add);
            if held
                .allotments
                .get(key)
                .is_none_or(|a| a.left < need.max(1))
            {
                return None;
            }
        }
        let touched = Instant::now();
        let mut entries = Vec::with_capacity(charges.len());
        let mut states = Vec::with_capacity(charges.len());
        for (charge, key) in charges.iter().zip(keys) {
            let allotment = held.allotments.get_mut(&key)?;
            allotment.left -= charge.amount;
            allotment.touched = touched;
            states.push(allotment.state(&charge.spec, now));
            entries.push(ReservedEntry {
                counter: key,
                amount: charge.amount,
                gauge: false,
                expires_at: allotment.window_end,
                lease: None,
            });
        }
        Some(Decision::Granted {
            reservation: Reservation {
                entries,
                fallback: false,
            },
            states,
        })
    }

    /// One trip to the shared store: each windowed charge padded with an allotment, as much
    /// of it as fits ([`LimitStore::reserve_padded`]).
    async fn reserve_remote(
        &self,
        charges: &[Charge],
        now: SystemTime,
    ) -> Result<Decision, StoreError> {
        let pads: Vec<u64> = charges
            .iter()
            .map(|c| match c.spec.window {
                Some(_) => self.padding(&c.spec),
                None => 0,
            })
            .collect();
        let (mut reservation, mut states) =
            match self.inner.reserve_padded(charges, &pads, now).await? {
                Decision::Granted {
                    reservation,
                    states,
                } => (reservation, states),
                denied => return Ok(denied),
            };
        if reservation.fallback {
            // Counted in a fallback store, not the shared one: nothing to hold. The commit
            // replaces the padded amount by the real usage there.
            return Ok(Decision::Granted {
                reservation,
                states,
            });
        }
        let touched = Instant::now();
        let mut held = self.lock();
        for ((charge, entry), state) in charges
            .iter()
            .zip(&mut reservation.entries)
            .zip(&mut states)
        {
            if entry.gauge {
                continue;
            }
            let padding = entry.amount.saturating_sub(charge.amount);
            entry.amount = charge.amount;
            let allotment = held
                .allotments
                .entry(entry.counter.clone())
                .or_insert(Allotment {
                    left: 0,
                    seen_used: 0,
                    window_end: entry.expires_at,
                    touched,
                });
            allotment.left = allotment.left.saturating_add(padding);
            allotment.seen_used = state.used;
            allotment.touched = touched;
            *state = allotment.state(&charge.spec, now);
        }
        Ok(Decision::Granted {
            reservation,
            states,
        })
    }

    /// Settles a commit against the allotments: what a request did not use goes back into
    /// its counter's allotment, what it used beyond its reservation comes out of it. Returns
    /// what must still reach the shared store (gauges, overruns the allotment cannot cover,
    /// and counters no longer held), as a reservation and its actual amounts.
    fn settle(&self, reservation: &Reservation, actual: &[u64]) -> Option<(Reservation, Vec<u64>)> {
        if reservation.fallback {
            return Some((reservation.clone(), actual.to_vec()));
        }
        let mut rest = Reservation {
            entries: Vec::new(),
            fallback: false,
        };
        let mut rest_actual = Vec::new();
        let touched = Instant::now();
        let mut held = self.lock();
        for (i, entry) in reservation.entries.iter().enumerate() {
            let used = actual.get(i).copied().unwrap_or(entry.amount);
            let allotment = if entry.gauge {
                None
            } else {
                held.allotments.get_mut(&entry.counter)
            };
            let Some(allotment) = allotment else {
                rest.entries.push(entry.clone());
                rest_actual.push(used);
                continue;
            };
            allotment.touched = touched;
            if used <= entry.amount {
                allotment.left = allotment.left.saturating_add(entry.amount - used);
                continue;
            }
            let over = used - entry.amount;
            let covered = over.min(allotment.left);
            allotment.left -= covered;
            if over > covered {
                // Charged upwards in the shared store: a reservation of nothing, replaced by
                // the overrun.
                rest.entries.push(ReservedEntry {
                    amount: 0,
                    ..entry.clone()
                });
                rest_actual.push(over - covered);
            }
        }
        (!rest.entries.is_empty()).then_some((rest, rest_actual))
    }

    /// Gives back every allotment untouched since `before` (all with `None`); forgets those
    /// whose window has ended.
    async fn give_back(&self, before: Option<Instant>, now: SystemTime) -> Result<(), StoreError> {
        let mut back = Reservation {
            entries: Vec::new(),
            fallback: false,
        };
        {
            let mut held = self.lock();
            held.allotments.retain(|key, a| {
                if a.window_end.is_some_and(|end| end <= now) {
                    return false;
                }
                if before.is_some_and(|before| a.touched > before) {
                    return true;
                }
                if a.left > 0 {
                    back.entries.push(ReservedEntry {
                        counter: key.clone(),
                        amount: a.left,
                        gauge: false,
                        expires_at: a.window_end,
                        lease: None,
                    });
                }
                false
            });
        }
        if back.entries.is_empty() {
            return Ok(());
        }
        let zeros = vec![0; back.entries.len()];
        self.inner.commit(&back, &zeros).await
    }
}

impl Allotment {
    /// The counter's state as this replica reports it: the shared counter as of its last
    /// trip, less what it still holds unused.
    fn state(&self, spec: &LimitSpec, now: SystemTime) -> CounterState {
        CounterState {
            used: self.seen_used.saturating_sub(self.left),
            limit: spec.limit,
            resets_in: self
                .window_end
                .map(|end| end.duration_since(now).unwrap_or_default()),
        }
    }
}

#[async_trait]
impl<S: LimitStore> LimitStore for PrefetchStore<S> {
    async fn reserve(&self, charges: &[Charge], now: SystemTime) -> Result<Decision, StoreError> {
        if let Some(decision) = self.shared.take_local(charges, now) {
            return Ok(decision);
        }
        self.shared.reserve_remote(charges, now).await
    }

    fn reserve_now(
        &self,
        charges: &[Charge],
        now: SystemTime,
    ) -> Option<Result<Decision, StoreError>> {
        self.shared.take_local(charges, now).map(Ok)
    }

    async fn commit(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), StoreError> {
        match self.shared.settle(reservation, actual) {
            Some((rest, rest_actual)) => self.shared.inner.commit(&rest, &rest_actual).await,
            None => Ok(()),
        }
    }

    fn commit_detached(
        &self,
        reservation: &Reservation,
        actual: &[u64],
    ) -> Option<Result<(), StoreError>> {
        let Some((rest, rest_actual)) = self.shared.settle(reservation, actual) else {
            return Some(Ok(()));
        };
        if let Some(done) = self.shared.inner.commit_detached(&rest, &rest_actual) {
            return Some(done);
        }
        // The allotments are settled already: what is left goes on a task of its own.
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if let Err(error) = shared.inner.commit(&rest, &rest_actual).await {
                tracing::debug!(%error, "a limit correction could not reach the shared store");
            }
        });
        Some(Ok(()))
    }

    /// Gives every allotment back, then sends what the shared store has queued.
    async fn flush(&self) -> Result<(), StoreError> {
        let given = self.shared.give_back(None, SystemTime::now()).await;
        let flushed = self.shared.inner.flush().await;
        given.and(flushed)
    }

    async fn current(
        &self,
        spec: &LimitSpec,
        scope_key: &str,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        self.shared.inner.current(spec, scope_key, now).await
    }

    async fn usage(
        &self,
        spec: &LimitSpec,
        now: SystemTime,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.shared.inner.usage(spec, now).await
    }
}
