//! The audit/usage record: one JSON line per request, written at completion by a background
//! writer so that a slow disk never delays a request.
//!
//! Each record is serialised where it is made (about a microsecond, spread evenly over
//! requests) into the thread's scratch line and appended to one shared batch of bytes: no
//! allocation and no queue node per record, and the lines waiting for the disk sit packed in
//! one buffer instead of thousands of small ones (as separate allocations they kept the
//! allocator on its slow path: about 1 % of a request's CPU, measured with `perf`). If the
//! writer falls behind by more than `audit.buffer` records, new records are dropped and
//! counted (`dropped()`), never waited on. The writer takes the batch on a timer
//! ([`FLUSH_INTERVAL`]) rather than being woken per record, and writes it with one call on
//! the blocking pool, so it never holds the runtime thread long enough to show in the
//! latency tail (serialising a whole batch at once did: a few milliseconds every tick). The
//! two buffers trade places each tick and keep their capacity, so a steady load allocates
//! nothing. On graceful shutdown the writer takes what is left and flushes before the
//! process exits.

use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use johi_config::AuditConfig;
use johi_core::exchange::Outcome;
use johi_core::{Exchange, Facet, FacetSet};
use johi_pipeline::{Category, Contract, FailureMode, Processor, RetryScope};

use serde::{Serialize, Serializer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often the writer drains the queue. Records reach the file at most this late.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// One request's record, as written. It borrows from the exchange: nothing is copied to
/// make it, only to write it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRecord<'a> {
    /// When the request arrived (written as RFC 3339, UTC, milliseconds — formatted by the
    /// writer, off the request path).
    #[serde(serialize_with = "rfc3339")]
    pub ts: SystemTime,
    /// Request ID (also in the response's `x-request-id`).
    pub request_id: &'a str,
    /// W3C trace ID.
    pub trace_id: Option<&'a str>,
    /// Organisation the request is attributed to.
    pub organization: Option<&'a str>,
    /// Team, from the credential.
    pub team: Option<&'a str>,
    /// Project, from the credential.
    pub project: Option<&'a str>,
    /// End user, from the credential.
    pub user: Option<&'a str>,
    /// How the caller authenticated (`api_key`, `anonymous`, …).
    pub auth: Option<&'static str>,
    /// The credential's ID (a key's `id`), never the secret.
    pub credential_id: Option<&'a str>,
    /// Service tier.
    pub service_tier: Option<&'a str>,
    /// Operation, e.g. `chat.completions`.
    pub endpoint: &'static str,
    /// Logical model requested.
    pub model: Option<&'a str>,
    /// Provider of the last attempt.
    pub provider: Option<&'a str>,
    /// Upstream model name of the last attempt.
    pub upstream_model: Option<&'a str>,
    /// HTTP status returned to the client (499 if the client went away).
    pub status: u16,
    /// Error kind, when the request failed.
    pub error: Option<&'static str>,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Whether the response was streamed.
    pub stream: bool,
    /// Whether the client went away before the end.
    pub cancelled: bool,
    /// Total time in Johi, milliseconds.
    pub latency_ms: f64,
    /// Time to the first upstream body byte, milliseconds.
    pub ttft_ms: Option<f64>,
    /// Prompt tokens, from the provider's `usage`.
    pub input_tokens: Option<u64>,
    /// Generated tokens, from the provider's `usage`.
    pub output_tokens: Option<u64>,
    /// Cached prompt tokens.
    pub cached_tokens: Option<u64>,
    /// Reasoning tokens.
    pub reasoning_tokens: Option<u64>,
}

/// The bytes a JSON string must escape: control characters, `"` and `\\`.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

fn rfc3339<S: Serializer>(ts: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_millis(*ts))
}

impl AuditRecord<'_> {
    /// Writes the record as one JSON object, exactly as its `Serialize` derive would, but
    /// with the keys written as the literals they are: serde escapes every key and value,
    /// and the record has 24 of each on every request.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        /// `,"name":` as one literal: one copy per key instead of three.
        macro_rules! key {
            ($name:literal) => {
                concat!(",\"", $name, "\":").as_bytes()
            };
        }
        fn field<T: Serialize + ?Sized>(
            out: &mut Vec<u8>,
            key: &[u8],
            value: &T,
        ) -> serde_json::Result<()> {
            out.extend_from_slice(key);
            serde_json::to_writer(&mut *out, value)
        }
        /// A count, or `null`: written with `itoa`, without serde's serializer per field.
        fn count(out: &mut Vec<u8>, key: &[u8], value: Option<u64>) {
            out.extend_from_slice(key);
            match value {
                Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
        }
        fn flag(out: &mut Vec<u8>, key: &[u8], value: bool) {
            out.extend_from_slice(key);
            out.extend_from_slice(if value { b"true" } else { b"false" });
        }
        /// A text field: copied as it is when nothing in it needs escaping (IDs and names,
        /// nearly always), else escaped by serde.
        fn text(out: &mut Vec<u8>, key: &[u8], value: Option<&str>) -> serde_json::Result<()> {
            match value {
                None => {
                    out.extend_from_slice(key);
                    out.extend_from_slice(b"null");
                    Ok(())
                }
                Some(v) if !v.bytes().any(|b| NEEDS_ESCAPE[usize::from(b)]) => {
                    out.extend_from_slice(key);
                    out.push(b'"');
                    out.extend_from_slice(v.as_bytes());
                    out.push(b'"');
                    Ok(())
                }
                Some(v) => field(out, key, v),
            }
        }
        out.extend_from_slice(b"{\"ts\":\"");
        write!(out, "{}", humantime::format_rfc3339_millis(self.ts))
            .map_err(serde_json::Error::io)?;
        out.push(b'"');
        text(out, key!("request_id"), Some(self.request_id))?;
        text(out, key!("trace_id"), self.trace_id)?;
        text(out, key!("organization"), self.organization)?;
        text(out, key!("team"), self.team)?;
        text(out, key!("project"), self.project)?;
        text(out, key!("user"), self.user)?;
        text(out, key!("auth"), self.auth)?;
        text(out, key!("credential_id"), self.credential_id)?;
        text(out, key!("service_tier"), self.service_tier)?;
        text(out, key!("endpoint"), Some(self.endpoint))?;
        text(out, key!("model"), self.model)?;
        text(out, key!("provider"), self.provider)?;
        text(out, key!("upstream_model"), self.upstream_model)?;
        count(out, key!("status"), Some(u64::from(self.status)));
        text(out, key!("error"), self.error)?;
        count(out, key!("attempts"), Some(u64::from(self.attempts)));
        flag(out, key!("stream"), self.stream);
        flag(out, key!("cancelled"), self.cancelled);
        field(out, key!("latency_ms"), &self.latency_ms)?;
        field(out, key!("ttft_ms"), &self.ttft_ms)?;
        count(out, key!("input_tokens"), self.input_tokens);
        count(out, key!("output_tokens"), self.output_tokens);
        count(out, key!("cached_tokens"), self.cached_tokens);
        count(out, key!("reasoning_tokens"), self.reasoning_tokens);
        out.push(b'}');
        Ok(())
    }
}

/// Records serialised and waiting for the writer: newline-terminated JSON lines, packed.
#[derive(Debug, Default)]
struct Batch {
    lines: Vec<u8>,
    records: u64,
}

/// The batch the sinks append to and the writer takes, with its bound.
#[derive(Debug)]
struct Pending {
    batch: Mutex<Batch>,
    /// Most records waiting at once (`audit.buffer`); past it new ones are dropped.
    capacity: u64,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, Batch> {
        // Appends and swaps only, each leaving the batch whole: a poisoned lock holds a
        // consistent batch.
        self.batch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Swaps the waiting batch with `spare` (emptied, its capacity kept) and returns how many
    /// records `spare` now holds.
    fn take(&self, spare: &mut Vec<u8>) -> u64 {
        spare.clear();
        let mut batch = self.lock();
        std::mem::swap(&mut batch.lines, spare);
        std::mem::take(&mut batch.records)
    }
}

thread_local! {
    /// The line being serialised on this thread, reused for every record: the shared batch
    /// is locked only for the copy, not for the serialisation.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// The sending side of the audit queue; cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct AuditSink {
    pending: Arc<Pending>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl AuditSink {
    /// Serialises and queues a record, or drops and counts it if the writer is behind.
    pub fn submit(&self, record: &AuditRecord<'_>) {
        SCRATCH.with(|scratch| {
            let mut line = scratch.borrow_mut();
            line.clear();
            if record.write_json(&mut line).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            line.push(b'\n');
            let mut batch = self.pending.lock();
            if batch.records >= self.pending.capacity {
                drop(batch);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            batch.lines.extend_from_slice(&line);
            batch.records += 1;
        });
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records written to the file so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

/// The background writer task; [`AuditWriter::shutdown`] drains and flushes it.
pub struct AuditWriter {
    config: AuditConfig,
    sink: AuditSink,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl AuditWriter {
    /// Opens (creating, appending) the file and starts the writer.
    pub async fn spawn(config: &AuditConfig) -> std::io::Result<AuditWriter> {
        let path = config.path.clone();
        let file = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
        })
        .await
        .map_err(std::io::Error::other)??;
        let pending = Arc::new(Pending {
            batch: Mutex::new(Batch::default()),
            capacity: config.buffer.max(1) as u64,
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let written = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(write_loop(
            file,
            pending.clone(),
            stop_rx,
            written.clone(),
            config.path.clone(),
        ));
        Ok(AuditWriter {
            config: config.clone(),
            sink: AuditSink {
                pending,
                dropped: Arc::new(AtomicU64::new(0)),
                written,
            },
            stop: Some(stop_tx),
            task,
        })
    }

    /// A sink feeding this writer.
    pub fn sink(&self) -> AuditSink {
        self.sink.clone()
    }

    /// The config this writer was started with (a reload reuses it when unchanged).
    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// Writes everything queued so far, flushes, and stops.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn write_loop(
    mut file: std::fs::File,
    pending: Arc<Pending>,
    mut stop: oneshot::Receiver<()>,
    written: Arc<AtomicU64>,
    path: PathBuf,
) {
    let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The buffer the sinks fill next; it trades places with the waiting batch each tick.
    let mut spare = Vec::with_capacity(256 * 1024);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = &mut stop => true,
        };
        let count = pending.take(&mut spare);
        if count > 0 {
            let batch = std::mem::take(&mut spare);
            let result = tokio::task::spawn_blocking(move || {
                let outcome = file.write_all(&batch);
                (file, batch, outcome)
            })
            .await;
            let Ok((returned, batch, outcome)) = result else {
                tracing::error!(path = %path.display(), "audit writer task failed; auditing stops");
                return;
            };
            file = returned;
            spare = batch;
            match outcome {
                Ok(()) => {
                    written.fetch_add(count, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, records = count, "audit write failed; records lost");
                }
            }
        }
        if stopping {
            let _ = tokio::task::spawn_blocking(move || file.sync_data()).await;
            return;
        }
    }
}

/// The audit processor: an observer that only acts at completion.
pub struct Audit {
    contract: Contract,
    sink: Option<AuditSink>,
}

impl Audit {
    /// Builds the processor; without a sink records are discarded (audit not configured).
    pub fn new(sink: Option<AuditSink>) -> Self {
        Audit {
            contract: Contract {
                name: "audit",
                category: Category::Observe,
                reads: FacetSet::of(&[Facet::Identity, Facet::Model, Facet::Endpoint]),
                writes: FacetSet::EMPTY,
                retry: RetryScope::Once,
                on_failure: FailureMode::FailOpen,
            },
            sink,
        }
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

impl Processor for Audit {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    fn has_request_phase(&self) -> bool {
        false
    }

    fn on_complete(&self, ex: &Exchange, outcome: &Outcome) {
        let Some(sink) = &self.sink else { return };
        let target = ex.target();
        let identity = ex.identity.as_deref();
        let elapsed = ex.started.elapsed();
        let now = SystemTime::now();
        sink.submit(&AuditRecord {
            ts: now.checked_sub(elapsed).unwrap_or(now),
            request_id: &ex.request_id,
            trace_id: ex.trace.as_ref().map(|t| t.trace_id.as_str()),
            organization: ex.organization.as_deref(),
            team: identity.and_then(|i| i.team.as_deref()),
            project: identity.and_then(|i| i.project.as_deref()),
            user: identity.and_then(|i| i.user.as_deref()),
            auth: identity.map(|i| i.method.as_str()),
            credential_id: identity.and_then(|i| i.credential_id.as_deref()),
            service_tier: ex.service_tier.as_deref(),
            endpoint: ex
                .extensions
                .get::<johi_core::api::ClientEndpoint>()
                .map_or(ex.api.as_str(), |e| e.0),
            model: ex.model.as_deref(),
            provider: target.map(|t| t.provider.name.as_str()),
            upstream_model: target.map(|t| t.model.as_str()),
            status: outcome.status.as_u16(),
            error: outcome.error.as_ref().map(|e| e.kind()),
            attempts: outcome.attempts,
            stream: ex.stream,
            cancelled: outcome.cancelled,
            latency_ms: millis(elapsed),
            ttft_ms: ex.time_to_first_byte.map(millis),
            input_tokens: ex.usage.map(|u| u.input_tokens),
            output_tokens: ex.usage.map(|u| u.output_tokens),
            cached_tokens: ex.usage.map(|u| u.cached_tokens),
            reasoning_tokens: ex.usage.map(|u| u.reasoning_tokens),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use johi_core::{Api, Usage};

    #[test]
    fn the_hand_written_record_is_what_serde_writes() {
        let full = AuditRecord {
            ts: SystemTime::UNIX_EPOCH + Duration::from_millis(1_765_000_000_123),
            request_id: "req_\"quoted\"\n",
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            organization: Some("acme é ✓"),
            team: Some("t\u{1}"),
            project: None,
            user: Some("u\\"),
            auth: Some("api_key"),
            credential_id: Some("k1"),
            service_tier: None,
            endpoint: "chat.completions",
            model: Some("m"),
            provider: Some("p"),
            upstream_model: Some("um"),
            status: 200,
            error: None,
            attempts: 2,
            stream: true,
            cancelled: false,
            latency_ms: 1.234,
            ttft_ms: Some(0.5),
            input_tokens: Some(10),
            output_tokens: Some(u64::MAX),
            cached_tokens: None,
            reasoning_tokens: Some(0),
        };
        let empty = AuditRecord {
            request_id: "",
            trace_id: None,
            organization: None,
            team: None,
            user: None,
            auth: None,
            credential_id: None,
            model: None,
            provider: None,
            upstream_model: None,
            error: Some("upstream_timeout"),
            latency_ms: f64::NAN,
            ttft_ms: None,
            input_tokens: None,
            output_tokens: None,
            reasoning_tokens: None,
            ..full.clone()
        };
        for record in [full, empty] {
            let mut hand = Vec::new();
            record.write_json(&mut hand).unwrap();
            assert_eq!(
                String::from_utf8(hand).unwrap(),
                serde_json::to_string(&record).unwrap()
            );
        }
    }

    /// A writer to `file` in `dir` holding at most `buffer` records, and an audit processor
    /// feeding it.
    async fn started(
        dir: &tempfile::TempDir,
        file: &str,
        buffer: usize,
    ) -> (AuditConfig, AuditWriter, Audit) {
        let config = AuditConfig {
            path: dir.path().join(file),
            buffer,
        };
        let writer = AuditWriter::spawn(&config).await.unwrap();
        let audit = Audit::new(Some(writer.sink()));
        (config, writer, audit)
    }

    #[tokio::test]
    async fn records_are_written_and_flushed_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (config, writer, audit) = started(&dir, "sub/audit.jsonl", 4).await;
        let mut ex = Exchange::new(Api::Embeddings, HeaderMap::new(), Bytes::new());
        ex.request_id = "req_1".into();
        ex.usage = Some(Usage {
            input_tokens: 5,
            ..Usage::default()
        });
        for _ in 0..3 {
            audit.on_complete(&ex, &Outcome::ok(StatusCode::OK, 1));
        }
        let sink = writer.sink();
        writer.shutdown().await;
        let text = std::fs::read_to_string(&config.path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64 + sink.dropped(), 3);
        assert_eq!(lines[0]["request_id"], "req_1");
        assert_eq!(lines[0]["endpoint"], "embeddings");
        assert_eq!(lines[0]["input_tokens"], 5);
        assert_eq!(lines[0]["status"], 200);
    }

    /// A writer behind by `buffer` records drops (and counts) the next ones, whole: the
    /// records it keeps are complete lines, and everything kept reaches the file, across
    /// several ticks. (A current-thread runtime: the writer runs only when the test yields.)
    #[tokio::test(flavor = "current_thread")]
    async fn records_past_the_buffer_are_dropped_and_counted_and_the_rest_written() {
        let dir = tempfile::tempdir().unwrap();
        let (config, writer, audit) = started(&dir, "audit.jsonl", 2).await;
        let sink = writer.sink();
        let mut ex = Exchange::new(Api::ChatCompletions, HeaderMap::new(), Bytes::new());
        for i in 0..5 {
            ex.request_id = format!("req_{i}").into();
            audit.on_complete(&ex, &Outcome::ok(StatusCode::OK, 1));
        }
        assert_eq!(sink.dropped(), 3, "only `buffer` records wait");
        // The writer takes the batch on its next tick; later records fill the emptied one.
        tokio::time::sleep(FLUSH_INTERVAL * 2).await;
        while sink.written() < 2 {
            tokio::task::yield_now().await;
        }
        ex.request_id = "req_late".into();
        audit.on_complete(&ex, &Outcome::ok(StatusCode::BAD_GATEWAY, 2));
        writer.shutdown().await;
        assert_eq!((sink.written(), sink.dropped()), (3, 3));
        let text = std::fs::read_to_string(&config.path).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| v["request_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["req_0", "req_1", "req_late"]);
    }
}
