//! What a processor promises: its category, facets, retry scope and failure mode.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use johi_core::exchange::Outcome;
use johi_core::{Exchange, FacetSet, GatewayError};

/// What a processor may do to an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Watches only; may not stop the request.
    Observe,
    /// May let the request pass or reject it; does not rewrite it.
    AllowDeny,
    /// May answer in place of the upstream (a cache).
    Respond,
    /// Rewrites parts of the request (and may reject what it cannot rewrite).
    Mutate,
}

impl Category {
    /// The category's name in diagnostics.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Observe => "observe",
            Category::AllowDeny => "allow/deny",
            Category::Respond => "respond",
            Category::Mutate => "mutate",
        }
    }

    /// Whether a processor of this category may return `verdict`.
    pub fn permits(self, verdict: &Verdict) -> bool {
        match (self, verdict) {
            (_, Verdict::Continue) => true,
            (Category::AllowDeny | Category::Mutate, Verdict::Deny(_)) => true,
            (Category::Respond, Verdict::Respond(_)) => true,
            (Category::Observe, _) | (Category::AllowDeny | Category::Mutate, _) => false,
            (Category::Respond, Verdict::Deny(_)) => false,
        }
    }
}

/// When a processor runs relative to upstream attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryScope {
    /// Once per request, before the first attempt. Its verdict holds for every attempt
    /// because its inputs do not change (validation, guardrails, routing, cache lookup).
    Once,
    /// Before every attempt, because it depends on the attempt's target (endpoint pick,
    /// protocol translation, credentials).
    EveryAttempt,
    /// On the first attempt, and again on a retry only if its output has expired
    /// ([`Processor::expired`]), e.g. a short-lived token.
    WhenExpired,
}

impl RetryScope {
    /// The scope's name in diagnostics.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryScope::Once => "once",
            RetryScope::EveryAttempt => "every-attempt",
            RetryScope::WhenExpired => "when-expired",
        }
    }
}

/// What happens when a processor itself errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureMode {
    /// Reject the request (500 with the processor named). The safe default.
    FailClosed,
    /// Log and carry on as if the processor had said `Continue`.
    FailOpen,
    /// Answer with a configured response.
    Fallback(ShortResponse),
}

impl fmt::Display for FailureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureMode::FailClosed => f.write_str("fail-closed"),
            FailureMode::FailOpen => f.write_str("fail-open"),
            FailureMode::Fallback(r) => write!(f, "fallback({})", r.status.as_u16()),
        }
    }
}

/// A processor's declared contract, checked by the builder.
#[derive(Debug, Clone)]
pub struct Contract {
    /// Unique name; used in config and in every diagnostic.
    pub name: &'static str,
    /// What it may do.
    pub category: Category,
    /// Facets it reads: it must run after every processor that writes them.
    pub reads: FacetSet,
    /// Facets it writes.
    pub writes: FacetSet,
    /// When it runs relative to upstream attempts.
    pub retry: RetryScope,
    /// Default failure mode (config may override it).
    pub on_failure: FailureMode,
}

/// A response produced by a processor instead of the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers (content type included).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// A processor's decision about the request.
#[derive(Debug)]
pub enum Verdict {
    /// Go on to the next processor.
    Continue,
    /// Stop and answer with this response (respond processors only).
    Respond(ShortResponse),
    /// Stop and answer with this error.
    Deny(GatewayError),
}

/// A processor's own failure (a bug, a backend outage), as opposed to a verdict.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ProcessorError(pub String);

/// A feature on the request path.
///
/// Implementations are built once per config load and shared by every request, so they
/// hold configuration and handles, never per-request state (that lives in the exchange).
#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// The processor's contract; must not change after construction.
    fn contract(&self) -> &Contract;

    /// Earlier processors whose verdict on a facet this processor writes it re-applies
    /// itself whenever it writes that facet, so they may run before it.
    ///
    /// The one user is `limit`'s budget tip: it switches the request to a cheaper model,
    /// resolving its route as `route` does and checking the caller may use it as `authorize`
    /// does, so both keep running first (a 404 or 403 before a 429). Anything else that
    /// reads the facet must still run after the writer.
    fn rechecks(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether [`Processor::on_request`] does anything. A processor that acts only in its
    /// completion hook (audit, metering) answers `false`, and the runner leaves its stage
    /// out of the request phase: every call there costs a boxed future.
    fn has_request_phase(&self) -> bool {
        true
    }

    /// Request phase: inspect or change the exchange, or stop it. The default answers what
    /// [`Processor::on_request_now`] does (`Continue` if that is `None`), so a processor that
    /// never waits implements only that.
    async fn on_request(&self, exchange: &mut Exchange) -> Result<Verdict, ProcessorError> {
        self.on_request_now(exchange)
            .unwrap_or(Ok(Verdict::Continue))
    }

    /// The request phase without a future, for a processor whose work does not wait (this
    /// time): `Some` is the verdict, and the runner does not call [`Processor::on_request`];
    /// `None` (the default) sends it there. Most stages only read and write the exchange,
    /// and every `on_request` call costs a boxed future (an allocation, and a copy of the
    /// future into it). A processor that implements both must give the same answer in both.
    fn on_request_now(&self, _exchange: &mut Exchange) -> Option<Result<Verdict, ProcessorError>> {
        None
    }

    /// For [`RetryScope::WhenExpired`]: whether this processor's output must be renewed
    /// before a retry.
    fn expired(&self, _exchange: &Exchange) -> bool {
        false
    }

    /// Completion hook: runs exactly once per exchange, after the response is finished or
    /// abandoned, whatever happened. Must not block: hand work to a background task.
    fn on_complete(&self, _exchange: &Exchange, _outcome: &Outcome) {}

    /// Whether the completion hook must run before the response is handed to the client
    /// rather than after it is out (see [`crate::Completion::settle`]): when the client's
    /// next request must see the hook's effect, as a released concurrency lease. Hooks run
    /// after the response by default, off its path.
    fn completes_before_response(&self) -> bool {
        false
    }
}
