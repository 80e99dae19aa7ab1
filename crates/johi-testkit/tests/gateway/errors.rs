//! Every failure path answers in OpenAI's error shape with the right status.

use std::sync::Arc;

use futures_util::StreamExt;
use johi_testkit::{sse_data, Harness, Panicking, BASIC};
use serde_json::{json, Value};

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(ct.as_deref(), Some("application/json"));
    let error = &body["error"];
    assert!(error["message"].is_string(), "{body}");
    assert!(
        error.get("type").is_some() && error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );
    (status, body)
}

/// A port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn client_mistakes_are_400s_naming_the_field() {
    let h = Harness::start(BASIC).await;
    let raw = |body: &'static str| {
        h.client
            .post(h.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = raw("{\"model\": \"m\", \"messages\": [").await.unwrap();
    assert!(
        r.headers().contains_key("x-request-id"),
        "errors carry the request ID"
    );
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );

    let (status, body) = error_of(
        raw("{\"messages\": [{\"role\":\"user\",\"content\":\"x\"}]}")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("model"))
    );

    let (status, body) = error_of(
        raw("{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("messages[0].role"))
    );
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 415);
    assert_eq!(
        h.mock.stats().requests,
        0,
        "nothing malformed reached the upstream"
    );
}

#[tokio::test]
async fn unknown_model_is_404_model_not_found() {
    let h = Harness::start(BASIC).await;
    let r = h
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    let (status, body) = error_of(r).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(body["error"]["param"], "model");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_declared_or_chunked() {
    let h = Harness::start(&BASIC.replace(
        "reload_poll_interval: 100ms",
        "reload_poll_interval: 100ms, max_body_bytes: 1024",
    ))
    .await;
    let big = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let r = h.post("/v1/chat/completions", &big).await;
    assert!(r.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("request_too_large"))
    );

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b' '; 512])).collect();
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 413);
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    let config = BASIC.replace("{mock}", &format!("http://127.0.0.1:{}/v1", closed_port()));
    let h = Harness::start(&config).await;
    let r = h
        .post(
            "/v1/chat/completions",
            &json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_connect_failed"))
    );
    assert_eq!(body["error"]["type"], "upstream_error");
}

#[tokio::test]
async fn a_slow_upstream_is_504() {
    let config = BASIC.replace(
        "api_key: sk-mock-key",
        "api_key: sk-mock-key, timeouts: { first_byte: 200ms }",
    );
    let h = Harness::start(&config).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "mock": {"latency_ms": 2000}});
    let (status, body) = error_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (504, Some("upstream_timeout"))
    );
}

#[tokio::test]
async fn upstream_errors_pass_through_with_their_status() {
    let h = Harness::start(BASIC).await;
    for status in [400u16, 429, 503] {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "mock": {"status": status}});
        let (got, body) = error_of(h.post("/v1/chat/completions", &body).await).await;
        assert_eq!(got, status);
        assert_eq!(
            body["error"]["code"],
            format!("mock_{status}"),
            "the provider's own error body"
        );
    }
}

#[tokio::test]
async fn a_stream_broken_midway_ends_with_an_error_event_and_a_clean_close() {
    let h = Harness::start(BASIC).await;
    for knob in [
        json!({"stream_cut_after": 2}),
        json!({"stream_no_done": true}),
    ] {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true, "mock": knob});
        let r = h.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.expect("the client's stream closes cleanly");
        let events = sse_data(&text);
        let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
        assert_eq!(last["error"]["type"], "upstream_error", "{knob}: {text}");
        assert_eq!(last["error"]["code"], "upstream_protocol_error");
        assert!(
            !events.iter().any(|e| e == "[DONE]"),
            "no [DONE] after a broken stream"
        );
    }
}

#[tokio::test]
async fn a_panic_is_a_500_and_the_gateway_keeps_serving() {
    let mut registry = johi_testkit::johi_server::Registry::with_builtins();
    registry.register("panic", |_| Arc::new(Panicking::default()));
    let config = format!("{BASIC}\npipeline: [enrich, panic, validate, route, endpoint, translate, credentials, audit]\n");
    let h = Harness::start_with(&config, registry).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-test-panic", "1")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, body_json) = error_of(r).await;
    assert_eq!(
        (status, body_json["error"]["type"].as_str()),
        (500, Some("server_error"))
    );
    assert_eq!(h.post("/v1/chat/completions", &body).await.status(), 200);
    let records = h.finish().await;
    assert_eq!(records.len(), 2, "both requests audited");
    assert_eq!(records[0]["status"], 500, "{records:?}");
    assert_eq!(records[0]["error"], "internal");
    assert_eq!(records[0]["cancelled"], false);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_openai_shaped() {
    let h = Harness::start(BASIC).await;
    let r = h
        .client
        .get(h.url("/v1/nothing"))
        .header("x-request-id", "trace-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-request-id"],
        "trace-me-1",
        "answers before the pipeline carry the ID too"
    );
    let (status, body) = error_of(r).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_url"))
    );
    let (status, _) = error_of(
        h.client
            .get(h.url("/v1/chat/completions"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_stream() {
    let h = Harness::start(BASIC).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true,
                      "mock": {"chunk_delay_ms": 100, "chunks": 50}});
    let r = h.post("/v1/chat/completions", &body).await;
    let mut stream = r.bytes_stream();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    let mut cancelled = 0;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        cancelled = h.mock.stats().streams_cancelled;
        if cancelled > 0 {
            break;
        }
    }
    assert_eq!(
        cancelled, 1,
        "the upstream stream was abandoned, not run to the end"
    );
    assert_eq!(h.mock.stats().streams_completed, 0);

    let records = h.finish().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["cancelled"], true);
    assert_eq!(records[0]["status"], 499);
}

#[tokio::test]
async fn a_client_that_gives_up_before_the_answer_cancels_the_upstream_call() {
    let h = Harness::start(BASIC).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "mock": {"latency_ms": 1500}});
    let gave_up = h
        .client
        .post(h.url("/v1/chat/completions"))
        .timeout(std::time::Duration::from_millis(200))
        .json(&body)
        .send()
        .await;
    assert!(gave_up.is_err());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let records = h.finish().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["cancelled"], true);
    assert_eq!(records[0]["status"], 499);
    let latency = records[0]["latency_ms"].as_f64().unwrap();
    assert!(
        latency < 1000.0,
        "the exchange ended when the client left ({latency} ms), not when the upstream answered"
    );
}

#[tokio::test]
async fn a_stream_past_the_total_timeout_is_cut_with_an_error_event() {
    let config = BASIC.replace(
        "api_key: sk-mock-key",
        "api_key: sk-mock-key, timeouts: { total: 400ms }",
    );
    let h = Harness::start(&config).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true,
                      "mock": {"chunk_delay_ms": 100, "chunks": 40}});
    let started = std::time::Instant::now();
    let r = h.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("closed cleanly");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "cut at the deadline, not at the end"
    );
    let events = sse_data(&text);
    assert!(events.len() > 2, "events before the deadline were relayed");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout");
    let records = h.finish().await;
    assert_eq!(records[0]["error"], "upstream_timeout");
}
