//! Executes a built pipeline: once-per-request steps, the retry loop, the completion hook.

use std::future::Future;
use std::sync::Arc;

use http::StatusCode;
use johi_core::exchange::{Outcome, UpstreamRequest};
use johi_core::model::Target;
use johi_core::{Exchange, GatewayError};

use crate::contract::{Contract, FailureMode, Processor, RetryScope, ShortResponse, Verdict};

/// A processor in place, with its effective failure mode.
pub(crate) struct Stage {
    pub(crate) processor: Arc<dyn Processor>,
    pub(crate) on_failure: FailureMode,
}

/// A checked, ready-to-run pipeline. Built once per config load; shared by all requests.
pub struct Pipeline {
    stages: Vec<Stage>,
    /// Indexes of once-per-request stages (observers included), in order.
    once: Vec<usize>,
    /// Indexes of per-attempt stages, in order.
    per_attempt: Vec<usize>,
    /// Indexes of the stages whose completion hook runs before the response
    /// ([`Processor::completes_before_response`]), and of the others, in order.
    early_hooks: Vec<usize>,
    late_hooks: Vec<usize>,
}

/// How the upstream is called; supplied by the server so this crate stays free of I/O.
pub trait UpstreamCall {
    /// What a successful call yields (a response head and a body to relay).
    type Response;

    /// Sends one attempt's request to `target`.
    fn call(
        &self,
        target: &Target,
        request: UpstreamRequest,
    ) -> impl Future<Output = Result<Self::Response, GatewayError>> + Send;
}

/// What the pipeline produced for a request.
#[derive(Debug)]
pub enum Executed<R> {
    /// An upstream answered (successfully, or with an error that is not retryable).
    Upstream(R),
    /// A processor answered in the upstream's place.
    Short(ShortResponse),
}

impl Pipeline {
    pub(crate) fn new(stages: Vec<Stage>) -> Self {
        let (mut once, mut per_attempt) = (Vec::new(), Vec::new());
        // A stage without a request phase is left out of both lists; its completion hook
        // still runs (`complete` walks every stage).
        let acting = stages
            .iter()
            .enumerate()
            .filter(|(_, stage)| stage.processor.has_request_phase());
        for (i, stage) in acting {
            match stage.processor.contract().retry {
                RetryScope::Once => once.push(i),
                RetryScope::EveryAttempt | RetryScope::WhenExpired => per_attempt.push(i),
            }
        }
        let (early_hooks, late_hooks) =
            (0..stages.len()).partition(|&i| stages[i].processor.completes_before_response());
        Pipeline {
            stages,
            once,
            per_attempt,
            early_hooks,
            late_hooks,
        }
    }

    /// The contracts in configured order (for `johi check` and diagnostics).
    pub fn contracts(&self) -> impl Iterator<Item = &Contract> {
        self.stages.iter().map(|s| s.processor.contract())
    }

    /// The effective failure modes, aligned with [`Pipeline::contracts`].
    pub fn failure_modes(&self) -> impl Iterator<Item = &FailureMode> {
        self.stages.iter().map(|s| &s.on_failure)
    }

    /// Runs the request phase and the retry loop.
    ///
    /// Once-per-request processors run first, in order. Then, for each attempt up to the
    /// route's `max_attempts`, the per-attempt processors run (`WhenExpired` ones only on the
    /// first attempt or when expired) and `upstream` is called. A retryable failure moves on
    /// to the next attempt; anything else ends the loop. Guardrails, routing and cache lookups
    /// are not re-run: the prompt is unchanged, so their verdicts are too.
    pub async fn execute<C: UpstreamCall>(
        &self,
        exchange: &mut Exchange,
        upstream: &C,
    ) -> Result<Executed<C::Response>, GatewayError> {
        for &i in &self.once {
            match self.run_stage(i, exchange).await {
                Verdict::Continue => {}
                Verdict::Respond(response) => return Ok(Executed::Short(response)),
                Verdict::Deny(error) => return Err(error),
            }
        }

        let max_attempts = exchange.route.as_ref().map_or(1, |r| r.max_attempts.max(1));
        let mut attempt = 0;
        loop {
            exchange.attempt = attempt;
            exchange.upstream = UpstreamRequest::default();
            for &i in &self.per_attempt {
                let stage = &self.stages[i];
                if attempt > 0
                    && stage.processor.contract().retry == RetryScope::WhenExpired
                    && !stage.processor.expired(exchange)
                {
                    continue;
                }
                match self.run_stage(i, exchange).await {
                    Verdict::Continue => {}
                    Verdict::Respond(response) => return Ok(Executed::Short(response)),
                    Verdict::Deny(error) => return Err(error),
                }
            }
            let Some(target) = exchange.target().cloned() else {
                return Err(GatewayError::Internal {
                    detail: "the pipeline picked no upstream endpoint".into(),
                });
            };
            let request = std::mem::take(&mut exchange.upstream);
            match upstream.call(&target, request).await {
                Ok(response) => return Ok(Executed::Upstream(response)),
                Err(error) if error.retryable() && attempt + 1 < max_attempts => {
                    tracing::debug!(
                        request_id = %exchange.request_id,
                        provider = %target.provider.name,
                        attempt,
                        error = %error,
                        "upstream attempt failed; trying the next target"
                    );
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Runs one stage, applying its category check and failure mode.
    async fn run_stage(&self, index: usize, exchange: &mut Exchange) -> Verdict {
        let stage = &self.stages[index];
        let contract = stage.processor.contract();
        let result = match stage.processor.on_request_now(exchange) {
            Some(result) => result,
            None => stage.processor.on_request(exchange).await,
        };
        match result {
            Ok(verdict) if contract.category.permits(&verdict) => verdict,
            Ok(_) => Verdict::Deny(GatewayError::ProcessorFailed {
                processor: contract.name,
                detail: format!(
                    "returned a verdict its category ({}) does not allow",
                    contract.category.as_str()
                ),
            }),
            Err(error) => match &stage.on_failure {
                FailureMode::FailClosed => Verdict::Deny(GatewayError::ProcessorFailed {
                    processor: contract.name,
                    detail: error.0,
                }),
                FailureMode::FailOpen => {
                    tracing::warn!(
                        processor = contract.name,
                        request_id = %exchange.request_id,
                        error = %error,
                        "processor failed; continuing (fail-open)"
                    );
                    Verdict::Continue
                }
                FailureMode::Fallback(response) => Verdict::Respond(response.clone()),
            },
        }
    }

    /// Runs every processor's completion hook (an abandoned exchange). Through
    /// [`Completion`], which guarantees it happens exactly once.
    fn complete(&self, exchange: &Exchange, outcome: &Outcome) {
        for stage in &self.stages {
            stage.processor.on_complete(exchange, outcome);
        }
    }

    /// Runs the completion hooks of the processors that do (`early`) or do not complete
    /// before the response ([`Processor::completes_before_response`]).
    fn complete_part(&self, exchange: &Exchange, outcome: &Outcome, early: bool) {
        let part = if early {
            &self.early_hooks
        } else {
            &self.late_hooks
        };
        for &i in part {
            self.stages[i].processor.on_complete(exchange, outcome);
        }
    }
}

/// Owns an exchange until it is finished and guarantees the completion hooks run exactly
/// once: those that precede the response on [`Completion::settle`] and the rest when the
/// [`Settled`] completion is dropped, or — if the response is abandoned (the client went
/// away, the task was dropped) — all of them on drop, as a cancelled outcome.
pub struct Completion {
    pipeline: Arc<Pipeline>,
    /// Boxed: an exchange is over a kilobyte, and a completion moves several times on its way
    /// to the after-response queue (each move was a copy of the whole exchange).
    exchange: Box<Exchange>,
    /// The outcome the remaining hooks report when this is dropped (the early ones have
    /// run); `None`: a cancellation, reported by every hook.
    settled: Option<Outcome>,
}

impl Completion {
    /// Takes charge of `exchange`.
    pub fn new(pipeline: Arc<Pipeline>, exchange: Exchange) -> Self {
        Completion {
            pipeline,
            exchange: Box::new(exchange),
            settled: None,
        }
    }

    /// The exchange, for recording what the response brings (usage, first byte).
    pub fn exchange(&mut self) -> &mut Exchange {
        &mut self.exchange
    }

    /// Fixes the outcome now and leaves the hooks to run when the result is dropped, so
    /// that the server can answer the client first and do the bookkeeping (audit, meter,
    /// limit commit, ledger record) afterwards, off the response's path. The hooks that must
    /// precede the response ([`Processor::completes_before_response`]) run here.
    pub fn settle(mut self, outcome: Outcome) -> Settled {
        self.pipeline.complete_part(&self.exchange, &outcome, true);
        self.settled = Some(outcome);
        Settled { _completion: self }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        match self.settled.take() {
            // Settled: the early hooks have run.
            Some(outcome) => self.pipeline.complete_part(&self.exchange, &outcome, false),
            None => {
                let outcome = Outcome {
                    // 499: nginx's "client closed request", the convention for abandoned
                    // requests.
                    status: StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                    error: None,
                    cancelled: true,
                    attempts: self.exchange.attempt + 1,
                    short_circuited: false,
                };
                self.pipeline.complete(&self.exchange, &outcome);
            }
        }
    }
}

/// A completion whose outcome is decided: dropping it runs the completion hook with that
/// outcome, wherever and whenever the drop happens (after the response was written, or
/// when a shutting-down runtime drops what was still queued).
pub struct Settled {
    _completion: Completion,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use bytes::Bytes;
    use http::HeaderMap;
    use johi_core::{Api, FacetSet};

    use super::*;
    use crate::contract::{Category, ProcessorError};
    use crate::Configured;

    /// Answers in `on_request_now` what `now` says; counts the calls of each phase, and its
    /// `on_request` allows (so a wrong path shows in the verdict as well as the counts).
    struct TwoPhase {
        contract: Contract,
        now: fn() -> Option<Result<Verdict, ProcessorError>>,
        now_calls: AtomicUsize,
        async_calls: AtomicUsize,
    }

    #[async_trait]
    impl Processor for TwoPhase {
        fn contract(&self) -> &Contract {
            &self.contract
        }

        fn on_request_now(&self, _: &mut Exchange) -> Option<Result<Verdict, ProcessorError>> {
            self.now_calls.fetch_add(1, Ordering::SeqCst);
            (self.now)()
        }

        async fn on_request(&self, _: &mut Exchange) -> Result<Verdict, ProcessorError> {
            self.async_calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(Verdict::Continue)
        }
    }

    /// An upstream that is never reached in these tests: every pipeline stops before it.
    struct Unreachable;

    impl UpstreamCall for Unreachable {
        type Response = ();

        async fn call(&self, _: &Target, _: UpstreamRequest) -> Result<(), GatewayError> {
            Err(GatewayError::Internal {
                detail: "called".into(),
            })
        }
    }

    fn two_phase(now: fn() -> Option<Result<Verdict, ProcessorError>>) -> Arc<TwoPhase> {
        Arc::new(TwoPhase {
            contract: Contract {
                name: "two_phase",
                category: Category::AllowDeny,
                reads: FacetSet::EMPTY,
                writes: FacetSet::EMPTY,
                retry: RetryScope::Once,
                on_failure: FailureMode::FailClosed,
            },
            now,
            now_calls: AtomicUsize::new(0),
            async_calls: AtomicUsize::new(0),
        })
    }

    /// Runs `processor` alone; its verdict (the upstream is never reached: no route).
    async fn run(processor: &Arc<TwoPhase>) -> Result<Executed<()>, GatewayError> {
        let pipeline = crate::build(vec![Configured::new(processor.clone())])
            .unwrap_or_else(|_| panic!("one allow/deny processor is a valid pipeline"));
        let mut exchange = Exchange::new(Api::ChatCompletions, HeaderMap::new(), Bytes::new());
        pipeline.execute(&mut exchange, &Unreachable).await
    }

    /// A verdict given at once is the stage's verdict, and `on_request` is not called.
    #[tokio::test]
    async fn a_verdict_given_at_once_stands_without_the_future() {
        let denying = two_phase(|| {
            Some(Ok(Verdict::Deny(GatewayError::Internal {
                detail: "denied at once".into(),
            })))
        });
        let result = run(&denying).await;
        assert!(
            matches!(&result, Err(GatewayError::Internal { detail }) if detail == "denied at once"),
            "{result:?}"
        );
        assert_eq!(denying.now_calls.load(Ordering::SeqCst), 1);
        assert_eq!(denying.async_calls.load(Ordering::SeqCst), 0);

        // A failure given at once meets the stage's failure mode (fail-closed: a 500).
        let failing = two_phase(|| Some(Err(ProcessorError("broken".into()))));
        let result = run(&failing).await;
        assert!(
            matches!(
                &result,
                Err(GatewayError::ProcessorFailed {
                    processor: "two_phase",
                    ..
                })
            ),
            "{result:?}"
        );
        assert_eq!(failing.async_calls.load(Ordering::SeqCst), 0);
    }

    /// `None` sends the stage to `on_request`, whose verdict then stands.
    #[tokio::test]
    async fn no_verdict_at_once_runs_the_future() {
        let waiting = two_phase(|| None);
        let result = run(&waiting).await;
        // `on_request` allowed; the pipeline then stops for want of a route.
        assert!(
            matches!(&result, Err(GatewayError::Internal { detail }) if detail.contains("no upstream endpoint")),
            "{result:?}"
        );
        assert_eq!(waiting.now_calls.load(Ordering::SeqCst), 1);
        assert_eq!(waiting.async_calls.load(Ordering::SeqCst), 1);
    }
}
