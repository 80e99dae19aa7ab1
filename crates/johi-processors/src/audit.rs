//! The audit/usage record: one JSON line per request, written at completion by a background
//! writer so that a slow disk never delays a request.
//!
//! The hand-off is a bounded queue with `try_send`: if the writer falls behind by more than
//! `audit.buffer` records, new records are dropped and counted (`dropped()`), never waited on.
//! On graceful shutdown the writer drains the queue and flushes before the process exits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use johi_config::AuditConfig;
use johi_core::exchange::Outcome;
use johi_core::{Exchange, Facet, FacetSet};
use johi_pipeline::{Category, Contract, FailureMode, Processor, RetryScope};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// One request's record, as written.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRecord {
    /// When the request arrived (RFC 3339, UTC, milliseconds).
    pub ts: String,
    /// Request ID (also in the response's `x-request-id`).
    pub request_id: String,
    /// W3C trace ID.
    pub trace_id: Option<String>,
    /// Organisation the request is attributed to.
    pub organization: Option<String>,
    /// Service tier.
    pub service_tier: Option<String>,
    /// Operation, e.g. `chat.completions`.
    pub endpoint: &'static str,
    /// Logical model requested.
    pub model: Option<String>,
    /// Provider of the last attempt.
    pub provider: Option<String>,
    /// Upstream model name of the last attempt.
    pub upstream_model: Option<String>,
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

/// The sending side of the audit queue; cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditRecord>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl AuditSink {
    /// Queues a record, or drops and counts it if the writer is behind.
    pub fn submit(&self, record: AuditRecord) {
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
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
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .await?;
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let written = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(write_loop(
            file,
            rx,
            stop_rx,
            written.clone(),
            config.path.clone(),
        ));
        Ok(AuditWriter {
            config: config.clone(),
            sink: AuditSink {
                tx,
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
    mut file: tokio::fs::File,
    mut rx: mpsc::Receiver<AuditRecord>,
    mut stop: oneshot::Receiver<()>,
    written: Arc<AtomicU64>,
    path: PathBuf,
) {
    let mut batch = Vec::with_capacity(256);
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let stopping = tokio::select! {
            n = rx.recv_many(&mut batch, 256) => n == 0,
            _ = &mut stop => true,
        };
        if stopping {
            while let Ok(record) = rx.try_recv() {
                batch.push(record);
            }
        }
        for record in batch.drain(..) {
            if serde_json::to_writer(&mut buf, &record).is_ok() {
                buf.push(b'\n');
                written.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !buf.is_empty() {
            if let Err(e) = file.write_all(&buf).await {
                tracing::error!(path = %path.display(), error = %e, "audit write failed; records lost");
            }
            buf.clear();
        }
        if stopping {
            let _ = file.flush().await;
            let _ = file.sync_data().await;
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

    fn on_complete(&self, ex: &Exchange, outcome: &Outcome) {
        let Some(sink) = &self.sink else { return };
        let target = ex.target();
        let arrived = SystemTime::now()
            .checked_sub(ex.started.elapsed())
            .unwrap_or_else(SystemTime::now);
        sink.submit(AuditRecord {
            ts: humantime::format_rfc3339_millis(arrived).to_string(),
            request_id: ex.request_id.clone(),
            trace_id: ex.trace.as_ref().map(|t| t.trace_id.clone()),
            organization: ex.organization.clone(),
            service_tier: ex.service_tier.clone(),
            endpoint: ex.api.as_str(),
            model: ex.model.clone(),
            provider: target.map(|t| t.provider.name.clone()),
            upstream_model: target.map(|t| t.model.clone()),
            status: outcome.status.as_u16(),
            error: outcome.error.as_ref().map(|e| e.kind()),
            attempts: outcome.attempts,
            stream: ex.stream,
            cancelled: outcome.cancelled,
            latency_ms: millis(ex.started.elapsed()),
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

    #[tokio::test]
    async fn records_are_written_and_flushed_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig {
            path: dir.path().join("sub/audit.jsonl"),
            buffer: 4,
        };
        let writer = AuditWriter::spawn(&config).await.unwrap();
        let audit = Audit::new(Some(writer.sink()));
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
}
