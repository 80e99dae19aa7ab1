//! Behavioural cases every backend must pass, run against each store by `tests.rs`.
//! `t0` is the start of an hour (so minute, hour, day and month windows are known around
//! it) in the near future (so Redis does not expire the keys as they are written).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{charge, spec};
use crate::{Decision, LimitSpec, LimitStore, Reservation, Window};

fn granted(decision: Decision) -> Reservation {
    match decision {
        Decision::Granted { reservation, .. } => reservation,
        other => panic!("expected granted, got {other:?}"),
    }
}

fn denied_index(decision: Decision) -> usize {
    match decision {
        Decision::Denied { index, .. } => index,
        other => panic!("expected denied, got {other:?}"),
    }
}

pub(super) async fn all_limits_are_charged_or_none(store: &dyn LimitStore, t0: SystemTime) {
    let tokens = spec("tpm", Some(Window::Minute), 100);
    let requests = spec("rpm", Some(Window::Minute), 2);
    let now = t0 + Duration::from_secs(20);
    let both = |n| vec![charge(&tokens, "key:a", n), charge(&requests, "key:a", 1)];
    granted(store.reserve(&both(60), now).await.unwrap());
    // 60 + 60 > 100: the token limit refuses, and the request counter is not charged either.
    match store.reserve(&both(60), now).await.unwrap() {
        Decision::Denied { index, state } => {
            assert_eq!(index, 0);
            assert_eq!(state.used, 60);
            assert_eq!(state.resets_in, Some(Duration::from_secs(40)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.current(&requests, "key:a", now).await.unwrap(), 1);
    granted(store.reserve(&both(40), now).await.unwrap());
    assert_eq!(
        denied_index(store.reserve(&both(0), now).await.unwrap()),
        0,
        "an exhausted budget refuses even 0"
    );
    // The second limit refuses too, and leaves the first untouched.
    let requests_only = [charge(&tokens, "key:c", 1), charge(&requests, "key:a", 1)];
    assert_eq!(
        denied_index(store.reserve(&requests_only, now).await.unwrap()),
        1
    );
    assert_eq!(store.current(&tokens, "key:c", now).await.unwrap(), 0);
    // Another scope and the next window have their own counters.
    granted(
        store
            .reserve(&[charge(&tokens, "key:b", 100)], now)
            .await
            .unwrap(),
    );
    granted(
        store
            .reserve(&both(100), now + Duration::from_secs(60))
            .await
            .unwrap(),
    );
}

pub(super) async fn commit_replaces_the_estimate_and_release_gives_it_back(
    store: &dyn LimitStore,
    now: SystemTime,
) {
    let tokens = spec("tpd", Some(Window::Day), 1_000);
    let Decision::Granted {
        reservation,
        states,
    } = store
        .reserve(&[charge(&tokens, "team:x", 300)], now)
        .await
        .unwrap()
    else {
        panic!("granted")
    };
    assert_eq!(states[0].used, 300);
    assert_eq!(states[0].remaining(), 700);
    store.commit(&reservation, &[120]).await.unwrap();
    assert_eq!(store.current(&tokens, "team:x", now).await.unwrap(), 120);
    let reservation = granted(
        store
            .reserve(&[charge(&tokens, "team:x", 500)], now)
            .await
            .unwrap(),
    );
    store.release(&reservation).await.unwrap();
    assert_eq!(store.current(&tokens, "team:x", now).await.unwrap(), 120);
    // More than estimated is charged in full.
    let reservation = granted(
        store
            .reserve(&[charge(&tokens, "team:x", 10)], now)
            .await
            .unwrap(),
    );
    store.commit(&reservation, &[900]).await.unwrap();
    assert_eq!(store.current(&tokens, "team:x", now).await.unwrap(), 1_020);
}

pub(super) async fn soft_caps_count_but_never_deny_and_burst_adds_room(
    store: &dyn LimitStore,
    now: SystemTime,
) {
    let soft = spec("soft", Some(Window::Hour), 10);
    let mut c = charge(&soft, "org:a", 8);
    c.enforce = false;
    for expected in [8, 16] {
        let Decision::Granted { states, .. } = store.reserve(&[c.clone()], now).await.unwrap()
        else {
            panic!("a soft cap never denies")
        };
        assert_eq!(states[0].used, expected);
        assert_eq!(states[0].over(), expected > 10);
    }
    let burst = Arc::new(LimitSpec {
        burst: 5,
        ..(*spec("burst", Some(Window::Hour), 10)).clone()
    });
    let Decision::Granted { states, .. } = store
        .reserve(&[charge(&burst, "k", 15)], now)
        .await
        .unwrap()
    else {
        panic!("burst room")
    };
    assert_eq!((states[0].used, states[0].remaining()), (15, 0));
    assert_eq!(
        denied_index(store.reserve(&[charge(&burst, "k", 1)], now).await.unwrap()),
        0
    );
}

pub(super) async fn a_gauge_counts_requests_in_flight(store: &dyn LimitStore, now: SystemTime) {
    let concurrent = spec("conc", None, 2);
    let one = [charge(&concurrent, "key:a", 1)];
    let first = granted(store.reserve(&one, now).await.unwrap());
    let second = granted(store.reserve(&one, now).await.unwrap());
    assert_eq!(denied_index(store.reserve(&one, now).await.unwrap()), 0);
    // Committing a gauge releases it, whatever the actual figure.
    store.commit(&first, &[99]).await.unwrap();
    assert_eq!(store.current(&concurrent, "key:a", now).await.unwrap(), 1);
    // A gauge has no window: a minute later the request is still in flight.
    let later = now + Duration::from_secs(100);
    assert_eq!(store.current(&concurrent, "key:a", later).await.unwrap(), 1);
    let third = granted(store.reserve(&one, later).await.unwrap());
    assert_eq!(denied_index(store.reserve(&one, later).await.unwrap()), 0);
    store.release(&second).await.unwrap();
    store.release(&third).await.unwrap();
    assert_eq!(store.current(&concurrent, "key:a", later).await.unwrap(), 0);
}

pub(super) async fn a_charge_belongs_to_the_window_it_was_made_in(
    store: &dyn LimitStore,
    t0: SystemTime,
) {
    let tokens = spec("tpm-turn", Some(Window::Minute), 100);
    let late = t0 + Duration::from_secs(59);
    let old = granted(
        store
            .reserve(&[charge(&tokens, "key:a", 100)], late)
            .await
            .unwrap(),
    );
    assert_eq!(
        denied_index(
            store
                .reserve(&[charge(&tokens, "key:a", 1)], late)
                .await
                .unwrap()
        ),
        0
    );
    // The window turns: full room again, and the old reservation's commit corrects the old
    // window only.
    let next = t0 + Duration::from_secs(61);
    let new = granted(
        store
            .reserve(&[charge(&tokens, "key:a", 70)], next)
            .await
            .unwrap(),
    );
    store.commit(&old, &[30]).await.unwrap();
    store.commit(&new, &[50]).await.unwrap();
    assert_eq!(store.current(&tokens, "key:a", late).await.unwrap(), 30);
    assert_eq!(store.current(&tokens, "key:a", next).await.unwrap(), 50);
}

/// 500 concurrent requests against a budget of N, spread over `stores` (one store, or
/// replicas sharing one backend): every granted request is charged exactly its actual amount,
/// the committed total never exceeds N plus the overshoot of actuals over estimates, and a
/// request is denied only when the budget truly had no room for it.
pub(super) async fn a_rolling_window_slides_instead_of_resetting(
    store: &dyn LimitStore,
    t0: SystemTime,
) {
    let tokens = spec(
        "tokens-rolling",
        Some(Window::Rolling(Duration::from_secs(60))),
        100,
    );
    let at = |secs| t0 + Duration::from_secs(secs);
    let reserve = |n, secs| {
        let charges = [charge(&tokens, "key:a", n)];
        async move { store.reserve(&charges, at(secs)).await }
    };
    granted(reserve(100, 30).await.unwrap());
    assert_eq!(denied_index(reserve(1, 59).await.unwrap()), 0);
    // 30 s into the next bucket the sliding window still covers half of the first one: a
    // fixed window would have reset to 100 free tokens, a rolling one has 50.
    assert_eq!(store.current(&tokens, "key:a", at(90)).await.unwrap(), 50);
    let second = granted(reserve(50, 90).await.unwrap());
    match reserve(1, 90).await.unwrap() {
        Decision::Denied { state, .. } => assert_eq!(state.used, 100),
        other => panic!("expected denied, got {other:?}"),
    }
    // 50 s in, a sixth of the first bucket is left: ⌈100 / 6⌉ = 17, plus 50.
    assert_eq!(store.current(&tokens, "key:a", at(110)).await.unwrap(), 67);
    let third = granted(reserve(33, 110).await.unwrap());
    assert_eq!(denied_index(reserve(1, 110).await.unwrap()), 0);
    // Commits correct the bucket their reservation was made in.
    store.commit(&second, &[20]).await.unwrap();
    store.commit(&third, &[33]).await.unwrap();
    // 10 s into the third bucket: ⌈53 × 5/6⌉ = 45 of the second bucket.
    assert_eq!(store.current(&tokens, "key:a", at(130)).await.unwrap(), 45);
    // Listed with that share though only the previous bucket holds anything.
    assert_eq!(
        store.usage(&tokens, at(130)).await.unwrap(),
        vec![("key:a".to_owned(), 45)]
    );
    // Two lengths later nothing is left.
    assert_eq!(store.current(&tokens, "key:a", at(240)).await.unwrap(), 0);
}

/// Padding (a replica's allotment) is taken only when every charge fits, as much as fits
/// under the cap (burst included; a rolling window's previous share counted), all of it for
/// a soft cap, and never for a gauge; the entry's amount includes it.
pub(super) async fn a_padded_reservation_takes_what_fits(store: &dyn LimitStore, t0: SystemTime) {
    let tokens = spec("pad-tpm", Some(Window::Minute), 100);
    let concurrent = spec("pad-conc", None, 5);
    let now = t0 + Duration::from_secs(5);
    let amounts = |r: &Reservation| r.entries.iter().map(|e| e.amount).collect::<Vec<_>>();
    let both = |n| [charge(&tokens, "key:a", n), charge(&concurrent, "org:a", 1)];
    let first = granted(
        store
            .reserve_padded(&both(30), &[50, 7], now)
            .await
            .unwrap(),
    );
    assert_eq!(
        amounts(&first),
        [80, 1],
        "the whole padding fits; a gauge takes none"
    );
    assert_eq!(store.current(&tokens, "key:a", now).await.unwrap(), 80);
    // 80 + 10 fits; of the padding only 10 more does.
    let second = store
        .reserve_padded(&both(10), &[50, 0], now)
        .await
        .unwrap();
    let Decision::Granted {
        reservation,
        states,
    } = second
    else {
        panic!("expected granted, got {second:?}")
    };
    assert_eq!(amounts(&reservation), [20, 1]);
    assert_eq!(states[0].used, 100);
    // Nothing fits any more: refused, and the padding asked for changes nothing.
    let refused = store.reserve_padded(&both(1), &[50, 0], now).await.unwrap();
    assert_eq!(denied_index(refused), 0);
    assert_eq!(store.current(&tokens, "key:a", now).await.unwrap(), 100);
    // Committing the padded entry replaces all of it.
    store.commit(&first, &[30, 1]).await.unwrap();
    assert_eq!(store.current(&tokens, "key:a", now).await.unwrap(), 50);

    // Burst is room for padding too; a soft cap takes the padding whole.
    let burst = Arc::new(LimitSpec {
        burst: 10,
        ..(*spec("pad-burst", Some(Window::Minute), 100)).clone()
    });
    let with_burst = granted(
        store
            .reserve_padded(&[charge(&burst, "key:a", 95)], &[50], now)
            .await
            .unwrap(),
    );
    assert_eq!(amounts(&with_burst), [110]);
    let soft = crate::Charge {
        enforce: false,
        ..charge(&spec("pad-soft", Some(Window::Minute), 10), "key:a", 8)
    };
    let soft = granted(store.reserve_padded(&[soft], &[50], now).await.unwrap());
    assert_eq!(amounts(&soft), [58]);

    // A rolling window counts its previous bucket's share against the padding.
    let rolling = spec(
        "pad-rolling",
        Some(Window::Rolling(Duration::from_secs(60))),
        100,
    );
    granted(
        store
            .reserve(
                &[charge(&rolling, "key:a", 60)],
                t0 + Duration::from_secs(30),
            )
            .await
            .unwrap(),
    );
    // 30 s into the next bucket: half of the first (30) still counts, so 70 is the room.
    let slid = granted(
        store
            .reserve_padded(
                &[charge(&rolling, "key:a", 20)],
                &[100],
                t0 + Duration::from_secs(90),
            )
            .await
            .unwrap(),
    );
    assert_eq!(amounts(&slid), [70]);
}

pub(super) async fn five_hundred_racing_requests_never_overshoot_the_budget(
    stores: &[Arc<dyn LimitStore>],
    now: SystemTime,
) {
    let budget = spec("budget", Some(Window::Month), 10_000);
    let granted_total = Arc::new(AtomicU64::new(0));
    let overshoot = Arc::new(AtomicU64::new(0));
    let denied = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..500u64 {
        let store = stores[i as usize % stores.len()].clone();
        let (budget, granted_total, overshoot, denied) = (
            budget.clone(),
            granted_total.clone(),
            overshoot.clone(),
            denied.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let estimate = 50 + i % 50;
            let actual = 20 + i % 80; // sometimes less, sometimes more than the estimate
            let decision = store
                .reserve(&[charge(&budget, "org:a", estimate)], now)
                .await
                .unwrap();
            tokio::task::yield_now().await;
            match decision {
                Decision::Granted { reservation, .. } => {
                    store.commit(&reservation, &[actual]).await.unwrap();
                    granted_total.fetch_add(actual, Ordering::Relaxed);
                    overshoot.fetch_add(actual.saturating_sub(estimate), Ordering::Relaxed);
                }
                Decision::Denied { state, .. } => {
                    assert!(
                        state.used + estimate > 10_000,
                        "denied with room: {state:?}"
                    );
                    denied.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // What a replica still holds (a prefetched allotment, a queued commit) goes back first.
    for store in stores {
        store.flush().await.unwrap();
    }
    let committed = stores[0].current(&budget, "org:a", now).await.unwrap();
    assert_eq!(
        committed,
        granted_total.load(Ordering::Relaxed),
        "every served request charged exactly once"
    );
    // The only overshoot: actuals above their estimates, for requests granted with room.
    let overshoot = overshoot.load(Ordering::Relaxed);
    assert!(
        committed <= 10_000 + overshoot,
        "committed {committed}, overshoot {overshoot}"
    );
    assert!(denied.load(Ordering::Relaxed) > 0, "the budget was reached");
}

pub(super) async fn usage_lists_the_live_counters_of_one_limit_and_window(
    store: &dyn LimitStore,
    t0: SystemTime,
) {
    let tokens = spec("usage-tpm", Some(Window::Minute), 100);
    let other = spec("usage-tpm-other", Some(Window::Minute), 100);
    let inflight = spec("usage-inflight", None, 5);
    let now = t0 + Duration::from_secs(5);
    assert!(store.usage(&tokens, now).await.unwrap().is_empty());
    granted(
        store
            .reserve(&[charge(&tokens, "key:b", 30)], now)
            .await
            .unwrap(),
    );
    granted(
        store
            .reserve(&[charge(&tokens, "team:acme/x|y", 7)], now)
            .await
            .unwrap(),
    );
    granted(
        store
            .reserve(&[charge(&other, "key:b", 1)], now)
            .await
            .unwrap(),
    );
    let held = granted(
        store
            .reserve(&[charge(&inflight, "org:acme", 1)], now)
            .await
            .unwrap(),
    );
    // Another window of the same limit is not listed.
    granted(
        store
            .reserve(
                &[charge(&tokens, "key:later", 1)],
                now + Duration::from_secs(60),
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        store.usage(&tokens, now).await.unwrap(),
        vec![("key:b".to_owned(), 30), ("team:acme/x|y".to_owned(), 7)]
    );
    assert_eq!(
        store.usage(&inflight, now).await.unwrap(),
        vec![("org:acme".to_owned(), 1)]
    );
    store.release(&held).await.unwrap();
    let after: Vec<_> = store
        .usage(&inflight, now)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, used)| *used > 0)
        .collect();
    assert!(after.is_empty(), "{after:?}");
}
