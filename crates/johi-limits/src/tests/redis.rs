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

/// How many `EVALSHA` calls Redis has run: one per round trip of the store (a `NOSCRIPT`
/// answer, before a script is loaded, does not count).
async fn evalsha_calls(raw: &mut ::redis::aio::MultiplexedConnection) -> u64 {
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(raw)
        .await
        .unwrap();
    let Some(stats) = info
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
    else {
        return 0;
    };
    let field = |name: &str| -> u64 {
        stats
            .split(',')
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .map_or(0, |v| v.parse().unwrap())
    };
    field("calls") - field("failed_calls")
}

/// Waits (up to two seconds) until `key` holds `expected`.
async fn eventually_holds(raw: &mut ::redis::aio::MultiplexedConnection, key: &str, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let held: Option<u64> = raw.get(key).await.unwrap();
        if held == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key} holds {held:?}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Options that keep a detached commit queued until a reservation or a flush takes it.
fn holding() -> RedisOptions {
    RedisOptions {
        commit_delay: Duration::from_secs(60),
        ..patient()
    }
}

/// A detached commit costs no round trip of its own: the next reservation carries it, and
/// applies it before checking (so what it gives back makes room at once).
#[tokio::test]
async fn a_detached_commit_rides_on_the_next_reservation() {
    let server = RedisServer::start().await;
    let store = server.store(holding()).await;
    let tokens = spec("tph", Some(Window::Hour), 100);
    let now = t0();
    let Decision::Granted { reservation, .. } = store
        .reserve(&[charge(&tokens, "key:a", 60)], now)
        .await
        .unwrap()
    else {
        panic!("granted")
    };
    let key = store.key(&reservation.entries[0].counter);
    let mut raw = server.raw().await;
    let before = evalsha_calls(&mut raw).await;
    assert!(matches!(
        store.commit_detached(&reservation, &[25]),
        Some(Ok(()))
    ));
    let held: u64 = raw.get(&key).await.unwrap();
    assert_eq!(held, 60, "queued, not sent");
    // 60 + 50 would not fit in 100; 25 + 50 does.
    let Decision::Granted {
        reservation: second,
        states,
    } = store
        .reserve(&[charge(&tokens, "key:a", 50)], now)
        .await
        .unwrap()
    else {
        panic!("the carried commit made room")
    };
    assert_eq!(states[0].used, 75);
    assert_eq!(evalsha_calls(&mut raw).await, before + 1, "one round trip");
    // `flush` sends what is queued (graceful shutdown does).
    store.commit_detached(&second, &[10]);
    store.flush().await.unwrap();
    let held: u64 = raw.get(&key).await.unwrap();
    assert_eq!(held, 35);
}

/// Without traffic a detached commit is sent on its own, within the delay; one that changes
/// nothing (a request counted as one) is not sent at all; dropping the store sends what is
/// queued.
#[tokio::test]
async fn a_detached_commit_lands_without_traffic_and_on_drop() {
    let server = RedisServer::start().await;
    let mut raw = server.raw().await;
    let tokens = spec("tph", Some(Window::Hour), 100);
    let requests = spec("rph", Some(Window::Hour), 100);
    let now = t0();
    let charges = [charge(&tokens, "key:a", 60), charge(&requests, "key:a", 1)];

    let store = server.store(patient()).await;
    let Decision::Granted { reservation, .. } = store.reserve(&charges, now).await.unwrap() else {
        panic!("granted")
    };
    let key = store.key(&reservation.entries[0].counter);
    let before = evalsha_calls(&mut raw).await;
    store.commit_detached(&reservation, &[20, 1]);
    eventually_holds(&mut raw, &key, 20).await;
    let unchanged = store.key(&reservation.entries[1].counter);
    eventually_holds(&mut raw, &unchanged, 1).await;
    assert_eq!(evalsha_calls(&mut raw).await, before + 1);
    // The estimates were right: nothing to correct.
    store.commit_detached(&reservation, &[60, 1]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        evalsha_calls(&mut raw).await,
        before + 1,
        "nothing to correct, nothing sent"
    );
    drop(store);

    let store = server.store(holding()).await;
    let Decision::Granted { reservation, .. } = store.reserve(&charges, now).await.unwrap() else {
        panic!("granted")
    };
    store.commit_detached(&reservation, &[5, 1]);
    drop(store);
    eventually_holds(&mut raw, &key, 25).await;
}

/// A detached gauge release does not wait for the delay: another replica sees the room at
/// once.
#[tokio::test]
async fn a_detached_release_is_sent_at_once() {
    let server = RedisServer::start().await;
    let a = server.store(holding()).await;
    let b = server.store(holding()).await;
    let concurrent = spec("conc", None, 1);
    let one = [charge(&concurrent, "org:a", 1)];
    let now = SystemTime::now();
    let Decision::Granted { reservation, .. } = a.reserve(&one, now).await.unwrap() else {
        panic!("granted")
    };
    assert!(matches!(
        b.reserve(&one, now).await.unwrap(),
        Decision::Denied { .. }
    ));
    a.commit_detached(&reservation, &[1]);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !matches!(
        b.reserve(&one, now).await.unwrap(),
        Decision::Granted { .. }
    ) {
        assert!(Instant::now() < deadline, "the lease was not given back");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A denied reservation leaves no key behind, not even one it created before a later charge
/// did not fit.
#[tokio::test]
async fn a_denied_reservation_leaves_no_key() {
    let server = RedisServer::start().await;
    let store = server.store(patient()).await;
    let minute = spec("tpm", Some(Window::Minute), 100);
    let month = spec("tpmo", Some(Window::Month), 100);
    let now = SystemTime::now();
    let charges = [charge(&minute, "key:a", 10), charge(&month, "org:a", 500)];
    assert!(matches!(
        store.reserve(&charges, now).await.unwrap(),
        Decision::Denied { index: 1, .. }
    ));
    let mut raw = server.raw().await;
    let keys: Vec<String> = raw.keys("*").await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}
