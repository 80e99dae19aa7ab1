//! The two real backends the shared cases run against, and the fixtures they use.

use std::collections::BTreeMap;
use std::sync::Arc;

use johi_ledger::{
    Dimension, LedgerBackend, LedgerConfig, SpendQuery, SpendRow, UsageRecord, UsageSource,
};

/// A ledger configuration on a real, empty store, and what keeps the store alive.
pub struct Backend {
    pub config: LedgerConfig,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// A fresh SQLite file in a temporary directory.
    pub async fn sqlite(_test: &str) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger/usage.db");
        Backend {
            config: LedgerConfig::new(LedgerBackend::Sqlite { path }),
            _dir: Some(dir),
        }
    }

    /// A fresh schema, named after the test, in the database `JOHI_TEST_POSTGRES_URL` names;
    /// the ledger is pointed at it with `search_path`, so tests run in parallel.
    pub async fn postgres(test: &str) -> Backend {
        let Ok(url) = std::env::var("JOHI_TEST_POSTGRES_URL") else {
            panic!(
                "JOHI_TEST_POSTGRES_URL is not set: run scripts/test, which starts a local \
                 PostgreSQL and sets it (or `export JOHI_TEST_POSTGRES_URL=\"$(scripts/test-postgres)\"`)"
            );
        };
        let schema = format!("ledger_test_{test}");
        let admin = connect(&url).await;
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options=-csearch_path%3D{schema}");
        Backend {
            config: LedgerConfig::new(LedgerBackend::Postgres { url }),
            _dir: None,
        }
    }

    /// Removes the table behind the ledger's back, so every later write fails.
    pub async fn break_store(&self) {
        match &self.config.backend {
            LedgerBackend::Sqlite { path } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch("DROP TABLE johi_usage_rows").unwrap();
            }
            LedgerBackend::Postgres { url } => {
                connect(url)
                    .await
                    .batch_execute("DROP TABLE johi_usage")
                    .await
                    .unwrap();
            }
        }
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// A record with the given attribution and figures; the rest is filler.
#[allow(clippy::too_many_arguments)]
pub fn record(
    at_unix_ms: i64,
    organization: Option<&str>,
    team: Option<&str>,
    project: Option<&str>,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
    cost_micros: i64,
) -> UsageRecord {
    UsageRecord {
        at_unix_ms,
        request_id: format!("req_{at_unix_ms}").into(),
        organization: organization.map(Into::into),
        team: team.map(Into::into),
        project: project.map(Into::into),
        user: None,
        key_id: None,
        api: "chat.completions".into(),
        model: "gpt-4o".into(),
        provider: Some("openai".into()),
        upstream_model: Some("gpt-4o-2024-08-06".into()),
        status: 200,
        input_tokens,
        output_tokens,
        cached_input_tokens,
        reasoning_tokens: 0,
        cost_micros,
        usage_source: UsageSource::Reported,
    }
}

/// A small deterministic generator from `seed`: each call gives a number below its argument.
pub fn random(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed;
    move |k: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % k
    }
}

/// `n` varied records from `start`, three per millisecond timestamp (so range edges fall on
/// several records at once), spread over organisations, teams, projects, users, keys, models
/// and providers, some of them unattributed.
pub fn mixed(n: usize, start: i64) -> Vec<UsageRecord> {
    let mut next = random(0x2545_f491_4f6c_dd1d);
    let mut pick = |options: &[Option<&str>]| {
        options[next(options.len() as u64) as usize].map(Arc::<str>::from)
    };
    (0..n)
        .map(|i| {
            let organization = pick(&[Some("acme"), Some("beta"), None]);
            let team = pick(&[Some("ml"), Some("web"), Some("ops"), None]);
            let project = pick(&[Some("search"), Some("chat"), Some("site"), None]);
            let user = pick(&[Some("ann"), Some("bob"), Some("cyd"), None]);
            let key_id = pick(&[Some("key_1"), Some("key_2"), None]);
            let model = pick(&[Some("gpt-4o"), Some("claude-sonnet"), Some("llama-3")]);
            let provider = pick(&[Some("openai"), Some("anthropic"), Some("vllm"), None]);
            let input = u64::from(i as u32 % 997) * 3 + 1;
            UsageRecord {
                at_unix_ms: start + (i as i64 / 3) * 1000,
                request_id: format!("req_{i}").into(),
                organization,
                team,
                project,
                user,
                key_id,
                api: "chat.completions".into(),
                model: model.unwrap_or_else(|| "".into()),
                upstream_model: provider.as_ref().map(|p| format!("{p}-upstream").into()),
                provider,
                status: if i % 17 == 0 { 500 } else { 200 },
                input_tokens: input,
                output_tokens: (i as u64 * 7) % 1013,
                cached_input_tokens: input / 4,
                reasoning_tokens: (i as u64) % 5,
                cost_micros: (i as i64 * 1_234_567) % 9_999_991,
                usage_source: match i % 3 {
                    0 => UsageSource::Reported,
                    1 => UsageSource::Counted,
                    _ => UsageSource::None,
                },
            }
        })
        .collect()
}

fn value(record: &UsageRecord, dimension: Dimension) -> Option<String> {
    let name = match dimension {
        Dimension::Organization => record.organization.as_deref(),
        Dimension::Team => record.team.as_deref(),
        Dimension::Project => record.project.as_deref(),
        Dimension::User => record.user.as_deref(),
        Dimension::Key => record.key_id.as_deref(),
        Dimension::Model => Some(&*record.model),
        Dimension::Provider => record.provider.as_deref(),
    };
    name.map(str::to_owned)
}

/// What `spend(query)` must return, computed from the records in memory.
pub fn expected(records: &[UsageRecord], query: &SpendQuery) -> Vec<SpendRow> {
    let mut groups: BTreeMap<Vec<Option<String>>, SpendRow> = BTreeMap::new();
    if query.group_by.is_empty() {
        groups.insert(Vec::new(), SpendRow::default());
    }
    let selected = records.iter().filter(|r| {
        query.from_unix_ms.is_none_or(|from| r.at_unix_ms >= from)
            && query.to_unix_ms.is_none_or(|to| r.at_unix_ms < to)
            && query
                .filter
                .iter()
                .all(|(d, v)| value(r, *d).as_deref() == Some(v.as_str()))
    });
    for r in selected {
        let group: Vec<_> = query.group_by.iter().map(|d| value(r, *d)).collect();
        let row = groups.entry(group.clone()).or_insert_with(|| SpendRow {
            group,
            ..SpendRow::default()
        });
        row.requests += 1;
        row.input_tokens += r.input_tokens;
        row.output_tokens += r.output_tokens;
        row.cached_input_tokens += r.cached_input_tokens;
        row.reasoning_tokens += r.reasoning_tokens;
        row.cost_micros += r.cost_micros;
    }
    groups.into_values().collect()
}
