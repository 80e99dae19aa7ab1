//! Authentication: the request's credential → the caller's [`Identity`], or a 401.
//!
//! Runs right after enrichment (so even a 401 carries a request ID) and before the body is
//! looked at, so a caller without a credential costs no parsing. The identity's organisation
//! replaces whatever the client claimed: the organisation a request is charged to comes
//! from its credential, never from a header the client writes. Route allowances
//! (`allowed_routes`) are checked here too, since the route is known before the body is.
//!
//! The credential is a virtual key or a JWT in a header, or the TLS client certificate the
//! listener verified (a [`PeerCertificate`] in the exchange's extensions); see
//! [`Authenticator::authenticate`] for which wins when a request carries several.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use johi_auth::{Authenticator, PeerCertificate};
use johi_core::{AuthFailure, Exchange, Facet, FacetSet, GatewayError, Identity, Route};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};

use crate::enrich::{put_both, ORGANIZATION};

/// See the module docs.
pub struct Authenticate {
    contract: Contract,
    authenticator: Arc<Authenticator>,
}

impl Authenticate {
    /// Builds the processor over one config load's credentials.
    pub fn new(authenticator: Arc<Authenticator>) -> Self {
        Authenticate {
            contract: Contract {
                name: "authenticate",
                category: Category::AllowDeny,
                reads: FacetSet::EMPTY,
                writes: FacetSet::of(&[Facet::Identity, Facet::Headers]),
                retry: RetryScope::Once,
                on_failure: FailureMode::FailClosed,
            },
            authenticator,
        }
    }
}

/// The 403 for a route outside a credential's allowance.
pub fn route_not_allowed(route: Route) -> GatewayError {
    GatewayError::PermissionDenied {
        message: format!(
            "This credential is not allowed to use {} (allowed_routes).",
            route.path()
        ),
        code: "route_not_allowed",
    }
}

#[async_trait]
impl Processor for Authenticate {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    /// Keys, certificates and missing credentials are decided at once; a JWT goes to
    /// [`Processor::on_request`] (its keys may have to be fetched).
    fn on_request_now(&self, ex: &mut Exchange) -> Option<Result<Verdict, ProcessorError>> {
        let route = Route::from(ex.api);
        let peer = ex.extensions.get::<PeerCertificate>();
        let identity = self.authenticator.authenticate_now(
            &ex.inbound_headers,
            peer,
            route,
            SystemTime::now(),
        )?;
        Some(Ok(take_identity(ex, route, identity)))
    }

    async fn on_request(&self, ex: &mut Exchange) -> Result<Verdict, ProcessorError> {
        let route = Route::from(ex.api);
        let peer = ex.extensions.get::<PeerCertificate>();
        let identity = self
            .authenticator
            .authenticate(&ex.inbound_headers, peer, route, SystemTime::now())
            .await;
        Ok(take_identity(ex, route, identity))
    }
}

/// The verdict on the caller the credential proved (or the 401 it earned): the route must
/// be in its allowance; its organisation replaces the client's claim.
fn take_identity(
    ex: &mut Exchange,
    route: Route,
    identity: Result<Arc<Identity>, AuthFailure>,
) -> Verdict {
    let identity = match identity {
        Ok(identity) => identity,
        Err(reason) => return Verdict::Deny(GatewayError::Unauthenticated { reason }),
    };
    if !identity.allowed_routes.contains(route) {
        return Verdict::Deny(route_not_allowed(route));
    }
    if let Some(org) = &identity.organization {
        put_both(
            &mut ex.upstream_headers,
            &mut ex.response_headers,
            ORGANIZATION,
            org,
        );
        ex.organization = Some(org.clone());
    }
    ex.identity = Some(identity);
    Verdict::Continue
}
