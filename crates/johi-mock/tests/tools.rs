//! The tool-call convention of the chat and Messages routes, plain and streamed.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{mock, post, DEFAULT_REPLY};
use serde_json::{json, Value};

fn schema() -> Value {
    json!({"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"},
        "tags": {"type": "array"}, "extra": {"type": "object"}, "note": {"type": "string"}},
        "required": ["city", "days", "metric", "tags", "extra"]})
}

fn expected_args() -> Value {
    json!({"city": "mock", "days": 1, "metric": true, "tags": [], "extra": {}})
}

fn chat(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
        "tools": [
            {"type": "function", "function": {"name": "forecast", "parameters": schema()}},
            {"type": "function", "function": {"name": "other", "parameters": {}}}],
        "messages": [{"role": "user", "content": "weather?"}]})
}

fn messages(stream: bool) -> Value {
    json!({"model": "m", "max_tokens": 50, "stream": stream,
        "tools": [{"name": "forecast", "input_schema": schema()}, {"name": "other", "input_schema": {}}],
        "messages": [{"role": "user", "content": "weather?"}]})
}

/// `data:` payloads of an SSE body (any `event:` lines skipped).
fn data(text: &str) -> Vec<Value> {
    text.split_terminator("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn chat_calls_the_first_tool_with_arguments_from_its_schema() {
    let mock = mock().await;
    let body: Value = post(&mock, "/chat/completions", chat(false))
        .await
        .json()
        .await
        .unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "forecast");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, expected_args());
    assert!(call["id"].as_str().unwrap().starts_with("call_"));

    let text = post(&mock, "/chat/completions", chat(true))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let chunks = data(&text);
    let first = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["function"]["name"], "forecast");
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .filter(|a| !a.is_empty())
        .collect();
    assert_eq!(pieces.len(), 2, "two argument deltas");
    assert_eq!(
        serde_json::from_str::<Value>(&pieces.concat()).unwrap(),
        expected_args()
    );
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn messages_calls_the_first_tool_with_arguments_from_its_schema() {
    let mock = mock().await;
    let body: Value = post(&mock, "/messages", messages(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["stop_reason"], "tool_use");
    let block = &body["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "forecast");
    assert_eq!(block["input"], expected_args());

    let text = post(&mock, "/messages", messages(true))
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("[DONE]"));
    let events = data(&text);
    assert_eq!(events[1]["content_block"]["type"], "tool_use");
    let pieces: Vec<&str> = events
        .iter()
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(pieces.len(), 2, "two input_json_delta events");
    assert_eq!(
        serde_json::from_str::<Value>(&pieces.concat()).unwrap(),
        expected_args()
    );
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(events.last().unwrap()["type"], "message_stop");
}

#[tokio::test]
async fn a_tool_result_last_gets_the_text_reply() {
    let mock = mock().await;
    let mut body = chat(false);
    body["messages"] = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "forecast", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]);
    let v: Value = post(&mock, "/chat/completions", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], DEFAULT_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    let mut body = messages(false);
    body["messages"] = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "forecast", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]}]);
    let v: Value = post(&mock, "/messages", body).await.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], DEFAULT_REPLY);
    assert_eq!(v["stop_reason"], "end_turn");
}
