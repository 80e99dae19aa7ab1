//! Endpoint pick: which of the route's targets this attempt goes to.
//!
//! Re-run on every attempt, because the last pick just failed: attempt *n* takes the
//! *n*-th target of the order `route` drew (wrapping when attempts outnumber targets).

use async_trait::async_trait;
use johi_core::{Exchange, Facet, FacetSet};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};

/// See the module docs.
pub struct Endpoint {
    contract: Contract,
}

impl Default for Endpoint {
    fn default() -> Self {
        Self::new()
    }
}

impl Endpoint {
    /// Builds the processor.
    pub fn new() -> Self {
        Endpoint {
            contract: Contract {
                name: "endpoint",
                category: Category::Mutate,
                reads: FacetSet::of(&[Facet::Model]),
                writes: FacetSet::of(&[Facet::Endpoint]),
                retry: RetryScope::EveryAttempt,
                on_failure: FailureMode::FailClosed,
            },
        }
    }
}

#[async_trait]
impl Processor for Endpoint {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    fn on_request_now(&self, ex: &mut Exchange) -> Option<Result<Verdict, ProcessorError>> {
        Some(self.pick(ex))
    }
}

impl Endpoint {
    /// The request phase; it never waits (see [`Processor::on_request_now`]).
    fn pick(&self, ex: &mut Exchange) -> Result<Verdict, ProcessorError> {
        if ex.attempt_order.is_empty() {
            return Err(ProcessorError(
                "no route on the exchange: 'route' must run first".into(),
            ));
        }
        let slot = ex.attempt as usize % ex.attempt_order.len();
        ex.target_index = Some(ex.attempt_order[slot]);
        Ok(Verdict::Continue)
    }
}
