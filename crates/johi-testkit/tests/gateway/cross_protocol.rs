//! A fallback that lands on a provider of another wire protocol is translated, and
//! credentialed, again for that attempt: the first target's protocol, URL, body and key never
//! leak into the second's request.

use johi_testkit::{sse_data, Harness};
use serde_json::{json, Value};

const CROSS: &str = r#"
server: { listen: "127.0.0.1:0" }
auth: { public_routes: ["*"] }
providers:
  claude-flaky: { protocol: anthropic, base_url: "{mock}", api_key: sk-ant, headers: { x-mock-status: "503" } }
  openai-good:  { base_url: "{mock}", api_key: sk-good }
  openai-flaky: { base_url: "{mock}", api_key: sk-flaky, headers: { x-mock-status: "503" } }
  gemini-good:  { protocol: gemini, base_url: "{mock}beta", api_key: goog-key }
models:
  anthropic-then-openai: { targets: [{ provider: claude-flaky, model: claude-mock }, { provider: openai-good, model: mock-small, weight: 0 }] }
  openai-then-gemini:    { targets: [{ provider: openai-flaky, model: mock-small }, { provider: gemini-good, model: gemini-mock, weight: 0 }] }
audit: { path: "{dir}/audit.jsonl" }
"#;

const REPLY: &str = "This is a deterministic reply from the Johi mock upstream.";

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [
        {"role": "system", "content": "You are terse"},
        {"role": "user", "content": "Say hello to the gateway"}
    ]})
}

#[tokio::test]
async fn an_anthropic_failure_falls_back_to_an_openai_provider_in_openais_own_shape() {
    let h = Harness::start(CROSS).await;
    let r = h
        .post(
            "/v1/chat/completions",
            &chat("anthropic-then-openai", false),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);

    let seen = h.mock.requests();
    assert_eq!(seen.len(), 2, "one attempt per target");
    let (first, second) = (&seen[0], &seen[1]);
    assert_eq!(first.path, "/v1/messages");
    assert_eq!(first.headers["x-api-key"], "sk-ant");
    assert_eq!(first.body["system"], "You are terse", "Anthropic's shape");
    assert_eq!(second.path, "/v1/chat/completions");
    assert_eq!(second.headers["authorization"], "Bearer sk-good");
    assert!(
        !second.headers.contains_key("x-api-key"),
        "no Anthropic key on the fallback"
    );
    assert!(!second.headers.contains_key("anthropic-version"));
    assert_eq!(second.body["model"], "mock-small");
    assert!(second.body.get("system").is_none(), "OpenAI's shape again");
    assert_eq!(second.body["messages"][0]["role"], "system");

    let records = h.finish().await;
    assert_eq!(records[0]["attempts"], 2);
    assert_eq!(records[0]["provider"], "openai-good");
}

#[tokio::test]
async fn an_openai_failure_falls_back_to_a_gemini_stream_translated_into_openai_chunks() {
    let h = Harness::start(CROSS).await;
    let r = h
        .post("/v1/chat/completions", &chat("openai-then-gemini", true))
        .await;
    assert_eq!(r.status(), 200);
    let events = sse_data(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let text: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, REPLY);

    let seen = h.mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-flaky");
    let gemini = &seen[1];
    assert_eq!(
        gemini.path,
        "/v1beta/models/gemini-mock:streamGenerateContent"
    );
    assert_eq!(gemini.headers["x-goog-api-key"], "goog-key");
    assert!(
        !gemini.headers.contains_key("authorization"),
        "no OpenAI key on the fallback"
    );
    assert_eq!(
        gemini.body["systemInstruction"]["parts"][0]["text"],
        "You are terse"
    );

    let records = h.finish().await;
    assert_eq!(records[0]["attempts"], 2);
    assert_eq!(records[0]["provider"], "gemini-good");
}
