//! A Bedrock-protocol provider behind Johi: OpenAI clients in, Bedrock's Converse API (the
//! mock's `/model/{id}/converse[-stream]`, which checks the SigV4 signature) out, and back —
//! plain, streamed, tool calls, refused, failing, and re-signed on fallback; embeddings
//! through `InvokeModel` (`/model/{id}/invoke`) for Titan Text and Cohere Embed models.

use johi_testkit::johi_mock::{MOCK_AWS_ACCESS_KEY_ID, MOCK_AWS_SECRET_ACCESS_KEY};
use johi_testkit::{sse_data, Harness};

use crate::translated::{
    a_cut_stream_ends_with_an_error_event, chunks, errors_come_back_in_openais_shape,
};
use serde_json::{json, Value};

const BEDROCK: &str = r#"
server: { listen: "127.0.0.1:0", reload_poll_interval: 100ms, drain_timeout: 10s }
auth: { public_routes: ["*"] }
providers:
  aws:
    protocol: bedrock
    base_url: "{mock}"
    aws: { region: us-west-2, access_key_id: "{akid}", secret_access_key: "{secret}", session_token: "tok" }
    forward_headers: [x-mock-status, x-mock-stream-cut-after]
  wrong:
    protocol: bedrock
    base_url: "{mock}"
    aws: { region: us-west-2, access_key_id: "{akid}", secret_access_key: not-the-secret }
  flaky:
    protocol: bedrock
    base_url: "{mock}"
    aws: { region: eu-west-1, access_key_id: "{akid}", secret_access_key: "{secret}" }
    headers: { x-mock-status: "503" }
models:
  b: { targets: [{ provider: aws, model: "anthropic.claude-3-haiku-20240307-v1:0" }] }
  w: { targets: [{ provider: wrong, model: m }] }
  f: { targets: [{ provider: flaky, model: first, weight: 1 }, { provider: aws, model: second, weight: 0 }] }
  titan: { targets: [{ provider: aws, model: "amazon.titan-embed-text-v2:0" }] }
  coh: { targets: [{ provider: aws, model: "cohere.embed-v4:0" }], input_type: search_query }
audit: { path: "{dir}/audit.jsonl" }
"#;

const REPLY: &str = "This is a deterministic reply from the Johi mock upstream.";

async fn start() -> Harness {
    let config = BEDROCK
        .replace("{akid}", MOCK_AWS_ACCESS_KEY_ID)
        .replace("{secret}", MOCK_AWS_SECRET_ACCESS_KEY);
    Harness::start(&config).await
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [
        {"role": "system", "content": "You are terse"},
        {"role": "user", "content": "Say hello to the gateway"}
    ]})
}

fn with_tool(mut body: Value) -> Value {
    body["tools"] = json!([{"type": "function", "function": {"name": "lookup",
        "parameters": {"type": "object", "properties": {
            "q": {"type": "string"}, "n": {"type": "integer"}, "opt": {"type": "string"}},
            "required": ["q", "n"]}}}]);
    body
}

#[tokio::test]
async fn plain_chat_reaches_converse_signed_and_comes_back_in_openais_shape() {
    let h = start().await;
    let r = h.post("/v1/chat/completions", &chat("b", false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream-request-id"], "mock-bedrock-1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "b", "the name the client asked for");
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // The mock: 5 words of user message + 3 of system prompt; 10 reply words.
    assert_eq!(body["usage"]["prompt_tokens"], 8);
    assert_eq!(body["usage"]["completion_tokens"], 10);

    let seen = h.mock.requests();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    assert_eq!(
        up.path,
        "/v1/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    let auth = &up.headers["authorization"];
    assert!(
        auth.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential={MOCK_AWS_ACCESS_KEY_ID}/"
        )),
        "{auth}"
    );
    assert!(auth.contains("/us-west-2/bedrock/aws4_request"), "{auth}");
    assert_eq!(up.headers["x-amz-security-token"], "tok");
    assert_eq!(up.body["system"], json!([{"text": "You are terse"}]));
    assert_eq!(
        up.body["messages"][0]["content"][0]["text"],
        "Say hello to the gateway"
    );

    let records = h.finish().await;
    assert_eq!(records[0]["status"], 200);
    assert_eq!(records[0]["input_tokens"], 8);
    assert_eq!(records[0]["output_tokens"], 10);
}

#[tokio::test]
async fn an_event_stream_is_translated_into_openai_chunks_and_charged_what_bedrock_reported() {
    let h = start().await;
    let mut body = chat("b", true);
    body["stream_options"] = json!({"include_usage": true});
    let r = h.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let chunks = chunks(&r.text().await.unwrap());
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, REPLY);
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 8);
    assert_eq!(usage["completion_tokens"], 10);
    let seen = h.mock.requests();
    assert!(seen[0].path.ends_with("/converse-stream"));
    assert_eq!(
        seen[0].headers["accept"],
        "application/vnd.amazon.eventstream"
    );

    let r = h.post("/v1/chat/completions", &chat("b", true)).await;
    let events = sse_data(&r.text().await.unwrap());
    assert!(!events.iter().any(|e| e.contains("\"usage\":{")));
    let records = h.finish().await;
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record["input_tokens"], 8, "{record}");
        assert_eq!(record["output_tokens"], 10, "{record}");
    }
}

#[tokio::test]
async fn a_tool_call_comes_back_as_openai_tool_calls_plain_and_streamed() {
    let h = start().await;
    let r = h
        .post("/v1/chat/completions", &with_tool(chat("b", false)))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "lookup");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"q": "mock", "n": 1}));
    let up = &h.mock.requests()[0];
    assert_eq!(
        up.body["toolConfig"]["tools"][0]["toolSpec"]["name"],
        "lookup"
    );

    let r = h
        .post("/v1/chat/completions", &with_tool(chat("b", true)))
        .await;
    let chunks = chunks(&r.text().await.unwrap());
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["function"]["name"], "lookup");
    let streamed: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&streamed).unwrap(),
        json!({"q": "mock", "n": 1})
    );
    assert_eq!(
        calls.len(),
        3,
        "the start, then the arguments in two deltas"
    );
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));

    // With the tool's result last, the mock answers in text.
    let mut body = with_tool(chat("b", false));
    let id = call["id"].clone();
    let messages = body["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "tool_calls": [call]}));
    messages.push(json!({"role": "tool", "tool_call_id": id, "content": "42"}));
    let r = h.post("/v1/chat/completions", &body).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    let up = &h.mock.requests()[2];
    assert_eq!(
        up.body["messages"][2]["content"][0]["toolResult"]["toolUseId"],
        id
    );
}

#[tokio::test]
async fn a_field_converse_cannot_express_is_a_400_naming_it_and_nothing_is_sent() {
    let h = start().await;
    for (field, value) in [("seed", json!(7)), ("tool_choice", json!("none"))] {
        let mut body = with_tool(chat("b", false));
        body[field] = value;
        let r = h.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status(), 400);
        let error: Value = r.json().await.unwrap();
        assert_eq!(error["error"]["param"], field, "{error}");
    }
    assert_eq!(h.mock.stats().requests, 0, "the upstream saw nothing");
}

#[tokio::test]
async fn bedrock_errors_come_back_in_openais_shape_with_their_status() {
    let h = start().await;
    errors_come_back_in_openais_shape(
        &h,
        |stream| chat("b", stream),
        &[
            (429, "requests", None),
            (400, "invalid_request_error", None),
            (503, "server_error", None),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_signature_check() {
    let h = start().await;
    let r = h.post("/v1/chat/completions", &chat("w", false)).await;
    assert_eq!(r.status(), 403);
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["type"], "permission_error", "{error}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("signature we calculated does not match"));
}

#[tokio::test]
async fn a_cut_event_stream_ends_with_an_error_event() {
    let h = start().await;
    a_cut_stream_ends_with_an_error_event(&h, &chat("b", true)).await;
}

#[tokio::test]
async fn a_fallback_is_signed_afresh_for_its_own_target() {
    let h = start().await;
    let r = h.post("/v1/chat/completions", &chat("f", false)).await;
    assert_eq!(
        r.status(),
        200,
        "the second target's signature passed the mock's check"
    );
    let seen = h.mock.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].path.ends_with("/model/first/converse"));
    assert!(seen[1].path.ends_with("/model/second/converse"));
    assert!(seen[0].headers["authorization"].contains("/eu-west-1/bedrock/"));
    assert!(seen[1].headers["authorization"].contains("/us-west-2/bedrock/"));
    assert_ne!(
        seen[0].headers["authorization"],
        seen[1].headers["authorization"]
    );
    assert!(!seen[0].headers.contains_key("x-amz-security-token"));
    assert_eq!(seen[1].headers["x-amz-security-token"], "tok");
}

/// Bedrock providers without static keys: credentials from the AWS credential chain, here a
/// named profile of a credentials file given in config (no process environment touched).
const CHAIN: &str = r#"
server: { listen: "127.0.0.1:0", reload_poll_interval: 100ms, drain_timeout: 10s }
auth: { public_routes: ["*"] }
providers:
  prof:
    protocol: bedrock
    base_url: "{mock}"
    aws: { region: us-west-2, profile: johi-bedrock, credentials_file: "{dir}/aws-credentials" }
  ghost:
    protocol: bedrock
    base_url: "{mock}"
    aws: { region: us-west-2, profile: no-such-profile, credentials_file: "{dir}/aws-credentials" }
models:
  p: { targets: [{ provider: prof, model: m }] }
  g: { targets: [{ provider: ghost, model: m }] }
audit: { path: "{dir}/audit.jsonl" }
"#;

async fn start_chain() -> Harness {
    let h = Harness::start(CHAIN).await;
    // Read on the first request, so it may be written after start.
    let file = format!(
        "[default]\naws_access_key_id = AKIADEFAULTNOTUSED000\naws_secret_access_key = wrong\n\n\
         [johi-bedrock]\naws_access_key_id = {MOCK_AWS_ACCESS_KEY_ID}\n\
         aws_secret_access_key = {MOCK_AWS_SECRET_ACCESS_KEY}\naws_session_token = profile-token\n"
    );
    std::fs::write(h.dir().join("aws-credentials"), file).unwrap();
    h
}

#[tokio::test]
async fn a_provider_without_keys_signs_with_its_profile_from_the_credential_chain() {
    let h = start_chain().await;
    for _ in 0..2 {
        let r = h.post("/v1/chat/completions", &chat("p", false)).await;
        assert_eq!(r.status(), 200, "the mock's SigV4 check passed");
    }
    let seen = h.mock.requests();
    assert_eq!(seen.len(), 2);
    for up in &seen {
        let auth = &up.headers["authorization"];
        assert!(
            auth.starts_with(&format!(
                "AWS4-HMAC-SHA256 Credential={MOCK_AWS_ACCESS_KEY_ID}/"
            )),
            "{auth}"
        );
        assert_eq!(up.headers["x-amz-security-token"], "profile-token");
    }
}

#[tokio::test]
async fn a_missing_profile_is_a_502_naming_the_provider_and_nothing_is_sent() {
    let h = start_chain().await;
    let r = h.post("/v1/chat/completions", &chat("g", false)).await;
    assert_eq!(r.status(), 502);
    let error: Value = r.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("ghost"), "{message}");
    assert!(message.contains("AWS credentials"), "{message}");
    assert_eq!(h.mock.stats().requests, 0, "nothing went upstream");
}

#[tokio::test]
async fn titan_embeddings_go_through_invoke_signed_and_are_charged_titans_token_count() {
    let h = start().await;
    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "titan", "input": "hello there gateway", "dimensions": 8}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "titan");
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 8);
    // The mock counts the text's words.
    assert_eq!(body["usage"]["prompt_tokens"], 3);

    let up = &h.mock.requests()[0];
    assert_eq!(up.path, "/v1/model/amazon.titan-embed-text-v2%3A0/invoke");
    assert!(up.headers["authorization"].contains("/us-west-2/bedrock/aws4_request"));
    assert_eq!(up.headers["accept"], "application/json");
    assert_eq!(
        up.body,
        json!({"inputText": "hello there gateway", "dimensions": 8})
    );

    // Titan embeds one text per request: refused before anything is sent.
    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "titan", "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["param"], "input", "{error}");
    assert_eq!(h.mock.stats().requests, 1);

    let records = h.finish().await;
    assert_eq!(records[0]["status"], 200);
    assert_eq!(records[0]["input_tokens"], 3);
}

#[tokio::test]
async fn cohere_embeddings_on_bedrock_use_the_configured_input_type_and_honour_base64() {
    let h = start().await;
    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "coh", "input": ["one", "two"], "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["index"], 1);
    // 16 f32s (the mock's default size), base64.
    assert_eq!(body["data"][0]["embedding"].as_str().unwrap().len(), 88);
    // Bedrock's Cohere answer carries no token count.
    assert_eq!(body["usage"]["prompt_tokens"], 0);
    let up = &h.mock.requests()[0];
    assert_eq!(up.path, "/v1/model/cohere.embed-v4%3A0/invoke");
    assert_eq!(
        up.body,
        json!({"texts": ["one", "two"], "input_type": "search_query", "embedding_types": ["float"]})
    );
}

#[tokio::test]
async fn embeddings_from_a_bedrock_model_of_another_family_are_refused_naming_the_model() {
    let h = start().await;
    let r = h
        .post("/v1/embeddings", &json!({"model": "b", "input": "x"}))
        .await;
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["param"], "model", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("anthropic.claude-3-haiku"), "{message}");
    assert_eq!(h.mock.stats().requests, 0, "the upstream saw nothing");
}
