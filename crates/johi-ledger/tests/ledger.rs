//! The ledger against real databases: every case below runs on SQLite and on PostgreSQL, so
//! the two backends are held to the same behaviour.
//!
//! PostgreSQL comes from `JOHI_TEST_POSTGRES_URL` (scripts/test starts a server and sets it);
//! without it the PostgreSQL tests fail rather than pass unexercised.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use johi_ledger::{Dimension, Ledger, LedgerError, SpendQuery, SpendRow, YearMonth};
use support::{expected, mixed, record, Backend};

/// 2026-11-01T00:00:00Z.
const NOV_2026: i64 = 1_793_491_200_000;
/// 2026-12-01T00:00:00Z.
const DEC_2026: i64 = 1_796_083_200_000;

async fn assert_spend(ledger: &Ledger, records: &[johi_ledger::UsageRecord], query: SpendQuery) {
    let got = ledger.spend(&query).await.unwrap();
    assert_eq!(got, expected(records, &query), "{query:?}");
}

/// Grouping by every dimension and some combinations, filters, and half-open time ranges all
/// add up to the sums of the records recorded.
async fn spend_matches_the_records(backend: Backend) {
    let ledger = Ledger::open(backend.config.clone()).await.unwrap();
    // Nothing recorded yet: one zero total, no groups.
    assert_eq!(
        ledger.spend(&SpendQuery::default()).await.unwrap(),
        vec![SpendRow::default()]
    );
    let records = mixed(900, NOV_2026);
    for r in &records {
        ledger.record(r.clone());
    }
    ledger.flush().await.unwrap();
    assert_eq!(ledger.dropped(), 0);

    let total = ledger.spend(&SpendQuery::default()).await.unwrap();
    assert_eq!(total[0].requests, 900);
    assert_spend(&ledger, &records, SpendQuery::default()).await;
    for dimension in Dimension::ALL {
        let by = |group_by: Vec<Dimension>| SpendQuery {
            group_by,
            ..SpendQuery::default()
        };
        assert_spend(&ledger, &records, by(vec![dimension])).await;
        // Filter on each value of the dimension, grouped by another.
        let rows = ledger.spend(&by(vec![dimension])).await.unwrap();
        assert!(rows.len() > 1, "{dimension}: the fixture should vary it");
        for value in rows.iter().filter_map(|row| row.group[0].clone()) {
            let query = SpendQuery {
                filter: vec![(dimension, value)],
                group_by: vec![Dimension::Model],
                ..SpendQuery::default()
            };
            assert_spend(&ledger, &records, query).await;
        }
    }
    let several = [
        vec![Dimension::Organization, Dimension::Team, Dimension::Project],
        vec![Dimension::Model, Dimension::Provider],
        vec![Dimension::User, Dimension::Key, Dimension::Organization],
    ];
    for group_by in several {
        let query = SpendQuery {
            group_by,
            ..SpendQuery::default()
        };
        assert_spend(&ledger, &records, query).await;
    }
    // Filters are ANDed; a value nobody has gives no groups, or a zero total.
    let both = vec![
        (Dimension::Organization, "acme".to_owned()),
        (Dimension::Project, "search".to_owned()),
    ];
    let query = SpendQuery {
        filter: both,
        group_by: vec![Dimension::Team],
        ..SpendQuery::default()
    };
    assert_spend(&ledger, &records, query).await;
    let nobody = vec![(Dimension::User, "nobody".to_owned())];
    let query = SpendQuery {
        filter: nobody.clone(),
        group_by: vec![Dimension::Team],
        ..SpendQuery::default()
    };
    assert!(ledger.spend(&query).await.unwrap().is_empty());
    let query = SpendQuery {
        filter: nobody,
        ..SpendQuery::default()
    };
    assert_eq!(
        ledger.spend(&query).await.unwrap(),
        vec![SpendRow::default()]
    );

    // Time ranges are [from, to): three records share each timestamp.
    let at = |i: usize| records[i].at_unix_ms;
    let range = |from: Option<i64>, to: Option<i64>| SpendQuery {
        from_unix_ms: from,
        to_unix_ms: to,
        group_by: vec![Dimension::Project],
        ..SpendQuery::default()
    };
    let requests = |rows: Vec<SpendRow>| rows.iter().map(|r| r.requests).sum::<u64>();
    let one_instant = ledger.spend(&range(Some(at(300)), Some(at(300) + 1))).await;
    assert_eq!(requests(one_instant.unwrap()), 3);
    let empty = ledger.spend(&range(Some(at(300)), Some(at(300)))).await;
    assert_eq!(requests(empty.unwrap()), 0);
    let to_edge = ledger.spend(&range(None, Some(at(300)))).await;
    assert_eq!(requests(to_edge.unwrap()), 300);
    let from_edge = ledger.spend(&range(Some(at(300)), None)).await;
    assert_eq!(requests(from_edge.unwrap()), 600);
    for (from, to) in [
        (Some(at(0)), Some(at(899))),
        (Some(at(150)), Some(at(600))),
        (None, Some(at(451))),
        (Some(at(451)), None),
        (Some(at(899) + 1), None),
    ] {
        assert_spend(&ledger, &records, range(from, to)).await;
    }
    ledger.shutdown().await.unwrap();
}

/// 10 000 records recorded without a flush are all in the store after `shutdown`, as seen by
/// a ledger opened afresh on the same store.
async fn shutdown_loses_nothing(backend: Backend) {
    let ledger = Ledger::open(backend.config.clone()).await.unwrap();
    let records = mixed(10_000, NOV_2026);
    for r in &records {
        ledger.record(r.clone());
    }
    ledger.clone().shutdown().await.unwrap();
    assert_eq!(ledger.dropped(), 0);
    // After shutdown: dropped and counted, and flush says the writer is gone.
    ledger.record(records[0].clone());
    assert_eq!(ledger.dropped(), 1);
    assert!(matches!(ledger.flush().await, Err(LedgerError::Closed)));
    ledger.shutdown().await.unwrap();

    let reopened = Ledger::open(backend.config.clone()).await.unwrap();
    let total = reopened.spend(&SpendQuery::default()).await.unwrap();
    assert_eq!(total[0].requests, 10_000);
    assert_eq!(total, expected(&records, &SpendQuery::default()));
    reopened.shutdown().await.unwrap();
}

/// Many tasks recording at once: every record counted exactly once.
async fn concurrent_recording_is_exact(backend: Backend) {
    let mut config = backend.config.clone();
    config.batch_size = 64;
    config.flush_interval = Duration::from_millis(20);
    let ledger = Ledger::open(config).await.unwrap();
    let tasks = 16;
    let records = mixed(16 * 500, NOV_2026);
    let mut handles = Vec::new();
    for part in records.chunks(records.len() / tasks) {
        let ledger = ledger.clone();
        let part = part.to_vec();
        handles.push(tokio::spawn(async move {
            for (i, r) in part.into_iter().enumerate() {
                ledger.record(r);
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    ledger.flush().await.unwrap();
    assert_eq!(ledger.dropped(), 0);
    for group_by in [vec![], vec![Dimension::Organization, Dimension::User]] {
        let query = SpendQuery {
            group_by,
            ..SpendQuery::default()
        };
        assert_spend(&ledger, &records, query).await;
    }
    ledger.shutdown().await.unwrap();
}

/// The chargeback file, to the byte: the month's half-open UTC range, one row per
/// (organization, team, project) sorted with unattributed first, costs with six decimals,
/// CSV quoting.
async fn chargeback_csv_is_exact(backend: Backend) {
    let ledger = Ledger::open(backend.config.clone()).await.unwrap();
    let fixture = [
        // The last millisecond of October and the first of December: outside November.
        record(
            NOV_2026 - 1,
            Some("acme"),
            Some("ml"),
            Some("search"),
            9,
            9,
            9,
            9,
        ),
        record(
            DEC_2026,
            Some("acme"),
            Some("ml"),
            Some("search"),
            9,
            9,
            9,
            9,
        ),
        // November's first and last milliseconds.
        record(
            NOV_2026,
            Some("acme"),
            Some("ml"),
            Some("search"),
            100,
            20,
            10,
            1_234_567,
        ),
        record(
            DEC_2026 - 1,
            Some("acme"),
            Some("ml"),
            Some("search"),
            1,
            2,
            0,
            0,
        ),
        record(
            NOV_2026 + 5,
            Some("acme"),
            Some("ml"),
            Some("chat"),
            3,
            4,
            1,
            5,
        ),
        record(
            NOV_2026 + 6,
            Some("acme"),
            None,
            Some("ops"),
            7,
            8,
            0,
            1_000_000,
        ),
        record(
            NOV_2026 + 7,
            Some("beta"),
            Some("web"),
            Some("site, eu"),
            1,
            1,
            1,
            0,
        ),
        record(NOV_2026 + 8, None, None, None, 2, 2, 0, 10),
    ];
    for r in fixture {
        ledger.record(r);
    }
    ledger.flush().await.unwrap();
    let month: YearMonth = "2026-11".parse().unwrap();
    let csv = ledger.chargeback_csv(month, None).await.unwrap();
    assert_eq!(
        csv,
        "month,organization,team,project,requests,input_tokens,output_tokens,cached_input_tokens,cost_micros,cost\n\
         2026-11,,,,1,2,2,0,10,0.000010\n\
         2026-11,acme,,ops,1,7,8,0,1000000,1.000000\n\
         2026-11,acme,ml,chat,1,3,4,1,5,0.000005\n\
         2026-11,acme,ml,search,2,101,22,10,1234567,1.234567\n\
         2026-11,beta,web,\"site, eu\",1,1,1,1,0,0.000000\n"
    );
    let one = ledger.chargeback_csv(month, Some("search")).await.unwrap();
    assert_eq!(
        one,
        "month,organization,team,project,requests,input_tokens,output_tokens,cached_input_tokens,cost_micros,cost\n\
         2026-11,acme,ml,search,2,101,22,10,1234567,1.234567\n"
    );
    let october = ledger
        .chargeback_csv(YearMonth::new(2026, 10).unwrap(), None)
        .await;
    assert_eq!(
        october.unwrap(),
        "month,organization,team,project,requests,input_tokens,output_tokens,cached_input_tokens,cost_micros,cost\n\
         2026-10,acme,ml,search,1,9,9,9,9,0.000009\n"
    );
    ledger.shutdown().await.unwrap();
}

/// With the queue full and the writer not draining, `record` returns at once and counts the
/// drop. On a current-thread runtime the writer cannot run while this test does not await.
async fn full_queue_drops_without_blocking(backend: Backend) {
    let mut config = backend.config.clone();
    config.buffer = 4;
    let ledger = Ledger::open(config).await.unwrap();
    let records = mixed(100, NOV_2026);
    let started = Instant::now();
    for r in &records {
        ledger.record(r.clone());
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "record() waited"
    );
    assert_eq!(ledger.dropped(), 96);
    ledger.flush().await.unwrap();
    assert_spend(&ledger, &records[..4], SpendQuery::default()).await;
    ledger.shutdown().await.unwrap();
}

/// A batch the store refuses on every retry is counted lost and reported by the next flush,
/// once; it is not silently discarded.
async fn failed_batches_are_reported_lost(backend: Backend) {
    let ledger = Ledger::open(backend.config.clone()).await.unwrap();
    backend.break_store().await;
    for r in mixed(3, NOV_2026) {
        ledger.record(r);
    }
    match ledger.flush().await {
        Err(LedgerError::Lost { count: 3 }) => {}
        other => panic!("expected 3 records lost, got {other:?}"),
    }
    assert_eq!(ledger.lost(), 3);
    assert_eq!(ledger.dropped(), 0);
    // Reported once: the next flush has nothing new to report.
    ledger.flush().await.unwrap();
    ledger.shutdown().await.unwrap();
}

/// Records reach the store on their own, by batch size or by interval, without a flush.
async fn batches_commit_without_a_flush(backend: Backend) {
    let mut config = backend.config.clone();
    config.batch_size = 10;
    config.flush_interval = Duration::from_millis(50);
    let ledger = Ledger::open(config).await.unwrap();
    // Two full batches and a partial one, left for the interval to commit.
    let records = mixed(25, NOV_2026);
    for r in &records {
        ledger.record(r.clone());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let total = ledger.spend(&SpendQuery::default()).await.unwrap();
        if total[0].requests == 25 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} committed",
            total[0].requests
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_spend(&ledger, &records, SpendQuery::default()).await;
    ledger.shutdown().await.unwrap();
}

/// Every case as a test on each backend, with its runtime; a test's PostgreSQL schema is
/// named after it.
macro_rules! backend_tests {
    ($($backend:ident),*; $cases:tt) => {
        $(backend_tests!(@one $backend $cases);)*
    };
    (@one $backend:ident { $($case:ident($($runtime:tt)*)),* $(,)? }) => {
        mod $backend {
            $(
                #[tokio::test($($runtime)*)]
                async fn $case() {
                    let name = concat!(stringify!($backend), "_", stringify!($case));
                    super::$case(super::Backend::$backend(name).await).await;
                }
            )*
        }
    };
}

backend_tests!(sqlite, postgres; {
    spend_matches_the_records(flavor = "multi_thread", worker_threads = 2),
    shutdown_loses_nothing(flavor = "multi_thread", worker_threads = 2),
    concurrent_recording_is_exact(flavor = "multi_thread", worker_threads = 4),
    chargeback_csv_is_exact(flavor = "multi_thread", worker_threads = 2),
    // Current-thread: the writer cannot drain while the test records without awaiting.
    full_queue_drops_without_blocking(flavor = "current_thread"),
    failed_batches_are_reported_lost(flavor = "multi_thread", worker_threads = 2),
    batches_commit_without_a_flush(flavor = "multi_thread", worker_threads = 2),
});
