//! A mock LLM provider that speaks OpenAI's wire format exactly.
//!
//! Johi's integration tests, the quick start and the load benchmark need an upstream that
//! answers like OpenAI, deterministically, quickly, and that can be told to misbehave on
//! demand. This crate is that upstream. It is served with hyper directly (HTTP/1.1 and h2c
//! on the same port) rather than through a framework, because some faults need the
//! connection to be closed without any response at all.
//!
//! # Routes
//!
//! | Route | Answer |
//! |---|---|
//! | `POST /v1/chat/completions` | `chat.completion`, or a `chat.completion.chunk` SSE stream with `"stream": true` |
//! | `POST /v1/messages` | Anthropic's Messages API: a `message`, or its event stream with `"stream": true`; errors (the `status`/`fail_first` knobs) in Anthropic's shape |
//! | `POST /model/{id}/converse`, `/model/{id}/converse-stream` | AWS Bedrock's Converse API: a Converse response, or binary event-stream frames; requests must be SigV4-signed with [`MOCK_AWS_ACCESS_KEY_ID`] / [`MOCK_AWS_SECRET_ACCESS_KEY`] (service `bedrock`, else a 403 in Bedrock's shape); declared tools get one tool call to the first tool; errors in Bedrock's shape (`{"message"}`, `x-amzn-errortype`) |
//! | `POST /model/{id}/invoke` | Bedrock's InvokeModel for embedding models: Titan Text (`inputText` → `embedding`, `inputTextTokenCount`) and Cohere Embed (`texts` → `embeddings`, no token count), with the Cohere route's deterministic vectors; SigV4-checked like Converse, counted with embeddings; other models get a `ValidationException` |
//! | `POST /v1/completions` | legacy `text_completion`, streaming likewise |
//! | `POST /v1/embeddings` | deterministic, L2-normalised vectors (`float` or `base64`) |
//! | `GET /v1/models`, `GET /v1/models/{id}` | `mock-small` and `mock-large`; any id is "found" |
//! | `GET /_mock/stats` | [`Stats`] as JSON |
//! | `GET /_mock/requests` | the recorded requests ([`RecordedRequest`]) as a JSON array |
//! | `POST /_mock/reset` | clears stats, recordings and `fail_first` counters |
//!
//! Unknown paths get a 404 and a body that does not parse as JSON gets a 400, both in
//! OpenAI's error shape. The `/_mock/*` control routes are neither counted nor recorded.
//!
//! # Deterministic replies and token counts
//!
//! The reply is the `reply` knob, or else
//! `"This is a deterministic reply from the Johi mock upstream."`. Streams send one content
//! chunk per reply word, each carrying the whitespace before it, so concatenating the deltas
//! gives the reply back exactly.
//!
//! Token counts are simple so tests can predict them:
//!
//! * prompt tokens, chat: the number of whitespace-separated words in every message's
//!   content (a string, or the `text` of each content part), plus 3 per message;
//! * prompt tokens, completions: the words of the prompt (a string or an array of strings;
//!   an array of token ids counts one per id);
//! * prompt tokens, embeddings: the words of each input string, or the number of ids of
//!   each token-array input;
//! * completion tokens: the number of reply words actually emitted. `max_completion_tokens`
//!   (or `max_tokens`) truncates the reply to that many words, with finish reason `length`.
//!
//! `n` is ignored: there is always exactly one choice.
//!
//! # Tool calls
//!
//! When a chat or Messages request declares tools and its last message is not a tool
//! result, the answer is one call to the first tool, its `required` properties filled from
//! the schema (`"mock"`, `1`, `true`, `[]`, `{}` by type), finish reason `tool_calls` /
//! `tool_use`; streamed, the arguments come in two deltas. See
//! `docs/mock-upstream.md`.
//!
//! # Fault knobs
//!
//! Every knob can be given as a request header `x-mock-<name>` (underscores written as
//! hyphens, e.g. `x-mock-latency-ms`) or in the JSON body as `"mock": {"<name>": ...}`; the
//! body wins. The `mock` body field has no other effect on the answer. An unknown knob name
//! or an unparsable value is answered with a 400, so typos in tests fail loudly.
//!
//! | Knob | Effect |
//! |---|---|
//! | `latency_ms` | sleep this long before sending the response head |
//! | `status` | answer with this status and an OpenAI error body |
//! | `error_body` | raw body for `status` (and `fail_first`) errors |
//! | `drop` | `"before_response"`: close the connection without answering (h2: reset the stream) |
//! | `stream_cut_after` | abort the connection (h2: reset the stream) after this many stream events, so no `[DONE]` |
//! | `stream_no_done` | end the stream cleanly, but without `data: [DONE]` |
//! | `chunk_delay_ms` | sleep between stream events |
//! | `chunks` | number of content chunks, cycling through the reply words |
//! | `reply` | the reply text |
//! | `fail_first` | the first N requests carrying this knob get a 503, later ones succeed |
//! | `fail_key` | the counter `fail_first` uses (default `"default"`) |
//!
//! Knobs are applied in this order: `latency_ms`, `drop`, `fail_first`, `status`, then the
//! route itself.

mod body;
mod knobs;
mod reply;
mod routes;
mod server;
mod state;
mod tools;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::Shared;

/// The access key id the Bedrock routes accept (SigV4); tests configure the gateway with it.
pub const MOCK_AWS_ACCESS_KEY_ID: &str = "AKIAJOHIMOCK00000000";

/// The secret the Bedrock routes check signatures against; any other secret gets a 403.
pub const MOCK_AWS_SECRET_ACCESS_KEY: &str = "johi/mock/secret/access/key/0000000000000";

/// How many requests the mock keeps when recording: enough for any test, bounded so a
/// long benchmark cannot grow memory without limit.
pub const RECORD_CAPACITY: usize = 512;

/// How long [`run`] lets in-flight requests finish after a shutdown signal.
const GRACE_PERIOD: Duration = Duration::from_secs(5);

/// A running mock upstream, serving on a spawned tokio task.
///
/// Tests start one per test on port 0 and point the gateway at [`MockUpstream::base_url`].
/// Dropping it stops the server and closes its connections, so a test can also simulate an
/// upstream that went away.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let mock = johi_mock::MockUpstream::start("127.0.0.1:0".parse().expect("address")).await?;
/// assert!(mock.base_url().starts_with("http://127.0.0.1:"));
/// assert_eq!(mock.stats(), johi_mock::Stats::default());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    /// Dropping the sender tells every connection task to stop at once.
    _shutdown: watch::Sender<bool>,
}

impl MockUpstream {
    /// Binds `addr` (port 0 picks a free port) and serves in a spawned tokio task until the
    /// returned value is dropped. Records requests (see [`MockOptions`]).
    pub async fn start(addr: SocketAddr) -> std::io::Result<MockUpstream> {
        Self::start_with(addr, MockOptions::default()).await
    }

    /// Like [`MockUpstream::start`], with explicit options (e.g. no recording for benchmarks).
    pub async fn start_with(
        addr: SocketAddr,
        options: MockOptions,
    ) -> std::io::Result<MockUpstream> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(&options));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, Arc::clone(&shared), rx));
        Ok(MockUpstream {
            addr,
            shared,
            task,
            _shutdown: tx,
        })
    }

    /// The address actually bound (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL to configure a client or the gateway with, e.g.
    /// `http://127.0.0.1:PORT/v1`. An unspecified bind address is replaced by loopback so
    /// the URL is always connectable.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}/v1", SocketAddr::new(ip, self.addr.port()))
    }

    /// A snapshot of the counters, so tests can assert how many calls reached the upstream.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The recorded requests, oldest first (at most [`RECORD_CAPACITY`]; empty when
    /// recording is off), so tests can check what the gateway actually forwarded.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Clears the counters, the recorded requests and the `fail_first` counters, so one mock
    /// can serve several phases of a test.
    pub fn reset(&self) {
        self.shared.reset();
    }
}

impl Drop for MockUpstream {
    /// Stops accepting and closes every open connection (the dropped watch sender wakes the
    /// connection tasks), so the port goes dead as a real upstream outage would.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Options for [`MockUpstream::start_with`] and [`run`].
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Keep the last [`RECORD_CAPACITY`] requests for [`MockUpstream::requests`]. Default
    /// `true`; the benchmark turns it off so recording costs nothing.
    pub record: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions { record: true }
    }
}

/// Counters of what reached the mock, for assertions in tests and sanity checks in the
/// benchmark. The `/_mock/*` control routes are not counted.
#[derive(Clone, Debug, Default, serde::Serialize, PartialEq)]
pub struct Stats {
    /// Every request outside `/_mock/*`, including ones answered by a fault knob or a 404.
    pub requests: u64,
    /// Requests to `POST /v1/chat/completions` (and Cohere's `POST /v2/chat`), counted on
    /// arrival (before fault knobs).
    pub chat: u64,
    /// Requests to `POST /v1/messages` (Anthropic's Messages API), counted on arrival.
    pub messages: u64,
    /// Requests to Bedrock's `converse` and `converse-stream` routes, counted on arrival.
    pub converse: u64,
    /// Requests to `POST /v1/completions`, counted on arrival.
    pub completions: u64,
    /// Requests to `POST /v1/embeddings` (and Cohere's `POST /v2/embed`), counted on arrival.
    pub embeddings: u64,
    /// Requests to `GET /v1/models` and `GET /v1/models/{id}`, counted on arrival.
    pub models: u64,
    /// Streaming responses whose head was sent.
    pub streams_started: u64,
    /// Streams sent to their end (`[DONE]`, or the last event with `stream_no_done`).
    pub streams_completed: u64,
    /// Streams whose body was dropped before it was fully sent: the client (or the gateway)
    /// disconnected mid-stream. Streams aborted on purpose by `stream_cut_after` are not
    /// counted here.
    pub streams_cancelled: u64,
    /// TCP connections accepted, so tests can check that a client reuses its connections.
    pub connections: u64,
}

/// One request as the mock received it, so tests can assert on what the gateway forwarded.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecordedRequest {
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// The request path without the query string, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The query string, if any (e.g. Azure's `api-version=2024-10-21`).
    pub query: Option<String>,
    /// Request headers by lowercase name; repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON, or `Null` when it is empty or not JSON.
    pub body: serde_json::Value,
}

/// Serves the mock on `addr` until ctrl-c or SIGTERM, for the CLI (`johi mock`) and the
/// quick start. In-flight requests get a short grace period to finish.
pub async fn run(addr: SocketAddr, options: MockOptions) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let shared = Arc::new(Shared::new(&options));
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(server::serve(listener, shared, rx));
    tracing::info!(addr = %local, "johi mock upstream listening");

    shutdown_signal().await?;
    tracing::info!("johi mock upstream shutting down");
    // Tell the accept loop and connections to finish gracefully, then wait until every
    // receiver (one per task) is gone, or the grace period ends.
    let _ = tx.send(true);
    let _ = tokio::time::timeout(GRACE_PERIOD, tx.closed()).await;
    task.abort();
    Ok(())
}

/// Resolves on ctrl-c, or on SIGTERM on unix (how containers and process managers stop us).
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            res = tokio::signal::ctrl_c() => res,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
