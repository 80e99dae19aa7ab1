//! Limits and budgets over real HTTP: 429s with `Retry-After` and OpenAI's rate-limit
//! headers, budgets charged the provider's usage, money in micro-dollars, soft caps,
//! concurrency, and a race of hundreds of requests that never overshoots a budget.

use std::sync::Arc;
use std::time::Duration;

use johi_auth::KeyHash;
use johi_core::model::Tokenizer;
use johi_core::Api;
use johi_limits::testing::RedisServer;
use johi_testkit::Harness;
use serde_json::{json, Map, Value};

const KEY: &str = "sk-johi-limits-test-key-00000000000000000000000000000";
const OTHER: &str = "sk-johi-limits-other-key-1111111111111111111111111111";

/// A gateway with two keys of organisation `acme` and the given `limits:` block.
fn config(limits: &str) -> String {
    config_with(limits, "")
}

/// [`config`] plus extra top-level settings (a `limit_store:`).
fn config_with(limits: &str, extra: &str) -> String {
    format!(
        r#"
{extra}
server: {{ listen: "127.0.0.1:0" }}
providers:
  mock: {{ base_url: "{{mock}}", api_key: sk-mock-key }}
models:
  m:
    targets: [{{ provider: mock, model: mock-small }}]
    pricing: {{ input: "2.50", output: "10.00" }}
    default_max_tokens: 5
tenants: {{ acme: {{ teams: {{ search: {{}} }} }} }}
auth:
  api_keys:
    - {{ id: k1, hash: "{}", owner: acme/search }}
    - {{ id: k2, hash: "{}", owner: acme }}
limits:
{limits}
audit: {{ path: "{{dir}}/audit.jsonl" }}
"#,
        KeyHash::of(KEY),
        KeyHash::of(OTHER)
    )
}

fn chat(text: &str, max_tokens: u64) -> Value {
    json!({"model": "m", "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]})
}

async fn send(h: &Harness, key: &str, body: &Value) -> reqwest::Response {
    h.client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// What the limiter reserves for `body` before the call.
fn estimate(body: &Value, max_tokens: u64) -> u64 {
    let map: Map<String, Value> = body.as_object().unwrap().clone();
    johi_processors::tokens::count_input_tokens(Tokenizer::Estimate, Api::ChatCompletions, &map)
        + max_tokens
}

/// A daily total-tokens budget of 100 000 for the organisation.
const TPD: &str =
    "  - { id: tpd, scope: organization, window: day, measure: total_tokens, limit: 100000 }";

/// The tokens charged to the [`TPD`] budget so far, read off the headers of a probe request
/// (which itself reserves its estimate), once asynchronous commits have landed.
async fn tpd_charged(h: &Harness) -> u64 {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let probe = chat("probe", 50);
    let r = send(h, OTHER, &probe).await;
    let remaining: u64 = header(&r, "x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    100_000 - remaining - estimate(&probe, 50)
}

#[tokio::test]
async fn a_hard_request_limit_is_429_with_retry_after_and_openai_headers() {
    let h = Harness::start(&config(
        "  - { id: rpm, scope: key, window: minute, measure: requests, limit: 2 }",
    ))
    .await;
    let body = chat("hello", 16);
    for remaining in ["1", "0"] {
        let r = send(&h, KEY, &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "x-ratelimit-limit-requests").as_deref(),
            Some("2")
        );
        assert_eq!(
            header(&r, "x-ratelimit-remaining-requests").as_deref(),
            Some(remaining)
        );
        assert!(header(&r, "x-ratelimit-reset-requests")
            .unwrap()
            .ends_with('s'));
    }
    let r = send(&h, KEY, &body).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        header(&r, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    assert!(err["error"]["message"].as_str().unwrap().contains("'rpm'"));
    // The limit is per key: another key of the same organisation is not affected.
    assert_eq!(send(&h, OTHER, &body).await.status(), 200);
    assert_eq!(
        h.mock.requests().len(),
        3,
        "the refused request never went upstream"
    );
}

/// With no limit configured the `limit` stage is left out of the request phase (it has
/// nothing to charge); a limit added by a reload is enforced from the next request on.
#[tokio::test]
async fn a_limit_added_by_a_reload_is_enforced_at_once() {
    let h = Harness::start(&config("  []")).await;
    let body = chat("hello", 16);
    for _ in 0..3 {
        let r = send(&h, KEY, &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), None);
    }
    h.write_config(&config(
        "  - { id: rpm, scope: key, window: minute, measure: requests, limit: 1 }",
    ));
    h.gateway.reload().await.unwrap();
    let r = send(&h, KEY, &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    assert_eq!(send(&h, KEY, &body).await.status(), 429);
}

#[tokio::test]
async fn a_token_budget_holds_exactly_the_providers_usage() {
    let h = Harness::start(&config(TPD)).await;
    let mut spent = 0;
    for text in ["one", "two words", "and three more words here"] {
        let r = send(&h, KEY, &chat(text, 50)).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        spent += body["usage"]["total_tokens"].as_u64().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await; // the commit is asynchronous
    }
    assert_eq!(
        tpd_charged(&h).await,
        spent,
        "the budget holds the providers' usage"
    );
}

/// More limits on one request than the commit keeps on its stack (eight): every one is
/// still charged the provider's usage. Limit `k{i}` allows 100 000 + i tokens; had any one
/// kept the reservation (the request's estimate, tens of tokens above its usage), it would
/// be the tightest and show in the probe's remaining allowance.
#[tokio::test]
async fn a_request_under_many_limits_commits_each_of_them() {
    let limits: Vec<String> = (0..9)
        .map(|i| {
            format!(
                "  - {{ id: k{i}, scope: key, window: day, measure: total_tokens, limit: {} }}",
                100_000 + i
            )
        })
        .collect();
    let h = Harness::start(&config(&limits.join("\n"))).await;
    let first = chat("one two three", 50);
    let r = send(&h, KEY, &first).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let spent = body["usage"]["total_tokens"].as_u64().unwrap();
    assert!(
        estimate(&first, 50) > spent + 9,
        "the estimate is well above the usage"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let probe = chat("probe", 50);
    let r = send(&h, KEY, &probe).await;
    let remaining: u64 = header(&r, "x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(remaining, 100_000 - spent - estimate(&probe, 50));
}

#[tokio::test]
async fn a_money_budget_runs_out_with_insufficient_quota() {
    // $0.002 = 2000 micro-dollars; each call costs about 10 prompt tokens × $2.50/M plus
    // 12 reply tokens × $10/M ≈ 145 micro-dollars, and reserves up to 100 output tokens.
    let h = Harness::start(&config(
        "  - { id: budget, scope: organization, window: month, measure: cost, limit: \"0.002\" }",
    ))
    .await;
    let mut served = 0;
    let mut refused = None;
    for _ in 0..40 {
        let r = send(&h, KEY, &chat("spend a little money", 100)).await;
        if r.status() == 200 {
            served += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        } else {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the budget ran out");
    assert_eq!(r.status(), 429);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "insufficient_quota");
    assert_eq!(err["error"]["type"], "insufficient_quota");
    assert!((5..=20).contains(&served), "served {served}");
}

#[tokio::test]
async fn a_soft_limit_serves_and_flags_the_response() {
    let h = Harness::start(&config(
        "  - { id: soft-rpm, scope: key, window: minute, measure: requests, limit: 1, kind: soft }",
    ))
    .await;
    let first = send(&h, KEY, &chat("a", 8)).await;
    assert_eq!(first.status(), 200);
    assert!(header(&first, "x-johi-limit-warning").is_none());
    let second = send(&h, KEY, &chat("b", 8)).await;
    assert_eq!(second.status(), 200, "a soft cap never refuses");
    assert_eq!(
        header(&second, "x-johi-limit-warning").as_deref(),
        Some("soft-rpm")
    );
}

#[tokio::test]
async fn the_budget_is_charged_for_the_prompt_as_sent_after_a_mutating_processor() {
    // `shrink` rewrites every message to one word before the limiter runs (the builder
    // refuses it after `limit`): the reservation and the charge are for the short prompt.
    let mut registry = johi_testkit::johi_server::Registry::with_builtins();
    let shrink = Arc::new(johi_testkit::Shrinking::new("short"));
    registry.register("shrink", move |_| shrink.clone());
    let template = config(TPD).replace(
        "audit: {",
        "pipeline: [enrich, authenticate, validate, stream_usage, shrink, route, authorize, limit, endpoint, translate, credentials, audit]\naudit: {",
    );
    let h = Harness::start_with(&template, registry).await;
    let long = chat(&"a long prompt that will not be sent ".repeat(200), 10);
    let r = send(&h, KEY, &long).await;
    assert_eq!(r.status(), 200);
    // Reserved before the call: the estimate of the shrunk body, not of the client's.
    let shrunk = chat("short", 10);
    let remaining: u64 = header(&r, "x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(100_000 - remaining, estimate(&shrunk, 10));
    assert!(estimate(&long, 10) > 10 * estimate(&shrunk, 10));
    // Charged after it: exactly the provider's usage for the prompt it received.
    let usage = r.json::<Value>().await.unwrap()["usage"].clone();
    let total = usage["total_tokens"].as_u64().unwrap();
    assert!(usage["prompt_tokens"].as_u64().unwrap() < 20, "{usage}");
    assert_eq!(tpd_charged(&h).await, total);

    // The same processor after `limit` is refused at load, naming both.
    let wrong = config(TPD).replace(
        "audit: {",
        "pipeline: [enrich, authenticate, validate, stream_usage, route, authorize, limit, shrink, endpoint, translate, credentials, audit]\naudit: {",
    );
    h.write_config(&wrong);
    let errors = h.gateway.reload().await.unwrap_err().join("\n");
    assert!(
        errors.contains("'limit' reads 'prompt' but runs before 'shrink'"),
        "{errors}"
    );
}

#[tokio::test]
async fn a_full_budget_tips_the_request_to_a_cheaper_model() {
    // `big` may serve one request a minute; then requests go to `small`, whose own limit
    // (two a minute) applies after the tip; a key that may not use `small` gets the 429.
    let h = Harness::start(&format!(
        r#"
server: {{ listen: "127.0.0.1:0" }}
providers:
  mock: {{ base_url: "{{mock}}", api_key: sk-mock-key }}
models:
  big: {{ targets: [{{ provider: mock, model: big-upstream }}] }}
  small: {{ targets: [{{ provider: mock, model: small-upstream }}] }}
tenants: {{ acme: {{}} }}
auth:
  api_keys:
    - {{ id: k1, hash: "{}", owner: acme }}
    - {{ id: k2, hash: "{}", owner: acme, allowed_models: [big] }}
limits:
  - {{ id: big-rpm, scope: model, match: big, window: day, measure: requests, limit: 1, fallback: small }}
  - {{ id: small-rpm, scope: model, match: small, window: day, measure: requests, limit: 2 }}
"#,
        KeyHash::of(KEY),
        KeyHash::of(OTHER)
    ))
    .await;
    let body = json!({"model": "big", "messages": [{"role": "user", "content": "hi"}]});
    let served_by = |v: &Value| v["model"].as_str().unwrap().to_owned();

    let first = send(&h, KEY, &body).await;
    assert_eq!(first.status(), 200);
    assert!(header(&first, "x-johi-budget-fallback").is_none());
    assert_eq!(served_by(&first.json().await.unwrap()), "big-upstream");

    let tipped = send(&h, KEY, &body).await;
    assert_eq!(tipped.status(), 200);
    assert_eq!(
        header(&tipped, "x-johi-budget-fallback").as_deref(),
        Some("big-rpm; from=big; to=small")
    );
    // The reported allowance is the model actually used: one of small's two left.
    assert_eq!(
        header(&tipped, "x-ratelimit-remaining-requests").as_deref(),
        Some("1")
    );
    assert_eq!(served_by(&tipped.json().await.unwrap()), "small-upstream");

    // A key limited to `big` is not moved to a model it may not use.
    let refused = send(&h, OTHER, &body).await;
    assert_eq!(refused.status(), 429);
    let err: Value = refused.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("big-rpm"),
        "{err}"
    );

    // Once the fallback is full too, the 429 names the fallback's limit.
    assert_eq!(send(&h, KEY, &body).await.status(), 200);
    let full = send(&h, KEY, &body).await;
    assert_eq!(full.status(), 429);
    let err: Value = full.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("small-rpm"),
        "{err}"
    );
}

#[tokio::test]
async fn a_concurrency_limit_counts_requests_in_flight() {
    let h = Harness::start(&config(
        "  - { id: one-at-a-time, scope: key, measure: concurrent, limit: 1 }",
    ))
    .await;
    let slow = json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "slow"}], "mock": {"latency_ms": 400}});
    let (a, b) = tokio::join!(send(&h, KEY, &slow), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(&h, KEY, &chat("meanwhile", 8)).await
    });
    assert_eq!(a.status(), 200);
    assert_eq!(b.status(), 429);
    assert!(header(&b, "retry-after").is_some());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        send(&h, KEY, &chat("after", 8)).await.status(),
        200,
        "the lease was released"
    );
}

/// 500 concurrent requests, spread over `gateways`, against a token budget of `budget`:
/// the tokens the provider reported for the served requests never exceed it (estimates here
/// are upper bounds, so the documented overshoot is zero), and the budget then holds exactly
/// what they used (every served request charged, no refused one), once `settle` has passed
/// (for allotments counted ahead to be given back).
async fn race(gateways: &[&Harness], budget: u64, settle: Duration) {
    let body = chat("race for the last tokens", 30);
    let sends = (0..500).map(|i| {
        let h = gateways[i % gateways.len()];
        send(h, if i % 2 == 0 { KEY } else { OTHER }, &body)
    });
    let answers = futures_util::future::join_all(sends).await;
    let mut served_tokens = 0;
    let (mut served, mut refused) = (0, 0);
    for r in answers {
        match r.status().as_u16() {
            200 => {
                served += 1;
                let v: Value = r.json().await.unwrap();
                served_tokens += v["usage"]["total_tokens"].as_u64().unwrap();
            }
            other => {
                assert_eq!(other, 429, "only served or refused");
                refused += 1;
            }
        }
    }
    assert!(
        served > 0 && refused > 0,
        "served {served}, refused {refused}"
    );
    assert!(
        served_tokens <= budget,
        "{served_tokens} tokens served over a budget of {budget}"
    );
    tokio::time::sleep(settle).await;
    // A request needing more than what is left is refused, and its 429 reports the counter.
    let r = send(gateways[0], KEY, &chat("how much is left", 10_000)).await;
    assert_eq!(r.status(), 429);
    let err: Value = r.json().await.unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{served_tokens} of {budget} total_tokens used")),
        "{message}"
    );
}

const RACE_LIMIT: &str =
    "  - { id: race, scope: organization, window: day, measure: total_tokens, limit: 4000 }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_requests_never_overshoot_a_token_budget() {
    let h = Harness::start(&config(RACE_LIMIT)).await;
    race(&[&h], 4000, Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_requests_on_two_gateways_sharing_redis_never_overshoot() {
    let redis = RedisServer::start().await;
    let a = Harness::start(&redis_config(RACE_LIMIT, &redis, "fail_closed")).await;
    let b = Harness::start(&redis_config(RACE_LIMIT, &redis, "fail_closed")).await;
    race(&[&a, &b], 4000, Duration::from_millis(200)).await;
}

fn redis_config(limit: &str, redis: &RedisServer, on_outage: &str) -> String {
    redis_store_config(limit, redis, &format!("on_outage: {on_outage}"))
}

/// `limit` with counters in `redis`, the store's `options` added (e.g. `on_outage: …`).
fn redis_store_config(limit: &str, redis: &RedisServer, options: &str) -> String {
    config_with(
        limit,
        &format!(
            "limit_store: {{ redis: \"{}\", prefix: johi-test, op_timeout: 1s, {options} }}",
            redis.url()
        ),
    )
}

/// Sends `n` requests alternately to `a` and `b`; answers how many were served.
async fn served_alternately(a: &Harness, b: &Harness, n: usize) -> usize {
    let mut served = 0;
    for i in 0..n {
        let h = if i % 2 == 0 { a } else { b };
        if send(h, KEY, &chat("shared", 8)).await.status() == 200 {
            served += 1;
        }
    }
    served
}

/// The same with each gateway counting 5 % of the budget ahead: never more than the budget,
/// and once the idle allotments are given back the counter holds exactly what was used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_requests_on_two_prefetching_gateways_never_overshoot() {
    let redis = RedisServer::start().await;
    let a = Harness::start(&prefetch_config(RACE_LIMIT, &redis, "5%")).await;
    let b = Harness::start(&prefetch_config(RACE_LIMIT, &redis, "5%")).await;
    let settle = johi_limits::IDLE_GIVE_BACK + Duration::from_millis(700);
    race(&[&a, &b], 4000, settle).await;
}

fn prefetch_config(limit: &str, redis: &RedisServer, share: &str) -> String {
    redis_store_config(
        limit,
        redis,
        &format!("on_outage: fail_closed, prefetch: \"{share}\""),
    )
}

/// Two gateways counting ahead still enforce one limit together, to the request.
#[tokio::test]
async fn two_prefetching_gateways_enforce_one_limit() {
    let redis = RedisServer::start().await;
    let limit =
        "  - { id: org-rph, scope: organization, window: hour, measure: requests, limit: 10 }";
    let a = Harness::start(&prefetch_config(limit, &redis, "20%")).await;
    let b = Harness::start(&prefetch_config(limit, &redis, "20%")).await;
    let served = served_alternately(&a, &b, 20).await;
    assert_eq!(
        served, 10,
        "one limit across both replicas, allotments included"
    );
}

/// Counting ahead through a Redis outage (fail-closed): what the replica already holds is
/// served (it was charged in Redis before), the first request that needs Redis gets the 503,
/// and after recovery the limit holds again, to the request.
#[tokio::test]
async fn a_prefetching_gateway_serves_its_allotment_then_follows_the_outage_mode() {
    let mut redis = RedisServer::start().await;
    let port = redis.port();
    // An hour's window: the recovery below takes seconds, and a window that turned meanwhile
    // would start the count afresh.
    let limit = "  - { id: key-rph, scope: key, window: hour, measure: requests, limit: 10 }";
    let h = Harness::start(&prefetch_config(limit, &redis, "20%")).await;
    assert_eq!(send(&h, KEY, &chat("up", 8)).await.status(), 200);

    redis.stop();
    let mut down = Vec::new();
    for _ in 0..4 {
        down.push(send(&h, KEY, &chat("down", 8)).await.status().as_u16());
    }
    assert_eq!(
        down,
        [200, 200, 503, 503],
        "two from the allotment, then the outage mode"
    );

    let _redis = RedisServer::start_on(port).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while send(&h, KEY, &chat("back", 8)).await.status() != 200 {
        assert!(std::time::Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The restarted Redis is empty: ten requests in this hour again, the one above included.
    let mut served = 0;
    for _ in 0..12 {
        if send(&h, KEY, &chat("back", 8)).await.status() == 200 {
            served += 1;
        }
    }
    assert_eq!(
        served, 9,
        "the Redis limit is enforced again, allotments included"
    );
}

/// Two gateways (two replicas) sharing one Redis enforce one limit together.
#[tokio::test]
async fn two_gateways_sharing_redis_enforce_one_limit() {
    let redis = RedisServer::start().await;
    let limit =
        "  - { id: org-rpm, scope: organization, window: minute, measure: requests, limit: 10 }";
    let a = Harness::start(&redis_config(limit, &redis, "fail_closed")).await;
    let b = Harness::start(&redis_config(limit, &redis, "fail_closed")).await;
    let served = served_alternately(&a, &b, 20).await;
    assert_eq!(served, 10, "one limit across both replicas, not ten each");
}

/// With Redis, a request's commit waits for the next reservation to carry it; a graceful
/// restart right after the last request still leaves the budget holding exactly the
/// provider's usage (nothing queued is lost).
#[tokio::test]
async fn redis_commits_queued_at_a_graceful_restart_are_not_lost() {
    let redis = RedisServer::start().await;
    let h = Harness::start(&redis_config(TPD, &redis, "fail_closed")).await;
    let mut used = 0;
    for i in 0..5 {
        let r = send(&h, KEY, &chat(&format!("restart {i}"), 40)).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        used += v["usage"]["total_tokens"].as_u64().unwrap();
    }
    let h = h.restart().await;
    assert_eq!(tpd_charged(&h).await, used);
}

/// Redis killed mid-run and restarted: fail-closed answers 503, fail-open keeps enforcing in
/// memory; both enforce the shared limit again once Redis is back.
#[tokio::test]
async fn a_redis_outage_follows_the_configured_mode_and_recovers() {
    let mut redis = RedisServer::start().await;
    let port = redis.port();
    let limit = "  - { id: key-rpm, scope: key, window: minute, measure: requests, limit: 3 }";
    let closed = Harness::start(&redis_config(limit, &redis, "fail_closed")).await;
    let open = Harness::start(&redis_config(limit, &redis, "fail_open")).await;
    assert_eq!(send(&closed, KEY, &chat("up", 8)).await.status(), 200);

    redis.stop();
    let r = send(&closed, KEY, &chat("down", 8)).await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("1"));
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "limits_unavailable");
    // Fail-open: served while Redis is down, and the limit still holds (in memory).
    let down = chat("down", 8);
    let statuses: Vec<u16> =
        futures_util::future::join_all((0..4).map(|_| send(&open, OTHER, &down)))
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        1,
        "{statuses:?}"
    );

    let _redis = RedisServer::start_on(port).await;
    // Recovery is by itself: the store probes Redis again at most once a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = send(&closed, KEY, &chat("back", 8)).await.status();
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fail-closed did not recover: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The restarted Redis is empty: the key has its whole allowance there again, once.
    let mut after = Vec::new();
    for _ in 0..4 {
        after.push(send(&closed, KEY, &chat("back", 8)).await.status().as_u16());
    }
    assert_eq!(
        after,
        [200, 200, 429, 429],
        "the Redis limit is enforced again"
    );
}

/// A stream whose client did not ask for usage: Johi asks the provider for it, charges it,
/// and removes the extra event, so the client gets exactly the stream it asked for.
#[tokio::test]
async fn a_stream_is_charged_its_usage_without_the_client_seeing_the_usage_event() {
    let h = Harness::start(&config(TPD)).await;
    let messages = json!([{"role": "user", "content": "stream me something"}]);
    // The same prompt unstreamed tells what the provider counts for it.
    let plain: Value = send(
        &h,
        KEY,
        &json!({"model": "m", "max_tokens": 50, "messages": messages}),
    )
    .await
    .json()
    .await
    .unwrap();
    let per_call = plain["usage"]["total_tokens"].as_u64().unwrap();

    let stream = json!({"model": "m", "max_tokens": 50, "stream": true, "messages": messages});
    let body = send(&h, KEY, &stream).await.text().await.unwrap();
    let events = johi_testkit::sse_data(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        assert!(
            !v["choices"].as_array().unwrap().is_empty(),
            "no usage-only chunk reaches a client that did not ask: {e}"
        );
        assert!(v.get("usage").is_none_or(Value::is_null), "{e}");
    }
    let upstream = &h.mock.requests()[1];
    assert_eq!(
        upstream.body["stream_options"]["include_usage"], true,
        "Johi asked the provider"
    );

    assert_eq!(
        tpd_charged(&h).await,
        2 * per_call,
        "the stream was charged the provider's usage, not its estimate"
    );
}

/// A stream cut mid-way reports no usage: it is charged what passed (the estimated prompt
/// and the output counted as it was relayed), not nothing and not the whole reservation.
#[tokio::test]
async fn a_stream_cut_midway_is_charged_what_passed() {
    let h = Harness::start(&config(TPD)).await;
    let cut = json!({"model": "m", "max_tokens": 500, "stream": true,
                     "messages": [{"role": "user", "content": "this stream will break"}],
                     "mock": {"stream_cut_after": 4}});
    let body = send(&h, KEY, &cut).await.text().await.unwrap();
    let mut text_bytes = 0;
    let mut saw_error = false;
    for e in johi_testkit::sse_data(&body) {
        let v: Value = serde_json::from_str(&e).unwrap();
        if v.get("error").is_some() {
            saw_error = true;
            continue;
        }
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text_bytes += t.len() as u64;
        }
    }
    assert!(
        saw_error && text_bytes > 0,
        "the stream broke after some text: {body}"
    );
    assert_eq!(
        tpd_charged(&h).await,
        estimate(&cut, 0) + text_bytes.div_ceil(4)
    );
}

/// A stream whose output outgrows what its hard budget allows (here: a request without
/// `max_tokens`, so Johi reserved the model's `default_max_tokens` of 5, and a long answer)
/// is cut with a rate-limit error event, one event past the allowance at most.
#[tokio::test]
async fn a_stream_beyond_its_hard_budget_is_cut_with_a_bounded_overshoot() {
    let long_reply = "word ".repeat(200);
    let body = json!({"model": "m", "stream": true,
                      "messages": [{"role": "user", "content": "talk a lot"}],
                      "mock": {"reply": long_reply}});
    // Room for the prompt, the 5 reserved output tokens and 10 more.
    let limit = estimate(&body, 5) + 10;
    let h = Harness::start(&config(&format!(
        "  - {{ id: tiny, scope: key, window: day, measure: total_tokens, limit: {limit} }}"
    )))
    .await;
    let text = send(&h, KEY, &body).await.text().await.unwrap();
    let events = johi_testkit::sse_data(&text);
    assert!(
        !events.iter().any(|e| e == "[DONE]"),
        "the stream did not run to its end: {}",
        &text[..text.len().min(600)]
    );
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "rate_limit_exceeded", "{last}");
    let relayed: usize = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::len))
        .sum();
    let allowance = 5 + 10;
    let produced = (relayed as u64).div_ceil(4);
    assert!(
        produced > allowance,
        "cut only once beyond the allowance: {produced}"
    );
    assert!(
        produced <= allowance + 2,
        "overshoot of at most one event: {produced}"
    );
    assert!(relayed < long_reply.len() / 2, "cut early, not at the end");
}
