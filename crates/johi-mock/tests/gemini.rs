//! The Gemini and Vertex routes, and the OAuth2 token endpoint.
// Test helpers outside #[test] functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{client, mock, DEFAULT_REPLY};
use johi_mock::MockUpstream;
use serde_json::{json, Value};

fn root(mock: &MockUpstream) -> String {
    mock.base_url().trim_end_matches("/v1").to_owned()
}

async fn gemini(mock: &MockUpstream, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", root(mock)))
        .header("x-goog-api-key", "k")
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn hello() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]})
}

#[tokio::test]
async fn generate_content_answers_on_both_paths_with_usage() {
    let mock = mock().await;
    for path in [
        "/v1beta/models/g:generateContent",
        "/v1/projects/p/locations/l/publishers/google/models/g:generateContent",
    ] {
        let r = gemini(&mock, path, hello()).await;
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["candidates"][0]["content"]["parts"][0]["text"],
            DEFAULT_REPLY
        );
        assert_eq!(v["candidates"][0]["finishReason"], "STOP");
        assert_eq!(v["usageMetadata"]["promptTokenCount"], 5);
        assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 10);
    }
    assert_eq!(mock.stats().chat, 2);
}

#[tokio::test]
async fn a_stream_is_one_event_per_word_ending_with_the_finish_reason() {
    let mock = mock().await;
    let r = gemini(
        &mock,
        "/v1beta/models/g:streamGenerateContent?alt=sse",
        hello(),
    )
    .await;
    let text = r.text().await.unwrap();
    let events: Vec<Value> = text
        .split_terminator("\r\n\r\n")
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 10);
    let joined: String = events
        .iter()
        .filter_map(|e| e["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, DEFAULT_REPLY);
    assert_eq!(events[9]["candidates"][0]["finishReason"], "STOP");
    assert!(events[8]["candidates"][0].get("finishReason").is_none());
}

#[tokio::test]
async fn declared_functions_are_called_with_arguments_from_the_schema() {
    let mock = mock().await;
    let mut body = hello();
    body["tools"] = json!([{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "NUMBER"},
        "c": {"type": "BOOLEAN"}, "d": {"type": "ARRAY"}, "e": {"type": "OBJECT"}},
        "required": ["a", "b", "c", "d", "e"]}}]}]);
    let v: Value = gemini(&mock, "/v1beta/models/g:generateContent", body.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["functionCall"],
        json!({"name": "f", "args": {"a": "mock", "b": 1, "c": true, "d": [], "e": {}}})
    );
    // After a function response, the normal reply.
    body["contents"].as_array_mut().unwrap().push(
        json!({"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}),
    );
    let v: Value = gemini(&mock, "/v1beta/models/g:generateContent", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        DEFAULT_REPLY
    );
}

#[tokio::test]
async fn credentials_are_required_and_faults_use_googles_shape() {
    let mock = mock().await;
    let r = client()
        .post(format!("{}/v1beta/models/g:generateContent", root(&mock)))
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    let r = client()
        .post(format!(
            "{}/v1beta/models/g:batchEmbedContents",
            root(&mock)
        ))
        .header("authorization", "Bearer t")
        .header("x-mock-status", "429")
        .json(&json!({"requests": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"error": {"code": 429, "message": "mock error 429", "status": "RESOURCE_EXHAUSTED"}})
    );
}

#[tokio::test]
async fn the_token_endpoint_wants_a_jwt_bearer_grant() {
    let mock = mock().await;
    let token = |form: &'static str| {
        client()
            .post(format!("{}/token", root(&mock)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let r =
        token("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c")
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["access_token"]
        .as_str()
        .unwrap()
        .starts_with("ya29.mock-"));
    assert_eq!(v["token_type"], "Bearer");
    for bad in [
        "grant_type=client_credentials&assertion=a.b.c",
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=ab",
    ] {
        let r = token(bad).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn vertex_predict_embeds_each_instance_like_batch_embed_contents() {
    let mock = mock().await;
    let path = "/v1/projects/p/locations/l/publishers/google/models/text-embedding-005:predict";
    let r = gemini(
        &mock,
        path,
        json!({"instances": [{"content": "one two", "task_type": "RETRIEVAL_QUERY"}, {"content": "three"}],
               "parameters": {"outputDimensionality": 4}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["predictions"].as_array().unwrap().len(), 2);
    let first = &v["predictions"][0]["embeddings"];
    assert_eq!(first["statistics"]["token_count"], 2);
    assert_eq!(first["values"].as_array().unwrap().len(), 4);
    assert_eq!(v["metadata"]["billableCharacterCount"], 11);
    // The same text gets the same vector through the Gemini API.
    let r = gemini(
        &mock,
        "/v1beta/models/e:batchEmbedContents",
        json!({"requests": [{"model": "models/e", "content": {"parts": [{"text": "one two"}]}, "outputDimensionality": 4}]}),
    )
    .await;
    let batch: Value = r.json().await.unwrap();
    assert_eq!(batch["embeddings"][0]["values"], first["values"]);
    assert_eq!(mock.stats().embeddings, 2);
    // `predict` is Vertex's: not on the Gemini API's path, and not without credentials.
    let r = gemini(&mock, "/v1beta/models/e:predict", json!({"instances": []})).await;
    assert_eq!(r.status(), 404);
    let r = client()
        .post(format!("{}{path}", root(&mock)))
        .json(&json!({"instances": [{"content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
