//! What only the Redis store has: replicas sharing counters, leases, key layout and expiry,
//! bounded waits.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ::redis::AsyncCommands;

use super::{cases, charge, spec, t0};
use crate::testing::{patient, RedisServer};
use crate::{Decision, LimitStore, RedisOptions, RedisStore, Window};

/// Two replicas (two stores, two connections) share one Redis: one budget between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_racing_requests_on_two_replicas() {
    let server = RedisServer::start().await;
    let a: Arc<dyn LimitStore> = Arc::new(server.store(patient()).await);
    let b: Arc<dyn LimitStore> = Arc::new(server.store(patient()).await);
    cases::five_hundred_racing_requests_never_overshoot_the_budget(&[a, b], t0()).await;
}

/// A replica that crashes holding a concurrency lease holds it only until the lease expires.
#[tokio::test]
async fn a_crashed_replicas_gauge_lease_expires() {
    let server = RedisServer::start().await;
    let options = RedisOptions {
        lease_ttl: Duration::from_secs(2),
        ..patient()
    };
    let concurrent = spec("conc", None, 1);
    let one = [charge(&concurrent, "org:a", 1)];
    let now = SystemTime::now();
    {
        let crashed = server.store(options.clone()).await;
        assert!(matches!(
            crashed.reserve(&one, now).await.unwrap(),
            Decision::Granted { .. }
        ));
        // Never released: the store goes away with its lease.
    }
    let survivor = server.store(options).await;
    let soon = now + Duration::from_secs(1);
    assert!(matches!(
        survivor.reserve(&one, soon).await.unwrap(),
        Decision::Denied { .. }
    ));
    let after_ttl = now + Duration::from_millis(2_001);
    assert_eq!(
        survivor
            .current(&concurrent, "org:a", after_ttl)
            .await
            .unwrap(),
        0
    );
    let Decision::Granted { reservation, .. } = survivor.reserve(&one, after_ttl).await.unwrap()
    else {
        panic!("the expired lease no longer counts")
    };
    assert_eq!(
        survivor
            .current(&concurrent, "org:a", after_ttl)
            .await
            .unwrap(),
        1
    );
    survivor.release(&reservation).await.unwrap();
    assert_eq!(
        survivor
            .current(&concurrent, "org:a", after_ttl)
            .await
            .unwrap(),
        0
    );
}

/// Every key carries the prefix and a TTL, so Redis forgets counters by itself.
#[tokio::test]
async fn keys_carry_the_prefix_and_a_ttl() {
    let server = RedisServer::start().await;
    let store = server
        .store(RedisOptions {
            prefix: "gw7".into(),
            lease_ttl: Duration::from_secs(600),
            ..patient()
        })
        .await;
    let now = SystemTime::now();
    let minute = spec("tpm", Some(Window::Minute), 100);
    let month = spec("tpmo", Some(Window::Month), 100);
    let gauge = spec("conc", None, 5);
    let charges = [
        charge(&minute, "key:a", 10),
        charge(&month, "org:a", 10),
        charge(&gauge, "org:a", 1),
    ];
    let Decision::Granted { reservation, .. } = store.reserve(&charges, now).await.unwrap() else {
        panic!("granted")
    };
    let mut raw = server.raw().await;
    let mut keys: Vec<String> = raw.keys("*").await.unwrap();
    keys.sort();
    assert_eq!(keys.len(), 4, "{keys:?}"); // a gauge is a lease set and an amounts hash
    let margin = crate::redis::EXPIRY_MARGIN.as_millis() as i64;
    for entry in &reservation.entries {
        let full = store.key(&entry.counter);
        assert!(full.starts_with("gw7:"), "{full}");
        assert!(keys.contains(&full), "{full} in {keys:?}");
    }
    for key in &keys {
        assert!(key.starts_with("gw7:"), "{key}");
        let ttl: i64 = raw.pttl(key).await.unwrap();
        let bound = if key.starts_with("gw7:tpm|") {
            60_000 + margin
        } else if key.starts_with("gw7:tpmo|") {
            31 * 86_400_000 + margin
        } else {
            600_000 + margin
        };
        assert!(
            ttl > 0 && ttl <= bound,
            "{key}: PTTL {ttl} not in (0, {bound}]"
        );
    }
}

/// A commit after Redis forgot the counter (its window ended long ago) does not bring the key
/// back without a TTL.
#[tokio::test]
async fn a_late_commit_does_not_resurrect_an_expired_counter() {
    let server = RedisServer::start().await;
    let store = server.store(patient()).await;
    let tokens = spec("tpm", Some(Window::Minute), 100);
    let long_ago = SystemTime::now() - Duration::from_secs(3_600);
    let Decision::Granted { reservation, .. } = store
        .reserve(&[charge(&tokens, "key:a", 10)], long_ago)
        .await
        .unwrap()
    else {
        panic!("granted")
    };
    let key = store.key(&reservation.entries[0].counter);
    let mut raw = server.raw().await;
    let exists: bool = raw.exists(&key).await.unwrap();
    assert!(!exists, "a window that ended is forgotten at once");
    store.commit(&reservation, &[50]).await.unwrap();
    let exists: bool = raw.exists(&key).await.unwrap();
    assert!(!exists, "the commit wrote {key} back");
}

/// A Redis that accepts connections but never answers costs a request the operation timeout,
/// not a hang; one that refuses connections fails `connect` at once.
#[tokio::test]
async fn an_unresponsive_redis_costs_the_timeout_not_a_hang() {
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", black_hole.local_addr().unwrap());
    let store = RedisStore::connect_lazy(&url, RedisOptions::default())
        .await
        .unwrap();
    let tokens = spec("tpm", Some(Window::Minute), 100);
    let started = Instant::now();
    let error = store
        .reserve(&[charge(&tokens, "key:a", 1)], SystemTime::now())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500), "{error}");
    assert!(error.to_string().contains("50ms"), "{error}");

    let port = black_hole.local_addr().unwrap().port();
    drop(black_hole);
    let refused = RedisStore::connect(
        &format!("redis://127.0.0.1:{port}/"),
        RedisOptions::default(),
    )
    .await;
    assert!(refused.is_err());
    assert!(RedisStore::connect("http://nope", RedisOptions::default())
        .await
        .is_err());
}
