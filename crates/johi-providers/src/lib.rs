//! Wire-protocol adapters. Pure translation and parsing: no I/O, no processors.
//!
//! One module per wire protocol, not per vendor. [`anthropic`] translates OpenAI Chat
//! Completions to and from Anthropic Messages; [`bedrock`] to and from AWS Bedrock Converse;
//! [`gemini`] to and from Google's Gemini API (Gemini API and Vertex AI); [`cohere`] to and
//! from Cohere's v2 chat and embed. [`codec`] is the one place that dispatches on
//! the protocol, so the gateway never names one. [`openai`] covers OpenAI and every
//! compatible server (vLLM, Ollama, TGI, LM Studio, Groq, Together, Mistral, DeepSeek …).
//! [`sse`] frames Server-Sent Events incrementally, for every protocol that streams with them.
//! [`usage_filter`] removes the usage event Johi requested from a stream whose client did not.

pub mod anthropic;
pub mod bedrock;
pub mod codec;
pub mod cohere;
mod error;
pub mod gemini;
pub mod openai;
mod openai_shape;
pub mod splice;
pub mod sse;
pub mod usage_filter;
mod wire;

pub use error::TranslateError;
pub use wire::Str;
