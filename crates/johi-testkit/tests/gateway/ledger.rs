//! The usage ledger end to end: every request that reached a provider is recorded with its
//! tenant, the provider's usage and its cost; the totals equal the sum of what the provider
//! reported; nothing is lost across a graceful restart.

use johi_auth::KeyHash;
use johi_core::pricing::Pricing;
use johi_core::Usage;
use johi_ledger::{Dimension, Ledger, LedgerBackend, LedgerConfig, SpendQuery, SpendRow};
use johi_testkit::{sse_data, Harness};
use serde_json::{json, Value};

const KEY: &str = "sk-johi-ledger-test-key-000000000000000000000000000000";
const PRICE: Pricing = Pricing {
    input: 2_500_000,
    cached_input: 2_500_000,
    output: 10_000_000,
};

fn config(db: &std::path::Path) -> String {
    format!(
        r#"
server: {{ listen: "127.0.0.1:0", drain_timeout: 5s }}
providers:
  mock: {{ base_url: "{{mock}}", api_key: sk-mock-key }}
models:
  m: {{ targets: [{{ provider: mock, model: mock-small }}], pricing: {{ input: "2.50", output: "10.00" }} }}
  e: {{ targets: [{{ provider: mock, model: mock-embed }}], pricing: {{ input: "2.50", output: "10.00" }} }}
tenants: {{ acme: {{ teams: {{ search: {{ projects: {{ web: {{}} }} }} }} }} }}
auth:
  api_keys:
    - {{ id: web, hash: "{}", owner: acme/search/web, user: alice }}
ledger: {{ sqlite: "{}", flush_interval: 50ms }}
audit: {{ path: "{{dir}}/audit.jsonl" }}
"#,
        KeyHash::of(KEY),
        db.display()
    )
}

/// A mixed run: plain chats, streams that ask for usage, an embedding, a provider error and
/// a refused request. Returns the usage the provider reported for what it answered.
async fn mixed_run(h: &Harness) -> Vec<Usage> {
    let post = |path: &str, body: Value| {
        h.client
            .post(h.url(path))
            .bearer_auth(KEY)
            .json(&body)
            .send()
    };
    let mut reported = Vec::new();
    for text in ["first question", "a second, longer question for the ledger"] {
        let r = post(
            "/v1/chat/completions",
            json!({"model": "m", "messages": [{"role": "user", "content": text}]}),
        )
        .await
        .unwrap();
        let v: Value = r.json().await.unwrap();
        reported.push(Usage::from_openai(&v["usage"]).unwrap());
    }
    let stream = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                        "messages": [{"role": "user", "content": "stream with usage"}]});
    let body = post("/v1/chat/completions", stream)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let usage_event = sse_data(&body)
        .into_iter()
        .filter(|d| d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(&d).unwrap())
        .find(|v| !v["usage"].is_null())
        .unwrap();
    reported.push(Usage::from_openai(&usage_event["usage"]).unwrap());
    let v: Value = post(
        "/v1/embeddings",
        json!({"model": "e", "input": "embed these words"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    reported.push(Usage::from_openai(&v["usage"]).unwrap());
    // A provider error: recorded (status 500, no tokens). A refused request: not recorded.
    let r = post("/v1/chat/completions", json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "mock": {"status": 500}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth("sk-johi-wrong")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    reported
}

/// Opens the ledger file a stopped gateway wrote, and reads its one grand total.
async fn ledger_total(db: std::path::PathBuf) -> (Ledger, SpendRow) {
    let ledger = Ledger::open(LedgerConfig::new(LedgerBackend::Sqlite { path: db }))
        .await
        .unwrap();
    let mut total = ledger.spend(&SpendQuery::default()).await.unwrap();
    assert_eq!(total.len(), 1);
    (ledger, total.remove(0))
}

#[tokio::test]
async fn ledger_totals_equal_the_providers_usage_across_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    let mut reported = Vec::new();
    for _ in 0..2 {
        // Start, serve a mixed run, shut down gracefully: the ledger flushes on the way out.
        let h = Harness::start(&config(&db)).await;
        reported.extend(mixed_run(&h).await);
        h.finish().await;
    }
    let (ledger, t) = ledger_total(db).await;
    assert_eq!(
        t.requests,
        2 * 5,
        "four answered requests and one provider error per run"
    );
    assert_eq!(
        t.input_tokens,
        reported.iter().map(|u| u.input_tokens).sum::<u64>()
    );
    assert_eq!(
        t.output_tokens,
        reported.iter().map(|u| u.output_tokens).sum::<u64>()
    );
    let cost: u64 = reported.iter().map(|u| PRICE.cost_micros(u)).sum();
    assert_eq!(t.cost_micros, i64::try_from(cost).unwrap());
    assert!(cost > 0);

    let by_tenant = ledger
        .spend(&SpendQuery {
            group_by: vec![
                Dimension::Organization,
                Dimension::Project,
                Dimension::User,
                Dimension::Key,
                Dimension::Model,
            ],
            ..SpendQuery::default()
        })
        .await
        .unwrap();
    let groups: Vec<_> = by_tenant
        .iter()
        .map(|r| (r.group.clone(), r.requests))
        .collect();
    let g = |model: &str| {
        vec![
            Some("acme".to_owned()),
            Some("web".into()),
            Some("alice".into()),
            Some("web".into()),
            Some(model.to_owned()),
        ]
    };
    assert_eq!(
        groups,
        vec![(g("e"), 2), (g("m"), 8)],
        "every record charged to its tenant"
    );
    ledger.shutdown().await.unwrap();
}

/// A provider that reports no usage (the Gemini API's embeddings) is not metered as free:
/// the client is shown the provider's zero, the ledger records Johi's own count of the input.
#[tokio::test]
async fn an_answer_without_usage_is_recorded_at_johis_own_count_of_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    let config = format!(
        r#"
server: {{ listen: "127.0.0.1:0", drain_timeout: 5s }}
providers:
  google: {{ protocol: gemini, base_url: "{{mock}}beta", api_key: goog-mock-key }}
models:
  ge: {{ targets: [{{ provider: google, model: text-embedding-004 }}] }}
tenants: {{ acme: {{ teams: {{ search: {{ projects: {{ web: {{}} }} }} }} }} }}
auth:
  api_keys:
    - {{ id: web, hash: "{}", owner: acme/search/web, user: alice }}
ledger: {{ sqlite: "{}", flush_interval: 50ms }}
"#,
        KeyHash::of(KEY),
        db.display()
    );
    let h = Harness::start(&config).await;
    let r = h
        .client
        .post(h.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .json(&json!({"model": "ge", "input": ["embed these few words", "and these ones too"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["usage"]["prompt_tokens"], 0, "the provider reported none");
    h.finish().await;
    let (ledger, total) = ledger_total(db).await;
    assert_eq!(total.requests, 1);
    assert!(
        total.input_tokens >= 8,
        "Johi's count of the input, not zero: {}",
        total.input_tokens
    );
    ledger.shutdown().await.unwrap();
}
