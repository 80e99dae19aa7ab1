//! Integration tests: the real gateway and the mock upstream over loopback HTTP.

mod api;
mod egress;
mod errors;
mod ops;
mod retry;
