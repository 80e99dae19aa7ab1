//! Counting ahead ([`PrefetchStore`]): served from the allotment without a trip, never more
//! than the limit across replicas, corrections settled locally, idle allotments given back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use super::{cases, charge, spec, t0};
use crate::testing::{patient, RedisServer};
use crate::{
    Charge, Decision, FailoverStore, LimitSpec, LimitStore, MemoryStore, OutageMode, PrefetchStore,
    Reservation, StoreError, Window,
};

/// A shared store that counts the trips made to it.
#[derive(Default)]
struct Counted {
    store: MemoryStore,
    reserves: AtomicUsize,
    commits: AtomicUsize,
    /// Answers every reservation with an error, as an unreachable Redis would.
    down: std::sync::atomic::AtomicBool,
    /// Pads in two steps (the trait's default), as a store without native padding does.
    two_step: bool,
}

impl Counted {
    fn reserves(&self) -> usize {
        self.reserves.load(Ordering::SeqCst)
    }

    /// Counts one trip; fails it while the store is down.
    fn trip(&self) -> Result<(), StoreError> {
        self.reserves.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError("down".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl LimitStore for Counted {
    async fn reserve(&self, charges: &[Charge], now: SystemTime) -> Result<Decision, StoreError> {
        self.trip()?;
        self.store.reserve(charges, now).await
    }

    async fn reserve_padded(
        &self,
        charges: &[Charge],
        pads: &[u64],
        now: SystemTime,
    ) -> Result<Decision, StoreError> {
        if self.two_step {
            return crate::reserve_padded_in_two_steps(self, charges, pads, now).await;
        }
        self.trip()?;
        self.store.reserve_padded(charges, pads, now).await
    }

    async fn commit(&self, reservation: &Reservation, actual: &[u64]) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.store.commit(reservation, actual).await
    }

    fn commit_detached(
        &self,
        reservation: &Reservation,
        actual: &[u64],
    ) -> Option<Result<(), StoreError>> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.store.commit_detached(reservation, actual)
    }

    async fn current(
        &self,
        spec: &LimitSpec,
        scope_key: &str,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        self.store.current(spec, scope_key, now).await
    }

    async fn usage(
        &self,
        spec: &LimitSpec,
        now: SystemTime,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.store.usage(spec, now).await
    }
}

/// One granted charge of `amount` on `spec` for `scope`.
async fn take(
    store: &impl LimitStore,
    spec: &Arc<LimitSpec>,
    scope: &str,
    amount: u64,
    now: SystemTime,
) -> (Reservation, Vec<crate::CounterState>) {
    granted(
        store
            .reserve(&[charge(spec, scope, amount)], now)
            .await
            .unwrap(),
    )
}

fn granted(decision: Decision) -> (Reservation, Vec<crate::CounterState>) {
    match decision {
        Decision::Granted {
            reservation,
            states,
        } => (reservation, states),
        Decision::Denied { index, state } => panic!("denied at {index}: {state:?}"),
    }
}

/// Ten percent of the limit per trip: the next requests are served in memory.
#[tokio::test]
async fn requests_are_served_from_the_allotment_without_a_trip() {
    let shared = Arc::new(Counted::default());
    let store = PrefetchStore::new(shared.clone(), 100_000);
    let tokens = spec("tpm", Some(Window::Minute), 1_000);
    let now = t0();
    let (_, states) = take(&store, &tokens, "key:a", 10, now).await;
    assert_eq!(shared.reserves(), 1);
    assert_eq!(shared.current(&tokens, "key:a", now).await.unwrap(), 110);
    assert_eq!(store.held(&tokens, "key:a", now), 100);
    assert_eq!(
        states[0].used, 10,
        "reported: the counter less what is held"
    );
    for i in 1..=10 {
        let decision = store
            .reserve_now(&[charge(&tokens, "key:a", 10)], now)
            .expect("decided in memory")
            .unwrap();
        let (_, states) = granted(decision);
        assert_eq!(states[0].used, 10 + 10 * i);
    }
    assert_eq!(shared.reserves(), 1, "ten requests, no trip");
    assert!(store
        .reserve_now(&[charge(&tokens, "key:a", 10)], now)
        .is_none());
    take(&store, &tokens, "key:a", 10, now).await;
    assert_eq!(shared.reserves(), 2, "the allotment ran out: one more trip");
    assert_eq!(shared.current(&tokens, "key:a", now).await.unwrap(), 220);
    // A new window starts without an allotment.
    let next = now + Duration::from_secs(60);
    assert!(store
        .reserve_now(&[charge(&tokens, "key:a", 1)], next)
        .is_none());
}

/// Every charge of a request must fit its allotment; otherwise one trip takes them all.
#[tokio::test]
async fn a_request_is_local_only_if_every_limit_is() {
    let shared = Arc::new(Counted::default());
    let store = PrefetchStore::new(shared.clone(), 100_000);
    let tokens = spec("tpm", Some(Window::Minute), 1_000);
    let requests = spec("rpm", Some(Window::Minute), 10);
    let concurrent = spec("conc", None, 5);
    let now = t0();
    let both = [charge(&tokens, "key:a", 10), charge(&requests, "key:a", 1)];
    granted(store.reserve(&both, now).await.unwrap());
    // rpm's allotment is one request (10 % of 10): the second request is local, the third
    // is not.
    assert!(store.reserve_now(&both, now).is_some());
    assert!(store.reserve_now(&both, now).is_none());
    granted(store.reserve(&both, now).await.unwrap());
    assert_eq!(shared.reserves(), 2);
    // A gauge is never counted ahead.
    let with_gauge = [charge(&tokens, "key:a", 1), charge(&concurrent, "org:a", 1)];
    assert!(store.reserve_now(&with_gauge, now).is_none());
    let (reservation, _) = granted(store.reserve(&with_gauge, now).await.unwrap());
    assert_eq!(shared.current(&concurrent, "org:a", now).await.unwrap(), 1);
    store.commit(&reservation, &[1, 1]).await.unwrap();
    assert_eq!(
        shared.current(&concurrent, "org:a", now).await.unwrap(),
        0,
        "the gauge is released in the shared store"
    );
}

/// What a request did not use goes back into the allotment; an overrun comes out of it, and
/// what the allotment cannot cover is charged in the shared store.
#[tokio::test]
async fn corrections_are_settled_against_the_allotment() {
    let shared = Arc::new(Counted::default());
    let store = PrefetchStore::new(shared.clone(), 100_000);
    let tokens = spec("tpm", Some(Window::Minute), 1_000);
    let now = t0();
    let one = |n| [charge(&tokens, "key:a", n)];
    let (first, _) = granted(store.reserve(&one(10), now).await.unwrap());
    store.commit(&first, &[4]).await.unwrap();
    assert_eq!(store.held(&tokens, "key:a", now), 106);
    let (second, _) = granted(store.reserve(&one(10), now).await.unwrap());
    store.commit(&second, &[50]).await.unwrap();
    assert_eq!(store.held(&tokens, "key:a", now), 56);
    assert_eq!(shared.commits.load(Ordering::SeqCst), 0, "all settled here");
    assert_eq!(shared.current(&tokens, "key:a", now).await.unwrap(), 110);
    let (third, _) = granted(store.reserve(&one(10), now).await.unwrap());
    assert!(store
        .commit_detached(&third, &[100])
        .is_some_and(|r| r.is_ok()));
    assert_eq!(store.held(&tokens, "key:a", now), 0);
    assert_eq!(
        shared.current(&tokens, "key:a", now).await.unwrap(),
        110 + 44,
        "the overrun beyond the allotment (90 - 46) is charged in the shared store"
    );
    // Given back, the shared counter holds exactly what was used: 4 + 50 + 100.
    store.flush().await.unwrap();
    assert_eq!(shared.current(&tokens, "key:a", now).await.unwrap(), 154);
}

/// Only allotments idle since the mark go back; flushing gives back every one.
#[tokio::test]
async fn idle_allotments_are_given_back() {
    let shared = Arc::new(Counted::default());
    let store = PrefetchStore::new(shared.clone(), 100_000);
    let tokens = spec("tpm", Some(Window::Day), 1_000);
    let now = SystemTime::now();
    let (a, _) = take(&store, &tokens, "key:a", 10, now).await;
    store.commit(&a, &[10]).await.unwrap();
    let mark = Instant::now();
    let (b, _) = take(&store, &tokens, "key:b", 10, now).await;
    store.commit(&b, &[10]).await.unwrap();
    store.give_back(Some(mark)).await.unwrap();
    assert_eq!(store.held(&tokens, "key:a", now), 0);
    assert_eq!(shared.current(&tokens, "key:a", now).await.unwrap(), 10);
    assert_eq!(
        store.held(&tokens, "key:b", now),
        100,
        "used after the mark: kept"
    );
    assert_eq!(shared.current(&tokens, "key:b", now).await.unwrap(), 110);
    store.flush().await.unwrap();
    assert_eq!(shared.current(&tokens, "key:b", now).await.unwrap(), 10);
}

/// The background sweeper gives an idle allotment back by itself.
#[tokio::test]
async fn the_sweeper_gives_back_without_being_asked() {
    let shared = Arc::new(Counted::default());
    let store = PrefetchStore::new(shared.clone(), 100_000);
    let tokens = spec("tpm", Some(Window::Day), 1_000);
    let now = SystemTime::now();
    let (a, _) = take(&store, &tokens, "key:a", 10, now).await;
    store.commit(&a, &[7]).await.unwrap();
    let deadline = Instant::now() + crate::IDLE_GIVE_BACK * 4;
    while shared.current(&tokens, "key:a", now).await.unwrap() != 7 {
        assert!(Instant::now() < deadline, "never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.held(&tokens, "key:a", now), 0);
}

/// Near the limit the padding gives way, in the same trip: a request that fits is served
/// with what is left of the allotment; the limit is still the limit.
#[tokio::test]
async fn near_the_limit_the_padding_gives_way() {
    let shared = Arc::new(Counted::default());
    let store = PrefetchStore::new(shared.clone(), 500_000);
    let tokens = spec("tpm", Some(Window::Minute), 100);
    let now = t0();
    take(&store, &tokens, "key:a", 60, now).await;
    assert_eq!(
        shared.reserves(),
        1,
        "60 and what fits of the padding, in one trip"
    );
    assert_eq!(store.held(&tokens, "key:a", now), 40);
    take(&store, &tokens, "key:a", 40, now).await;
    assert_eq!(shared.reserves(), 1, "served from the allotment");
    let denied = store
        .reserve(&[charge(&tokens, "key:a", 1)], now)
        .await
        .unwrap();
    assert!(matches!(denied, Decision::Denied { .. }));
    assert_eq!(shared.reserves(), 2);
    assert_eq!(shared.current(&tokens, "key:a", now).await.unwrap(), 100);
}

/// A shared store that cannot pad in one step gets the trait's default: padded, then bare.
#[tokio::test]
async fn without_native_padding_a_trip_near_the_limit_takes_two_steps() {
    let shared = Arc::new(Counted {
        two_step: true,
        ..Counted::default()
    });
    let store = PrefetchStore::new(shared.clone(), 500_000);
    let tokens = spec("tpm", Some(Window::Minute), 100);
    let now = t0();
    take(&store, &tokens, "key:a", 60, now).await;
    assert_eq!(shared.reserves(), 2, "60 + 50 did not fit; 60 did");
    assert_eq!(store.held(&tokens, "key:a", now), 0);
    take(&store, &tokens, "key:a", 10, now).await;
    assert_eq!(
        shared.reserves(),
        4,
        "again two steps: 70 + 50 did not fit, 70 did"
    );
    assert_eq!(shared.current(&tokens, "key:a", now).await.unwrap(), 70);
}

/// Behind the failover store (as the gateway runs it), an allotment is served at once; an
/// unreachable shared store starts the outage, and then the outage mode answers.
#[tokio::test]
async fn the_failover_store_serves_allotments_at_once_until_an_outage() {
    let shared = Arc::new(Counted::default());
    let store = FailoverStore::new(
        PrefetchStore::new(shared.clone(), 100_000),
        OutageMode::FailClosed,
    );
    let tokens = spec("tpm", Some(Window::Minute), 1_000);
    let now = t0();
    assert!(store
        .reserve_now(&[charge(&tokens, "key:a", 10)], now)
        .is_none());
    take(&store, &tokens, "key:a", 10, now).await;
    let decided = store.reserve_now(&[charge(&tokens, "key:a", 10)], now);
    assert!(decided.is_some_and(|d| d.is_ok()), "from the allotment");
    shared.down.store(true, Ordering::SeqCst);
    take(&store, &tokens, "key:a", 10, now).await;
    assert!(
        store
            .reserve(&[charge(&tokens, "key:b", 10)], now)
            .await
            .is_err(),
        "key:b needs the shared store: fail-closed"
    );
    assert!(store.is_degraded());
    assert!(
        store
            .reserve_now(&[charge(&tokens, "key:a", 10)], now)
            .is_none(),
        "during the outage every request goes through the outage mode"
    );
    assert!(store
        .reserve(&[charge(&tokens, "key:a", 10)], now)
        .await
        .is_err());
}

/// Two replicas counting ahead on one memory store: one budget, never overshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_racing_requests_on_two_prefetching_replicas() {
    let shared = Arc::new(MemoryStore::new());
    let a: Arc<dyn LimitStore> = Arc::new(PrefetchStore::new(shared.clone(), 10_000));
    let b: Arc<dyn LimitStore> = Arc::new(PrefetchStore::new(shared, 10_000));
    cases::five_hundred_racing_requests_never_overshoot_the_budget(&[a, b], t0()).await;
}

/// The same with real Redis behind both replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_racing_requests_on_two_prefetching_replicas_sharing_redis() {
    let server = RedisServer::start().await;
    let a: Arc<dyn LimitStore> =
        Arc::new(PrefetchStore::new(server.store(patient()).await, 10_000));
    let b: Arc<dyn LimitStore> =
        Arc::new(PrefetchStore::new(server.store(patient()).await, 10_000));
    cases::five_hundred_racing_requests_never_overshoot_the_budget(&[a, b], t0()).await;
}
