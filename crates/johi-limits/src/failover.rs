//! What the gateway does when its shared store (Redis) cannot be reached: a declared failure
//! mode, not a crash, a hang, or a log line per request.
//!
//! [`FailoverStore`] sends every call to the primary store while it answers. The first error
//! starts an *outage*: it is logged once (`warn`), and from then on calls go straight to the
//! mode's answer without waiting on the primary, except one call at most every
//! [probe interval](FailoverStore::with_probe_interval), which tries the primary again. The
//! first probe that succeeds ends the outage (logged once, `info`). Nobody has to restart
//! anything.
//!
//! During an outage, [`OutageMode::FailOpen`] counts in a local [`MemoryStore`]: limits are
//! still enforced, but per replica and from zero, so N replicas may together admit up to N
//! times a limit for the windows the outage spans; what was counted locally is not copied to
//! the primary afterwards. [`OutageMode::FailClosed`] returns the [`StoreError`] (the gateway
//! answers 503): no request passes unmetered.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use crate::{
    Charge, Decision, LimitSpec, LimitStore, MemoryStore, RedisStore, Reservation, StoreError,
};

/// What a [`FailoverStore`] answers while its primary is unreachable.
///
/// Not the pipeline's processor failure mode: this decides whether the *store* answers at all
/// (and from where); the limits processor then treats a [`StoreError`] as its own failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageMode {
    /// Count in this replica's memory: limits hold per replica, requests keep flowing.
    FailOpen,
    /// Return the [`StoreError`]: requests are refused until the primary is back.
    FailClosed,
}

impl fmt::Display for OutageMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutageMode::FailOpen => "fail-open",
            OutageMode::FailClosed => "fail-closed",
        })
    }
}

/// A primary store (Redis) with a local [`MemoryStore`] behind it. See the module docs.
#[derive(Debug)]
pub struct FailoverStore<P = RedisStore> {
    primary: P,
    local: MemoryStore,
    mode: OutageMode,
    probe_every: Duration,
    degraded: AtomicBool,
    outage: Mutex<Outage>,
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    next_probe: Instant,
    error: StoreError,
}

/// Where one call goes.
enum Route {
    /// To the primary; `probe` when it is the one call that tests a primary believed down.
    Primary { probe: bool },
    /// Straight to the outage answer.
    Down(StoreError),
}

impl<P: LimitStore> FailoverStore<P> {
    /// Wraps `primary`; during an outage, answers as `mode` says. Probes a primary believed
    /// down at most once a second (see [`FailoverStore::with_probe_interval`]).
    pub fn new(primary: P, mode: OutageMode) -> Self {
        let now = Instant::now();
        Self {
            primary,
            local: MemoryStore::new(),
            mode,
            probe_every: Duration::from_secs(1),
            degraded: AtomicBool::new(false),
            outage: Mutex::new(Outage {
                since: now,
                next_probe: now,
                error: StoreError(String::new()),
            }),
        }
    }

    /// How often a call tries the primary again during an outage (the others do not wait on
    /// it).
    pub fn with_probe_interval(mut self, every: Duration) -> Self {
        self.probe_every = every;
        self
    }

    /// Whether an outage is under way (for `/readyz` and metrics).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// The outage answer mode.
    pub fn mode(&self) -> OutageMode {
        self.mode
    }

    /// The primary store.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// The local store used during outages in [`OutageMode::FailOpen`].
    pub fn local(&self) -> &MemoryStore {
        &self.local
    }

    fn lock(&self) -> MutexGuard<'_, Outage> {
        // Every update of `Outage` is a plain assignment: a poisoned lock is still consistent.
        self.outage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn route(&self) -> Route {
        if !self.is_degraded() {
            return Route::Primary { probe: false };
        }
        let mut outage = self.lock();
        let now = Instant::now();
        if now >= outage.next_probe {
            outage.next_probe = now + self.probe_every;
            Route::Primary { probe: true }
        } else {
            Route::Down(outage.error.clone())
        }
    }

    /// Notes how a call to the primary went: the first error starts an outage, a successful
    /// probe ends it. Each transition is logged once.
    fn record<T>(&self, result: &Result<T, StoreError>, probe: bool) {
        match result {
            // A call that started before the outage proves nothing about now: only a probe
            // ends it.
            Ok(_) if !probe => {}
            Ok(_) => {
                let outage = self.lock();
                if self.degraded.swap(false, Ordering::AcqRel) {
                    tracing::info!(
                        after = ?outage.since.elapsed(),
                        "limit store reachable again: counting in the shared store"
                    );
                }
            }
            Err(error) => {
                let mut outage = self.lock();
                outage.error = error.clone();
                if !self.degraded.swap(true, Ordering::AcqRel) {
                    let now = Instant::now();
                    outage.since = now;
                    outage.next_probe = now + self.probe_every;
                    tracing::warn!(
                        %error,
                        mode = %self.mode,
                        "limit store unreachable: {}",
                        match self.mode {
                            OutageMode::FailOpen => "counting in this replica's memory until it is back",
                            OutageMode::FailClosed => "refusing limited requests until it is back",
                        }
                    );
                }
            }
        }
    }

    /// Runs `on_primary` unless an outage says not to, and falls back to `on_local`
    /// (fail-open) or the error (fail-closed). Neither future runs unless awaited here.
    async fn call<T>(
        &self,
        on_primary: impl Future<Output = Result<T, StoreError>>,
        on_local: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let error = match self.route() {
            Route::Primary { probe } => {
                let result = on_primary.await;
                self.record(&result, probe);
                match result {
                    Ok(value) => return Ok(value),
                    Err(error) => error,
                }
            }
            Route::Down(error) => error,
        };
        match self.mode {
            OutageMode::FailOpen => on_local.await,
            OutageMode::FailClosed => Err(error),
        }
    }
}

#[async_trait]
impl<P: LimitStore> LimitStore for FailoverStore<P> {
    async fn reserve(&self, charges: &[Charge], now: SystemTime) -> Result<Decision, StoreError> {
        let on_local = async {
            let mut decision = self.local.reserve(charges, now).await?;
            if let Decision::Granted { reservation, .. } = &mut decision {
                reservation.fallback = true;
            }
            Ok(decision)
        };
        self.call(self.primary.reserve(charges, now), on_local)
            .await
    }

    /// Decided at once when the primary can (a [`PrefetchStore`](crate::PrefetchStore)
    /// serving from its allotment) and no outage is under way; otherwise the caller awaits
    /// [`LimitStore::reserve`], which routes, probes and falls back.
    fn reserve_now(
        &self,
        charges: &[Charge],
        now: SystemTime,
    ) -> Option<Result<Decision, StoreError>> {
        if self.is_degraded() {
            return None;
        }
        self.primary.reserve_now(charges, now)
    }

    /// A reservation is committed where it was made. One made on the primary cannot be
    /// corrected during an outage: fail-open drops the correction (the estimate stays in the
    /// window, a gauge lease expires by itself), fail-closed returns the error.
    async fn commit(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), StoreError> {
        if reservation.fallback {
            return self.local.commit(reservation, actual).await;
        }
        self.call(self.primary.commit(reservation, actual), async { Ok(()) })
            .await
    }

    fn commit_detached(
        &self,
        reservation: &Reservation,
        actual: &[u64],
    ) -> Option<Result<(), StoreError>> {
        // Committed where it was made. The primary's queue is sent whatever the outage state:
        // a correction that cannot reach it is dropped (the estimate stands, a lease expires),
        // as `commit` drops it during an outage.
        if reservation.fallback {
            self.local.commit_detached(reservation, actual)
        } else {
            self.primary.commit_detached(reservation, actual)
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.primary.flush().await
    }

    async fn current(
        &self,
        spec: &LimitSpec,
        scope_key: &str,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        self.call(
            self.primary.current(spec, scope_key, now),
            self.local.current(spec, scope_key, now),
        )
        .await
    }

    async fn usage(
        &self,
        spec: &LimitSpec,
        now: SystemTime,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.call(self.primary.usage(spec, now), self.local.usage(spec, now))
            .await
    }
}
