//! `POST /model/{modelId}/invoke`: Bedrock's `InvokeModel` for the two embedding families
//! the gateway translates, so its Bedrock embeddings can be tested end to end without AWS.
//!
//! * Titan Text Embeddings (an id containing `amazon.titan-embed-text`): `{inputText,
//!   dimensions?}` → `{embedding, inputTextTokenCount}` (the text's words);
//! * Cohere Embed (`cohere.embed`): `{texts, input_type, embedding_types?}` → `{id,
//!   embeddings, texts, response_type}`, with no token count, as Bedrock answers.
//!
//! The vectors are the Cohere route's (same text, same vector). Signed like the Converse
//! routes (checked by the server before this runs); other models and malformed bodies get
//! Bedrock's `ValidationException`.

use http::StatusCode;
use serde_json::{json, Map, Value};

use super::cohere::hash;
use super::converse::error;
use super::embeddings::vector;
use super::{json, Ctx, Resp};
use crate::reply::words;

/// Embedding size when the request sets no dimensions.
const DEFAULT_DIMENSIONS: usize = 16;
/// Largest dimension accepted.
const MAX_DIMENSIONS: u64 = 65_536;

/// Answers an `InvokeModel` request for `model_id` (as it is in the path, percent-encoded).
pub(super) fn handle(model_id: &str, body: &Value, ctx: &Ctx<'_>) -> Resp {
    let result = if model_id.contains("amazon.titan-embed-text") {
        titan(body)
    } else if model_id.contains("cohere.embed") {
        cohere(body, ctx)
    } else {
        Err("The mock serves InvokeModel for Titan Text and Cohere Embed models only")
    };
    result.unwrap_or_else(|message| error(400, message))
}

/// The dimension asked for under `key`, or the default; `Err` for a bad one.
fn dims(body: &Value, key: &str) -> Result<usize, &'static str> {
    match body.get(key) {
        None => Ok(DEFAULT_DIMENSIONS),
        Some(d) => d
            .as_u64()
            .filter(|d| (1..=MAX_DIMENSIONS).contains(d))
            .and_then(|d| usize::try_from(d).ok())
            .ok_or("dimensions: invalid"),
    }
}

fn titan(body: &Value) -> Result<Resp, &'static str> {
    let text = body
        .get("inputText")
        .and_then(Value::as_str)
        .ok_or("inputText: required string")?;
    if body.get("texts").is_some() {
        return Err("extraneous key [texts] is not permitted");
    }
    let embedding = vector(hash(text), dims(body, "dimensions")?);
    Ok(json(
        StatusCode::OK,
        &json!({"embedding": embedding, "inputTextTokenCount": words(text)}),
    ))
}

fn cohere(body: &Value, ctx: &Ctx<'_>) -> Result<Resp, &'static str> {
    let texts: Vec<&str> = body
        .get("texts")
        .and_then(Value::as_array)
        .and_then(|t| t.iter().map(Value::as_str).collect())
        .ok_or("texts: must be an array of strings")?;
    if body.get("input_type").and_then(Value::as_str).is_none() {
        return Err("input_type: required");
    }
    let dims = dims(body, "output_dimension")?;
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| vector(hash(t), dims)).collect();
    let id = format!("mock-embed-{}", ctx.shared.next_id());
    let answer = match body.get("embedding_types").and_then(Value::as_array) {
        // Without `embedding_types`, Bedrock answers the `embeddings_floats` shape.
        None => json!({
            "id": id, "embeddings": vectors, "texts": texts,
            "response_type": "embeddings_floats",
        }),
        Some(types) => {
            let mut by_type = Map::new();
            for t in types {
                if t.as_str() != Some("float") {
                    return Err("embedding_types: the mock serves float");
                }
                by_type.insert("float".to_owned(), json!(vectors));
            }
            json!({
                "id": id, "embeddings": by_type, "texts": texts,
                "response_type": "embeddings_by_type",
            })
        }
    };
    Ok(json(StatusCode::OK, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_are_checked() {
        assert_eq!(dims(&json!({}), "dimensions"), Ok(DEFAULT_DIMENSIONS));
        assert_eq!(dims(&json!({"dimensions": 4}), "dimensions"), Ok(4));
        assert!(dims(&json!({"dimensions": 0}), "dimensions").is_err());
    }
}
