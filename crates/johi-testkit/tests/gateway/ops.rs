//! Operations: hot reload (valid and invalid) and graceful shutdown with a stream in flight.

use std::time::Duration;

use futures_util::StreamExt;
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
