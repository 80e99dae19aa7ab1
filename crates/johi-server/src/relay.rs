//! Relays an upstream response to the client and completes the exchange.
//!
//! Streams are passed on frame by frame as they arrive (first byte out as soon as the first
//! upstream event is in); a [`StreamScanner`] watches them for usage and `[DONE]` without
//! holding them back. If the upstream breaks mid-way, the client gets an SSE error event in
//! OpenAI's shape and a cleanly closed stream. If the client goes away, dropping the body
//! drops the upstream response, which cancels the upstream request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt;
use johi_core::exchange::Outcome;
use johi_core::GatewayError;
use johi_pipeline::Completion;
use johi_providers::codec::{self, StreamTranslate};
use johi_providers::openai::{self, StreamScanner};
use johi_providers::sse::EventFramer;
use johi_providers::usage_filter::is_usage_only;
use tokio::time::Sleep;

use crate::after::AfterResponse;
use crate::edge;
use crate::upstream::{DrivenBody, UpstreamResponse};

const UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");

/// Builds the client response for a successful upstream head.
pub async fn relay(
    mut completion: Completion,
    upstream: UpstreamResponse,
    attempts: u32,
    after: &AfterResponse,
) -> Response<Body> {
    let ex = completion.exchange();
    let (parts, body) = upstream.response.into_parts();
    let protocol = upstream.provider.protocol;
    let translated = codec::translates(protocol);
    let mut builder = Response::builder().status(parts.status);
    let content_type = if translated {
        // The body is translated: the content type is the OpenAI answer's own.
        Some(HeaderValue::from_static(if ex.stream {
            "text/event-stream; charset=utf-8"
        } else {
            "application/json"
        }))
    } else {
        parts.headers.get(CONTENT_TYPE).cloned()
    };
    let upstream_id = parts
        .headers
        .get(codec::request_id_header(protocol))
        .cloned();
    let head = ClientHead {
        content_type,
        upstream_id,
    };

    if ex.stream {
        let strip_usage = ex.usage_event_added;
        let output_allowance = ex.output_token_allowance;
        // Event by event only when something must act between events; otherwise every
        // chunk passes as it came.
        let framer = (strip_usage || output_allowance.is_some()).then(EventFramer::default);
        // A translated stream is translated chunk by chunk before anything else sees it;
        // the translator writes whole OpenAI events, so the usage filter and the scanner
        // work on its output as on an OpenAI stream's.
        let translator = translated
            .then(|| {
                // `stream_options.include_usage` (after `stream_usage` may have set it): a
                // translated stream honours it with a final usage chunk.
                let usage = ex.asks_for_stream_usage();
                codec::stream_translator(protocol, &client_model(ex), unix_now(), usage)
            })
            .flatten();
        if let Some(headers) = builder.headers_mut() {
            *headers = head.headers(ex);
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert(
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            );
        }
        let relay = StreamRelay {
            upstream: body,
            deadline: Box::pin(tokio::time::sleep_until(upstream.deadline.into())),
            provider: upstream.provider.name.clone(),
            total_ms: upstream.provider.timeouts.total.as_millis() as u64,
            scanner: StreamScanner::default(),
            completion: Some(completion),
            after: after.clone(),
            status: parts.status,
            attempts,
            flush_first: false,
            held: Vec::new(),
            held_len: 0,
            ended: None,
            framer,
            strip_usage,
            output_allowance,
            cut: None,
            translator,
        };
        return respond(builder, Body::new(relay));
    }

    let provider = upstream.provider.name.clone();
    let total_ms = upstream.provider.timeouts.total.as_millis() as u64;
    ex.time_to_first_byte = Some(ex.started.elapsed());
    match tokio::time::timeout_at(upstream.deadline.into(), body.collect()).await {
        Ok(Ok(collected)) => {
            let mut bytes = collected.to_bytes();
            let ex = completion.exchange();
            let model = client_model(ex);
            // An OpenAI answer passes as it came; only its usage is read (and the request's
            // tree, which translation needs, is not built for it).
            let decoded = translated
                .then(|| {
                    codec::decode_response(protocol, ex.api, ex.body(), &bytes, &model, unix_now())
                })
                .flatten();
            match decoded {
                None => ex.usage = openai::response_usage(&bytes),
                Some(Ok(decoded)) => {
                    // The translated answer's `usage` is the provider's, read once by the
                    // adapter: the client is shown what the ledger meters.
                    ex.usage = decoded.usage;
                    bytes = Bytes::from(decoded.body);
                }
                Some(Err(e)) => {
                    let error = GatewayError::UpstreamProtocol {
                        provider,
                        detail: e.to_string(),
                    };
                    return fail(completion, error, attempts, after);
                }
            }
            if let Some(headers) = builder.headers_mut() {
                *headers = head.headers(completion.exchange());
            }
            after.finish(completion, Outcome::ok(parts.status, attempts));
            respond(builder, Body::from(bytes))
        }
        Ok(Err(e)) => {
            let error = GatewayError::UpstreamProtocol {
                provider,
                detail: format!("response body broke off: {e}"),
            };
            fail(completion, error, attempts, after)
        }
        Err(_) => {
            let error = GatewayError::UpstreamTimeout {
                provider,
                phase: "total",
                millis: total_ms,
            };
            fail(completion, error, attempts, after)
        }
    }
}

/// The model name the client asked for, which a translated answer carries back.
fn client_model(ex: &johi_core::Exchange) -> String {
    ex.model
        .clone()
        .or_else(|| ex.route.as_ref().map(|r| r.name.clone()))
        .unwrap_or_default()
}

/// Seconds since the Unix epoch, the `created` stamp of a translated answer.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the client's response head takes from the upstream's.
struct ClientHead {
    content_type: Option<HeaderValue>,
    upstream_id: Option<HeaderValue>,
}

impl ClientHead {
    /// The client response's headers: the exchange's own (moved, not copied: once the head
    /// is written nothing reads them, and an error before it still finds them there), plus
    /// the content type and the upstream's request ID where the exchange set neither.
    fn headers(self, ex: &mut johi_core::Exchange) -> http::HeaderMap {
        let mut headers = std::mem::take(&mut ex.response_headers);
        if let Some(ct) = self.content_type {
            headers.entry(CONTENT_TYPE).or_insert(ct);
        }
        if let Some(id) = self.upstream_id {
            headers.entry(UPSTREAM_REQUEST_ID).or_insert(id);
        }
        headers
    }
}

fn respond(builder: http::response::Builder, body: Body) -> Response<Body> {
    builder.body(body).unwrap_or_else(|e| {
        edge::error_response(
            &GatewayError::Internal {
                detail: e.to_string(),
            },
            &http::HeaderMap::new(),
        )
    })
}

/// Answers with `error` and completes the exchange with it (after the answer is out).
pub fn fail(
    mut completion: Completion,
    error: GatewayError,
    attempts: u32,
    after: &AfterResponse,
) -> Response<Body> {
    let response = edge::error_response(&error, &completion.exchange().response_headers);
    let outcome = Outcome {
        status: response.status(),
        error: Some(error),
        cancelled: false,
        attempts,
        short_circuited: false,
    };
    after.finish(completion, outcome);
    response
}

/// Largest run of upstream events sent to the client as one frame.
const MAX_COALESCED: usize = 16 * 1024;

/// The streaming body: upstream frames out as they come in, completion at the end.
///
/// Events that have already arrived are sent together: the relay takes events from the
/// upstream body (which drives the upstream connection in this same task, see
/// [`DrivenBody`]) until none is ready, then sends everything in hand as one frame.
/// A burst of events then costs one write to the client instead of one per event, while a
/// live token stream (events milliseconds apart) still goes out event by event. The first
/// event always goes out at once.
///
/// Generic over the upstream body only so that tests can feed it frames directly.
struct StreamRelay<B = DrivenBody> {
    upstream: B,
    deadline: Pin<Box<Sleep>>,
    provider: String,
    total_ms: u64,
    scanner: StreamScanner,
    /// `Some` until the stream has ended; dropping it early records a cancellation.
    completion: Option<Completion>,
    /// Runs the completion once the stream's end is out.
    after: AfterResponse,
    status: StatusCode,
    attempts: u32,
    /// The first event has just been handed to hyper: the next poll yields once, so that
    /// hyper writes it (with the response head) before the relay reads on.
    flush_first: bool,
    /// Events received and not yet sent.
    held: Vec<Bytes>,
    held_len: usize,
    /// How the upstream ended, once it has; acted on after `held` is sent.
    ended: Option<Option<GatewayError>>,
    /// Frames the stream into events when something acts between them; `None` relays
    /// every chunk as it came.
    framer: Option<EventFramer>,
    /// Remove the usage event Johi asked for on the client's behalf (see
    /// `johi_processors::stream_usage`).
    strip_usage: bool,
    /// Output tokens the stream may produce under its hard limits (see the `limit`
    /// processor); beyond it the stream is cut with a rate-limit error event.
    output_allowance: Option<u64>,
    /// Set when the stream went beyond its allowance: the error it is cut with.
    cut: Option<GatewayError>,
    /// Translates a provider's stream into OpenAI chunks; `None` for OpenAI-compatible
    /// targets, whose bytes pass untouched.
    translator: Option<Box<dyn StreamTranslate>>,
}

impl<B> StreamRelay<B> {
    /// Ends the stream: records usage and the outcome, and returns the closing error event
    /// if the stream did not end properly.
    fn finish(&mut self, error: Option<GatewayError>) -> Option<Bytes> {
        let mut completion = self.completion.take()?;
        let ex = completion.exchange();
        // What the provider reported is what is charged, whether or not the client sees it.
        ex.usage = match &self.translator {
            Some(t) => t.usage().or_else(|| self.scanner.usage()),
            None => self.scanner.usage(),
        };
        if ex.usage.is_none() && self.scanner.events() > 0 {
            ex.counted_output_tokens = Some(self.scanner.estimated_output_tokens());
        }
        let event = error.as_ref().map(edge::stream_error_event);
        let outcome = Outcome {
            status: self.status,
            error,
            cancelled: false,
            attempts: self.attempts,
            short_circuited: false,
        };
        self.after.finish(completion, outcome);
        event
    }

    /// The held events as one frame.
    fn release(&mut self) -> Frame<Bytes> {
        self.held_len = 0;
        if self.held.len() == 1 {
            if let Some(only) = self.held.pop() {
                return Frame::data(only);
            }
        }
        let mut joined = BytesMut::with_capacity(self.held.iter().map(Bytes::len).sum());
        for chunk in self.held.drain(..) {
            joined.extend_from_slice(&chunk);
        }
        Frame::data(joined.freeze())
    }

    fn hold(&mut self, data: Bytes) {
        if let Some(completion) = self.completion.as_mut() {
            let ex = completion.exchange();
            if ex.time_to_first_byte.is_none() {
                ex.time_to_first_byte = Some(ex.started.elapsed());
            }
        }
        let data = match self.translator.as_mut() {
            Some(t) => Bytes::from(t.feed(&data)),
            None => data,
        };
        let Some(framer) = self.framer.as_mut() else {
            self.scanner.feed(&data);
            self.push(data);
            return;
        };
        // What passes on: while every event so far is kept and the events are the chunk's own
        // bytes from its start (nothing held from the previous chunk), that is a prefix of
        // the chunk, passed on without a copy; the first dropped event (or held bytes) starts
        // a copy of what is kept.
        let mut copied: Option<Vec<u8>> = framer
            .holds_partial()
            .then(|| Vec::with_capacity(data.len()));
        let mut prefix = 0;
        let (scanner, strip, allowance) =
            (&mut self.scanner, self.strip_usage, self.output_allowance);
        let mut crossed = false;
        framer.feed(&data, |event| {
            scanner.feed(event);
            let kept = !(strip && is_usage_only(event));
            match &mut copied {
                Some(out) if kept => out.extend_from_slice(event),
                Some(_) => {}
                None if kept => prefix += event.len(),
                None => copied = Some(data[..prefix].to_vec()),
            }
            // The event that crosses the allowance still goes out: the overshoot is bounded
            // by one event.
            crossed = allowance.is_some_and(|a| scanner.estimated_output_tokens() > a);
            !crossed
        });
        self.push(match copied {
            Some(out) => Bytes::from(out),
            None => data.slice(..prefix),
        });
        if crossed {
            self.cut = self.over_budget();
        }
    }

    fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.held_len += data.len();
            self.held.push(data);
        }
    }

    /// The error to cut the stream with once its counted output has gone beyond its
    /// allowance. The overshoot is at most the event that crossed it.
    fn over_budget(&self) -> Option<GatewayError> {
        let allowance = self.output_allowance?;
        let produced = self.scanner.estimated_output_tokens();
        (produced > allowance).then(|| GatewayError::RateLimited {
            limit: "stream".into(),
            message: format!(
                "The stream was cut after about {produced} output tokens: it went beyond what its token or money limits allowed ({allowance})."
            ),
            retry_after_secs: None,
            quota: false,
        })
    }

    /// Records how the upstream ended; anything the usage filter still held goes out first.
    fn end(&mut self, ending: Option<GatewayError>) {
        let cut = self.cut.is_some();
        if let Some(rest) = self.framer.as_mut().map(EventFramer::finish) {
            // After a cut, the rest of what the provider sent is not the client's.
            if !cut {
                self.push(Bytes::from(rest));
            }
        }
        self.ended = Some(ending);
    }

    /// What the upstream's end means for the client.
    fn ending(&self, upstream_error: Option<String>) -> Option<GatewayError> {
        let provider = self.provider.clone();
        match upstream_error {
            Some(e) => Some(GatewayError::UpstreamProtocol {
                provider,
                detail: format!(
                    "stream broke off after {} events: {e}",
                    self.scanner.events()
                ),
            }),
            None if self.scanner.done() || self.scanner.error_seen() => None,
            None => Some(GatewayError::UpstreamProtocol {
                provider,
                detail: format!(
                    "stream ended after {} events without [DONE]",
                    self.scanner.events()
                ),
            }),
        }
    }
}

impl<B> HttpBody for StreamRelay<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.completion.is_none() {
            return Poll::Ready(None);
        }
        if std::mem::take(&mut this.flush_first) {
            // hyper polls a body until it is pending before it writes, so without this the
            // first event of a burst would wait for the whole burst to be read and scanned.
            // The wake-up makes sure the relay is polled again (hyper also re-polls a body
            // right after a flush).
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if this.held.is_empty() {
            if let Some(ending) = this.ended.take() {
                return Poll::Ready(this.finish(ending).map(|e| Ok(Frame::data(e))));
            }
        }
        if this.ended.is_none() && this.deadline.as_mut().poll(cx).is_ready() {
            let error = GatewayError::UpstreamTimeout {
                provider: this.provider.clone(),
                phase: "total",
                millis: this.total_ms,
            };
            this.end(Some(error));
        }
        while this.ended.is_none() {
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not part of SSE; skip them.
                    if let Ok(data) = frame.into_data() {
                        let first = this.scanner.events() == 0;
                        this.hold(data);
                        if let Some(cut) = this.cut.clone() {
                            this.end(Some(cut));
                            continue;
                        }
                        // The first event goes out at once (with the response head, in one
                        // write): time to first token is what streaming clients feel.
                        if !this.held.is_empty() && (first || this.held_len >= MAX_COALESCED) {
                            this.flush_first = first;
                            return Poll::Ready(Some(Ok(this.release())));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let ending = this.ending(Some(e.to_string()));
                    this.end(ending);
                }
                Poll::Ready(None) => {
                    // A translated stream cut short gets the translator's error event.
                    // Its output is already OpenAI's, so it skips the translator on its way.
                    if let Some(mut translator) = this.translator.take() {
                        let rest = translator.finish();
                        this.hold(Bytes::from(rest));
                        this.translator = Some(translator);
                    }
                    let ending = this.ending(None);
                    this.end(ending);
                }
                Poll::Pending if this.held.is_empty() => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Some(Ok(this.release()))),
            }
        }
        if !this.held.is_empty() {
            return Poll::Ready(Some(Ok(this.release())));
        }
        let ending = this.ended.take().flatten();
        Poll::Ready(this.finish(ending).map(|e| Ok(Frame::data(e))))
    }

    fn is_end_stream(&self) -> bool {
        self.completion.is_none()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use std::time::Duration;

    use http::HeaderMap;
    use johi_core::{Api, Exchange};

    use super::*;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// An upstream body that plays a script: `Some(chunk)` is a frame that has arrived,
    /// `None` one poll with nothing arrived yet; the body ends after the last step.
    struct Script(VecDeque<Option<&'static str>>);

    impl HttpBody for Script {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.0.pop_front() {
                Some(Some(chunk)) => {
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(chunk.as_bytes())))))
                }
                Some(None) => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }

    fn relay_over(script: &[Option<&'static str>]) -> StreamRelay<Script> {
        let pipeline = Arc::new(johi_pipeline::build(Vec::new()).expect("empty pipeline"));
        let exchange = Exchange::new(Api::ChatCompletions, HeaderMap::new(), Bytes::new());
        StreamRelay {
            upstream: Script(script.iter().copied().collect()),
            deadline: Box::pin(tokio::time::sleep(Duration::from_secs(60))),
            provider: "mock".into(),
            total_ms: 60_000,
            scanner: StreamScanner::default(),
            completion: Some(Completion::new(pipeline, exchange)),
            after: AfterResponse::inline(),
            status: StatusCode::OK,
            attempts: 1,
            flush_first: false,
            held: Vec::new(),
            held_len: 0,
            ended: None,
            framer: None,
            strip_usage: false,
            output_allowance: None,
            cut: None,
            translator: None,
        }
    }

    fn poll(relay: &mut StreamRelay<Script>, waker: &Waker) -> Poll<Option<String>> {
        let mut cx = Context::from_waker(waker);
        Pin::new(relay).poll_frame(&mut cx).map(|frame| {
            frame.map(|f| {
                let Ok(frame) = f;
                let data = frame.into_data().expect("a data frame");
                String::from_utf8_lossy(&data).into_owned()
            })
        })
    }

    const FIRST: &str =
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}],\"usage\":null}\n\n";
    const SECOND: &str =
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n";
    const USAGE: &str =
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    /// The first event of a burst goes out alone, and the relay then yields (having asked
    /// to be polled again) so that hyper writes it before the rest is read; the rest of the
    /// burst then goes out as one frame, and the stream ends cleanly after `[DONE]`.
    #[tokio::test]
    async fn the_first_event_of_a_burst_is_written_before_the_rest_is_read() {
        let mut relay = relay_over(&[Some(FIRST), Some(SECOND), Some(USAGE), Some(DONE)]);
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());

        assert_eq!(poll(&mut relay, &waker), Poll::Ready(Some(FIRST.into())));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        assert_eq!(poll(&mut relay, &waker), Poll::Pending);
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "the yield must not leave the relay waiting for a wake-up that never comes"
        );
        assert_eq!(
            poll(&mut relay, &waker),
            Poll::Ready(Some(format!("{SECOND}{USAGE}{DONE}")))
        );
        assert_eq!(poll(&mut relay, &waker), Poll::Ready(None));
        assert!(relay.completion.is_none(), "the exchange was completed");
        assert_eq!(relay.scanner.usage().map(|u| u.input_tokens), Some(3));
    }

    /// Only the first event yields: events of a live stream (arriving one at a time) go out
    /// as they come, each as soon as the upstream has nothing more.
    #[tokio::test]
    async fn only_the_first_event_yields() {
        let mut relay = relay_over(&[
            Some(FIRST),
            None,
            Some(SECOND),
            None,
            Some(USAGE),
            Some(DONE),
        ]);
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        assert_eq!(poll(&mut relay, &waker), Poll::Ready(Some(FIRST.into())));
        assert_eq!(poll(&mut relay, &waker), Poll::Pending, "the yield");
        // Nothing has arrived: pending, on the upstream's wake-up this time.
        assert_eq!(poll(&mut relay, &waker), Poll::Pending);
        assert_eq!(poll(&mut relay, &waker), Poll::Ready(Some(SECOND.into())));
        assert_eq!(
            poll(&mut relay, &waker),
            Poll::Ready(Some(format!("{USAGE}{DONE}")))
        );
        assert_eq!(poll(&mut relay, &waker), Poll::Ready(None));
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "one yield, for the first event"
        );
    }

    /// A stream that ends without `[DONE]` still gets its first event at once, then the
    /// closing error event.
    #[tokio::test]
    async fn a_stream_cut_after_its_first_event_is_closed_with_an_error_event() {
        let mut relay = relay_over(&[Some(FIRST)]);
        let waker = Waker::from(Arc::new(Wakes::default()));
        assert_eq!(poll(&mut relay, &waker), Poll::Ready(Some(FIRST.into())));
        assert_eq!(poll(&mut relay, &waker), Poll::Pending);
        let Poll::Ready(Some(closing)) = poll(&mut relay, &waker) else {
            panic!("expected the closing error event");
        };
        assert!(closing.contains("without [DONE]"), "{closing}");
        assert_eq!(poll(&mut relay, &waker), Poll::Ready(None));
    }
}
