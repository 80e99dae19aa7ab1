//! Model resolution: the logical model a client names → its route (targets, attempt order).

use async_trait::async_trait;
use johi_core::model::ModelRegistry;
use johi_core::{Exchange, Facet, FacetSet, GatewayError};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};

/// See the module docs. Runs once: the route does not change between attempts.
pub struct Route {
    contract: Contract,
    models: ModelRegistry,
}

impl Route {
    /// Builds the processor over a registry snapshot.
    pub fn new(models: ModelRegistry) -> Self {
        Route {
            contract: Contract {
                name: "route",
                category: Category::Mutate,
                reads: FacetSet::of(&[Facet::Model]),
                writes: FacetSet::of(&[Facet::Model]),
                retry: RetryScope::Once,
                on_failure: FailureMode::FailClosed,
            },
            models,
        }
    }
}

#[async_trait]
impl Processor for Route {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    fn on_request_now(&self, ex: &mut Exchange) -> Option<Result<Verdict, ProcessorError>> {
        Some(self.route(ex))
    }
}

impl Route {
    /// The request phase; it never waits (see [`Processor::on_request_now`]).
    fn route(&self, ex: &mut Exchange) -> Result<Verdict, ProcessorError> {
        let Some(name) = ex.model.as_deref() else {
            return Err(ProcessorError(
                "no model on the exchange: 'validate' must run first".into(),
            ));
        };
        let Some(route) = self.models.get(name) else {
            return Ok(Verdict::Deny(GatewayError::ModelNotFound {
                model: name.to_owned(),
            }));
        };
        let route = route.clone();
        set_route(ex, route);
        Ok(Verdict::Continue)
    }
}

/// Points the exchange at `route`: its targets in a weighted-random attempt order. Shared
/// with `limit`, whose budget tip moves a request to another model.
pub(crate) fn set_route(ex: &mut Exchange, route: std::sync::Arc<johi_core::model::ModelRoute>) {
    ex.attempt_order = if route.targets.len() == 1 {
        vec![0]
    } else {
        route.attempt_order(fastrand::u64(..route.total_weight().max(1)))
    };
    ex.route = Some(route);
}
