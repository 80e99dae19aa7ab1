//! The retry loop: attempts over a model's targets, re-running only per-attempt processors.

use std::sync::Arc;

use johi_pipeline::RetryScope;
use johi_testkit::{Counting, Harness};
use serde_json::json;

const FALLBACK: &str = r#"
server: { listen: "127.0.0.1:0" }
auth: { public_routes: ["*"] }
providers:
  flaky: { base_url: "{mock}", api_key: sk-flaky, headers: { x-mock-status: "503" } }
  good:  { base_url: "{mock}", api_key: sk-good }
  down:  { base_url: "{down}", api_key: sk-down }
models:
  r:     { targets: [{ provider: flaky, model: a, weight: 1 }, { provider: good, model: b, weight: 0 }] }
  c:     { targets: [{ provider: down, model: a, weight: 1 }, { provider: good, model: b, weight: 0 }] }
  both:  { targets: [{ provider: flaky, model: a }, { provider: flaky, model: b }] }
  once:  { targets: [{ provider: flaky, model: a }, { provider: good, model: b, weight: 0 }], max_attempts: 1 }
audit: { path: "{dir}/audit.jsonl" }
pipeline: [enrich, validate, once_counter, route, endpoint, attempt_counter, translate, credentials, audit, hook_counter]
"#;

struct Setup {
    h: Harness,
    once: Arc<std::sync::atomic::AtomicUsize>,
    per_attempt: Arc<std::sync::atomic::AtomicUsize>,
    completions: Arc<std::sync::atomic::AtomicUsize>,
    /// A completion-only observer's request-phase runs (must stay 0) and hooks.
    hook_runs: Arc<std::sync::atomic::AtomicUsize>,
    hook_completions: Arc<std::sync::atomic::AtomicUsize>,
}

async fn setup() -> Setup {
    let once = Counting::new("once_counter", RetryScope::Once);
    let per_attempt = Counting::new("attempt_counter", RetryScope::EveryAttempt);
    let (once_runs, attempt_runs, completions) = (
        once.runs.clone(),
        per_attempt.runs.clone(),
        once.completions.clone(),
    );
    let hook = Counting::completion_only("hook_counter");
    let (hook_runs, hook_completions) = (hook.runs.clone(), hook.completions.clone());
    let hook = Arc::new(hook);
    let once = Arc::new(once);
    let per_attempt = Arc::new(per_attempt);
    let mut registry = johi_testkit::johi_server::Registry::with_builtins();
    registry.register("once_counter", move |_| once.clone());
    registry.register("attempt_counter", move |_| per_attempt.clone());
    registry.register("hook_counter", move |_| hook.clone());
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = FALLBACK.replace("{down}", &format!("http://{down}/v1"));
    let h = Harness::start_with(&config, registry).await;
    Setup {
        h,
        once: once_runs,
        per_attempt: attempt_runs,
        completions,
        hook_runs,
        hook_completions,
    }
}

fn ask(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": "x"}]})
}

fn n(counter: &std::sync::atomic::AtomicUsize) -> usize {
    counter.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn a_5xx_falls_back_and_only_per_attempt_processors_rerun() {
    let s = setup().await;
    let r = s.h.post("/v1/chat/completions", &ask("r")).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["model"], "b", "served by the second target");
    assert_eq!(n(&s.once), 1, "once-per-request processors ran once");
    assert_eq!(
        n(&s.per_attempt),
        2,
        "per-attempt processors ran for each attempt"
    );

    let seen = s.h.mock.requests();
    assert_eq!(seen.len(), 2, "the upstream was called exactly twice");
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-flaky");
    assert_eq!(seen[0].body["model"], "a");
    assert_eq!(
        seen[1].headers["authorization"], "Bearer sk-good",
        "the fallback carries only its own key"
    );
    assert!(
        !seen[1].headers.contains_key("x-mock-status"),
        "nor the first provider's headers"
    );
    assert_eq!(seen[1].body["model"], "b");
    assert_eq!(
        seen[0].headers["x-request-id"],
        seen[1].headers["x-request-id"]
    );

    let completions = s.completions.clone();
    let records = s.h.finish().await;
    assert_eq!(n(&completions), 1, "the completion hook ran exactly once");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["attempts"], 2);
    assert_eq!(records[0]["provider"], "good");
}

#[tokio::test]
async fn a_connect_error_falls_back() {
    let s = setup().await;
    let r = s.h.post("/v1/chat/completions", &ask("c")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(n(&s.per_attempt), 2);
    assert_eq!(s.h.mock.requests().len(), 1);
    assert_eq!(
        s.h.mock.requests()[0].headers["authorization"],
        "Bearer sk-good"
    );
}

#[tokio::test]
async fn when_every_target_fails_the_last_error_is_returned() {
    let s = setup().await;
    let r = s.h.post("/v1/chat/completions", &ask("both")).await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "mock_503");
    assert_eq!(s.h.mock.requests().len(), 2);
    assert_eq!(n(&s.once), 1);
}

#[tokio::test]
async fn max_attempts_and_non_retryable_errors_stop_the_loop() {
    let s = setup().await;
    let r = s.h.post("/v1/chat/completions", &ask("once")).await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        s.h.mock.requests().len(),
        1,
        "max_attempts: 1 means no fallback"
    );

    s.h.mock.reset();
    let mut bad = ask("c");
    bad["mock"] = json!({"status": 400});
    let r = s.h.post("/v1/chat/completions", &bad).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        s.h.mock.requests().len(),
        1,
        "a 400 is the client's fault: not retried"
    );
}

/// A processor without a request phase is never called on the request path, on any
/// attempt, yet its completion hook runs once per request.
#[tokio::test]
async fn a_completion_only_observer_is_left_out_of_the_request_phase() {
    let s = setup().await;
    assert_eq!(
        s.h.post("/v1/chat/completions", &ask("r")).await.status(),
        200
    );
    let r = s.h.post("/v1/chat/completions", &ask("both")).await;
    assert_eq!(r.status(), 503);
    drop(r);
    assert_eq!(n(&s.hook_runs), 0, "on_request was called");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while n(&s.hook_completions) < 2 {
        assert!(std::time::Instant::now() < deadline, "hooks did not run");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(n(&s.hook_completions), 2);
}
