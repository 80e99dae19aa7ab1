//! The upstream connection pool: connections are kept alive and reused, a broken or
//! abandoned one is never reused, and an upstream that closed its side is reconnected to
//! without the client noticing.

use futures_util::StreamExt;
use johi_mock::MockUpstream;
use johi_testkit::{Harness, BASIC};
use serde_json::{json, Value};

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

#[tokio::test]
async fn sequential_requests_and_streams_share_one_upstream_connection() {
    let h = Harness::start(BASIC).await;
    for i in 0..4 {
        let r = h.post("/v1/chat/completions", &chat(json!({}))).await;
        assert_eq!(r.status(), 200, "request {i}");
        r.bytes().await.unwrap();
        let r = h
            .post("/v1/chat/completions", &chat(json!({"stream": true})))
            .await;
        assert_eq!(r.status(), 200, "stream {i}");
        assert!(String::from_utf8_lossy(&r.bytes().await.unwrap()).contains("[DONE]"));
    }
    let r = h
        .post("/v1/embeddings", &json!({"model": "e", "input": "x"}))
        .await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let stats = h.mock.stats();
    assert_eq!(stats.chat, 8);
    assert_eq!(stats.connections, 1, "{stats:?}");
}

#[tokio::test]
async fn concurrent_requests_open_connections_that_later_requests_reuse() {
    let h = Harness::start(BASIC).await;
    let slow = chat(json!({"mock": {"latency_ms": 200}}));
    for round in 0..2 {
        let answers =
            futures_util::future::join_all((0..6).map(|_| h.post("/v1/chat/completions", &slow)))
                .await;
        for r in answers {
            assert_eq!(r.status(), 200, "round {round}");
            r.bytes().await.unwrap();
        }
    }
    let stats = h.mock.stats();
    assert_eq!(stats.chat, 12);
    assert_eq!(
        stats.connections, 6,
        "six overlapping requests need six connections, and the second round reuses them"
    );
}

#[tokio::test]
async fn an_upstream_error_answer_leaves_the_connection_reusable() {
    let h = Harness::start(BASIC).await;
    let r = h
        .post(
            "/v1/chat/completions",
            &chat(json!({"mock": {"status": 400}})),
        )
        .await;
    assert_eq!(r.status(), 400);
    r.bytes().await.unwrap();
    let r = h.post("/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    assert_eq!(h.mock.stats().connections, 1);
}

#[tokio::test]
async fn a_connection_whose_stream_was_abandoned_or_broken_is_not_reused() {
    let h = Harness::start(BASIC).await;
    // The client walks away mid-stream: the upstream connection is closed, not pooled.
    let r = h
        .post(
            "/v1/chat/completions",
            &chat(json!({"stream": true, "mock": {"chunk_delay_ms": 50, "chunks": 40}})),
        )
        .await;
    let mut stream = r.bytes_stream();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    // The upstream cuts its stream half-way: that connection is not reused either.
    let r = h
        .post(
            "/v1/chat/completions",
            &chat(json!({"stream": true, "mock": {"stream_cut_after": 2}})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned();
    assert!(text.contains("\"error\""), "{text}");
    for i in 0..3 {
        let r = h.post("/v1/chat/completions", &chat(json!({}))).await;
        assert_eq!(r.status(), 200, "request {i} after the broken ones");
        r.bytes().await.unwrap();
    }
    assert_eq!(
        h.mock.stats().connections,
        3,
        "one per broken exchange, then one reused by the three good requests"
    );
}

#[tokio::test]
async fn an_upstream_that_restarted_is_reconnected_to_transparently() {
    let mut h = Harness::start(BASIC).await;
    let r = h.post("/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();

    // The provider restarts: its end of the pooled connection is closed while idle.
    let addr = h.mock.addr();
    let placeholder = MockUpstream::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    drop(std::mem::replace(&mut h.mock, placeholder));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    h.mock = MockUpstream::start(addr).await.unwrap();

    let r = h.post("/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(
        r.status(),
        200,
        "the closed connection is noticed, not used"
    );
    r.bytes().await.unwrap();
    assert_eq!(h.mock.stats().connections, 1);
    let records = h.finish().await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["status"], 200);
    assert_eq!(records[1]["attempts"], 1, "{}", records[1]);
}
