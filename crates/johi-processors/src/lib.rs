//! The processors on Johi's request path, one module each, and the [`Registry`] that builds
//! a checked [`Pipeline`] from the configured list of names.
//!
//! The default order, and why each step sits where it does:
//! 1. [`enrich`] — request ID and trace context first, so every later answer (errors
//!    included) carries them.
//! 2. [`authenticate`] — the credential → the caller's identity, or a 401, before the body
//!    is even parsed; the organisation is taken from the credential, not the client.
//! 3. [`validate`] — parses the body once and rejects malformed requests before anything
//!    costly looks at them; it produces the `prompt`, `params` and `model` facets.
//!    ([`stream_usage`], when limits or a ledger meter requests, asks streaming providers
//!    for usage right after validation; the relay removes the event the client did not ask
//!    for.)
//! 4. [`route`] — logical model → route; unknown models stop here.
//! 5. [`authorize`] — the identity may use this model, or a 403 (after `route`, which
//!    writes the model facet it reads).
//! 6. [`limit`] — limits and budgets: one atomic reservation over every limit that applies
//!    (429 if a hard one has no room), committed to the provider's usage at completion.
//!    After `authorize` (no reservation for a request that is refused anyway) and after
//!    every processor that rewrites the prompt (it reads the `prompt` facet).
//! 7. [`endpoint`] — per attempt: which target this attempt goes to.
//! 8. [`translate`] — per attempt: the request in the target's protocol.
//! 9. [`credentials`] — per attempt, last: the target's key, for that destination only.
//! 10. [`meter`] — observer: one usage record per request that reached a provider, with
//!     its tenant and cost, into the ledger at completion.
//! 11. [`audit`] — observer: writes one record per request at completion.

pub mod audit;
pub mod authenticate;
pub mod authorize;
mod aws_chain;
pub mod credentials;
pub mod endpoint;
pub mod enrich;
pub mod limit;
pub mod meter;
pub mod route;
mod sigv4;
pub mod stream_usage;
pub mod tokens;
pub mod translate;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use johi_config::Config;
use johi_pipeline::{build, Configured, Pipeline, Processor};

pub use audit::{AuditSink, AuditWriter};

/// What factories may use to build a processor.
pub struct BuildContext<'a> {
    /// The validated config being loaded.
    pub config: &'a Config,
    /// The audit sink, when audit is configured.
    pub audit: Option<AuditSink>,
    /// Where limit counters live; created once per process, so counters survive reloads.
    pub limits: Arc<dyn johi_limits::LimitStore>,
    /// The usage ledger, when one is configured (opened once per process).
    pub ledger: Option<johi_ledger::Ledger>,
}

/// Builds one processor from config.
pub type Factory = Arc<dyn Fn(&BuildContext<'_>) -> Arc<dyn Processor> + Send + Sync>;

/// Processor names → factories. Built-ins are registered by [`Registry::with_builtins`];
/// embedders (and tests) may register their own.
#[derive(Clone)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl Registry {
    /// A registry of Johi's built-in processors.
    pub fn with_builtins() -> Self {
        let mut r = Registry {
            factories: BTreeMap::new(),
        };
        r.register("enrich", |ctx| {
            Arc::new(enrich::Enrich::new(&ctx.config.enrich))
        });
        r.register("authenticate", |ctx| {
            Arc::new(authenticate::Authenticate::new(
                ctx.config.auth.authenticator.clone(),
            ))
        });
        r.register("validate", |_| Arc::new(validate::Validate::new()));
        r.register("stream_usage", |_| {
            Arc::new(stream_usage::StreamUsage::new())
        });
        r.register("authorize", |_| Arc::new(authorize::Authorize::new()));
        r.register("route", |ctx| {
            Arc::new(route::Route::new(ctx.config.models.clone()))
        });
        r.register("limit", |ctx| {
            // Build the tokenizers the models use now, not on the first request.
            for name in ctx.config.models.names() {
                if let Some(route) = ctx.config.models.get(name) {
                    tokens::prepare(route.tokenizer);
                }
            }
            Arc::new(limit::Limit::new(
                ctx.config.limits.clone(),
                ctx.limits.clone(),
                ctx.config.models.clone(),
            ))
        });
        r.register("endpoint", |_| Arc::new(endpoint::Endpoint::new()));
        r.register("translate", |_| Arc::new(translate::Translate::new()));
        r.register("credentials", |ctx| {
            Arc::new(credentials::Credentials::for_providers(
                &ctx.config.providers,
            ))
        });
        r.register("meter", |ctx| {
            Arc::new(meter::Meter::new(ctx.ledger.clone()))
        });
        r.register("audit", |ctx| {
            Arc::new(audit::Audit::new(ctx.audit.clone()))
        });
        r
    }

    /// Adds or replaces a processor factory.
    pub fn register(
        &mut self,
        name: &str,
        factory: impl Fn(&BuildContext<'_>) -> Arc<dyn Processor> + Send + Sync + 'static,
    ) {
        self.factories.insert(name.to_owned(), Arc::new(factory));
    }

    /// Builds the configured pipeline, reporting unknown names and order violations together.
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Pipeline, Vec<String>> {
        let mut errors = Vec::new();
        let mut configured = Vec::new();
        for (i, entry) in ctx.config.pipeline.iter().enumerate() {
            match self.factories.get(&entry.name) {
                Some(factory) => configured.push(Configured {
                    processor: factory(ctx),
                    on_failure: entry.on_failure.clone(),
                }),
                None => errors.push(format!(
                    "pipeline[{i}]: unknown processor '{}' (known: {})",
                    entry.name,
                    self.factories
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        build(configured).map_err(|e| e.into_iter().map(|e| format!("pipeline: {e}")).collect())
    }
}
