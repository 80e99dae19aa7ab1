//! The runtime snapshot: everything built from one config load, swapped atomically on reload.

use std::sync::Arc;

use johi_config::Config;
use johi_ledger::Ledger;
use johi_limits::LimitStore;
use johi_pipeline::Pipeline;
use johi_processors::{AuditSink, BuildContext, Registry};

use crate::after::AfterResponse;
use crate::upstream::Upstreams;

/// One config load's worth of state. Requests take an `Arc` to the current snapshot when
/// they arrive and keep it to the end, so a reload never changes a request mid-way.
pub struct Runtime {
    /// The validated config.
    pub config: Arc<Config>,
    /// The checked pipeline.
    pub pipeline: Arc<Pipeline>,
    /// Per-provider HTTP clients.
    pub upstreams: Upstreams,
    /// Where completion hooks wait for their responses to go out (one for the process, so
    /// that shutdown waits for every runtime's).
    pub after_response: AfterResponse,
}

impl Runtime {
    /// Builds the pipeline and clients for `config`; all problems are reported together.
    pub fn build(
        config: Config,
        registry: &Registry,
        audit: Option<AuditSink>,
        limits: Arc<dyn LimitStore>,
        ledger: Option<Ledger>,
        after_response: AfterResponse,
    ) -> Result<Runtime, Vec<String>> {
        let mut errors = Vec::new();
        let pipeline = registry.build(&BuildContext {
            config: &config,
            audit,
            limits,
            ledger,
        });
        let upstreams = Upstreams::build(&config.providers);
        let pipeline = pipeline.map_err(|e| errors.extend(e)).ok();
        let upstreams = upstreams.map_err(|e| errors.extend(e)).ok();
        match (pipeline, upstreams) {
            (Some(pipeline), Some(upstreams)) if errors.is_empty() => Ok(Runtime {
                config: Arc::new(config),
                pipeline: Arc::new(pipeline),
                upstreams,
                after_response,
            }),
            _ => Err(errors),
        }
    }

    /// The same pipeline and clients over `config`: for a change that only the admin side
    /// and the authenticator's shared tables read (run-time tenants), where rebuilding the
    /// processors and connection pools would cost a reload for nothing.
    pub fn with_config(&self, config: Config) -> Runtime {
        Runtime {
            config: Arc::new(config),
            pipeline: self.pipeline.clone(),
            upstreams: self.upstreams.clone(),
            after_response: self.after_response.clone(),
        }
    }
}
