//! Every translating protocol's answer and error decoders, on arbitrary bytes: they must
//! never panic, and whatever they accept must be an OpenAI-shaped object.
#![no_main]

use johi_core::model::Protocol;
use johi_core::Api;
use johi_providers::codec;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let request: Map<String, Value> = serde_json::from_str(r#"{"model":"m","encoding_format":"base64"}"#)
        .unwrap_or_default();
    for protocol in Protocol::ALL {
        for api in [Api::ChatCompletions, Api::Embeddings] {
            if !codec::supports(protocol, api) {
                continue;
            }
            if let Some(Ok(decoded)) = codec::decode_response(protocol, api, &request, data, "m", 1) {
                let value: Value = serde_json::from_slice(&decoded.body)
                    .unwrap_or_else(|e| panic!("{protocol:?}: a decoded answer is JSON: {e}"));
                assert!(value.is_object(), "{protocol:?}: a decoded answer is an object");
            }
        }
        for status in [400, 429, 500, 529] {
            if let Some(value) = codec::decode_error(protocol, status, data) {
                assert!(value["error"].is_object(), "{protocol:?}: error in OpenAI's shape");
            }
        }
    }
});
