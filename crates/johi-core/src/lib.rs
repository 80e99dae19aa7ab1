//! Johi's vocabulary: the types every other crate speaks, with no I/O.
//!
//! * [`error::GatewayError`] — every way a request can fail, with its retryability and a
//!   low-cardinality kind; the server maps it to OpenAI's JSON in exactly one place.
//! * [`exchange::Exchange`] — the typed per-request context processors read and write.
//! * [`facet::Facet`] — the named parts of an exchange that processors declare they touch.
//! * [`identity::Identity`] — who is calling, the tenant charged, what it may use.
//! * [`model`] — the validated model registry (logical model → provider targets).
//! * [`pricing::Pricing`] — prices and money in integers (pico-dollars per token, micro-dollars).
//! * [`trace::TraceContext`] — W3C trace context, parsed or started.
//! * [`usage::Usage`] — tokens in one shape whatever the provider.

pub mod api;
pub mod error;
pub mod exchange;
pub mod facet;
pub mod identity;
pub mod model;
pub mod pricing;
pub mod trace;
pub mod usage;

pub use api::Api;
pub use error::{AuthFailure, GatewayError};
pub use exchange::Exchange;
pub use facet::{Facet, FacetSet};
pub use identity::{AuthMethod, Identity, Route, RouteSet};
pub use usage::Usage;
