//! The OpenAI routes: exact shapes, streams, embeddings, models, errors.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::{client, mock, parse_stream, post, DEFAULT_REPLY};
use serde_json::{json, Value};

#[tokio::test]
async fn chat_completion_has_openai_shape() {
    let mock = mock().await;
    let response = post(
        &mock,
        "/chat/completions",
        json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": [{"type": "text", "text": "Say hello"}]}
            ]
        }),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("chatcmpl-mock-"), "{id}");
    // P = 3 + 2 words + 3 per message; C = 10 reply words.
    assert_eq!(
        body,
        json!({
            "id": id,
            "object": "chat.completion",
            "created": 1700000000,
            "model": "gpt-test",
            "system_fingerprint": "fp_mock",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": DEFAULT_REPLY, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": 11,
                "completion_tokens": 10,
                "total_tokens": 21,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0}
            }
        })
    );
    // Ids count up.
    let next: Value = post(
        &mock,
        "/chat/completions",
        json!({"model": "m", "messages": []}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_ne!(next["id"], body["id"]);
}

#[tokio::test]
async fn chat_max_tokens_truncates_with_length() {
    let mock = mock().await;
    for field in ["max_tokens", "max_completion_tokens"] {
        let body: Value = post(
            &mock,
            "/chat/completions",
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], field: 3}),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "This is a");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
        assert_eq!(body["usage"]["completion_tokens"], 3);
        assert_eq!(body["usage"]["prompt_tokens"], 4);
    }
}

#[tokio::test]
async fn chat_stream_deltas_concatenate_to_the_reply() {
    let mock = mock().await;
    let response = post(
        &mock,
        "/chat/completions",
        json!({"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let (events, done) = parse_stream(&response.text().await.unwrap());
    assert!(done);
    assert_eq!(events.len(), 1 + 10 + 1);
    let first = &events[0];
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["model"], "gpt-test");
    assert_eq!(first["system_fingerprint"], "fp_mock");
    assert_eq!(first["created"], 1700000000);
    assert_eq!(
        first["choices"],
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])
    );
    let content: String = events[1..]
        .iter()
        .map(|e| e["choices"][0]["delta"]["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(content, DEFAULT_REPLY);
    let last = events.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(events.iter().all(|e| e.get("usage").is_none()));
    assert!(events.iter().all(|e| e["id"] == first["id"]));
}

#[tokio::test]
async fn chat_stream_with_usage_chunk() {
    let mock = mock().await;
    let response = post(
        &mock,
        "/chat/completions",
        json!({
            "model": "m",
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "one two"}],
            "mock": {"reply": "alpha  beta\ngamma delta epsilon"}
        }),
    )
    .await;
    let (events, done) = parse_stream(&response.text().await.unwrap());
    assert!(done);
    let (usage_chunk, rest) = events.split_last().unwrap();
    assert!(rest
        .iter()
        .all(|e| e["usage"].is_null() && e.get("usage").is_some()));
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({
            "prompt_tokens": 5,
            "completion_tokens": 4,
            "total_tokens": 9,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}
        })
    );
    let content: String = rest
        .iter()
        .map(|e| e["choices"][0]["delta"]["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(content, "alpha  beta\ngamma delta");
    assert_eq!(
        rest.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
}

#[tokio::test]
async fn legacy_completions_plain_and_stream() {
    let mock = mock().await;
    let body: Value = post(
        &mock,
        "/completions",
        json!({"model": "davinci", "prompt": ["one two", "three"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cmpl-mock-"));
    assert_eq!(
        body,
        json!({
            "id": id,
            "object": "text_completion",
            "created": 1700000000,
            "model": "davinci",
            "choices": [{"text": DEFAULT_REPLY, "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 10, "total_tokens": 13}
        })
    );

    let response = post(
        &mock,
        "/completions",
        json!({"model": "davinci", "prompt": "a b", "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    let (events, done) = parse_stream(&response.text().await.unwrap());
    assert!(done);
    assert_eq!(events.len(), 10 + 1 + 1);
    assert!(events.iter().all(|e| e["object"] == "text_completion"));
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, DEFAULT_REPLY);
    assert_eq!(events[10]["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[9]["choices"][0]["finish_reason"], Value::Null);
    assert_eq!(events[11]["choices"], json!([]));
    assert_eq!(
        events[11]["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 10, "total_tokens": 12})
    );
}

async fn embed(mock: &johi_mock::MockUpstream, body: Value) -> Value {
    let response = post(mock, "/embeddings", body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test]
async fn embeddings_float_are_deterministic_unit_vectors() {
    let mock = mock().await;
    let body = embed(
        &mock,
        json!({"model": "emb", "input": ["hello world", "other", "hello world"]}),
    )
    .await;
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "emb");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], i);
        let v = floats(&item["embedding"]);
        assert_eq!(v.len(), 16);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    assert_eq!(data[0]["embedding"], data[2]["embedding"]);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);

    let single = embed(
        &mock,
        json!({"model": "emb", "input": "hello world", "dimensions": 5}),
    )
    .await;
    assert_eq!(floats(&single["data"][0]["embedding"]).len(), 5);

    let tokens = embed(&mock, json!({"model": "emb", "input": [1, 2, 3]})).await;
    assert_eq!(tokens["data"].as_array().unwrap().len(), 1);
    assert_eq!(tokens["usage"]["prompt_tokens"], 3);
    let token_lists = embed(&mock, json!({"model": "emb", "input": [[1, 2], [3]]})).await;
    assert_eq!(token_lists["data"].as_array().unwrap().len(), 2);
    assert_eq!(token_lists["usage"]["prompt_tokens"], 3);
    let nested = embed(&mock, json!({"model": "emb", "input": [[1, 2, 3]]})).await;
    assert_eq!(
        nested["data"][0]["embedding"],
        tokens["data"][0]["embedding"]
    );

    let bad = post(
        &mock,
        "/embeddings",
        json!({"model": "emb", "input": [true]}),
    )
    .await;
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["error"]["param"], "input");
}

#[tokio::test]
async fn embeddings_base64_decode_to_the_float_vectors() {
    let mock = mock().await;
    let input = json!(["alpha", "beta gamma"]);
    let float = embed(
        &mock,
        json!({"model": "emb", "input": input, "dimensions": 32}),
    )
    .await;
    let b64 = embed(
        &mock,
        json!({"model": "emb", "input": input, "dimensions": 32, "encoding_format": "base64"}),
    )
    .await;
    for i in 0..2 {
        let encoded = b64["data"][i]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(bytes.len(), 32 * 4);
        let decoded: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(decoded, floats(&float["data"][i]["embedding"]));
    }
    assert_eq!(b64["usage"], float["usage"]);
}

#[tokio::test]
async fn models_list_and_get() {
    let mock = mock().await;
    let list: Value = client()
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list,
        json!({"object": "list", "data": [
            {"id": "mock-small", "object": "model", "created": 1700000000, "owned_by": "johi-mock"},
            {"id": "mock-large", "object": "model", "created": 1700000000, "owned_by": "johi-mock"}
        ]})
    );
    let one: Value = client()
        .get(format!("{}/models/ft:gpt-x:org", mock.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        one,
        json!({"id": "ft:gpt-x:org", "object": "model", "created": 1700000000, "owned_by": "johi-mock"})
    );
}

#[tokio::test]
async fn unknown_path_and_bad_json_use_the_openai_error_shape() {
    let mock = mock().await;
    let response = post(&mock, "/nope", json!({})).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"message": "Invalid URL (POST /v1/nope)", "type": "invalid_request_error", "param": null, "code": "unknown_url"}})
    );

    let response = client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("parse"));
    assert_eq!(body["error"]["param"], Value::Null);

    let response = post(&mock, "/chat/completions", json!({"messages": []})).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "model");
}

#[tokio::test]
async fn h2c_prior_knowledge_works() {
    let mock = mock().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&json!({"model": "m", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let (events, done) = parse_stream(&response.text().await.unwrap());
    assert!(done);
    assert_eq!(events.len(), 12);
}

#[tokio::test]
async fn control_routes_over_http() {
    let mock = mock().await;
    post(
        &mock,
        "/chat/completions",
        json!({"model": "m", "messages": []}),
    )
    .await;
    let root = mock.base_url().trim_end_matches("/v1").to_owned();
    let stats: Value = client()
        .get(format!("{root}/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["chat"], 1);
    let requests: Value = client()
        .get(format!("{root}/_mock/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(requests[0]["path"], "/v1/chat/completions");
    assert_eq!(requests[0]["body"]["model"], "m");
    let reset = client()
        .post(format!("{root}/_mock/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(mock.stats(), johi_mock::Stats::default());
    assert!(mock.requests().is_empty());
}
