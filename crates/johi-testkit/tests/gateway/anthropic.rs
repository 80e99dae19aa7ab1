//! An Anthropic-protocol provider behind Johi: OpenAI clients in, Anthropic's Messages API
//! (the mock's `/v1/messages`) out, and back — plain, streamed, refused and failing.

use johi_testkit::{sse_data, Harness};

use crate::translated::{a_cut_stream_ends_with_an_error_event, errors_come_back_in_openais_shape};
use serde_json::{json, Value};

const ANTHROPIC: &str = r#"
server: { listen: "127.0.0.1:0", reload_poll_interval: 100ms, drain_timeout: 10s }
auth: { public_routes: ["*"] }
providers:
  claude: { protocol: anthropic, base_url: "{mock}", api_key: sk-ant-mock, forward_headers: [x-mock-status, x-mock-stream-cut-after] }
models:
  c: { targets: [{ provider: claude, model: claude-mock }], default_max_tokens: 321 }
audit: { path: "{dir}/audit.jsonl" }
"#;

const REPLY: &str = "This is a deterministic reply from the Johi mock upstream.";

fn chat(stream: bool) -> Value {
    json!({"model": "c", "stream": stream, "messages": [
        {"role": "system", "content": "You are terse"},
        {"role": "user", "content": "Say hello to the gateway"}
    ]})
}

#[tokio::test]
async fn plain_chat_reaches_the_messages_api_and_comes_back_in_openais_shape() {
    let h = Harness::start(ANTHROPIC).await;
    let r = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "c", "the name the client asked for");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // The mock: 3 + 5 words for the user message, 3 words of system prompt; 10 reply words.
    assert_eq!(body["usage"]["prompt_tokens"], 11);
    assert_eq!(body["usage"]["completion_tokens"], 10);
    assert_eq!(body["usage"]["total_tokens"], 21);

    let seen = h.mock.requests();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    assert_eq!(up.path, "/v1/messages");
    assert_eq!(up.headers["x-api-key"], "sk-ant-mock");
    assert!(!up.headers.contains_key("authorization"));
    assert_eq!(up.headers["anthropic-version"], "2023-06-01");
    assert_eq!(up.body["model"], "claude-mock");
    assert_eq!(up.body["system"], "You are terse");
    assert_eq!(up.body["max_tokens"], 321, "the model's default_max_tokens");
    assert_eq!(up.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(up.body["messages"][0]["role"], "user");

    let records = h.finish().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["status"], 200);
    assert_eq!(records[0]["input_tokens"], 11);
    assert_eq!(records[0]["output_tokens"], 10);
}

#[tokio::test]
async fn a_stream_is_translated_into_openai_chunks_and_charged_what_anthropic_reported() {
    let h = Harness::start(ANTHROPIC).await;
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = h.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = sse_data(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, REPLY, "the same answer as the plain request");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 11);
    assert_eq!(usage["completion_tokens"], 10);
    assert_eq!(h.mock.requests()[0].body["stream"], true);

    // Without include_usage the client gets no usage chunk, and the call is charged anyway.
    let r = h.post("/v1/chat/completions", &chat(true)).await;
    let events = sse_data(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(!events.iter().any(|e| e.contains("\"usage\":{")));

    let records = h.finish().await;
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record["stream"], true);
        assert_eq!(record["status"], 200);
        assert_eq!(record["input_tokens"], 11, "{record}");
        assert_eq!(record["output_tokens"], 10, "{record}");
    }
}

#[tokio::test]
async fn a_field_anthropic_cannot_express_is_a_400_naming_it_and_nothing_is_sent() {
    let h = Harness::start(ANTHROPIC).await;
    let mut body = chat(false);
    body["seed"] = json!(7);
    let r = h.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], "seed");
    assert!(error["error"]["message"].as_str().unwrap().contains("seed"));

    // Completions and embeddings have no Messages equivalent.
    let r = h
        .post("/v1/completions", &json!({"model": "c", "prompt": "hi"}))
        .await;
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v1/completions"));
    assert_eq!(h.mock.stats().requests, 0, "the upstream saw nothing");
}

#[tokio::test]
async fn anthropic_errors_come_back_in_openais_shape_with_their_status() {
    let h = Harness::start(ANTHROPIC).await;
    errors_come_back_in_openais_shape(
        &h,
        chat,
        &[
            (529, "server_error", Some(json!("overloaded"))),
            (400, "invalid_request_error", Some(Value::Null)),
            (429, "requests", Some(json!("rate_limit_exceeded"))),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_anthropic_stream_cut_short_ends_with_an_error_event_and_a_clean_close() {
    let h = Harness::start(ANTHROPIC).await;
    a_cut_stream_ends_with_an_error_event(&h, &chat(true)).await;
    let records = h.finish().await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0]["input_tokens"], 11,
        "message_start's usage is charged"
    );
}
