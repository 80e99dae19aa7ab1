//! Response bodies: a plain buffer, or an SSE stream that notices being dropped early.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::Serialize;
use tokio::time::Sleep;

use crate::state::{bump, Shared};

/// The final SSE event of an OpenAI stream.
const DONE: &[u8] = b"data: [DONE]\n\n";

/// Encodes one SSE event: `data: <json>\n\n`.
pub(crate) fn sse_event<T: Serialize>(value: &T) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"data: ");
    // Serialising our own plain structs cannot fail; an empty object keeps the stream valid
    // should it ever happen.
    if serde_json::to_writer(&mut buf, value).is_err() {
        buf.truncate(6);
        buf.extend_from_slice(b"{}");
    }
    buf.extend_from_slice(b"\n\n");
    Bytes::from(buf)
}

/// The events of one stream before `[DONE]`, generated lazily so long streams (the `chunks`
/// knob) cost no memory up front.
pub(crate) trait EventSource: Send + 'static {
    /// Number of events, not counting `[DONE]`.
    fn len(&self) -> usize;
    /// Event `i` (`i < len()`), already encoded with [`sse_event`].
    fn event(&self, i: usize) -> Bytes;
    /// Whether the stream ends with `data: [DONE]` (OpenAI's), or just stops (Anthropic's
    /// ends with its `message_stop` event).
    fn done(&self) -> bool {
        true
    }
}

/// Stream-shaping knobs.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StreamShape {
    /// Abort after this many events.
    pub cut_after: Option<u32>,
    /// Leave out `data: [DONE]`.
    pub no_done: bool,
    /// Pause between events.
    pub delay: Option<Duration>,
}

/// The body error used to abort a stream on purpose: hyper then drops the connection (or
/// resets the h2 stream), so the client sees a truncated body.
#[derive(Debug)]
pub(crate) struct StreamCut;

impl std::fmt::Display for StreamCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stream cut by the stream_cut_after mock knob")
    }
}

impl std::error::Error for StreamCut {}

/// Where a stream is in its life, for the stats kept on drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Every event handed to hyper.
    Completed,
    /// Aborted by `stream_cut_after`.
    Cut,
}

/// An SSE stream body. Dropping it while still [`Phase::Running`] means the client went
/// away mid-stream, which is counted as a cancelled stream.
pub(crate) struct SseBody {
    source: Box<dyn EventSource>,
    shape: StreamShape,
    /// Events sent so far (including `[DONE]`).
    sent: usize,
    /// Events in total (including `[DONE]` unless `no_done`).
    total: usize,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether the cut point already yielded once so hyper could flush what came before.
    cut_pending: bool,
    phase: Phase,
    shared: Arc<Shared>,
}

impl SseBody {
    /// Starts a stream (counted in `streams_started`).
    pub(crate) fn new(
        source: Box<dyn EventSource>,
        shape: StreamShape,
        shared: Arc<Shared>,
    ) -> Self {
        bump(&shared.counters.streams_started);
        let total = source.len() + usize::from(!shape.no_done && source.done());
        let mut body = SseBody {
            source,
            shape,
            sent: 0,
            total,
            sleep: None,
            cut_pending: false,
            phase: Phase::Running,
            shared,
        };
        if total == 0 {
            body.complete();
        }
        body
    }

    fn complete(&mut self) {
        self.phase = Phase::Completed;
        bump(&self.shared.counters.streams_completed);
    }

    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamCut>>> {
        if self.phase != Phase::Running {
            return Poll::Ready(None);
        }
        if let Some(cut) = self.shape.cut_after {
            if self.sent >= cut as usize && self.sent < self.total {
                if !self.cut_pending {
                    // Yield once so the events before the cut are flushed to the socket
                    // before the connection is torn down.
                    self.cut_pending = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                self.phase = Phase::Cut;
                return Poll::Ready(Some(Err(StreamCut)));
            }
        }
        if self.sent >= self.total {
            self.complete();
            return Poll::Ready(None);
        }
        if let (Some(delay), true) = (self.shape.delay, self.sent > 0) {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            ready!(sleep.as_mut().poll(cx));
            self.sleep = None;
        }
        let event = if self.sent < self.source.len() {
            self.source.event(self.sent)
        } else {
            Bytes::from_static(DONE)
        };
        self.sent += 1;
        if self.sent == self.total {
            self.complete();
        }
        Poll::Ready(Some(Ok(Frame::data(event))))
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        if self.phase == Phase::Running {
            bump(&self.shared.counters.streams_cancelled);
        }
    }
}

/// Every response body the mock sends.
pub(crate) enum MockBody {
    /// A complete body, sent as one frame (`None` once sent).
    Full(Option<Bytes>),
    /// A server-sent-events stream.
    Sse(Box<SseBody>),
}

impl MockBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        MockBody::Full(Some(bytes.into()))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = StreamCut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamCut>>> {
        match self.get_mut() {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Sse(sse) => sse.poll_event(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full(bytes) => bytes.is_none(),
            MockBody::Sse(sse) => sse.phase != Phase::Running,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Sse(_) => SizeHint::default(),
        }
    }
}
