//! Cohere's v2 routes: the bearer check, chat (plain, streamed, tool calls), embed, and the
//! fault knobs in Cohere's error shape.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{client, mock, DEFAULT_REPLY};
use johi_mock::MockUpstream;
use serde_json::{json, Value};

async fn post_v2(mock: &MockUpstream, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("http://{}{path}", mock.addr()))
        .bearer_auth("co-key")
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// `(event name, data)` of every SSE event.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_owned();
            let data = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            (name, data)
        })
        .collect()
}

fn weather_tools(last: Value) -> Value {
    json!({"model": "command", "messages": [{"role": "user", "content": "weather?"}, last],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "required": ["city", "n", "hot", "tags", "opts"],
            "properties": {"city": {"type": "string"}, "n": {"type": "number"},
                "hot": {"type": "boolean"}, "tags": {"type": "array"}, "opts": {"type": "object"}}}}}]})
}

#[tokio::test]
async fn chat_wants_a_bearer_token() {
    let mock = mock().await;
    let r = client()
        .post(format!("http://{}/v2/chat", mock.addr()))
        .json(&json!({"model": "command", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "no api key supplied");
}

#[tokio::test]
async fn chat_answers_with_billed_units_and_tokens() {
    let mock = mock().await;
    let r = post_v2(
        &mock,
        "/v2/chat",
        json!({"model": "command", "messages": [{"role": "user", "content": "Say hello"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["finish_reason"], "COMPLETE");
    assert_eq!(body["message"]["content"][0]["text"], DEFAULT_REPLY);
    assert_eq!(
        body["usage"]["billed_units"],
        json!({"input_tokens": 5, "output_tokens": 10})
    );
    assert_eq!(body["usage"]["tokens"]["input_tokens"], 55);
    assert_eq!(mock.stats().chat, 1);
}

#[tokio::test]
async fn chat_streams_cohere_events() {
    let mock = mock().await;
    let r = post_v2(
        &mock,
        "/v2/chat",
        json!({"model": "command", "stream": true, "max_tokens": 3,
            "messages": [{"role": "user", "content": "Say hello"}]}),
    )
    .await;
    let events = events(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message-start",
            "content-start",
            "content-delta",
            "content-delta",
            "content-delta",
            "content-end",
            "message-end"
        ]
    );
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["message"]["content"]["text"].as_str())
        .collect();
    assert_eq!(text, "This is a");
    assert_eq!(events[6].1["delta"]["finish_reason"], "MAX_TOKENS");
}

#[tokio::test]
async fn tools_get_one_call_unless_the_last_message_is_a_tool_result() {
    let mock = mock().await;
    let r = post_v2(
        &mock,
        "/v2/chat",
        weather_tools(json!({"role": "user", "content": "now"})),
    )
    .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["finish_reason"], "TOOL_CALL");
    assert_eq!(body["message"]["tool_plan"], "I will call get_weather.");
    let call = &body["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        args,
        json!({"city": "mock", "n": 1, "hot": true, "tags": [], "opts": {}})
    );

    let mut streamed = weather_tools(json!({"role": "user", "content": "now"}));
    streamed["stream"] = json!(true);
    let events = events(
        &post_v2(&mock, "/v2/chat", streamed)
            .await
            .text()
            .await
            .unwrap(),
    );
    let deltas: Vec<&str> = events
        .iter()
        .filter(|(n, _)| n == "tool-call-delta")
        .filter_map(|(_, d)| d["delta"]["message"]["tool_calls"]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(deltas.len(), 2);
    assert_eq!(
        deltas.concat(),
        call["function"]["arguments"].as_str().unwrap()
    );

    let r = post_v2(
        &mock,
        "/v2/chat",
        weather_tools(json!({"role": "tool", "tool_call_id": "x", "content": "20C"})),
    )
    .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["finish_reason"], "COMPLETE");
}

#[tokio::test]
async fn embed_answers_by_type() {
    let mock = mock().await;
    let r = post_v2(
        &mock,
        "/v2/embed",
        json!({"model": "embed", "texts": ["a b", "c"], "input_type": "search_document",
            "embedding_types": ["float", "base64"], "output_dimension": 8}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["embeddings"]["float"].as_array().unwrap().len(), 2);
    assert_eq!(body["embeddings"]["float"][0].as_array().unwrap().len(), 8);
    assert!(body["embeddings"]["base64"][1].is_string());
    assert_eq!(body["meta"]["billed_units"]["input_tokens"], 3);
    let r = post_v2(
        &mock,
        "/v2/embed",
        json!({"model": "embed", "texts": ["a"]}),
    )
    .await;
    assert_eq!(r.status(), 400, "input_type is required");
}

#[tokio::test]
async fn fault_knobs_answer_in_cohere_s_shape() {
    let mock = mock().await;
    let r = client()
        .post(format!("http://{}/v2/chat", mock.addr()))
        .header("x-mock-status", "429")
        .json(&json!({"model": "command", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "mock error 429");
    assert!(body.get("error").is_none());
}
