//! Redis killed mid-test and restarted on the same port: fail-open counts locally, fail-closed
//! refuses, each outage is logged once when it starts and once when it ends, and both stores
//! go back to Redis by themselves.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracing_subscriber::fmt::MakeWriter;

use super::{charge, spec, t0};
use crate::testing::RedisServer;
use crate::{
    Charge, Decision, FailoverStore, LimitStore, OutageMode, RedisOptions, RedisStore, Reservation,
    Window,
};

/// Everything logged while the test runs, as text.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Logs {
    /// How many lines contain every one of `needles`.
    fn count(&self, needles: &[&str]) -> usize {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .count()
    }
}

fn granted(decision: Decision) -> Reservation {
    match decision {
        Decision::Granted { reservation, .. } => reservation,
        other => panic!("expected granted, got {other:?}"),
    }
}

/// A store on `server` (a timeout generous enough that a loaded CI machine is not an outage:
/// a killed Redis refuses connections at once).
async fn failover(server: &RedisServer, mode: OutageMode) -> FailoverStore<RedisStore> {
    let options = RedisOptions {
        op_timeout: Duration::from_secs(1),
        ..RedisOptions::default()
    };
    FailoverStore::new(server.store(options).await, mode)
        .with_probe_interval(Duration::from_millis(100))
}

/// Calls `reserve` until the answer is a grant made on the primary (not on the local store).
async fn until_back_on_redis(store: &FailoverStore, charges: &[Charge], now: SystemTime) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Decision::Granted { reservation, .. }) = store.reserve(charges, now).await {
            if !reservation.fallback {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{:?} never recovered",
            store.mode()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_outage_fails_open_or_closed_is_logged_once_and_recovers_by_itself() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut server = RedisServer::start().await;
    let open = failover(&server, OutageMode::FailOpen).await;
    let closed = failover(&server, OutageMode::FailClosed).await;
    let rph = spec("rph", Some(Window::Hour), 5);
    let one = [charge(&rph, "key:a", 1)];
    let now = t0();

    // Healthy: both replicas count in Redis, against one limit.
    let on_redis = granted(open.reserve(&one, now).await.unwrap());
    assert!(!on_redis.fallback);
    granted(closed.reserve(&one, now).await.unwrap());
    assert_eq!(open.current(&rph, "key:a", now).await.unwrap(), 2);
    assert_eq!(
        closed.usage(&rph, now).await.unwrap(),
        [("key:a".to_owned(), 2)]
    );

    server.stop();

    // Fail-open: requests keep flowing, counted on this replica from zero, the limit enforced.
    let mut local = Vec::new();
    for _ in 0..5 {
        let reservation = granted(open.reserve(&one, now).await.unwrap());
        assert!(reservation.fallback, "made on the local store");
        local.push(reservation);
    }
    assert!(matches!(
        open.reserve(&one, now).await.unwrap(),
        Decision::Denied { .. }
    ));
    assert!(open.is_degraded());
    // A local reservation is committed locally; one made on Redis before the outage cannot be
    // corrected now, and that is not an error in fail-open.
    open.release(&local[0]).await.unwrap();
    assert_eq!(open.current(&rph, "key:a", now).await.unwrap(), 4);
    // The admin view follows the same mode: the local counters in fail-open.
    assert_eq!(
        open.usage(&rph, now).await.unwrap(),
        [("key:a".to_owned(), 4)]
    );
    open.commit(&on_redis, &[1]).await.unwrap();

    // Fail-closed: the error, every time.
    for _ in 0..3 {
        assert!(closed.reserve(&one, now).await.is_err());
    }
    assert!(closed.usage(&rph, now).await.is_err());
    assert!(closed.is_degraded());

    // One warning per store for the whole outage, however many calls failed.
    assert_eq!(logs.count(&["WARN", "unreachable", "fail-open"]), 1);
    assert_eq!(logs.count(&["WARN", "unreachable", "fail-closed"]), 1);

    // Redis comes back, empty (no persistence): both stores return to it by themselves.
    let port = server.port();
    drop(server);
    let _server = RedisServer::start_on(port).await;
    until_back_on_redis(&open, &one, now).await;
    until_back_on_redis(&closed, &one, now).await;
    assert!(!open.is_degraded() && !closed.is_degraded());
    assert_eq!(logs.count(&["INFO", "reachable again"]), 2);
    assert_eq!(logs.count(&["WARN", "unreachable"]), 2);

    // The shared limit holds again across both replicas: 2 counted, 3 more fit.
    assert_eq!(closed.current(&rph, "key:a", now).await.unwrap(), 2);
    for store in [&open, &closed, &open] {
        assert!(!granted(store.reserve(&one, now).await.unwrap()).fallback);
    }
    for store in [&open, &closed] {
        assert!(matches!(
            store.reserve(&one, now).await.unwrap(),
            Decision::Denied { .. }
        ));
    }
}
