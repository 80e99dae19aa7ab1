//! The OpenAI surface: chat (plain and streamed), completions, embeddings, models, probes.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use johi_testkit::{sse_data, Harness, BASIC};
use serde_json::{json, Value};

fn chat_body(stream: bool) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "Say hello to the gateway"}], "stream": stream})
}

#[tokio::test]
async fn chat_is_proxied_enriched_and_credentialed_for_the_provider() {
    let h = Harness::start(BASIC).await;
    let response = h
        .client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth("client-key-for-johi")
        .header("x-request-id", "client-req-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-request-id"], "client-req-1");
    assert_eq!(headers["x-johi-organization"], "org-test");
    assert!(headers["traceparent"]
        .to_str()
        .unwrap()
        .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["model"], "mock-small",
        "the upstream saw the target's model name"
    );
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "This is a deterministic reply from the Johi mock upstream."
    );

    let seen = h.mock.requests();
    assert_eq!(seen.len(), 1);
    let upstream = &seen[0];
    assert_eq!(upstream.path, "/v1/chat/completions");
    assert_eq!(
        upstream.headers["authorization"], "Bearer sk-mock-key",
        "the provider's key, not the client's"
    );
    assert_eq!(upstream.headers["x-request-id"], "client-req-1");
    assert_eq!(upstream.headers["x-johi-organization"], "org-test");
    assert_eq!(upstream.headers["host"], h.mock.addr().to_string());
    let upstream_trace = &upstream.headers["traceparent"];
    assert!(upstream_trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert!(
        !upstream_trace.contains("00f067aa0ba902b7"),
        "Johi is a span of its own"
    );
    assert_eq!(upstream.body["model"], "mock-small");
}

#[tokio::test]
async fn unknown_request_fields_reach_the_upstream_unchanged() {
    let h = Harness::start(BASIC).await;
    let sent = json!({
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "seed": 42, "logprobs": true, "top_logprobs": 2,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": "auto",
        "x_vendor_extension": {"nested": [1, 2.5, null, "z"]}
    });
    let response = h.post("/v1/chat/completions", &sent).await;
    assert_eq!(response.status(), 200);
    let mut expected = sent.clone();
    expected["model"] = json!("mock-small");
    assert_eq!(h.mock.requests()[0].body, expected);
}

/// Strips the per-response `id` so two runs of the same request compare equal.
fn normalise(events: Vec<String>) -> Vec<Value> {
    events
        .into_iter()
        .map(|e| match serde_json::from_str::<Value>(&e) {
            Ok(mut v) => {
                v.as_object_mut().map(|o| o.remove("id"));
                v
            }
            Err(_) => Value::String(e),
        })
        .collect()
}

#[tokio::test]
async fn a_stream_is_relayed_event_for_event_and_metered() {
    let h = Harness::start(BASIC).await;
    let mut body = chat_body(true);
    body["stream_options"] = json!({"include_usage": true});

    let mut direct_body = body.clone();
    direct_body["model"] = json!("mock-small");
    let direct = h
        .client
        .post(format!("{}/chat/completions", h.mock.base_url()))
        .json(&direct_body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let through = h.post("/v1/chat/completions", &body).await;
    assert_eq!(through.status(), 200);
    assert!(through.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(through.headers().contains_key("x-request-id"));
    let through = through.text().await.unwrap();

    let (direct, through) = (sse_data(&direct), sse_data(&through));
    assert!(direct.len() > 5);
    assert_eq!(through.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(normalise(through), normalise(direct.clone()));

    let usage: Value = serde_json::from_str(&direct[direct.len() - 2]).unwrap();
    let records = h.finish().await;
    let record = records
        .iter()
        .find(|r| r["stream"] == true)
        .expect("stream audited");
    assert_eq!(record["input_tokens"], usage["usage"]["prompt_tokens"]);
    assert_eq!(record["output_tokens"], usage["usage"]["completion_tokens"]);
    assert_eq!(record["status"], 200);
    assert!(record["ttft_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn events_go_out_as_they_arrive_not_at_the_end() {
    let h = Harness::start(BASIC).await;
    let mut body = chat_body(true);
    body["mock"] = json!({"chunk_delay_ms": 150, "chunks": 6});
    let started = Instant::now();
    let response = h.post("/v1/chat/completions", &body).await;
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let total = started.elapsed();
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));
    // Six delayed chunks take ≥ 900 ms upstream; the first must not wait for them.
    assert!(total >= Duration::from_millis(900), "{total:?}");
    assert!(
        first_at < total / 2,
        "first event at {first_at:?} of {total:?}: buffered?"
    );
}

#[tokio::test]
async fn completions_plain_and_streamed() {
    let h = Harness::start(BASIC).await;
    let plain = h
        .post(
            "/v1/completions",
            &json!({"model": "m", "prompt": "Once upon a time", "max_tokens": 3}),
        )
        .await;
    assert_eq!(plain.status(), 200);
    let plain: Value = plain.json().await.unwrap();
    assert_eq!(plain["object"], "text_completion");
    assert_eq!(plain["choices"][0]["finish_reason"], "length");
    assert_eq!(plain["usage"]["completion_tokens"], 3);

    let streamed = h
        .post(
            "/v1/completions",
            &json!({"model": "m", "prompt": ["a b", "c"], "stream": true}),
        )
        .await;
    let events = sse_data(&streamed.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "text_completion");
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let h = Harness::start(BASIC).await;
    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "e", "input": ["alpha", "beta"], "dimensions": 8}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(v["model"], "mock-embed");
    let r = h
        .post(
            "/v1/embeddings",
            &json!({"model": "e", "input": "alpha", "encoding_format": "base64"}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert!(v["data"][0]["embedding"].is_string());
}

#[tokio::test]
async fn models_and_probes() {
    let h = Harness::start(BASIC).await;
    let v = h.models().await;
    let ids = h.model_ids().await;
    assert_eq!(v["object"], "list");
    assert_eq!(ids, ["m", "e"]);
    let one = h.client.get(h.url("/v1/models/m")).send().await.unwrap();
    assert_eq!(one.status(), 200);
    let missing = h.client.get(h.url("/v1/models/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let v: Value = missing.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(
        h.client
            .get(h.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        h.client
            .get(h.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn http2_cleartext_is_served() {
    let h = Harness::start(BASIC).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = client
        .post(h.url("/v1/chat/completions"))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
}
