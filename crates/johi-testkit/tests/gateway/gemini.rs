//! Gemini- and Vertex-protocol providers behind Johi: OpenAI clients in, Google's
//! `generateContent` / `streamGenerateContent` / `batchEmbedContents` (the mock's Gemini
//! routes) out, and back — plain, streamed, tool calls, embeddings, refused, failing, and
//! Vertex's service-account sign-in against the mock's token endpoint and its embeddings
//! through `:predict`.

use base64::Engine as _;
use johi_testkit::Harness;

use crate::translated::{
    a_cut_stream_ends_with_an_error_event, chunks, errors_come_back_in_openais_shape,
};
use serde_json::{json, Value};

const GEMINI: &str = r#"
server: { listen: "127.0.0.1:0", reload_poll_interval: 100ms, drain_timeout: 10s }
auth: { public_routes: ["*"] }
providers:
  google: { protocol: gemini, base_url: "{mock}beta", api_key: goog-mock-key, forward_headers: [x-mock-status, x-mock-stream-cut-after] }
models:
  g: { targets: [{ provider: google, model: gemini-mock }] }
  ge: { targets: [{ provider: google, model: gemini-embedding-mock }] }
audit: { path: "{dir}/audit.jsonl" }
"#;

const VERTEX: &str = r#"
server: { listen: "127.0.0.1:0", reload_poll_interval: 100ms, drain_timeout: 10s }
auth: { public_routes: ["*"] }
providers:
  vx:
    protocol: vertex
    base_url: "{mock}/projects/proj-1/locations/us-central1/publishers/google"
    vertex: { project: proj-1, location: us-central1, credentials_file: "{dir}/sa.json" }
models:
  v: { targets: [{ provider: vx, model: gemini-mock }] }
  ve: { targets: [{ provider: vx, model: text-embedding-mock }], input_type: search_query }
audit: { path: "{dir}/audit.jsonl" }
"#;

const REPLY: &str = "This is a deterministic reply from the Johi mock upstream.";

fn chat(stream: bool) -> Value {
    json!({"model": "g", "stream": stream, "messages": [
        {"role": "system", "content": "You are terse"},
        {"role": "user", "content": "Say hello to the gateway"}
    ]})
}

fn with_tools(mut body: Value) -> Value {
    body["tools"] = json!([{"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {
            "location": {"type": "string"}, "days": {"type": "integer"},
            "metric": {"type": "boolean"}
        }, "required": ["location", "days"]},
    }}]);
    body
}

#[tokio::test]
async fn plain_chat_reaches_generate_content_and_comes_back_in_openais_shape() {
    let h = Harness::start(GEMINI).await;
    let r = h.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "g", "the name the client asked for");
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // The mock: 3 + 5 words for the user turn, 3 words of system instruction; 10 words out.
    assert_eq!(body["usage"]["prompt_tokens"], 11);
    assert_eq!(body["usage"]["completion_tokens"], 10);

    let seen = h.mock.requests();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    assert_eq!(up.path, "/v1beta/models/gemini-mock:generateContent");
    assert_eq!(up.headers["x-goog-api-key"], "goog-mock-key");
    assert!(!up.headers.contains_key("authorization"));
    assert_eq!(
        up.body["systemInstruction"]["parts"][0]["text"],
        "You are terse"
    );
    assert_eq!(up.body["contents"][0]["role"], "user");

    let records = h.finish().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["input_tokens"], 11);
    assert_eq!(records[0]["output_tokens"], 10);
}

#[tokio::test]
async fn a_stream_is_translated_into_openai_chunks_with_the_usage_gemini_reported() {
    let h = Harness::start(GEMINI).await;
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = h.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let chunks = chunks(&r.text().await.unwrap());
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, REPLY);
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 11);
    assert_eq!(usage["completion_tokens"], 10);
    assert_eq!(
        h.mock.requests()[0].path,
        "/v1beta/models/gemini-mock:streamGenerateContent"
    );
    let records = h.finish().await;
    assert_eq!(records[0]["stream"], true);
    assert_eq!(records[0]["output_tokens"], 10);
}

#[tokio::test]
async fn tool_calls_come_back_as_openai_tool_calls_and_results_go_back_by_name() {
    let h = Harness::start(GEMINI).await;
    let r = h
        .post("/v1/chat/completions", &with_tools(chat(false)))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "mock", "days": 1}));

    // The result goes back as a functionResponse named after the call; the mock answers text.
    let mut next = with_tools(chat(false));
    let messages = next["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "sunny"}));
    let r = h.post("/v1/chat/completions", &next).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], REPLY);
    let up = &h.mock.requests()[1].body;
    assert_eq!(
        up["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"result": "sunny"}})
    );

    // Streamed: one tool-call delta with the whole arguments, then tool_calls.
    let r = h
        .post("/v1/chat/completions", &with_tools(chat(true)))
        .await;
    let chunks = chunks(&r.text().await.unwrap());
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"location": "mock", "days": 1})
    );
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[tokio::test]
async fn embeddings_go_through_batch_embed_contents_as_floats_or_base64() {
    let h = Harness::start(GEMINI).await;
    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "ge", "input": ["one two", "three"]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "ge");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["index"], 1);
    let floats = body["data"][0]["embedding"].as_array().unwrap().clone();
    assert_eq!(floats.len(), 8);
    let up = &h.mock.requests()[0];
    assert_eq!(
        up.path,
        "/v1beta/models/gemini-embedding-mock:batchEmbedContents"
    );
    assert_eq!(
        up.body["requests"][0]["model"],
        "models/gemini-embedding-mock"
    );

    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "ge", "input": "one two", "encoding_format": "base64", "dimensions": 8}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f64> = bytes
        .chunks(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let want: Vec<f64> = floats.iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(decoded, want, "the same vector, as little-endian f32");
}

#[tokio::test]
async fn a_field_gemini_cannot_express_is_a_400_naming_it_and_nothing_is_sent() {
    let h = Harness::start(GEMINI).await;
    let mut body = chat(false);
    body["logit_bias"] = json!({"50256": -100});
    let r = h.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["param"], "logit_bias");
    let mut body = chat(false);
    body["messages"][1]["content"] =
        json!([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]);
    let r = h.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert_eq!(
        error["error"]["param"],
        "messages[1].content[0].image_url.url"
    );
    assert_eq!(h.mock.stats().requests, 0, "the upstream saw nothing");
}

#[tokio::test]
async fn google_errors_come_back_in_openais_shape_with_their_status() {
    let h = Harness::start(GEMINI).await;
    errors_come_back_in_openais_shape(
        &h,
        chat,
        &[
            (429, "requests", Some(json!("rate_limit_exceeded"))),
            (503, "server_error", Some(json!("overloaded"))),
            (400, "invalid_request_error", Some(Value::Null)),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_gemini_stream_cut_short_ends_with_an_error_event() {
    let h = Harness::start(GEMINI).await;
    a_cut_stream_ends_with_an_error_event(&h, &chat(true)).await;
}

/// A service-account key file whose token endpoint is `token_uri`, around a throwaway key.
fn key_file(token_uri: &str) -> String {
    let pem = include_str!("../../../johi-auth/tests/fixtures/test-only-service-account.pem");
    json!({
        "type": "service_account", "project_id": "proj-1", "private_key_id": "k1",
        "private_key": pem, "client_email": "johi@proj-1.iam.gserviceaccount.com",
        "token_uri": token_uri,
    })
    .to_string()
}

/// A gateway on the Vertex config, its key file's token endpoint at `token_uri`
/// (`{mock}` is the mock's base URL).
async fn vertex(token_uri: &str) -> Harness {
    let h = Harness::start(GEMINI).await;
    let uri = token_uri.replace("{mock}", h.mock.base_url().trim_end_matches("/v1"));
    std::fs::write(h.dir().join("sa.json"), key_file(&uri)).unwrap();
    h.write_config(VERTEX);
    h.restart().await
}

#[tokio::test]
async fn vertex_signs_in_with_a_service_account_and_fetches_the_token_once() {
    let h = vertex("{mock}/token").await;
    let mut body = chat(false);
    body["model"] = json!("v");
    // A burst on a fresh gateway: one fetch, the others wait for it.
    let concurrent = (0..4).map(|_| h.post("/v1/chat/completions", &body));
    for r in futures_util::future::join_all(concurrent).await {
        assert_eq!(r.status(), 200);
    }
    // Later requests use the cached token.
    let r = h.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let seen = h.mock.requests();
    let tokens: Vec<_> = seen.iter().filter(|r| r.path == "/token").collect();
    assert_eq!(tokens.len(), 1, "one token for every request");
    assert!(tokens[0].headers["content-type"].starts_with("application/x-www-form-urlencoded"));
    let calls: Vec<_> = seen.iter().filter(|r| r.path != "/token").collect();
    assert_eq!(calls.len(), 5);
    let auth = &calls[0].headers["authorization"];
    assert!(auth.starts_with("Bearer ya29.mock-"), "{auth}");
    for call in &calls {
        assert_eq!(
            call.path,
            "/v1/projects/proj-1/locations/us-central1/publishers/google/models/gemini-mock:generateContent"
        );
        assert_eq!(&call.headers["authorization"], auth);
        assert!(!call.headers.contains_key("x-goog-api-key"));
    }
}

#[tokio::test]
async fn vertex_without_a_token_endpoint_is_a_502_naming_the_provider() {
    let h = vertex("http://127.0.0.1:1/token").await;
    let mut body = chat(false);
    body["model"] = json!("v");
    let r = h.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 502);
    let error: Value = r.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("vx"), "{message}");
    assert!(message.contains("token"), "{message}");
    assert_eq!(h.mock.stats().requests, 0, "nothing went upstream");
}

#[tokio::test]
async fn vertex_embeddings_go_through_predict_with_the_token_counts_as_usage() {
    let h = vertex("{mock}/token").await;
    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "ve", "input": ["one two", "three"], "dimensions": 4}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "ve");
    assert_eq!(body["data"][1]["index"], 1);
    let floats = body["data"][0]["embedding"].as_array().unwrap().clone();
    assert_eq!(floats.len(), 4);
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3}),
        "the sum of Vertex's token counts"
    );
    let seen = h.mock.requests();
    let calls: Vec<_> = seen.iter().filter(|r| r.path != "/token").collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].path,
        "/v1/projects/proj-1/locations/us-central1/publishers/google/models/text-embedding-mock:predict"
    );
    assert!(calls[0].headers["authorization"].starts_with("Bearer ya29.mock-"));
    assert_eq!(
        calls[0].body,
        json!({
            "instances": [
                {"content": "one two", "task_type": "RETRIEVAL_QUERY"},
                {"content": "three", "task_type": "RETRIEVAL_QUERY"},
            ],
            "parameters": {"outputDimensionality": 4},
        })
    );

    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "ve", "input": "one two", "encoding_format": "base64", "dimensions": 4}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f64> = bytes
        .chunks(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let want: Vec<f64> = floats.iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(decoded, want, "the same vector, as little-endian f32");

    // Token arrays are refused naming the input, before anything is sent.
    let before = h.mock.stats().embeddings;
    let r = h
        .post("/v1/embeddings", &json!({"model": "ve", "input": [[1, 2]]}))
        .await;
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["param"], "input[0]");
    assert_eq!(h.mock.stats().embeddings, before, "nothing went upstream");
}
