//! The floor forwards as a bare proxy should, over real HTTP to the mock upstream: answers
//! and streams arrive whole, one upstream connection carries a client's sequential requests
//! (the benchmark's figures depend on it), and an unreachable upstream is a 502.

#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use johi_mock::MockUpstream;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

/// A TCP relay in front of `target` that counts the connections made through it.
async fn counting_relay(target: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = listener.local_addr().expect("relay address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, accepted)
}

/// Starts the floor in front of `upstream` (`host:port`) and returns its address.
async fn floor(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind floor");
    let addr = listener.local_addr().expect("floor address");
    let uri = format!("http://{upstream}").parse().expect("upstream URI");
    tokio::spawn(johi_bench_floor::serve(listener, uri));
    addr
}

/// POSTs a one-message chat (streamed or not) to the floor at `floor`.
async fn chat(client: &reqwest::Client, floor: SocketAddr, stream: bool) -> reqwest::Response {
    client
        .post(format!("http://{floor}/v1/chat/completions"))
        .json(&json!({
            "model": "mock-small",
            "messages": [{"role": "user", "content": "Hello"}],
            "stream": stream,
        }))
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn answers_and_streams_arrive_whole_on_one_upstream_connection() {
    let mock = MockUpstream::start("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("mock");
    let (relay, connections) = counting_relay(mock.addr()).await;
    let floor = floor(relay).await;
    let client = reqwest::Client::new();

    for _ in 0..5 {
        let answer = chat(&client, floor, false).await;
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.expect("JSON answer");
        assert_eq!(body["object"], "chat.completion");
        assert!(body["usage"]["total_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0));
    }
    let stream = chat(&client, floor, true).await;
    assert_eq!(stream.status(), 200);
    let text = stream.text().await.expect("stream body");
    assert!(text.starts_with("data: {"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    assert_eq!(mock.stats().chat, 6);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "sequential requests reuse one upstream connection"
    );
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502() {
    // A port with nothing listening: bind one, note it, let it go.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("address");
    let floor = floor(closed).await;
    let answer = chat(&reqwest::Client::new(), floor, false).await;
    assert_eq!(answer.status(), 502);
}
