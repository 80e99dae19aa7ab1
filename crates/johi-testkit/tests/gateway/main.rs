//! Integration tests: the real gateway and the mock upstream over loopback HTTP.

// Test code: helpers outside #[test] functions may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod anthropic;
mod api;
mod auth;
mod azure;
mod bedrock;
mod cohere;
mod cross_protocol;
mod egress;
mod errors;
mod gemini;
mod ledger;
mod limits;
mod messages;
mod ops;
mod pool;
mod retry;
mod translated;
