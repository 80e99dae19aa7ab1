//! The inbound direction: clients that speak Anthropic's Messages API to Johi.
//!
//! Johi's pipeline speaks OpenAI Chat Completions, so a Messages request is translated at the
//! edge and runs the pipeline unchanged (authentication, limits, routing, any provider):
//! [`decode_request`] reads the Messages body into a chat body, [`encode_response`] turns the
//! pipeline's `chat.completion` back into a `message`, [`StreamEncoder`] turns its chunk
//! stream into Anthropic's event stream, and [`encode_error`] puts any error answer into
//! Anthropic's `{"type": "error", "error": {"type", "message"}}` with [`error_type`] chosen by
//! the status alone (one mapping, whatever failed).
//!
//! Fidelity rule, as for the outbound adapters: a field the OpenAI shape cannot carry is
//! either passed on as an extra field the Anthropic adapter understands (`top_k`, `thinking`,
//! `cache_control`) — so another target refuses it by name — or refused here with a
//! [`crate::TranslateError`] naming its JSON path; never dropped silently. The full table is
//! in `docs/providers.md`.

mod request;
mod response;
mod stream;

pub use request::{decode_count_tokens, decode_request, DecodedRequest, INBOUND_FIELDS};
pub use response::{encode_error, encode_response, error_type, stop_reason, usage};
pub use stream::StreamEncoder;
