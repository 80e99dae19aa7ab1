//! Stats, stream cancellation detection, recording, shutdown on drop.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{client, mock, mock_with, post, wait_for_stats};
use futures_util::StreamExt;
use johi_mock::{MockOptions, Stats, RECORD_CAPACITY};
use serde_json::{json, Value};

#[tokio::test]
async fn stats_count_routes_and_streams() {
    let mock = mock().await;
    let chat = json!({"model": "m", "messages": []});
    post(&mock, "/chat/completions", chat.clone()).await;
    let mut stream = chat.clone();
    stream["stream"] = json!(true);
    post(&mock, "/chat/completions", stream)
        .await
        .text()
        .await
        .unwrap();
    post(
        &mock,
        "/completions",
        json!({"model": "m", "prompt": "p", "stream": true}),
    )
    .await
    .text()
    .await
    .unwrap();
    post(&mock, "/embeddings", json!({"model": "m", "input": "x"})).await;
    client()
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap();
    client()
        .get(format!("{}/models/x", mock.base_url()))
        .send()
        .await
        .unwrap();
    post(&mock, "/unknown", json!({})).await;
    // A fault answer still counts as a chat request.
    let mut failing = chat.clone();
    failing["mock"] = json!({"status": 500});
    post(&mock, "/chat/completions", failing).await;

    wait_for_stats(&mock, |s| s.streams_completed == 2).await;
    assert_eq!(
        mock.stats(),
        Stats {
            requests: 8,
            chat: 3,
            messages: 0,
            converse: 0,
            completions: 1,
            embeddings: 1,
            models: 2,
            streams_started: 2,
            streams_completed: 2,
            streams_cancelled: 0,
            // Every helper call makes a fresh client, so one connection each.
            connections: 8,
        }
    );
    mock.reset();
    assert_eq!(mock.stats(), Stats::default());
}

#[tokio::test]
async fn connections_are_counted_once_however_many_requests_they_carry() {
    let mock = mock().await;
    let keep_alive = client();
    for _ in 0..3 {
        keep_alive
            .get(format!("{}/models", mock.base_url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    assert_eq!(mock.stats().models, 3);
    assert_eq!(mock.stats().connections, 1);
}

#[tokio::test]
async fn dropping_a_slow_stream_counts_as_cancelled() {
    let mock = mock().await;
    let response = post(
        &mock,
        "/chat/completions",
        json!({"model": "m", "stream": true, "messages": [], "mock": {"chunks": 200, "chunk_delay_ms": 20}}),
    )
    .await;
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(stream);
    wait_for_stats(&mock, |s| s.streams_cancelled == 1).await;
    let stats = mock.stats();
    assert_eq!(stats.streams_started, 1);
    assert_eq!(stats.streams_completed, 0);
}

#[tokio::test]
async fn dropping_a_slow_h2_stream_counts_as_cancelled() {
    let mock = mock().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&json!({"model": "m", "stream": true, "messages": [], "mock": {"chunks": 200, "chunk_delay_ms": 20}}))
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    wait_for_stats(&mock, |s| s.streams_cancelled == 1).await;
}

#[tokio::test]
async fn requests_are_recorded_with_lowercase_headers() {
    let mock = mock().await;
    client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .header("Authorization", "Bearer sk-test")
        .header("X-Custom", "one")
        .json(&json!({"model": "m", "messages": [], "mock": {"reply": "r"}}))
        .send()
        .await
        .unwrap();
    client()
        .post(format!("{}/embeddings", mock.base_url()))
        .body("not json")
        .send()
        .await
        .unwrap();
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.headers["authorization"], "Bearer sk-test");
    assert_eq!(first.headers["x-custom"], "one");
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(
        first.body,
        json!({"model": "m", "messages": [], "mock": {"reply": "r"}})
    );
    assert_eq!(requests[1].path, "/v1/embeddings");
    assert_eq!(requests[1].body, Value::Null);
    mock.reset();
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn recording_is_bounded() {
    let mock = mock().await;
    let client = client();
    for i in 0..RECORD_CAPACITY + 8 {
        client
            .get(format!("{}/models/m{i}", mock.base_url()))
            .send()
            .await
            .unwrap();
    }
    let requests = mock.requests();
    assert_eq!(requests.len(), RECORD_CAPACITY);
    assert_eq!(requests[0].path, "/v1/models/m8");
    assert_eq!(
        requests.last().unwrap().path,
        format!("/v1/models/m{}", RECORD_CAPACITY + 7)
    );
}

#[tokio::test]
async fn recording_can_be_turned_off() {
    let mock = mock_with(MockOptions { record: false }).await;
    let response = post(
        &mock,
        "/chat/completions",
        json!({"model": "m", "messages": []}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(mock.requests().is_empty());
    assert_eq!(mock.stats().chat, 1);
}

#[tokio::test]
async fn dropping_the_mock_stops_serving() {
    let mock = mock().await;
    let url = format!("{}/models", mock.base_url());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    drop(mock);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(client.get(&url).send().await.is_err());
}

#[tokio::test]
async fn base_url_points_at_loopback() {
    let mock = johi_mock::MockUpstream::start("0.0.0.0:0".parse().unwrap())
        .await
        .unwrap();
    let port = mock.addr().port();
    assert_eq!(mock.base_url(), format!("http://127.0.0.1:{port}/v1"));
    let response = client()
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
