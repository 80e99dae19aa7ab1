//! The typed per-request context that processors read and write.

use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri};
use serde_json::{Map, Value};

use crate::model::{ModelRoute, Target};
use crate::trace::TraceContext;
use crate::{Api, GatewayError, Identity, Usage};

/// One request's journey through Johi.
///
/// Fields are grouped by the facet that owns them; a processor touches only the facets its
/// contract declares, and the pipeline builder orders processors by those declarations.
#[derive(Debug)]
pub struct Exchange {
    /// The OpenAI operation requested.
    pub api: Api,
    /// When Johi received the request (after the body was read).
    pub started: Instant,

    // --- headers facet -------------------------------------------------------------------
    /// The client's headers, as received. Never forwarded wholesale.
    pub inbound_headers: HeaderMap,
    /// Request ID: the client's `x-request-id` if well-formed, else generated.
    pub request_id: Arc<str>,
    /// W3C trace context for this hop.
    pub trace: Option<TraceContext>,
    /// Headers sent upstream on every attempt (enrichment).
    pub upstream_headers: HeaderMap,
    /// Headers echoed to the client on every response, errors included.
    pub response_headers: HeaderMap,

    // --- identity facet ------------------------------------------------------------------
    /// Who is calling; set by authentication (absent only in a pipeline without it).
    pub identity: Option<Arc<Identity>>,
    /// The organisation the request is attributed to.
    pub organization: Option<String>,
    /// Requested service tier (body `service_tier` or header), passed upstream.
    pub service_tier: Option<String>,

    // --- prompt / params / model facets ---------------------------------------------------
    /// The body's bytes: as received, or with a value spliced in by a processor that
    /// changes the request without re-serialising it (`stream_usage`). While `body` has not
    /// been changed, these bytes are what goes upstream (with only the model name swapped).
    pub raw_body: Bytes,
    /// The parsed body, made from `raw_body` the first time a processor asks for it:
    /// validation checks the body in one pass without building it, and a request that no
    /// processor reads as a tree (the common OpenAI-to-OpenAI case) never pays for one.
    /// Unknown fields are kept in order. Private so that every change goes through
    /// [`Exchange::body_mut`], which records it.
    body: OnceLock<Map<String, Value>>,
    /// Whether a processor changed `body` after it was parsed. While it has not, the client's
    /// own bytes are what goes upstream (with only the model name swapped in).
    body_changed: bool,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Where validation's one pass found the prompt's texts in `raw_body`, so the limiter
    /// counts tokens without reading the body again. Valid while the body is unparsed:
    /// a processor may change `raw_body` only by appending members at its end (as
    /// `stream_usage` does), or must clear this.
    pub prompt_spans: Option<PromptSpans>,
    /// Where validation's one pass found `model`'s value in `raw_body` (quotes included),
    /// when the translation may splice the upstream's name there without scanning the body
    /// again. Valid under the same rule as `prompt_spans`.
    pub model_span: Option<std::ops::Range<usize>>,
    /// What validation learnt of `stream_options.include_usage` without building the body:
    /// `Some(true)` the client asked for usage, `Some(false)` it did not and sent no
    /// `stream_options` at all (so the option can be spliced in), `None` not known.
    pub stream_usage_requested: Option<bool>,
    /// Whether Johi itself asked the provider for the stream's usage event (the client did
    /// not), so the relay removes that event from what the client receives.
    pub usage_event_added: bool,
    /// The logical model the client named.
    pub model: Option<String>,
    /// The logical model's route, once resolved.
    pub route: Option<Arc<ModelRoute>>,
    /// Indexes into `route.targets`, in the order they will be tried.
    pub attempt_order: Vec<usize>,

    // --- endpoint / credentials facets (per attempt) ---------------------------------------
    /// Zero-based upstream attempt number.
    pub attempt: u32,
    /// Index into `route.targets` of the current attempt's target.
    pub target_index: Option<usize>,
    /// The request being built for the current attempt; reset before each attempt.
    pub upstream: UpstreamRequest,

    // --- tokens / response facets ----------------------------------------------------------
    /// Usage reported by the provider.
    pub usage: Option<Usage>,
    /// For a stream under a hard token or money limit: the output tokens it may produce
    /// (its reservation plus the room the limits had left when it started); the relay cuts
    /// the stream once the output counted as it passes goes beyond this.
    pub output_token_allowance: Option<u64>,
    /// For a stream that ended without a usage report (cut mid-way, or a provider that
    /// sends none): output tokens estimated from the text relayed, so what passed is charged.
    pub counted_output_tokens: Option<u64>,
    /// Time from `started` to the first upstream body byte.
    pub time_to_first_byte: Option<Duration>,

    // --- processor state ---------------------------------------------------------------------
    /// Per-request state a processor keeps for its own completion hook (a limiter's
    /// reservation), typed by the processor; no other processor can read what it cannot name.
    pub extensions: http::Extensions,
}

/// The upstream HTTP request under construction for one attempt.
#[derive(Debug, Default, Clone)]
pub struct UpstreamRequest {
    /// Full URL (set by translation).
    pub uri: Option<Uri>,
    /// Headers (enrichment, provider extras, then credentials last).
    pub headers: HeaderMap,
    /// Serialized body in the target's protocol.
    pub body: Bytes,
}

/// The request ID before enrichment sets one: shared, so that making an exchange does not
/// allocate an empty string.
static NO_REQUEST_ID: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));

impl Exchange {
    /// A new exchange for a request whose body has been read.
    pub fn new(api: Api, inbound_headers: HeaderMap, raw_body: Bytes) -> Self {
        Exchange {
            api,
            started: Instant::now(),
            inbound_headers,
            request_id: NO_REQUEST_ID.clone(),
            trace: None,
            upstream_headers: HeaderMap::new(),
            // Room for the gateway's own headers with limits on (request ID, trace,
            // organisation, six `x-ratelimit-*`, content type) without growing the map.
            response_headers: HeaderMap::with_capacity(12),
            identity: None,
            organization: None,
            service_tier: None,
            raw_body,
            body: OnceLock::new(),
            body_changed: false,
            stream: false,
            stream_usage_requested: None,
            prompt_spans: None,
            model_span: None,
            usage_event_added: false,
            model: None,
            route: None,
            attempt_order: Vec::new(),
            attempt: 0,
            target_index: None,
            upstream: UpstreamRequest::default(),
            usage: None,
            counted_output_tokens: None,
            output_token_allowance: None,
            time_to_first_byte: None,
            extensions: http::Extensions::new(),
        }
    }

    /// The parsed body, parsed from `raw_body` on first use (empty if the bytes are not a
    /// JSON object: validation refuses those before any other processor runs).
    pub fn body(&self) -> &Map<String, Value> {
        self.body.get_or_init(|| parse_object(&self.raw_body))
    }

    /// The parsed body, for changing it: marks the body as changed, so it is re-serialised
    /// for the upstream instead of forwarding the client's bytes.
    pub fn body_mut(&mut self) -> &mut Map<String, Value> {
        self.body_changed = true;
        if self.body.get().is_none() {
            self.body = OnceLock::from(parse_object(&self.raw_body));
        }
        self.body
            .get_mut()
            .unwrap_or_else(|| unreachable!("the body was parsed just above"))
    }

    /// Whether the request asks for its stream's usage (`stream_options.include_usage`):
    /// what validation's one pass recorded while the body is unparsed, else the tree's value.
    pub fn asks_for_stream_usage(&self) -> bool {
        if let (false, Some(asked)) = (self.body_parsed(), self.stream_usage_requested) {
            return asked;
        }
        self.body()
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Whether the body has been parsed into a tree yet (by [`Exchange::body`] or
    /// validation): while it has not, a processor may still change `raw_body` directly.
    pub fn body_parsed(&self) -> bool {
        self.body.get().is_some()
    }

    /// Installs the body parsed from `raw_body` (validation does this when it had to build
    /// the tree anyway), so it is not parsed twice.
    pub fn set_parsed_body(&mut self, body: Map<String, Value>) {
        self.body = OnceLock::from(body);
        self.body_changed = false;
    }

    /// Whether a processor has changed the parsed body.
    pub fn body_changed(&self) -> bool {
        self.body_changed
    }

    /// The target of the current attempt, if one is picked.
    pub fn target(&self) -> Option<&Target> {
        let route = self.route.as_ref()?;
        route.targets.get(self.target_index?)
    }

    /// An inbound header as UTF-8 text, if present and valid.
    ///
    /// Pass a [`http::HeaderName`] constant on the request path: a `&str` name is parsed
    /// and validated on every lookup (a few hundred instructions each).
    pub fn inbound_header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.inbound_headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A chat prompt located in the body's bytes (see [`Exchange::prompt_spans`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptSpans {
    /// How many messages there are (each costs framing tokens).
    pub messages: u64,
    /// The byte range of every string the token count reads that has no escapes (its bytes
    /// are its text), in body order.
    pub texts: Vec<std::ops::Range<usize>>,
    /// The strings the token count reads that had escapes (`\n`, `\"`, `\u…`), unescaped:
    /// their bytes in the body are not their text, so they are kept as text.
    pub unescaped: Vec<String>,
    /// `max_completion_tokens`, when a non-negative integer.
    pub max_completion_tokens: Option<u64>,
    /// `max_tokens`, when a non-negative integer.
    pub max_tokens: Option<u64>,
}

/// `bytes` as a JSON object, or an empty one when they are not one.
fn parse_object(bytes: &[u8]) -> Map<String, Value> {
    serde_json::from_slice(bytes).unwrap_or_default()
}

/// How an exchange ended; what the completion hook sees.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Status sent to the client (for streams: the status of the response head).
    pub status: StatusCode,
    /// The error, if the exchange failed (a stream broken mid-way included).
    pub error: Option<GatewayError>,
    /// Whether the client went away before the response was complete.
    pub cancelled: bool,
    /// Number of upstream attempts made.
    pub attempts: u32,
    /// Whether the response was produced by a processor rather than an upstream.
    pub short_circuited: bool,
}

impl Outcome {
    /// A successful outcome with `status`.
    pub fn ok(status: StatusCode, attempts: u32) -> Self {
        Outcome {
            status,
            error: None,
            cancelled: false,
            attempts,
            short_circuited: false,
        }
    }
}
