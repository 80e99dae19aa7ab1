//! The payload-processor pipeline (DESIGN.md §2).
//!
//! Every feature on the request path is a [`Processor`] with a declared [`Contract`]. The
//! [`builder`] turns a configured list into a [`Pipeline`] and *checks* it at load time —
//! readers after writers, credentials last, once-per-request steps before per-attempt steps —
//! rejecting a wrong order with an error that names both processors. The [`runner`] executes
//! it: once-per-request processors, then the retry loop over upstream attempts re-running only
//! the per-attempt processors, then the completion hook that always runs exactly once.
//!
//! This crate knows no concrete processor and does no I/O: the upstream call is handed in.

pub mod builder;
pub mod contract;
pub mod runner;

pub use builder::{build, BuildError, Configured};
pub use contract::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, ShortResponse, Verdict,
};
pub use runner::{Completion, Executed, Pipeline, Settled, UpstreamCall};
