//! Operations: hot reload (valid and invalid), graceful shutdown with a stream in flight,
//! and completion hooks that run after the response is out.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use johi_core::exchange::Outcome;
use johi_core::{Exchange, FacetSet};
use johi_pipeline::{Category, Contract, FailureMode, Processor, RetryScope};
use johi_testkit::{sse_data, Harness, BASIC};
use serde_json::json;

async fn eventually(h: &Harness, want: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids = h.model_ids().await;
        if ids == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ids
}

#[tokio::test]
async fn a_changed_file_is_reloaded_and_a_bad_one_refused() {
    let h = Harness::start(BASIC).await;
    assert_eq!(h.model_ids().await, ["m", "e"]);

    let added = BASIC.replace(
        "  e: { targets: [{ provider: mock, model: mock-embed }] }",
        "  e: { targets: [{ provider: mock, model: mock-embed }] }\n  m2: { targets: [{ provider: mock, model: mock-large }] }",
    );
    h.write_config(&added);
    assert_eq!(
        eventually(&h, &["m", "e", "m2"]).await,
        ["m", "e", "m2"],
        "picked up by the file watcher"
    );
    let r = h
        .post(
            "/v1/chat/completions",
            &json!({"model": "m2", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);

    h.write_config(&added.replace(
        "provider: mock, model: mock-large",
        "provider: nowhere, model: mock-large",
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        h.model_ids().await,
        ["m", "e", "m2"],
        "the old config keeps serving"
    );
    let errors = h.gateway.reload().await.unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("models.m2.targets[0].provider: unknown provider 'nowhere'")),
        "{errors:?}"
    );
    let r = h
        .post(
            "/v1/chat/completions",
            &json!({"model": "m2", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);

    h.write_config(BASIC);
    h.gateway.reload().await.unwrap();
    assert_eq!(
        h.model_ids().await,
        ["m", "e"],
        "an explicit reload (SIGHUP) applies at once"
    );
}

/// An edit made before the watcher first runs (start returns, the file is rewritten at once)
/// is still seen: the watcher compares against the file as it was when the config was read,
/// not as it was when the watcher got round to looking.
#[tokio::test]
async fn an_edit_right_after_start_is_picked_up() {
    let h = Harness::start(BASIC).await;
    // No await between start and the write: on this current-thread runtime the watcher task
    // has not run yet.
    h.write_config(&BASIC.replace(
        "  e: { targets: [{ provider: mock, model: mock-embed }] }",
        "  e: { targets: [{ provider: mock, model: mock-embed }] }\n  m3: { targets: [{ provider: mock, model: mock-large }] }",
    ));
    assert_eq!(
        eventually(&h, &["m", "e", "m3"]).await,
        ["m", "e", "m3"],
        "picked up by the file watcher"
    );
}

#[tokio::test]
async fn shutdown_drains_a_stream_in_flight() {
    let h = Harness::start(BASIC).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true,
                      "stream_options": {"include_usage": true}, "mock": {"chunk_delay_ms": 60, "chunks": 12}});
    let r = h.post("/v1/chat/completions", &body).await;
    let mut stream = r.bytes_stream();
    let mut text = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();

    h.gateway.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = reqwest::Client::new().get(h.url("/healthz")).send().await;
    assert!(refused.is_err(), "no new connections once draining");

    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.expect("the stream is not cut")).unwrap());
    }
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
    let records = h.finish().await;
    assert_eq!(
        records.len(),
        1,
        "the drained stream was audited before exit"
    );
    assert_eq!(records[0]["status"], 200);
    assert_eq!(records[0]["output_tokens"], 12);
}

#[tokio::test]
async fn readyz_turns_unready_during_the_shutdown_delay() {
    let h = Harness::start(&BASIC.replace(
        "drain_timeout: 10s",
        "drain_timeout: 10s, shutdown_delay: 500ms",
    ))
    .await;
    let client = reqwest::Client::new();
    assert_eq!(
        client.get(h.url("/readyz")).send().await.unwrap().status(),
        200
    );
    h.gateway.shutdown();
    let r = reqwest::Client::new()
        .get(h.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let r = h
        .post(
            "/v1/chat/completions",
            &json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(
        r.status(),
        200,
        "requests are still served while load balancers catch up"
    );
    h.finish().await;
}

/// An observer whose completion hook takes `delay` (a stand-in for slow bookkeeping).
struct SlowHook {
    contract: Contract,
    delay: Duration,
    done: Arc<AtomicBool>,
}

impl Processor for SlowHook {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    fn has_request_phase(&self) -> bool {
        false
    }

    // Blocking on purpose: a hook is synchronous, and slow bookkeeping blocks its worker.
    #[allow(clippy::disallowed_methods)]
    fn on_complete(&self, _exchange: &Exchange, _outcome: &Outcome) {
        std::thread::sleep(self.delay);
        self.done.store(true, Ordering::SeqCst);
    }
}

/// A [`SlowHook`] registered as `slow_hook`, and the flag it sets when its hook is done.
fn slow_hook(delay: Duration) -> (johi_testkit::johi_server::Registry, Arc<AtomicBool>) {
    let done = Arc::new(AtomicBool::new(false));
    let hook = Arc::new(SlowHook {
        contract: Contract {
            name: "slow_hook",
            category: Category::Observe,
            reads: FacetSet::EMPTY,
            writes: FacetSet::EMPTY,
            retry: RetryScope::Once,
            on_failure: FailureMode::FailOpen,
        },
        delay,
        done: done.clone(),
    });
    let mut registry = johi_testkit::johi_server::Registry::with_builtins();
    registry.register("slow_hook", move |_| hook.clone());
    (registry, done)
}

/// Sends a small chat request over a fresh connection with blocking I/O on a thread of its
/// own (so that a hook occupying a runtime worker cannot slow the client down), and answers
/// the status line and how long the answer took.
async fn chat_from_a_thread(addr: std::net::SocketAddr) -> (String, Duration) {
    tokio::task::spawn_blocking(move || {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: johi\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let started = Instant::now();
        let mut socket = std::net::TcpStream::connect(addr).expect("connects");
        socket.write_all(request.as_bytes()).expect("sends");
        let mut answer = String::new();
        socket.read_to_string(&mut answer).expect("reads the answer");
        let elapsed = started.elapsed();
        (answer.lines().next().unwrap_or_default().to_owned(), elapsed)
    })
    .await
    .expect("the client thread")
}

/// The completion hooks run after the response is out: a hook that takes 1.5 s does not
/// hold the client's answer back (it did while hooks ran before the response was handed
/// to the connection), and it still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_completion_hook_does_not_hold_the_response_back() {
    let (registry, done) = slow_hook(Duration::from_millis(1500));
    let config = BASIC.replace(
        "audit: {",
        "pipeline: [enrich, validate, route, endpoint, translate, credentials, audit, slow_hook]\naudit: {",
    );
    let h = Harness::start_with(&config, registry).await;
    let (status_line, elapsed) = chat_from_a_thread(h.gateway.addr()).await;
    assert_eq!(status_line, "HTTP/1.1 200 OK");
    assert!(
        elapsed < Duration::from_millis(1000),
        "the answer waited for the completion hook: {elapsed:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(done.load(Ordering::SeqCst), "the hook ran");
}

/// A concurrency lease is given back before the answer goes out, not with the bookkeeping
/// after it: a client that sends its next request as soon as it has the answer is served,
/// while a slow hook that completes before `limit` is still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_lease_is_released_before_the_answer_goes_out() {
    let (registry, _) = slow_hook(Duration::from_millis(1500));
    let config = BASIC.replace(
        "audit: {",
        "limits:\n  - { id: one-at-a-time, scope: model, measure: concurrent, limit: 1 }\npipeline: [slow_hook, enrich, authenticate, validate, stream_usage, route, authorize, limit, endpoint, translate, credentials, audit]\naudit: {",
    );
    let h = Harness::start_with(&config, registry).await;
    for _ in 0..2 {
        let (status_line, elapsed) = chat_from_a_thread(h.gateway.addr()).await;
        assert_eq!(status_line, "HTTP/1.1 200 OK", "after {elapsed:?}");
    }
}
