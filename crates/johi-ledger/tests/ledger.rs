//! The ledger against real databases: every case below runs on SQLite and on PostgreSQL, so
//! the two backends are held to the same behaviour.
//!
//! PostgreSQL comes from `JOHI_TEST_POSTGRES_URL` (scripts/test starts a server and sets it);
//! without it the PostgreSQL tests fail rather than pass unexercised.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use johi_ledger::{Dimension, Ledger, LedgerError, SpendQuery, SpendRow, YearMonth};
use support::{expected, mixed, random, record, Backend};

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

/// Records that reach the ledger out of time order, spread over hours and landing on minute
/// edges, in several batches: every time range still finds exactly its records. (SQLite
/// finds a range through per-minute marks of row IDs, which this is the test of.)
async fn records_out_of_time_order_are_found(backend: Backend) {
    let ledger = Ledger::open(backend.config.clone()).await.unwrap();
    let mut next = random(0x9e37_79b9_7f4a_7c15);
    let mut records = mixed(600, NOV_2026);
    for (i, r) in records.iter_mut().enumerate() {
        // A third exactly on a minute's edge or a millisecond before it, the rest anywhere
        // in three hours; times jump back and forth within a batch and across batches.
        let minute = NOV_2026 + next(180) as i64 * 60_000;
        r.at_unix_ms = match i % 3 {
            0 => minute,
            1 => minute - 1,
            _ => NOV_2026 + next(3 * 3_600_000) as i64,
        };
    }
    for chunk in records.chunks(97) {
        for r in chunk {
            ledger.record(r.clone());
        }
        ledger.flush().await.unwrap();
    }
    let mut ranges = vec![(None, None), (Some(NOV_2026), Some(NOV_2026 + 60_000))];
    for _ in 0..60 {
        let from = NOV_2026 - 60_000 + next(4 * 3_600_000) as i64;
        let to = from + next(90 * 60_000) as i64;
        ranges.push((Some(from), Some(to)));
        // Bounds on minute edges and a millisecond off them.
        let edge = NOV_2026 + next(180) as i64 * 60_000;
        ranges.push((Some(edge), Some(edge + 60_000 * next(5) as i64)));
        ranges.push((Some(edge - 1), Some(edge + 1)));
        ranges.push((None, Some(edge)));
        ranges.push((Some(edge), None));
    }
    for (from, to) in ranges {
        let query = SpendQuery {
            from_unix_ms: from,
            to_unix_ms: to,
            group_by: vec![Dimension::Project],
            ..SpendQuery::default()
        };
        assert_spend(&ledger, &records, query).await;
    }
    ledger.shutdown().await.unwrap();
}

/// A SQLite ledger written before the marks (the usage table indexed by time, no marks
/// table) opens with every old row still found by time, loses the indexes, and records and
/// finds new rows beside the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqlite_ledger_from_before_the_marks_is_upgraded() {
    let backend = Backend::sqlite("upgrade").await;
    let johi_ledger::LedgerBackend::Sqlite { path } = &backend.config.backend else {
        unreachable!()
    };
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // 300 rows over 100 s (minute 0 to row 179, then minute 1), a few of the first minute's
    // rows stamped in the second one: nine runs of one minute each.
    let mut old: Vec<_> = mixed(300, NOV_2026);
    for r in old.iter_mut().step_by(50) {
        r.at_unix_ms = NOV_2026 + 61_000;
    }
    {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE johi_usage (at_unix_ms BIGINT NOT NULL, request_id TEXT NOT NULL, \
             organization TEXT, team TEXT, project TEXT, user_id TEXT, key_id TEXT, \
             api TEXT NOT NULL, model TEXT NOT NULL, provider TEXT, upstream_model TEXT, \
             status INTEGER NOT NULL, input_tokens BIGINT NOT NULL, \
             output_tokens BIGINT NOT NULL, cached_input_tokens BIGINT NOT NULL, \
             reasoning_tokens BIGINT NOT NULL, cost_micros BIGINT NOT NULL, \
             usage_source TEXT NOT NULL); \
             CREATE INDEX johi_usage_at ON johi_usage (at_unix_ms); \
             CREATE INDEX johi_usage_project_at ON johi_usage (project, at_unix_ms);",
        )
        .unwrap();
        for r in &old {
            conn.execute(
                "INSERT INTO johi_usage VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                rusqlite::params![
                    r.at_unix_ms,
                    r.request_id,
                    r.organization,
                    r.team,
                    r.project,
                    r.user,
                    r.key_id,
                    r.api,
                    r.model,
                    r.provider,
                    r.upstream_model,
                    r.status,
                    r.input_tokens as i64,
                    r.output_tokens as i64,
                    r.cached_input_tokens as i64,
                    r.reasoning_tokens as i64,
                    r.cost_micros,
                    r.usage_source.as_str(),
                ],
            )
            .unwrap();
        }
    }
    let ledger = Ledger::open(backend.config.clone()).await.unwrap();
    let new = mixed(200, NOV_2026 + 120_000);
    for r in &new {
        ledger.record(r.clone());
    }
    ledger.flush().await.unwrap();
    let all: Vec<_> = old.iter().chain(&new).cloned().collect();
    for (from, to) in [
        (None, None),
        (Some(NOV_2026), Some(NOV_2026 + 60_000)),
        (Some(NOV_2026 + 59_999), Some(NOV_2026 + 150_001)),
        (Some(NOV_2026 + 120_000), None),
        (None, Some(NOV_2026 + 100_000)),
    ] {
        let query = SpendQuery {
            from_unix_ms: from,
            to_unix_ms: to,
            group_by: vec![Dimension::Project, Dimension::Model],
            ..SpendQuery::default()
        };
        assert_spend(&ledger, &all, query).await;
    }
    ledger.shutdown().await.unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        indexes,
        ["johi_usage_labels_all", "johi_usage_marks_minute"]
    );
    // The old rows moved under their labels: three label sets (mixed() rotates three), and
    // every old row readable through the view with its row ID unchanged.
    let (labels, rows, top): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM johi_usage_labels), \
             (SELECT COUNT(*) FROM johi_usage), (SELECT MAX(row_id) FROM johi_usage)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert_eq!((rows, top), (500, 500));
    assert!(labels >= 1, "{labels}");
    let kind: String = conn
        .query_row(
            "SELECT type FROM sqlite_master WHERE name = 'johi_usage'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(kind, "view");
    // One mark per run, not per row.
    let old_marks: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM johi_usage_marks WHERE last_row <= 300",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(old_marks, 9);
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

/// Dropping every handle without `shutdown` still writes what was queued: the writer sees
/// the queue closed, writes it at once (not when the batch is due, an hour later), and stops.
async fn dropping_every_handle_writes_what_was_queued(backend: Backend) {
    let mut config = backend.config.clone();
    config.flush_interval = Duration::from_secs(3600);
    let ledger = Ledger::open(config).await.unwrap();
    let records = mixed(100, NOV_2026);
    for r in &records {
        ledger.record(r.clone());
    }
    drop(ledger);
    let reopened = Ledger::open(backend.config.clone()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let total = reopened.spend(&SpendQuery::default()).await.unwrap();
        if total[0].requests == 100 {
            assert_eq!(total, expected(&records, &SpendQuery::default()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} written",
            total[0].requests
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reopened.shutdown().await.unwrap();
}

/// A backlog of several batches (queued while the writer could not run) is written whole,
/// a transaction per batch, in order, by one flush.
async fn a_backlog_is_written_batch_by_batch(backend: Backend) {
    let mut config = backend.config.clone();
    config.batch_size = 10;
    let ledger = Ledger::open(config).await.unwrap();
    let records = mixed(95, NOV_2026);
    // A current-thread runtime: the writer runs only once this task awaits.
    for r in &records {
        ledger.record(r.clone());
    }
    ledger.flush().await.unwrap();
    assert_spend(&ledger, &records, SpendQuery::default()).await;
    assert_eq!((ledger.dropped(), ledger.lost()), (0, 0));
    ledger.shutdown().await.unwrap();
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
    records_out_of_time_order_are_found(flavor = "multi_thread", worker_threads = 2),
    dropping_every_handle_writes_what_was_queued(flavor = "multi_thread", worker_threads = 2),
    a_backlog_is_written_batch_by_batch(flavor = "current_thread"),
});
