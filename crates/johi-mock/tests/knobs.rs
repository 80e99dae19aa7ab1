//! Fault knobs, from headers and from the body's `mock` field.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{client, mock, parse_stream, post, sse_data};
use futures_util::StreamExt;
use serde_json::{json, Value};

fn chat_url(mock: &johi_mock::MockUpstream) -> String {
    format!("{}/chat/completions", mock.base_url())
}

fn chat_body() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

fn stream_body(mock_knobs: Value) -> Value {
    json!({"model": "m", "stream": true, "messages": [], "mock": mock_knobs})
}

#[tokio::test]
async fn status_knob_gives_openai_errors() {
    let mock = mock().await;
    let response = client()
        .post(chat_url(&mock))
        .header("x-mock-status", "503")
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"error": {"message": "mock error 503", "type": "server_error", "param": null, "code": "mock_503"}})
    );

    let mut body = chat_body();
    body["mock"] = json!({"status": 429});
    let response = post(&mock, "/chat/completions", body).await;
    assert_eq!(response.status(), 429);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "mock_429");
}

#[tokio::test]
async fn error_body_knob_is_sent_raw() {
    let mock = mock().await;
    let response = client()
        .post(chat_url(&mock))
        .header("x-mock-status", "500")
        .header("x-mock-error-body", "upstream exploded")
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(response.text().await.unwrap(), "upstream exploded");

    let mut body = chat_body();
    body["mock"] = json!({"status": 400, "error_body": "{\"error\":{\"message\":\"custom\"}}"});
    let response = post(&mock, "/chat/completions", body).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"error": {"message": "custom"}})
    );
}

#[tokio::test]
async fn latency_knob_delays_the_response() {
    let mock = mock().await;
    let start = Instant::now();
    let response = client()
        .post(chat_url(&mock))
        .header("x-mock-latency-ms", "300")
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn drop_knob_closes_without_a_response() {
    let mock = mock().await;
    let result = client()
        .post(chat_url(&mock))
        .header("x-mock-drop", "before_response")
        .json(&chat_body())
        .send()
        .await;
    let error = result.unwrap_err();
    assert!(!error.is_status() && !error.is_timeout(), "{error:?}");
    // The body form works too.
    let mut body = chat_body();
    body["mock"] = json!({"drop": "before_response"});
    let result = client().post(chat_url(&mock)).json(&body).send().await;
    assert!(result.is_err());
    assert!(mock.stats().requests >= 2);
}

#[tokio::test]
async fn stream_cut_after_aborts_the_body() {
    let mock = mock().await;
    let response = post(
        &mock,
        "/chat/completions",
        stream_body(json!({"stream_cut_after": 3})),
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut received = Vec::new();
    let mut stream = response.bytes_stream();
    let mut failed = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the body should end with an error");
    let text = String::from_utf8(received).unwrap();
    let events = sse_data(&text);
    assert_eq!(events.len(), 3, "{text}");
    assert!(!text.contains("[DONE]"));
    let stats = mock.stats();
    assert_eq!(stats.streams_started, 1);
    assert_eq!(stats.streams_completed, 0);
    assert_eq!(stats.streams_cancelled, 0);
}

#[tokio::test]
async fn stream_cut_after_zero_sends_only_the_head() {
    let mock = mock().await;
    let response = client()
        .post(chat_url(&mock))
        .header("x-mock-stream-cut-after", "0")
        .json(&stream_body(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err());
}

#[tokio::test]
async fn stream_no_done_ends_cleanly_without_done() {
    let mock = mock().await;
    let response = post(
        &mock,
        "/completions",
        json!({"model": "m", "prompt": "x", "stream": true, "mock": {"stream_no_done": true}}),
    )
    .await;
    let text = response.text().await.unwrap();
    let (events, done) = parse_stream(&text);
    assert!(!done);
    assert_eq!(events.len(), 11);
    assert_eq!(events[10]["choices"][0]["finish_reason"], "stop");
    common::wait_for_stats(&mock, |s| s.streams_completed == 1).await;
}

#[tokio::test]
async fn chunks_and_chunk_delay_shape_the_stream() {
    let mock = mock().await;
    let start = Instant::now();
    let response = client()
        .post(chat_url(&mock))
        .header("x-mock-chunks", "25")
        .header("x-mock-chunk-delay-ms", "10")
        .header("x-mock-reply", "tick tock")
        .json(&json!({"model": "m", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let (events, done) = parse_stream(&response.text().await.unwrap());
    assert!(done);
    // role + 25 content + finish, and 27 gaps of 10 ms (between every event incl. [DONE]).
    assert_eq!(events.len(), 27);
    assert!(
        start.elapsed() >= Duration::from_millis(260),
        "{:?}",
        start.elapsed()
    );
    let content: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        content,
        ["tick tock"; 13].join(" ").strip_suffix(" tock").unwrap()
    );

    // Non-streaming answers honour `chunks` too.
    let body: Value = post(
        &mock,
        "/chat/completions",
        json!({"model": "m", "messages": [], "mock": {"chunks": 3, "reply": "a b"}}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "a b a");
    assert_eq!(body["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn fail_first_fails_then_succeeds_per_key() {
    let mock = mock().await;
    let send = |key: &'static str| {
        let url = chat_url(&mock);
        async move {
            client()
                .post(url)
                .header("x-mock-fail-first", "2")
                .header("x-mock-fail-key", key)
                .json(&chat_body())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(send("a").await, 503);
    assert_eq!(send("a").await, 503);
    assert_eq!(send("b").await, 503);
    assert_eq!(send("a").await, 200);
    assert_eq!(send("a").await, 200);
    assert_eq!(send("b").await, 503);
    assert_eq!(send("b").await, 200);
    // Requests without the knob are unaffected and not counted.
    assert_eq!(
        post(&mock, "/chat/completions", chat_body()).await.status(),
        200
    );
    // Body form with the default key; reset clears the counters.
    let mut body = chat_body();
    body["mock"] = json!({"fail_first": 1});
    assert_eq!(
        post(&mock, "/chat/completions", body.clone())
            .await
            .status(),
        503
    );
    assert_eq!(
        post(&mock, "/chat/completions", body.clone())
            .await
            .status(),
        200
    );
    mock.reset();
    assert_eq!(post(&mock, "/chat/completions", body).await.status(), 503);
}

#[tokio::test]
async fn mock_field_does_not_leak_into_the_answer() {
    let mock = mock().await;
    let mut body = chat_body();
    let plain: Value = post(&mock, "/chat/completions", body.clone())
        .await
        .json()
        .await
        .unwrap();
    body["mock"] = json!({"latency_ms": 1});
    let knobbed: Value = post(&mock, "/chat/completions", body)
        .await
        .json()
        .await
        .unwrap();
    let strip = |mut v: Value| {
        v["id"] = Value::Null;
        v
    };
    assert_eq!(strip(plain), strip(knobbed));
}

#[tokio::test]
async fn bad_knobs_are_rejected() {
    let mock = mock().await;
    let response = client()
        .post(chat_url(&mock))
        .header("x-mock-latency", "5")
        .json(&chat_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_mock_knob");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("latency"));

    let mut body = chat_body();
    body["mock"] = json!({"status": "teapot"});
    assert_eq!(post(&mock, "/chat/completions", body).await.status(), 400);
}
