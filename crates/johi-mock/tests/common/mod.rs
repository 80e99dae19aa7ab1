//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use johi_mock::{MockOptions, MockUpstream};
use serde_json::Value;

pub const DEFAULT_REPLY: &str = "This is a deterministic reply from the Johi mock upstream.";

pub async fn mock() -> MockUpstream {
    MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

pub async fn mock_with(options: MockOptions) -> MockUpstream {
    MockUpstream::start_with("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// POSTs JSON to `base_url + path`.
pub async fn post(mock: &MockUpstream, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", mock.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Splits an SSE body into the payloads of its `data:` events.
pub fn sse_data(text: &str) -> Vec<String> {
    assert!(
        text.ends_with("\n\n") || text.is_empty(),
        "unterminated SSE body: {text:?}"
    );
    text.split_terminator("\n\n")
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"))
                .to_owned()
        })
        .collect()
}

/// Parses every event except a final `[DONE]`; returns the JSON events and whether `[DONE]` came.
pub fn parse_stream(text: &str) -> (Vec<Value>, bool) {
    let mut data = sse_data(text);
    let done = data.last().is_some_and(|d| d == "[DONE]");
    if done {
        data.pop();
    }
    let events = data
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("bad event {d:?}: {e}")))
        .collect();
    (events, done)
}

/// Waits until `check` holds for the mock's stats, or fails after a few seconds.
pub async fn wait_for_stats(mock: &MockUpstream, check: impl Fn(&johi_mock::Stats) -> bool) {
    for _ in 0..300 {
        if check(&mock.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("stats never matched: {:?}", mock.stats());
}
