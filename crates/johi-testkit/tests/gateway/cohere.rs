//! A Cohere-protocol provider behind Johi: OpenAI clients in, Cohere's v2 API (the mock's
//! `/v2/chat` and `/v2/embed`) out, and back — plain, streamed, tool calls, embeddings,
//! refused and failing.

use johi_testkit::Harness;

use crate::translated::{
    a_cut_stream_ends_with_an_error_event, chunks, errors_come_back_in_openais_shape,
};
use serde_json::{json, Value};

const COHERE: &str = r#"
server: { listen: "127.0.0.1:0", reload_poll_interval: 100ms, drain_timeout: 10s }
auth: { public_routes: ["*"] }
providers:
  co: { protocol: cohere, base_url: "{mock}", api_key: co-mock, forward_headers: [x-mock-status, x-mock-stream-cut-after] }
models:
  c: { targets: [{ provider: co, model: command-mock }] }
  e: { targets: [{ provider: co, model: embed-mock }], input_type: search_query }
audit: { path: "{dir}/audit.jsonl" }
"#;

const REPLY: &str = "This is a deterministic reply from the Johi mock upstream.";

/// The mock's billed prompt: 3 + 3 words of system message, 3 + 5 of user message (its
/// `tokens` figure adds 50 for the template, which must not be what is charged).
const BILLED_INPUT: u64 = 14;

fn chat(stream: bool) -> Value {
    json!({"model": "c", "stream": stream, "messages": [
        {"role": "system", "content": "You are terse"},
        {"role": "user", "content": "Say hello to the gateway"}
    ]})
}

fn tools_chat(stream: bool) -> Value {
    json!({"model": "c", "stream": stream,
    "messages": [{"role": "user", "content": "Weather in Toronto?"}],
    "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "the weather somewhere",
        "parameters": {"type": "object", "required": ["location", "days"], "properties": {
            "location": {"type": "string"}, "days": {"type": "integer"}, "unit": {"type": "string"}
        }}
    }}]})
}

#[tokio::test]
async fn plain_chat_reaches_v2_chat_and_is_charged_the_billed_units() {
    let h = Harness::start(COHERE).await;
    let r = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "c", "the name the client asked for");
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], BILLED_INPUT);
    assert_eq!(body["usage"]["completion_tokens"], 10);

    let seen = h.mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v2/chat");
    assert_eq!(seen[0].headers["authorization"], "Bearer co-mock");
    assert_eq!(seen[0].body["model"], "command-mock");
    assert_eq!(seen[0].body["messages"][0]["role"], "system");

    let records = h.finish().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["input_tokens"], BILLED_INPUT);
    assert_eq!(records[0]["output_tokens"], 10);
}

#[tokio::test]
async fn a_stream_is_translated_into_openai_chunks_with_the_usage_asked_for() {
    let h = Harness::start(COHERE).await;
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = h.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let chunks = chunks(&r.text().await.unwrap());
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, REPLY);
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], BILLED_INPUT);
    assert_eq!(h.mock.requests()[0].body["stream"], true);

    let r = h.post("/v1/chat/completions", &chat(true)).await;
    let text = r.text().await.unwrap();
    assert!(!text.contains("\"usage\":{"), "no usage chunk unasked");

    let records = h.finish().await;
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record["input_tokens"], BILLED_INPUT, "{record}");
        assert_eq!(record["output_tokens"], 10, "{record}");
    }
}

#[tokio::test]
async fn tool_calls_come_back_with_their_plan_and_the_loop_round_trips() {
    let h = Harness::start(COHERE).await;
    let r = h.post("/v1/chat/completions", &tools_chat(false)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let message = &body["choices"][0]["message"];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["reasoning_content"], "I will call get_weather.");
    let call = &message["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "mock", "days": 1}));

    // The tool result goes back with the plan; the mock then answers in text.
    let mut next = tools_chat(false);
    let messages = next["messages"].as_array_mut().unwrap();
    messages.push(message.clone());
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "20C"}));
    let r = h.post("/v1/chat/completions", &next).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let up = &h.mock.requests()[1].body;
    assert_eq!(up["messages"][1]["tool_plan"], "I will call get_weather.");
    assert_eq!(up["messages"][1]["tool_calls"][0]["id"], call["id"]);
    assert_eq!(up["messages"][2]["role"], "tool");
    assert_eq!(up["messages"][2]["tool_call_id"], call["id"]);
}

#[tokio::test]
async fn streamed_tool_calls_arrive_as_openai_deltas() {
    let h = Harness::start(COHERE).await;
    let r = h.post("/v1/chat/completions", &tools_chat(true)).await;
    assert_eq!(r.status(), 200);
    let chunks = chunks(&r.text().await.unwrap());
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert!(
        calls.len() >= 3,
        "a start and two argument deltas: {calls:?}"
    );
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert!(calls.iter().all(|c| c["index"] == 0));
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(args, json!({"location": "mock", "days": 1}));
    let plan: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(plan, "I will call get_weather.");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[tokio::test]
async fn embeddings_reach_v2_embed_with_the_models_input_type() {
    let h = Harness::start(COHERE).await;
    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "e", "input": ["hello world", "bye"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "e");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["index"], 1);
    let floats = body["data"][0]["embedding"].as_array().unwrap();
    assert_eq!(floats.len(), 16);
    assert_eq!(body["usage"]["prompt_tokens"], 3);

    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "e", "input": "hello world", "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let b64: Value = r.json().await.unwrap();
    assert!(b64["data"][0]["embedding"].is_string());

    let seen = h.mock.requests();
    assert_eq!(seen[0].path, "/v2/embed");
    assert_eq!(
        seen[0].body["input_type"], "search_query",
        "the model's config"
    );
    assert_eq!(seen[0].body["texts"], json!(["hello world", "bye"]));
    assert_eq!(seen[0].body["embedding_types"], json!(["float"]));
    assert_eq!(seen[1].body["embedding_types"], json!(["base64"]));

    let records = h.finish().await;
    assert_eq!(records[0]["input_tokens"], 3);
}

#[tokio::test]
async fn a_field_cohere_cannot_express_is_a_400_naming_it_and_nothing_is_sent() {
    let h = Harness::start(COHERE).await;
    let mut body = tools_chat(false);
    body["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
    let r = h.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["param"], "tool_choice");
    assert_eq!(error["error"]["code"], "unsupported_parameter");

    let mut body = chat(false);
    body["top_p"] = json!(1.0);
    let r = h.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["param"], "top_p");

    let r = h
        .post("/v1/completions", &json!({"model": "c", "prompt": "hi"}))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(h.mock.stats().requests, 0, "the upstream saw nothing");
}

#[tokio::test]
async fn cohere_errors_come_back_in_openais_shape_with_their_status() {
    let h = Harness::start(COHERE).await;
    errors_come_back_in_openais_shape(
        &h,
        chat,
        &[
            (429, "requests", Some(json!("rate_limit_exceeded"))),
            (400, "invalid_request_error", Some(Value::Null)),
            (503, "server_error", Some(json!("overloaded"))),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_cohere_stream_cut_short_ends_with_an_error_event() {
    let h = Harness::start(COHERE).await;
    a_cut_stream_ends_with_an_error_event(&h, &chat(true)).await;
}
