//! Authentication and authorisation over real HTTP: virtual keys in every header a client
//! may use, one indistinguishable 401 for every bad key, 403 for what a key may not use,
//! attribution of every request to its tenant, and revocation by reload.

use johi_auth::KeyHash;
use johi_testkit::Harness;
use reqwest::RequestBuilder;
use serde_json::{json, Value};

const WEB: &str = "sk-johi-web-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const BATCH: &str = "sk-johi-batch-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const EXPIRED: &str = "sk-johi-expired-ccccccccccccccccccccccccccccccccccccccc";
const REVOKED: &str = "sk-johi-revoked-ddddddddddddddddddddddddddddddddddddddd";
const EMBED_ONLY: &str = "sk-johi-embed-eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

/// Tenants, five keys and (by `{public}`) the public routes; `{revoked}` toggles `web`.
fn config(public: &str, web_revoked: bool) -> String {
    let h = |k: &str| KeyHash::of(k).to_string();
    format!(
        r#"
server: {{ listen: "127.0.0.1:0", reload_poll_interval: 100ms }}
enrich: {{ default_organization: org-from-default }}
providers:
  mock: {{ base_url: "{{mock}}", api_key: sk-mock-key }}
models:
  m: {{ targets: [{{ provider: mock, model: mock-small }}] }}
  e: {{ targets: [{{ provider: mock, model: mock-embed }}] }}
tenants:
  acme:
    teams:
      search:
        allowed_models: [m, e]
        projects: {{ web: {{}}, batch: {{ allowed_models: [e] }} }}
  globex: {{}}
auth:
  public_routes: [{public}]
  api_keys:
    - {{ id: web, hash: "{}", owner: acme/search/web, user: alice, revoked: {web_revoked} }}
    - {{ id: batch, hash: "{}", owner: acme/search/batch }}
    - {{ id: expired, hash: "{}", owner: globex, expires_at: "2020-01-01T00:00:00Z" }}
    - {{ id: revoked, hash: "{}", owner: globex, revoked: true }}
    - {{ id: embed-only, hash: "{}", owner: globex, allowed_routes: [/v1/embeddings] }}
audit: {{ path: "{{dir}}/audit.jsonl" }}
"#,
        h(WEB),
        h(BATCH),
        h(EXPIRED),
        h(REVOKED),
        h(EMBED_ONLY)
    )
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn post(h: &Harness, path: &str, body: &Value) -> RequestBuilder {
    h.client.post(h.url(path)).json(body)
}

/// Sends a prepared request; its status and JSON body.
async fn answer(request: RequestBuilder) -> (u16, Value) {
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// POSTs `body` to `path` with `key` as a bearer token; status and JSON body.
async fn call(h: &Harness, path: &str, body: &Value, key: &str) -> (u16, Value) {
    answer(post(h, path, body).bearer_auth(key)).await
}

/// GETs `path` with `key` as a bearer token; status and JSON body.
async fn get(h: &Harness, path: &str, key: &str) -> (u16, Value) {
    answer(h.client.get(h.url(path)).bearer_auth(key)).await
}

#[tokio::test]
async fn a_key_in_any_client_header_is_served_and_charged_to_its_tenant() {
    let h = Harness::start(&config("", false)).await;
    let sends = [
        post(&h, "/v1/chat/completions", &chat("m")).bearer_auth(WEB),
        post(&h, "/v1/chat/completions", &chat("m")).header("api-key", WEB),
        post(&h, "/v1/chat/completions", &chat("m")).header("x-api-key", WEB),
    ];
    for send in sends {
        let r = send.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-johi-organization"],
            "acme",
            "the key's organisation, not the configured default"
        );
    }
    for seen in h.mock.requests() {
        assert_eq!(seen.headers["authorization"], "Bearer sk-mock-key");
        assert_eq!(seen.headers["x-johi-organization"], "acme");
        for name in ["api-key", "x-api-key"] {
            assert!(
                !seen.headers.contains_key(name),
                "{name} never goes upstream"
            );
        }
    }
    let records = h.finish().await;
    assert_eq!(records.len(), 3);
    for r in records {
        assert_eq!(r["organization"], "acme");
        assert_eq!(r["team"], "search");
        assert_eq!(r["project"], "web");
        assert_eq!(r["user"], "alice");
        assert_eq!(r["auth"], "api_key");
        assert_eq!(r["credential_id"], "web");
    }
}

#[tokio::test]
async fn every_bad_key_gets_the_same_401_and_nothing_reaches_the_provider() {
    let h = Harness::start(&config("", false)).await;
    let mut tampered = WEB.to_owned();
    tampered.pop();
    tampered.push('b');
    let mut bodies = Vec::new();
    for key in [EXPIRED, REVOKED, tampered.as_str(), "sk-johi-unknown", "x"] {
        let r = post(&h, "/v1/chat/completions", &chat("m"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{key}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert!(r.headers().contains_key("x-request-id"));
        bodies.push(r.text().await.unwrap());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "unknown, expired, revoked and tampered keys are indistinguishable: {bodies:?}"
    );
    let body: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["message"], "Incorrect API key provided.");

    let (status, body) = answer(post(&h, "/v1/chat/completions", &chat("m"))).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "missing_api_key");
    let (status, _) = answer(h.client.get(h.url("/v1/models"))).await;
    assert_eq!(status, 401, "listing models needs a key unless made public");

    assert!(
        h.mock.requests().is_empty(),
        "no refused request went upstream"
    );
    let records = h.finish().await;
    assert_eq!(records.len(), 6, "refusals are audited too");
    assert!(records
        .iter()
        .all(|r| r["status"] == 401 && r["error"] == "unauthenticated"));
}

#[tokio::test]
async fn models_outside_a_keys_allowance_are_refused_with_403_and_not_listed() {
    let h = Harness::start(&config("", false)).await;
    let (status, body) = call(&h, "/v1/chat/completions", &chat("m"), BATCH).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert_eq!(body["error"]["type"], "permission_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("`m`"));

    let embed = json!({"model": "e", "input": "the batch project may embed"});
    assert_eq!(call(&h, "/v1/embeddings", &embed, BATCH).await.0, 200);
    let (status, _) = call(&h, "/v1/chat/completions", &chat("nope"), BATCH).await;
    assert_eq!(status, 404, "an unknown model is a 404 for everyone");

    let (_, list) = get(&h, "/v1/models", BATCH).await;
    let ids: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e"], "only the models the key may use are listed");
    assert_eq!(get(&h, "/v1/models/m", BATCH).await.0, 404);
    assert_eq!(get(&h, "/v1/models/e", BATCH).await.0, 200);
    assert_eq!(
        h.mock.requests().len(),
        1,
        "only the allowed call went upstream"
    );
}

#[tokio::test]
async fn routes_outside_a_keys_allowance_are_refused_with_403() {
    let h = Harness::start(&config("", false)).await;
    let (status, body) = call(&h, "/v1/chat/completions", &chat("m"), EMBED_ONLY).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "route_not_allowed");
    assert_eq!(get(&h, "/v1/models", EMBED_ONLY).await.0, 403);
    let embed = json!({"model": "e", "input": "ok"});
    assert_eq!(call(&h, "/v1/embeddings", &embed, EMBED_ONLY).await.0, 200);
}

#[tokio::test]
async fn an_organization_header_that_contradicts_the_key_is_401() {
    let h = Harness::start(&config("", false)).await;
    let request = |org: &str| {
        post(&h, "/v1/chat/completions", &chat("m"))
            .bearer_auth(WEB)
            .header("openai-organization", org)
    };
    let (status, body) = answer(request("globex")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "mismatched_organization");
    assert_eq!(answer(request("acme")).await.0, 200);
}

#[tokio::test]
async fn public_routes_serve_without_a_key_and_others_still_need_one() {
    let h = Harness::start(&config("/v1/models", false)).await;
    assert_eq!(
        h.model_ids().await,
        ["m", "e"],
        "anonymous sees every model"
    );
    let (status, _) = get(&h, "/v1/models", "sk-placeholder-an-sdk-insists-on").await;
    assert_eq!(
        status, 200,
        "a placeholder key is tolerated on a public route"
    );
    let (status, _) = answer(post(&h, "/v1/chat/completions", &chat("m"))).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn revoking_a_key_in_the_config_takes_effect_on_reload() {
    let h = Harness::start(&config("", false)).await;
    let status = || async { call(&h, "/v1/chat/completions", &chat("m"), WEB).await.0 };
    assert_eq!(status().await, 200);
    h.write_config(&config("", true));
    h.gateway.reload().await.unwrap();
    assert_eq!(status().await, 401);
    h.write_config(&config("", false));
    h.gateway.reload().await.unwrap();
    assert_eq!(status().await, 200);
}
