//! An Azure OpenAI provider (`preset: azure`) behind Johi, pointed at the mock: deployment
//! URLs with `api-version`, the key in `api-key`, and Azure's v1 API with plain paths.

use johi_testkit::Harness;
use serde_json::{json, Value};

const AZURE: &str = r#"
server: { listen: "127.0.0.1:0", reload_poll_interval: 100ms, drain_timeout: 10s }
auth: { public_routes: ["*"] }
providers:
  az: { preset: azure, base_url: "{mock_root}", api_key: az-key, azure: { api_version: "2024-10-21" } }
  az-v1: { preset: azure, base_url: "{mock_root}/openai/v1", api_key: az-key }
  entra: { preset: azure, base_url: "{mock_root}", api_key: entra-token, api_key_header: authorization }
models:
  g: { targets: [{ provider: az, model: gpt4o-deployment }] }
  g1: { targets: [{ provider: az-v1, model: gpt-4o }] }
  ge: { targets: [{ provider: entra, model: gpt4o-deployment }] }
  emb: { targets: [{ provider: az, model: embed-deployment }] }
"#;

#[tokio::test]
async fn azure_deployments_get_the_api_version_and_the_api_key_header() {
    let h = Harness::start(AZURE).await;
    let chat = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]});
    let r = h.post("/v1/chat/completions", &chat).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");

    let r = h
        .post("/v1/embeddings", &json!({"model": "emb", "input": "hello"}))
        .await;
    assert_eq!(r.status(), 200);

    let mut v1 = chat.clone();
    v1["model"] = json!("g1");
    assert_eq!(h.post("/v1/chat/completions", &v1).await.status(), 200);
    let mut entra = chat.clone();
    entra["model"] = json!("ge");
    assert_eq!(h.post("/v1/chat/completions", &entra).await.status(), 200);

    let seen = h.mock.requests();
    assert_eq!(seen.len(), 4);
    assert_eq!(
        seen[0].path,
        "/openai/deployments/gpt4o-deployment/chat/completions"
    );
    assert_eq!(seen[0].query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(seen[0].headers["api-key"], "az-key");
    assert!(!seen[0].headers.contains_key("authorization"));
    assert_eq!(
        seen[1].path,
        "/openai/deployments/embed-deployment/embeddings"
    );
    assert_eq!(seen[1].query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(
        seen[2].path, "/openai/v1/chat/completions",
        "Azure's v1 API"
    );
    assert_eq!(seen[2].query, None);
    assert_eq!(seen[2].body["model"], "gpt-4o");
    assert_eq!(seen[3].headers["authorization"], "Bearer entra-token");
    assert!(!seen[3].headers.contains_key("api-key"));
}
