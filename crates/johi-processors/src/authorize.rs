//! Authorisation: may this identity use the model it asked for? A 403 if not.
//!
//! Runs after `route` (it reads the model facet, which routing writes), so an unknown model
//! is a 404 for everyone and a known one outside the caller's `allowed_models` is a 403.
//! The allowance was intersected with the caller's organisation, team and project lists
//! when the config was loaded; here it is one lookup in a short list.

use async_trait::async_trait;
use johi_core::{Exchange, Facet, FacetSet, GatewayError};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};

/// See the module docs.
pub struct Authorize {
    contract: Contract,
}

impl Authorize {
    /// Builds the processor; it holds no settings (the identity carries its allowance).
    pub fn new() -> Self {
        Authorize {
            contract: Contract {
                name: "authorize",
                category: Category::AllowDeny,
                reads: FacetSet::of(&[Facet::Identity, Facet::Model]),
                writes: FacetSet::EMPTY,
                retry: RetryScope::Once,
                on_failure: FailureMode::FailClosed,
            },
        }
    }
}

impl Default for Authorize {
    fn default() -> Self {
        Self::new()
    }
}

/// The 403 for a model outside a credential's allowance.
pub fn model_not_allowed(model: &str) -> GatewayError {
    GatewayError::PermissionDenied {
        message: format!("This credential is not allowed to use the model `{model}`."),
        code: "model_not_allowed",
    }
}

#[async_trait]
impl Processor for Authorize {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    fn on_request_now(&self, ex: &mut Exchange) -> Option<Result<Verdict, ProcessorError>> {
        Some(self.authorize(ex))
    }
}

impl Authorize {
    /// The request phase; it never waits (see [`Processor::on_request_now`]).
    fn authorize(&self, ex: &mut Exchange) -> Result<Verdict, ProcessorError> {
        // No identity means no `authenticate` in the pipeline, which config validation
        // allows only when every route is public and no credential is model-limited.
        let (Some(identity), Some(model)) = (&ex.identity, &ex.model) else {
            return Ok(Verdict::Continue);
        };
        if identity.may_use_model(model) {
            Ok(Verdict::Continue)
        } else {
            Ok(Verdict::Deny(model_not_allowed(model)))
        }
    }
}
