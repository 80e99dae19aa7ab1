//! OpenAI Embeddings ↔ Cohere v2 embed (`POST /v2/embed`).

use serde_json::{json, Map, Value};

use super::{usage_from_cohere, TranslateError};
use crate::openai_shape::present;

/// Cohere requires an `input_type`; documents for a search index is what an OpenAI client
/// embedding text most often means. A model's config may choose another.
pub const DEFAULT_INPUT_TYPE: &str = "search_document";

/// Translates an OpenAI embeddings body into a Cohere v2 embed body for `upstream_model`.
///
/// `input_type` is the model's configured one ([`DEFAULT_INPUT_TYPE`] when `None`); a client
/// that knows its target may override it with an `input_type` field. `encoding_format:
/// base64` asks Cohere for its `base64` type (the same little-endian `f32` bytes OpenAI
/// sends); `dimensions` is Cohere's `output_dimension`. Token-id inputs and `user` are
/// refused: Cohere embeds text and has no end-user field.
pub fn encode_embed_request(
    body: &Map<String, Value>,
    upstream_model: &str,
    input_type: Option<&str>,
) -> Result<Vec<u8>, TranslateError> {
    for (key, value) in body {
        let known = matches!(
            key.as_str(),
            "model" | "input" | "encoding_format" | "dimensions" | "input_type"
        );
        if !known && !value.is_null() {
            return Err(TranslateError::unsupported(
                key.as_str(),
                "Cohere's v2 embed API has no equivalent",
            ));
        }
    }
    let texts = match body.get("input") {
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    return Err(TranslateError::unsupported(
                        format!("input[{i}]"),
                        "Cohere embeds text only, not token ids",
                    ));
                }
            }
            items.clone()
        }
        _ => {
            return Err(TranslateError::invalid(
                "input",
                "must be a string or a non-empty array of strings",
            ))
        }
    };
    let embedding_type = match present(body, "encoding_format").map(Value::as_str) {
        None | Some(Some("float")) => "float",
        Some(Some("base64")) => "base64",
        Some(_) => {
            return Err(TranslateError::invalid(
                "encoding_format",
                "must be float or base64",
            ))
        }
    };
    let input_type = match present(body, "input_type") {
        None => input_type.unwrap_or(DEFAULT_INPUT_TYPE),
        Some(v) => v
            .as_str()
            .ok_or_else(|| TranslateError::invalid("input_type", "must be a string"))?,
    };
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("texts".into(), Value::Array(texts));
    out.insert("input_type".into(), json!(input_type));
    out.insert("embedding_types".into(), json!([embedding_type]));
    if let Some(d) = present(body, "dimensions") {
        let d = d
            .as_u64()
            .filter(|d| *d > 0)
            .ok_or_else(|| TranslateError::invalid("dimensions", "must be a positive integer"))?;
        out.insert("output_dimension".into(), json!(d));
    }
    serde_json::to_vec(&out).map_err(|e| TranslateError::invalid("body", e.to_string()))
}

/// Translates a Cohere v2 embed response into an OpenAI embeddings list: one `embedding`
/// per text, in order, as floats or base64 (whichever type was asked for and came back),
/// with the usage from `meta.billed_units`.
pub fn decode_embed_response(body: &[u8], model: &str) -> Result<Value, TranslateError> {
    let resp: Value = serde_json::from_slice(body)
        .map_err(|e| TranslateError::upstream("body", e.to_string()))?;
    let embeddings = resp
        .get("embeddings")
        .ok_or_else(|| TranslateError::upstream("embeddings", "missing"))?;
    let (path, vectors) = match embeddings {
        // `embeddings_floats`, the shape of a request without `embedding_types`.
        Value::Array(v) => ("embeddings", v),
        _ => match (embeddings.get("float"), embeddings.get("base64")) {
            (Some(Value::Array(v)), _) => ("embeddings.float", v),
            (_, Some(Value::Array(v))) => ("embeddings.base64", v),
            _ => {
                return Err(TranslateError::upstream(
                    "embeddings",
                    "neither float nor base64 embeddings",
                ))
            }
        },
    };
    let mut data = Vec::with_capacity(vectors.len());
    for (i, v) in vectors.iter().enumerate() {
        if !(v.is_array() || v.is_string()) {
            return Err(TranslateError::upstream(
                format!("{path}[{i}]"),
                "not an embedding",
            ));
        }
        data.push(json!({"object": "embedding", "index": i, "embedding": v}));
    }
    let mut out = json!({"object": "list", "data": data, "model": model});
    let usage = resp
        .get("meta")
        .and_then(usage_from_cohere)
        .or_else(|| resp.get("usage").and_then(usage_from_cohere));
    if let (Some(u), Some(obj)) = (usage, out.as_object_mut()) {
        obj.insert(
            "usage".into(),
            json!({"prompt_tokens": u.input_tokens, "total_tokens": u.input_tokens}),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(body: Value, input_type: Option<&str>) -> Result<Value, TranslateError> {
        let Value::Object(map) = body else {
            unreachable!("tests pass objects")
        };
        let out = encode_embed_request(&map, "embed-v4.0", input_type)?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn input_type_defaults_then_config_then_client() {
        let v = encode(json!({"input": "a"}), None).unwrap();
        assert_eq!(v["input_type"], "search_document");
        assert_eq!(v["embedding_types"], json!(["float"]));
        let v = encode(json!({"input": ["a", "b"]}), Some("classification")).unwrap();
        assert_eq!(v["input_type"], "classification");
        assert_eq!(v["texts"], json!(["a", "b"]));
        let v = encode(
            json!({"input": "a", "input_type": "search_query", "encoding_format": "base64"}),
            Some("classification"),
        )
        .unwrap();
        assert_eq!(v["input_type"], "search_query");
        assert_eq!(v["embedding_types"], json!(["base64"]));
    }

    #[test]
    fn token_ids_and_unknown_fields_are_refused() {
        assert_eq!(
            encode(json!({"input": [[1, 2]]}), None)
                .unwrap_err()
                .field(),
            "input[0]"
        );
        assert_eq!(
            encode(json!({"input": "a", "user": "u"}), None)
                .unwrap_err()
                .field(),
            "user"
        );
        assert_eq!(
            encode(json!({"input": []}), None).unwrap_err().field(),
            "input"
        );
    }
}
