//! The admin API over real HTTP on its own port: the admin token, keys issued at run time
//! (effective at once, revoked at once, kept across a restart), validation against the
//! config, tenants created at run time (keys for them at once, deletion guarded, kept across
//! a restart, merged with a reloaded config), limit consumption, spend, and the OpenAPI
//! document checked against the router.

use std::collections::BTreeSet;

use johi_auth::KeyHash;
use johi_testkit::Harness;
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

const TOKEN: &str = "test-admin-token-0123456789abcdef";
const CONFIG_KEY: &str = "sk-johi-admin-test-config-key-000000000000000000000000";

fn config() -> String {
    format!(
        r#"
server: {{ listen: "127.0.0.1:0", drain_timeout: 5s }}
admin: {{ listen: "127.0.0.1:0", token: "{TOKEN}", key_store: "{{dir}}/keys.db" }}
providers:
  mock: {{ base_url: "{{mock}}", api_key: sk-mock-key }}
models:
  m: {{ targets: [{{ provider: mock, model: mock-small }}], pricing: {{ input: "2.50", output: "10.00" }} }}
  e: {{ targets: [{{ provider: mock, model: mock-embed }}], pricing: {{ input: "2.50", output: "10.00" }} }}
tenants:
  acme:
    teams:
      search: {{ projects: {{ web: {{}} }} }}
  globex: {{ allowed_models: [e] }}
auth:
  api_keys:
    - {{ id: from-config, hash: "{}", owner: globex }}
limits:
  - {{ id: key-rpm, scope: key, window: minute, measure: requests, limit: 100 }}
  - {{ id: org-tpd, scope: organization, window: day, measure: total_tokens, limit: 1000000 }}
ledger: {{ sqlite: "{{dir}}/usage.db", flush_interval: 50ms }}
"#,
        KeyHash::of(CONFIG_KEY)
    )
}

fn admin(h: &Harness, method: Method, path: &str) -> RequestBuilder {
    h.client
        .request(method, h.admin_url(path))
        .bearer_auth(TOKEN)
}

async fn answer(request: RequestBuilder) -> (u16, Value) {
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// [`answer`] under another name, for tests whose locals shadow it.
async fn answer_of(request: RequestBuilder) -> (u16, Value) {
    answer(request).await
}

async fn create(h: &Harness, body: Value) -> (u16, Value) {
    answer(admin(h, Method::POST, "/admin/v1/keys").json(&body)).await
}

async fn chat(h: &Harness, key: &str, model: &str) -> (u16, Value) {
    answer(
        h.client
            .post(h.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(
                &json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]}),
            ),
    )
    .await
}

fn assert_openai_error(body: &Value, code: &str) {
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    for field in ["message", "type", "param", "code"] {
        assert!(error.get(field).is_some(), "missing {field}: {body}");
    }
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_is_not_on_the_public_port() {
    let h = Harness::start(&config()).await;
    let url = h.admin_url("/admin/v1/keys");
    for request in [
        h.client.get(&url),
        h.client
            .get(&url)
            .bearer_auth("wrong-token-wrong-token-wrong"),
        h.client.get(&url).bearer_auth(CONFIG_KEY),
        h.client.get(&url).basic_auth("admin", Some(TOKEN)),
        h.client.get(h.admin_url("/admin/v1/nothing-here")),
        h.client.post(&url).json(&json!({"owner": "acme"})),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_openai_error(&r.json().await.unwrap(), "invalid_admin_token");
    }
    let (status, list) = answer(admin(&h, Method::GET, "/admin/v1/keys")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["object"], "list");

    // Never on the public listener, whatever credential is shown.
    for (method, path) in [
        (Method::GET, "/admin/v1/keys"),
        (Method::POST, "/admin/v1/keys"),
        (Method::GET, "/admin/v1/tenants"),
    ] {
        let (status, body) = answer(
            h.client
                .request(method, h.url(path))
                .bearer_auth(TOKEN)
                .json(&json!({"owner": "acme"})),
        )
        .await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_openai_error(&body, "unknown_url");
    }
    let (status, body) = answer(admin(&h, Method::GET, "/admin/v1/nothing-here")).await;
    assert_eq!(status, 404);
    assert_openai_error(&body, "unknown_url");
    let (status, body) = answer(admin(&h, Method::DELETE, "/admin/v1/tenants")).await;
    assert_eq!(status, 405);
    assert_openai_error(&body, "method_not_allowed");
}

#[tokio::test]
async fn a_key_issued_at_run_time_works_at_once_and_stops_at_once_when_revoked() {
    let h = Harness::start(&config()).await;
    let (status, created) = create(
        &h,
        json!({
            "id": "web-1",
            "owner": "acme/search/web",
            "user": "alice",
            "allowed_models": ["m"],
            "expires_at": "2099-01-01T00:00:00Z",
            "metadata": {"ticket": "OPS-7"}
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-johi-"), "{created}");
    assert_eq!(created["id"], "web-1");
    assert_eq!(created["revoked"], false);

    // Effective on the public port at once: no reload.
    let (status, body) = chat(&h, &secret, "m").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.mock.stats().chat, 1);
    // Its allowance holds: `e` is not in it.
    let (status, body) = chat(&h, &secret, "e").await;
    assert_eq!(status, 403, "{body}");

    // Listed (with the config's key) and readable, never with the secret or its hash.
    let response = admin(&h, Method::GET, "/admin/v1/keys")
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(&secret) && !text.contains("sha256:"),
        "{text}"
    );
    let list: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].clone())
        .collect();
    assert_eq!(ids, [json!("from-config"), json!("web-1")]);
    let listed = &list["data"][1];
    assert_eq!(listed["owner"], "acme/search/web");
    assert_eq!(listed["source"], "admin");
    assert_eq!(listed["metadata"]["ticket"], "OPS-7");
    assert!(listed.get("key").is_none());
    let redacted = listed["redacted_key"].as_str().unwrap();
    assert!(
        redacted.starts_with("sk-johi-") && redacted.contains('…'),
        "{redacted}"
    );
    assert!(secret.ends_with(&redacted[redacted.len() - 4..]));
    let (status, one) = answer(admin(&h, Method::GET, "/admin/v1/keys/web-1")).await;
    assert_eq!((status, &one["user"]), (200, &json!("alice")));
    let (status, one) = answer(admin(&h, Method::GET, "/admin/v1/keys/from-config")).await;
    assert_eq!((status, &one["source"]), (200, &json!("config")));

    // Revoked: the next request is refused like any bad key.
    let (status, revoked) = answer(admin(&h, Method::POST, "/admin/v1/keys/web-1/revoke")).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["revoked"], true);
    assert!(revoked["revoked_at"].is_string());
    let (status, body) = chat(&h, &secret, "m").await;
    assert_eq!(status, 401, "{body}");
    assert_openai_error(&body, "invalid_api_key");
    assert_eq!(h.mock.stats().chat, 1);

    // What cannot be found or revoked here.
    let (status, body) = answer(admin(&h, Method::GET, "/admin/v1/keys/nope")).await;
    assert_eq!(status, 404);
    assert_openai_error(&body, "key_not_found");
    let (status, body) = answer(admin(&h, Method::POST, "/admin/v1/keys/nope/revoke")).await;
    assert_eq!(status, 404);
    assert_openai_error(&body, "key_not_found");
    let (status, body) = answer(admin(&h, Method::POST, "/admin/v1/keys/from-config/revoke")).await;
    assert_eq!(status, 409);
    assert_openai_error(&body, "key_in_config");
}

#[tokio::test]
async fn issuing_is_checked_against_the_config_with_the_field_named() {
    let h = Harness::start(&config()).await;
    let cases = [
        (
            json!({"owner": "initech"}),
            "owner",
            "unknown organization 'initech'",
        ),
        (
            json!({"owner": "acme/sales"}),
            "owner",
            "has no team 'sales'",
        ),
        (
            json!({"owner": "acme", "allowed_models": ["m", "gpt-9"]}),
            "allowed_models[1]",
            "unknown model 'gpt-9'",
        ),
        (
            json!({"owner": "acme", "expires_at": "tomorrow"}),
            "expires_at",
            "RFC 3339",
        ),
        (
            json!({"owner": "acme", "id": "bad id"}),
            "id",
            "must be 1-128 characters",
        ),
        (
            json!({"owner": "acme", "allowed_routes": ["/v2/x"]}),
            "allowed_routes[0]",
            "unknown route",
        ),
        (
            json!({"owner": "acme", "colour": "red"}),
            "",
            "unknown field `colour`",
        ),
        (json!({"owner": 7}), "owner", "invalid type"),
    ];
    for (body, param, message) in cases {
        let (status, answer) = create(&h, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let error = &answer["error"];
        assert_eq!(error["type"], "invalid_request_error");
        if !param.is_empty() {
            assert_eq!(error["param"], param, "{body}: {answer}");
        }
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{answer}"
        );
    }
    let (status, answer) = answer(
        admin(&h, Method::POST, "/admin/v1/keys")
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, 400);
    assert_openai_error(&answer, "invalid_json");

    let (status, answer) = create(
        &h,
        json!({"owner": "acme", "metadata": {"blob": "x".repeat(100_000)}}),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert_openai_error(&answer, "request_too_large");
    let (status, answer) = answer_of(admin(&h, Method::GET, "/admin/v1/keys/%FF")).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["param"], "id");

    let (status, answer) = create(&h, json!({"owner": "acme", "id": "from-config"})).await;
    assert_eq!(status, 409, "{answer}");
    assert_openai_error(&answer, "key_id_taken");
    let (status, first) = create(&h, json!({"owner": "globex"})).await;
    assert_eq!(status, 201, "{first}");
    assert!(first["id"].as_str().unwrap().starts_with("key_"));
    let (status, answer) = create(&h, json!({"owner": "acme", "id": first["id"]})).await;
    assert_eq!(status, 409, "{answer}");
    assert_openai_error(&answer, "key_id_taken");
    // The owner's allowance applies: globex may use `e` only.
    let secret = first["key"].as_str().unwrap();
    assert_eq!(chat(&h, secret, "m").await.0, 403);
    assert_eq!(chat(&h, secret, "e").await.0, 200);
}

#[tokio::test]
async fn issued_keys_and_revocations_survive_a_restart() {
    let h = Harness::start(&config()).await;
    let (_, kept) = create(&h, json!({"id": "kept", "owner": "acme/search"})).await;
    let (_, gone) = create(&h, json!({"id": "gone", "owner": "acme"})).await;
    let kept = kept["key"].as_str().unwrap().to_owned();
    let gone = gone["key"].as_str().unwrap().to_owned();
    let (status, _) = answer(admin(&h, Method::POST, "/admin/v1/keys/gone/revoke")).await;
    assert_eq!(status, 200);

    let h = h.restart().await;
    assert!(h.dir().join("keys.db").exists());
    assert_eq!(chat(&h, &kept, "m").await.0, 200);
    assert_eq!(chat(&h, &gone, "m").await.0, 401);
    let (_, list) = answer(admin(&h, Method::GET, "/admin/v1/keys")).await;
    let states: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_owned(),
                k["revoked"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("from-config".into(), false),
            ("kept".into(), false),
            ("gone".into(), true)
        ]
    );
}

#[tokio::test]
async fn limits_show_what_each_scope_has_used_and_tenants_show_the_tree() {
    let h = Harness::start(&config()).await;
    let (_, created) = create(&h, json!({"id": "busy", "owner": "acme/search/web"})).await;
    let secret = created["key"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(chat(&h, secret, "m").await.0, 200);
    }
    assert_eq!(chat(&h, CONFIG_KEY, "e").await.0, 200);

    let (status, limits) = answer(admin(&h, Method::GET, "/admin/v1/limits")).await;
    assert_eq!(status, 200, "{limits}");
    let rpm = &limits["data"][0];
    assert_eq!(rpm["id"], "key-rpm");
    assert_eq!(rpm["scope"], "key");
    assert_eq!(rpm["window"], "minute");
    assert_eq!(rpm["limit"], 100);
    assert_eq!(
        rpm["counters"],
        json!([
            {"scope_key": "key:busy", "used": 3, "remaining": 97, "resets_in_seconds": rpm["counters"][0]["resets_in_seconds"]},
            {"scope_key": "key:from-config", "used": 1, "remaining": 99, "resets_in_seconds": rpm["counters"][1]["resets_in_seconds"]},
        ])
    );
    assert!(rpm["counters"][0]["resets_in_seconds"].as_u64().unwrap() <= 60);
    let tokens = &limits["data"][1];
    assert_eq!(tokens["measure"], "total_tokens");
    let orgs: Vec<_> = tokens["counters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["scope_key"].as_str().unwrap().to_owned(),
                c["used"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(orgs.len(), 2, "{tokens}");
    assert_eq!(orgs[0].0, "organization:acme");
    assert!(orgs.iter().all(|(_, used)| *used > 0), "{tokens}");

    let (status, tenants) = answer(admin(&h, Method::GET, "/admin/v1/tenants")).await;
    assert_eq!(status, 200);
    assert_eq!(tenants["data"][0]["name"], "acme");
    assert_eq!(tenants["data"][0]["teams"][0]["name"], "search");
    assert_eq!(tenants["data"][0]["teams"][0]["projects"][0]["name"], "web");
    assert_eq!(tenants["data"][1]["allowed_models"], json!(["e"]));
}

#[tokio::test]
async fn usage_answers_what_the_ledger_recorded() {
    let h = Harness::start(&config()).await;
    let (_, created) = create(&h, json!({"id": "spender", "owner": "acme/search/web"})).await;
    let secret = created["key"].as_str().unwrap();
    for _ in 0..2 {
        assert_eq!(chat(&h, secret, "m").await.0, 200);
    }
    assert_eq!(chat(&h, CONFIG_KEY, "e").await.0, 200);

    let (status, spend) = answer(admin(
        &h,
        Method::GET,
        "/admin/v1/usage/spend?group_by=organization,key&where=model%3Dm&flush=true",
    ))
    .await;
    assert_eq!(status, 200, "{spend}");
    assert_eq!(spend["group_by"], json!(["organization", "key"]));
    let rows = spend["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{spend}");
    assert_eq!(
        rows[0]["group"],
        json!({"organization": "acme", "key": "spender"})
    );
    assert_eq!(rows[0]["requests"], 2);
    assert!(rows[0]["input_tokens"].as_u64().unwrap() > 0);
    assert!(rows[0]["cost_micros"].as_i64().unwrap() > 0);

    let (status, total) = answer(admin(&h, Method::GET, "/admin/v1/usage/spend?flush=true")).await;
    assert_eq!(status, 200);
    assert_eq!(total["data"][0]["requests"], 3);

    let month = humantime::format_rfc3339(std::time::SystemTime::now()).to_string()[..7].to_owned();
    let r = admin(
        &h,
        Method::GET,
        &format!("/admin/v1/usage/chargeback?month={month}&flush=true"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("month,organization,team,project,"), "{csv}");
    assert!(
        csv.contains(&format!("{month},acme,search,web,2,")),
        "{csv}"
    );
    assert!(csv.contains(&format!("{month},globex,,,1,")), "{csv}");

    for (path, param) in [
        ("/admin/v1/usage/spend?group_by=galaxy", "group_by"),
        ("/admin/v1/usage/spend?where=team", "where"),
        ("/admin/v1/usage/spend?from=yesterday", "from"),
        ("/admin/v1/usage/spend?colour=red", "colour"),
        ("/admin/v1/usage/chargeback", "month"),
        ("/admin/v1/usage/chargeback?month=November", "month"),
    ] {
        let (status, body) = answer(admin(&h, Method::GET, path)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["param"], param, "{path}: {body}");
    }
}

/// Every path and method `docs/admin-openapi.yaml` documents is served by the real admin
/// router, and every route the router serves is documented.
#[tokio::test]
async fn the_openapi_document_matches_the_admin_router() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/admin-openapi.yaml");
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["openapi"].as_str().unwrap().get(..3), Some("3.1"));
    let mut documented = BTreeSet::new();
    for (route, item) in doc["paths"].as_mapping().unwrap() {
        let route = route.as_str().unwrap();
        for (method, _) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if ["get", "post", "put", "patch", "delete"].contains(&method) {
                documented.insert((method.to_uppercase(), route.to_owned()));
            }
        }
    }
    let served: BTreeSet<_> = johi_testkit::johi_server::admin::routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_owned()))
        .collect();
    assert_eq!(
        documented, served,
        "docs/admin-openapi.yaml and the admin router differ"
    );

    let h = Harness::start(&config()).await;
    for (method, route) in &documented {
        let concrete = route
            .replace("{id}", "no-such-key")
            .replace("{path}", "no-such-tenant");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = answer(admin(&h, method.clone(), &concrete).json(&json!({}))).await;
        assert_ne!(status, 405, "{method} {route}: {body}");
        assert_ne!(
            body["error"]["code"], "unknown_url",
            "{method} {route}: {body}"
        );
    }
}

#[tokio::test]
async fn a_reload_rotates_the_token_keeps_issued_keys_and_refuses_a_new_key_store() {
    let h = Harness::start(&config()).await;
    let (_, created) = create(&h, json!({"id": "steady", "owner": "acme"})).await;
    let secret = created["key"].as_str().unwrap().to_owned();

    const NEW_TOKEN: &str = "rotated-admin-token-9876543210";
    h.write_config(&config().replace(TOKEN, NEW_TOKEN));
    h.gateway.reload().await.unwrap();
    let url = h.admin_url("/admin/v1/keys");
    assert_eq!(
        h.client
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        h.client
            .get(&url)
            .bearer_auth(NEW_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Issued keys are resolved again against the reloaded config and keep working.
    assert_eq!(chat(&h, &secret, "m").await.0, 200);

    h.write_config(&config().replace("keys.db", "other-keys.db"));
    let errors = h.gateway.reload().await.unwrap_err();
    assert!(
        errors[0].starts_with("admin: listen or key_store changed"),
        "{errors:?}"
    );
    assert_eq!(chat(&h, &secret, "m").await.0, 200);
}

/// Polls until `chat` with `key` on `h` answers `status` (a replica refreshes its keys on an
/// interval).
async fn eventually(h: &Harness, key: &str, status: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (got, body) = chat(h, key, "m").await;
        if got == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {got} rather than {status}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Two replicas sharing one PostgreSQL key store: a key issued through one works on the
/// other within the refresh interval, and a revocation through one reaches the other.
#[tokio::test]
async fn replicas_share_issued_keys_through_postgres() {
    let url = johi_keystore::testing::postgres_url("admin_test_replicas").await;
    let shared = config().replace(
        "key_store: \"{dir}/keys.db\" }",
        &format!("key_store: \"{url}\", key_refresh_interval: 100ms }}"),
    );
    assert!(shared.contains("key_refresh_interval"), "{shared}");
    let a = Harness::start(&shared).await;
    let b = Harness::start(&shared).await;
    let (status, created) = create(&a, json!({"id": "roaming", "owner": "acme"})).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().unwrap().to_owned();
    assert_eq!(chat(&a, &secret, "m").await.0, 200);
    eventually(&b, &secret, 200).await;
    let (_, listed) = answer(admin(&b, Method::GET, "/admin/v1/keys/roaming")).await;
    assert_eq!(listed["owner"], "acme");

    // Revoked through b: refused on b at once, on a within its refresh interval.
    let (status, _) = answer(admin(&b, Method::POST, "/admin/v1/keys/roaming/revoke")).await;
    assert_eq!(status, 200);
    assert_eq!(chat(&b, &secret, "m").await.0, 401);
    eventually(&a, &secret, 401).await;
}

async fn create_tenant(h: &Harness, body: Value) -> (u16, Value) {
    answer(admin(h, Method::POST, "/admin/v1/tenants").json(&body)).await
}

async fn delete_tenant(h: &Harness, path: &str) -> (u16, Value) {
    let encoded = path.replace('/', "%2F");
    answer(admin(
        h,
        Method::DELETE,
        &format!("/admin/v1/tenants/{encoded}"),
    ))
    .await
}

/// `(path, source)` of every tenant the admin API lists, depth first.
async fn listed_tenants(h: &Harness) -> Vec<(String, String)> {
    let (status, list) = answer(admin(h, Method::GET, "/admin/v1/tenants")).await;
    assert_eq!(status, 200, "{list}");
    let mut out = Vec::new();
    let mut push = |node: &Value| {
        out.push((
            node["path"].as_str().unwrap().to_owned(),
            node["source"].as_str().unwrap().to_owned(),
        ))
    };
    for org in list["data"].as_array().unwrap() {
        push(org);
        for team in org["teams"].as_array().unwrap() {
            push(team);
            for project in team["projects"].as_array().unwrap() {
                push(project);
            }
        }
    }
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, s)| ((*p).to_owned(), (*s).to_owned()))
        .collect()
}

#[tokio::test]
async fn tenants_created_at_run_time_take_keys_at_once_and_survive_a_restart() {
    let h = Harness::start(&config()).await;
    let (status, org) = create_tenant(&h, json!({"path": "initech"})).await;
    assert_eq!(status, 201, "{org}");
    assert_eq!(org["source"], "runtime");
    let (status, team) =
        create_tenant(&h, json!({"path": "initech/labs", "allowed_models": ["m"]})).await;
    assert_eq!(status, 201, "{team}");
    let (status, body) = create_tenant(&h, json!({"path": "acme/ops"})).await;
    assert_eq!(status, 201, "{body}");

    // What cannot be created.
    for (body, status, code) in [
        (json!({"path": "initech/labs"}), 409, "tenant_exists"),
        (json!({"path": "acme"}), 409, "tenant_exists"),
        (json!({"path": "umbrella/x"}), 400, "parent_not_found"),
        (
            json!({"path": "initech/labs/p", "allowed_models": ["gpt-9"]}),
            400,
            "invalid_value",
        ),
        (json!({"path": "a/b/c/d"}), 400, "invalid_value"),
        (json!({"path": "bad name"}), 400, "invalid_value"),
        (json!({"name": "x"}), 400, "invalid_json"),
    ] {
        let (got, answer) = create_tenant(&h, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_openai_error(&answer, code);
    }

    // A key for the run-time team works at once, within the team's allowance, and its usage
    // is the team's.
    let (status, key) = create(&h, json!({"id": "lab-key", "owner": "initech/labs"})).await;
    assert_eq!(status, 201, "{key}");
    let secret = key["key"].as_str().unwrap().to_owned();
    let (status, body) = chat(&h, &secret, "m").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(chat(&h, &secret, "e").await.0, 403);
    let (status, spend) = answer(admin(
        &h,
        Method::GET,
        "/admin/v1/usage/spend?group_by=organization,team,key&flush=true",
    ))
    .await;
    assert_eq!(status, 200, "{spend}");
    let rows = spend["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{spend}");
    assert_eq!(
        rows[0]["group"],
        json!({"organization": "initech", "team": "labs", "key": "lab-key"})
    );
    assert_eq!(rows[0]["requests"], 1);

    assert_eq!(
        listed_tenants(&h).await,
        pairs(&[
            ("acme", "config"),
            ("acme/search", "config"),
            ("acme/search/web", "config"),
            ("acme/ops", "runtime"),
            ("globex", "config"),
            ("initech", "runtime"),
            ("initech/labs", "runtime"),
        ])
    );

    // What cannot be deleted.
    for (path, status, code) in [
        ("initech/labs", 409, "tenant_in_use"),
        ("initech", 409, "tenant_has_children"),
        ("acme", 409, "tenant_in_config"),
        ("acme/search/web", 409, "tenant_in_config"),
        ("nowhere", 404, "tenant_not_found"),
    ] {
        let (got, answer) = delete_tenant(&h, path).await;
        assert_eq!(got, status, "{path}: {answer}");
        assert_openai_error(&answer, code);
    }
    let (status, body) = delete_tenant(&h, "acme/ops").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], true);

    // Kept across a restart, the deleted one gone.
    let h = h.restart().await;
    assert_eq!(chat(&h, &secret, "m").await.0, 200);
    let listed = listed_tenants(&h).await;
    assert!(listed.contains(&("initech/labs".into(), "runtime".into())));
    assert!(!listed.iter().any(|(p, _)| p == "acme/ops"), "{listed:?}");

    // A reloaded config that declares `initech` too: the config's wins, its run-time team
    // stays, and the key keeps working.
    h.write_config(&config().replace(
        "  globex: { allowed_models: [e] }",
        "  globex: { allowed_models: [e] }\n  initech: {}",
    ));
    h.gateway.reload().await.unwrap();
    let listed = listed_tenants(&h).await;
    assert!(
        listed.contains(&("initech".into(), "config".into())),
        "{listed:?}"
    );
    assert!(listed.contains(&("initech/labs".into(), "runtime".into())));
    assert_eq!(chat(&h, &secret, "m").await.0, 200);

    // Revoked keys do not hold their tenant: once the key is revoked the team can go, and
    // no key can be issued for it any more.
    let (status, _) = answer(admin(&h, Method::POST, "/admin/v1/keys/lab-key/revoke")).await;
    assert_eq!(status, 200);
    let (status, body) = delete_tenant(&h, "initech/labs").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = create(&h, json!({"owner": "initech/labs"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = delete_tenant(&h, "initech").await;
    assert_eq!(status, 409, "{body}");
    assert_openai_error(&body, "tenant_in_config");
}

/// Two replicas sharing one PostgreSQL key store: a tenant created through one can be given
/// keys through the other within the refresh interval, and its deletion reaches it too.
#[tokio::test]
async fn replicas_share_run_time_tenants_through_postgres() {
    let url = johi_keystore::testing::postgres_url("admin_test_tenants").await;
    let shared = config().replace(
        "key_store: \"{dir}/keys.db\" }",
        &format!("key_store: \"{url}\", key_refresh_interval: 100ms }}"),
    );
    let a = Harness::start(&shared).await;
    let b = Harness::start(&shared).await;
    let (status, body) = create_tenant(&a, json!({"path": "initech"})).await;
    assert_eq!(status, 201, "{body}");
    // b re-reads the store before checking the parent: no wait for its refresh.
    let (status, body) = create_tenant(&b, json!({"path": "initech/far"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = delete_tenant(&a, "initech/far").await;
    assert_eq!(status, 200, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let secret = loop {
        let (status, body) = create(&b, json!({"id": "far", "owner": "initech"})).await;
        if status == 201 {
            break body["key"].as_str().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "{status}: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(chat(&b, &secret, "m").await.0, 200);
    // a refreshes before deciding: b's key holds the tenant.
    let (status, body) = delete_tenant(&a, "initech").await;
    assert_eq!(status, 409, "{body}");
    assert_openai_error(&body, "tenant_in_use");
    let (status, _) = answer(admin(&b, Method::POST, "/admin/v1/keys/far/revoke")).await;
    assert_eq!(status, 200);
    let (status, body) = delete_tenant(&a, "initech").await;
    assert_eq!(status, 200, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while listed_tenants(&b).await.iter().any(|(p, _)| p == "initech") {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
