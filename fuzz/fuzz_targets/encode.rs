//! Every request encoder on arbitrary JSON objects: a body Johi cannot translate is refused
//! with an error naming a field, never a panic; what is encoded is valid JSON.
#![no_main]

use johi_core::model::Protocol;
use johi_core::Api;
use johi_providers::codec::{self, EncodeInput};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Map<String, Value>>(data) else {
        return;
    };
    let base = http::Uri::from_static("http://127.0.0.1:9/v1");
    for protocol in Protocol::ALL {
        for api in [Api::ChatCompletions, Api::Embeddings] {
            if !codec::supports(protocol, api) {
                continue;
            }
            let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
            let input = EncodeInput {
                api,
                body: &body,
                upstream_model: "up",
                base_url: &base,
                stream,
                default_max_tokens: 16,
                embed_input_type: None,
            };
            if let Some(Ok(encoded)) = codec::encode(protocol, &input) {
                assert!(
                    encoded.body.is_empty()
                        || serde_json::from_slice::<Value>(&encoded.body).is_ok(),
                    "{protocol:?}: the encoded body is JSON"
                );
            }
        }
    }
});
