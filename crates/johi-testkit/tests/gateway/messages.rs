//! The inbound Anthropic Messages API over real HTTP: a client speaking `POST /v1/messages`
//! reaches an OpenAI-protocol model and an Anthropic-protocol model of the mock, plain,
//! streamed and with tools, and every failure comes back in Anthropic's error shape.

use johi_auth::KeyHash;
use johi_testkit::{sse_data, Harness};
use serde_json::{json, Value};

const KEY: &str = "sk-johi-msgs-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const REPLY: &str = "This is a deterministic reply from the Johi mock upstream.";
/// The two models: `o` behind an OpenAI-protocol provider, `c` behind an Anthropic one.
const MODELS: [&str; 2] = ["o", "c"];

fn config() -> String {
    format!(
        r#"
server: {{ listen: "127.0.0.1:0", reload_poll_interval: 100ms, drain_timeout: 10s }}
providers:
  openai: {{ base_url: "{{mock}}", api_key: sk-mock, forward_headers: [x-mock-status, x-mock-stream-cut-after] }}
  claude: {{ protocol: anthropic, base_url: "{{mock}}", api_key: sk-ant-mock, forward_headers: [x-mock-status, x-mock-stream-cut-after] }}
models:
  o: {{ targets: [{{ provider: openai, model: mock-small }}] }}
  c: {{ targets: [{{ provider: claude, model: claude-mock }}] }}
tenants: {{ acme: {{}} }}
auth:
  api_keys:
    - {{ id: k, hash: "{}", owner: acme }}
audit: {{ path: "{{dir}}/audit.jsonl" }}
"#,
        KeyHash::of(KEY)
    )
}

fn message(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream,
        "system": "You are terse",
        "messages": [{"role": "user", "content": "Say hello to the gateway"}]})
}

fn with_tool(mut body: Value) -> Value {
    body["tools"] = json!([{"name": "get_weather", "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
            "required": ["location"]}}]);
    body
}

async fn send(h: &Harness, path: &str, body: &Value, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut req = h
        .client
        .post(h.url(path))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// The `(event, data)` pairs of an Anthropic stream.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data = sse_data(e).pop().unwrap();
            (name.to_owned(), serde_json::from_str(&data).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_plain_message_reaches_either_protocol_and_comes_back_in_anthropics_shape() {
    let h = Harness::start(&config()).await;
    for model in MODELS {
        let r = send(&h, "/v1/messages", &message(model, false), &[]).await;
        assert_eq!(r.status(), 200, "{model}");
        assert!(r.headers().contains_key("request-id"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "message", "{model}: {body}");
        assert_eq!(body["role"], "assistant");
        assert_eq!(body["model"], model, "the name the client asked for");
        assert_eq!(body["content"][0]["type"], "text");
        assert_eq!(body["content"][0]["text"], REPLY);
        assert_eq!(body["stop_reason"], "end_turn");
        // The mock: 3 + 5 words for the user message, 3 words of system prompt (Anthropic
        // side) or 3 + 3 as a system message (OpenAI side); 10 reply words.
        assert_eq!(body["usage"]["output_tokens"], 10, "{model}");
        assert!(body["usage"]["input_tokens"].as_u64().unwrap() >= 11);
    }
    let seen = h.mock.requests();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].body["messages"][0]["role"], "system");
    assert_eq!(seen[0].body["max_tokens"], 64);
    assert_eq!(seen[1].path, "/v1/messages");
    assert_eq!(seen[1].body["system"], "You are terse");
    assert_eq!(seen[1].body["max_tokens"], 64);
    let records = h.finish().await;
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record["endpoint"], "messages");
        assert_eq!(record["status"], 200);
        assert_eq!(record["output_tokens"], 10);
    }
}

#[tokio::test]
async fn a_streamed_message_is_anthropics_event_stream_with_usage() {
    let h = Harness::start(&config()).await;
    for model in MODELS {
        let r = send(&h, "/v1/messages", &message(model, true), &[]).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let evs = events(&r.text().await.unwrap());
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"message_start"), "{model}: {names:?}");
        assert_eq!(names.last(), Some(&"message_stop"), "{model}: {names:?}");
        assert_eq!(evs[0].1["message"]["model"], model);
        let text: String = evs
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, REPLY, "{model}");
        let delta = &evs.iter().find(|(n, _)| n == "message_delta").unwrap().1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["output_tokens"], 10, "{model}");
    }
    let records = h.finish().await;
    for record in &records {
        assert_eq!(record["endpoint"], "messages");
        assert_eq!(record["stream"], true);
        assert_eq!(record["output_tokens"], 10, "{record}");
    }
}

#[tokio::test]
async fn tool_use_plain_and_streamed_on_either_protocol() {
    let h = Harness::start(&config()).await;
    for model in MODELS {
        let r = send(&h, "/v1/messages", &with_tool(message(model, false)), &[]).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["stop_reason"], "tool_use", "{model}: {body}");
        let block = &body["content"][0];
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], "get_weather");
        assert_eq!(block["input"], json!({"location": "mock"}));
        let id = block["id"].as_str().unwrap().to_owned();

        let r = send(&h, "/v1/messages", &with_tool(message(model, true)), &[]).await;
        let evs = events(&r.text().await.unwrap());
        let start = evs
            .iter()
            .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
            .unwrap_or_else(|| panic!("{model}: {evs:?}"));
        assert_eq!(start.1["content_block"]["name"], "get_weather");
        let json: String = evs
            .iter()
            .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&json).unwrap(),
            json!({"location": "mock"})
        );
        let delta = &evs.iter().find(|(n, _)| n == "message_delta").unwrap().1;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");

        // The tool's result goes back; the model answers with text.
        let mut body = with_tool(message(model, false));
        body["messages"] = json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "get_weather", "input": {"location": "mock"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sunny", "is_error": false}]}
        ]);
        let r = send(&h, "/v1/messages", &body, &[]).await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["stop_reason"], "end_turn", "{model}: {body}");
        assert_eq!(body["content"][0]["text"], REPLY);
    }
}

#[tokio::test]
async fn count_tokens_answers_johis_own_count_without_calling_upstream() {
    let h = Harness::start(&config()).await;
    let body = json!({"model": "o", "system": "You are terse",
        "messages": [{"role": "user", "content": "Say hello to the gateway"}]});
    let r = send(&h, "/v1/messages/count_tokens", &body, &[]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let n = v["input_tokens"].as_u64().unwrap();
    assert!(n > 5, "{v}");
    assert_eq!(v.as_object().unwrap().len(), 1);
    let r = send(
        &h,
        "/v1/messages/count_tokens",
        &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    let r = h
        .client
        .post(h.url("/v1/messages/count_tokens"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(h.mock.requests().is_empty(), "no upstream call");
}

#[tokio::test]
async fn errors_are_in_anthropics_shape_with_the_openai_paths_status() {
    let h = Harness::start(&config()).await;
    // No key (with a well-formed and with a malformed body): 401 either way.
    for body in [message("o", false), json!({"nonsense": true})] {
        let r = h
            .client
            .post(h.url("/v1/messages"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error", "{v}");
    }
    // Malformed bodies, with a key: 400 naming the field.
    let mut no_max = message("o", false);
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let mut server_tool = message("o", false);
    server_tool["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
    for (body, field) in [
        (no_max, "max_tokens"),
        (server_tool, "tools[0].type"),
        (json!([1]), "body"),
    ] {
        let r = send(&h, "/v1/messages", &body, &[]).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{v}"
        );
    }
    let r = send(&h, "/v1/messages", &message("gpt-9", false), &[]).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "not_found_error"
    );
    // Upstream errors keep their status, in Anthropic's shape, from either protocol.
    for (model, status, kind) in [
        ("c", "529", "overloaded_error"),
        ("o", "400", "invalid_request_error"),
        ("c", "429", "rate_limit_error"),
    ] {
        let r = send(
            &h,
            "/v1/messages",
            &message(model, false),
            &[("x-mock-status", status)],
        )
        .await;
        assert_eq!(r.status().as_str(), status, "{model}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], kind, "{model} {status}: {v}");
        assert!(v["error"]["message"].is_string());
    }
    assert!(h
        .mock
        .requests()
        .iter()
        .all(|r| r.body.get("messages").is_some()));
}

#[tokio::test]
async fn a_stream_cut_short_ends_with_an_anthropic_error_event() {
    let h = Harness::start(&config()).await;
    for model in MODELS {
        let r = send(
            &h,
            "/v1/messages",
            &message(model, true),
            &[("x-mock-stream-cut-after", "3")],
        )
        .await;
        assert_eq!(r.status(), 200);
        let evs = events(&r.text().await.expect("the stream closes cleanly"));
        let (name, data) = evs.last().unwrap();
        assert_eq!(name, "error", "{model}: {evs:?}");
        assert_eq!(data["type"], "error");
        assert!(data["error"]["message"].is_string());
        assert!(!evs.iter().any(|(n, _)| n == "message_stop"));
    }
    let records = h.finish().await;
    assert_eq!(records.len(), 2);
    assert!(
        records.iter().all(|r| r["error"].is_string()),
        "{records:?}"
    );
}
