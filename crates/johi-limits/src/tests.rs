#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Tests. The behavioural cases in `cases` run against [`MemoryStore`](crate::MemoryStore)
//! and [`RedisStore`](crate::RedisStore) alike (the same code, the same times), so both
//! backends are held to one semantics; `redis` and `failover` test what only Redis has. The
//! Redis tests start their own `redis-server` (see `crate::testing`).

mod cases;
mod failover;
mod prefetch;
mod redis;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Charge, LimitSpec, Window};

fn spec(id: &str, window: Option<Window>, limit: u64) -> Arc<LimitSpec> {
    Arc::new(LimitSpec {
        id: id.into(),
        window,
        limit,
        burst: 0,
    })
}

fn charge(spec: &Arc<LimitSpec>, scope: &str, amount: u64) -> Charge {
    Charge {
        spec: spec.clone(),
        scope_key: scope.into(),
        amount,
        enforce: true,
    }
}

/// The start of the next hour: a known position in every window, and late enough that Redis
/// does not expire the keys the moment they are written.
fn t0() -> SystemTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(secs - secs % 3600 + 3600)
}

/// One test per case and backend: `memory::case` and `on_redis::case`.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::cases::$case(&crate::MemoryStore::new(), super::t0()).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test]
                async fn $case() {
                    let server = crate::testing::RedisServer::start().await;
                    let store = server.store(crate::testing::patient()).await;
                    super::cases::$case(&store, super::t0()).await;
                }
            )*
        }
    };
}

on_both_backends!(
    all_limits_are_charged_or_none,
    commit_replaces_the_estimate_and_release_gives_it_back,
    soft_caps_count_but_never_deny_and_burst_adds_room,
    a_gauge_counts_requests_in_flight,
    a_charge_belongs_to_the_window_it_was_made_in,
    a_rolling_window_slides_instead_of_resetting,
    usage_lists_the_live_counters_of_one_limit_and_window,
    a_padded_reservation_takes_what_fits,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_racing_requests_on_one_memory_store() {
    let store: Arc<dyn crate::LimitStore> = Arc::new(crate::MemoryStore::new());
    cases::five_hundred_racing_requests_never_overshoot_the_budget(&[store], t0()).await;
}

#[tokio::test]
async fn an_in_memory_commit_happens_at_once_without_a_task() {
    use crate::{Decision, LimitStore};
    let store = crate::MemoryStore::new();
    let tokens = spec("now", Some(Window::Hour), 100);
    let now = t0();
    let Decision::Granted { reservation, .. } = store
        .reserve(&[charge(&tokens, "key:a", 60)], now)
        .await
        .unwrap()
    else {
        panic!("expected granted")
    };
    assert!(matches!(
        store.commit_detached(&reservation, &[25]),
        Some(Ok(()))
    ));
    assert_eq!(store.current(&tokens, "key:a", now).await.unwrap(), 25);
}

/// The memory store decides a reservation without a future, as `reserve` would (granted,
/// then denied at the limit, counting what it granted); Redis leaves it to `reserve`.
#[tokio::test]
async fn only_the_memory_store_reserves_without_awaiting() {
    use crate::{Decision, LimitStore};
    let store = crate::MemoryStore::new();
    let requests = spec("now", Some(Window::Hour), 2);
    let now = t0();
    let one = [charge(&requests, "key:a", 1)];
    for _ in 0..2 {
        assert!(matches!(
            store.reserve_now(&one, now),
            Some(Ok(Decision::Granted { .. }))
        ));
    }
    assert!(matches!(
        store.reserve_now(&one, now),
        Some(Ok(Decision::Denied { index: 0, .. }))
    ));
    assert_eq!(store.current(&requests, "key:a", now).await.unwrap(), 2);

    let server = crate::testing::RedisServer::start().await;
    let redis = server.store(crate::testing::patient()).await;
    assert!(redis.reserve_now(&one, now).is_none());
}

/// A counter already stored lends its key to every later reservation (no key allocated per
/// request); a counter of another window gets a key of its own.
#[tokio::test]
async fn memory_reservations_share_their_counters_keys() {
    use crate::{Decision, LimitStore};
    let store = crate::MemoryStore::new();
    let requests = spec("shared", Some(Window::Minute), 100);
    let now = t0();
    let counter = |now| {
        let Some(Ok(Decision::Granted { reservation, .. })) =
            store.reserve_now(&[charge(&requests, "key:a", 1)], now)
        else {
            panic!("expected granted")
        };
        reservation.entries[0].counter.clone()
    };
    let (first, second) = (counter(now), counter(now + Duration::from_secs(1)));
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    let next_minute = counter(now + Duration::from_secs(60));
    assert_ne!(first, next_minute);
    assert_eq!(store.current(&requests, "key:a", now).await.unwrap(), 2);
}
