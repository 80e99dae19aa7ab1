//! OpenAI `/v1/embeddings` ↔ Gemini `batchEmbedContents`.

use base64::Engine as _;
use johi_core::Usage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TranslateError;
use crate::codec::Decoded;
use crate::openai_shape::{present, EmbeddingList, EmbeddingOut};
use crate::wire::{read_body, Lax, Object};

/// Top-level embeddings fields the encoder maps; any other field is refused, naming it.
pub const EMBEDDING_FIELDS: &[&str] = &["model", "input", "encoding_format", "dimensions"];

/// Translates an OpenAI embeddings body into a `batchEmbedContents` body: one request per
/// input string, each naming `models/{upstream_model}` as Google requires, `dimensions` as
/// `outputDimensionality`. Token-array inputs are refused: Gemini embeds text only. The body
/// is written from structs borrowing the inputs, not built as a `Value` tree.
pub fn encode_embeddings(
    body: &Map<String, Value>,
    upstream_model: &str,
) -> Result<Vec<u8>, TranslateError> {
    for (key, value) in body {
        if !value.is_null() && !EMBEDDING_FIELDS.contains(&key.as_str()) {
            return Err(TranslateError::unsupported(
                key.as_str(),
                "Gemini's batchEmbedContents has no equivalent",
            ));
        }
    }
    wants_base64(body)?;
    let inputs = text_inputs(body)?;
    let dimensions = dimensions(body)?;
    let model = format!(
        "models/{}",
        upstream_model
            .strip_prefix("models/")
            .unwrap_or(upstream_model)
    );
    let requests = inputs
        .iter()
        .map(|text| EmbedRequest {
            model: &model,
            content: Content {
                parts: [TextPart { text }],
            },
            output_dimensionality: dimensions,
        })
        .collect();
    serde_json::to_vec(&BatchRequest { requests })
        .map_err(|e| TranslateError::invalid("body", e.to_string()))
}

/// A `batchEmbedContents` body, borrowing the client's inputs.
#[derive(Serialize)]
struct BatchRequest<'a> {
    requests: Vec<EmbedRequest<'a>>,
}

/// One input's `EmbedContentRequest`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    model: &'a str,
    content: Content<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u64>,
}

#[derive(Serialize)]
struct Content<'a> {
    parts: [TextPart<'a>; 1],
}

#[derive(Serialize)]
struct TextPart<'a> {
    text: &'a str,
}

/// The client's `input` as texts: a string or a non-empty array of strings. Token arrays are
/// refused naming the element: Google's embedding models take text only.
pub(super) fn text_inputs(body: &Map<String, Value>) -> Result<Vec<&str>, TranslateError> {
    texts_for(
        body,
        "Google's embedding models embed text only, not token arrays",
    )
}

/// [`text_inputs`] for any text-only embedder; `token_reason` says, in the refusal of a
/// token-array element, which provider takes text only.
pub(crate) fn texts_for<'a>(
    body: &'a Map<String, Value>,
    token_reason: &str,
) -> Result<Vec<&'a str>, TranslateError> {
    match present(body, "input") {
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .ok_or_else(|| TranslateError::unsupported(format!("input[{i}]"), token_reason))
            })
            .collect(),
        _ => Err(TranslateError::invalid(
            "input",
            "must be a string or a non-empty array of strings",
        )),
    }
}

/// OpenAI's `dimensions` (Google's `outputDimensionality`), when given: a positive integer.
pub(crate) fn dimensions(body: &Map<String, Value>) -> Result<Option<u64>, TranslateError> {
    match present(body, "dimensions") {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| TranslateError::invalid("dimensions", "must be a positive integer")),
    }
}

/// Whether the client asked for base64 vectors (`encoding_format`), refusing other values.
pub(crate) fn wants_base64(body: &Map<String, Value>) -> Result<bool, TranslateError> {
    match present(body, "encoding_format").map(Value::as_str) {
        None | Some(Some("float")) => Ok(false),
        Some(Some("base64")) => Ok(true),
        Some(_) => Err(TranslateError::invalid(
            "encoding_format",
            "must be float or base64",
        )),
    }
}

/// Translates a `batchEmbedContents` answer into OpenAI's embeddings list, in input order,
/// as bytes with the usage Johi meters.
///
/// Vectors are floats, or, when the client's request asked for `encoding_format: base64`,
/// base64 of little-endian `f32`s as OpenAI encodes them. Gemini reports no token usage for
/// embeddings: the body shows zero and no usage is metered here (Johi counts the input
/// itself: see the `meter` and `limit` processors). The answer is
/// read leniently ([`Lax`]) into typed structs, without a `Value` tree around the vectors.
pub fn decode_embeddings(
    body: &[u8],
    request: &Map<String, Value>,
    model: &str,
) -> Result<Decoded, TranslateError> {
    let base64 = wants_base64(request).unwrap_or(false);
    let msg = read_body::<BatchIn>(body)?.get().unwrap_or_default();
    let embeddings = msg
        .embeddings
        .get()
        .ok_or_else(|| TranslateError::upstream("embeddings", "missing"))?;
    let mut data = Vec::with_capacity(embeddings.len());
    for (i, e) in embeddings.into_iter().enumerate() {
        let values = e.get().and_then(|e| e.values.get()).ok_or_else(|| {
            TranslateError::upstream(format!("embeddings[{i}].values"), "missing")
        })?;
        let embedding = vector(values, base64, &format!("embeddings[{i}].values"))?;
        data.push(EmbeddingOut::new(i, embedding));
    }
    EmbeddingList::new(data, model, Some(Usage::default())).write_unmetered()
}

/// One upstream vector as OpenAI sends it: the JSON numbers as they were, or, when the
/// client asked for `encoding_format: base64`, base64 of little-endian `f32`s as OpenAI
/// encodes them. `path` names the upstream array in the error for a value that is not a
/// number.
pub(crate) fn vector(
    values: Vec<Value>,
    base64: bool,
    path: &str,
) -> Result<Vector, TranslateError> {
    if !base64 {
        return Ok(Vector::Floats(values));
    }
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for (j, v) in values.iter().enumerate() {
        let x = v
            .as_f64()
            .ok_or_else(|| TranslateError::upstream(format!("{path}[{j}]"), "not a number"))?;
        // OpenAI's base64 vectors are f32; narrowing is the format.
        #[allow(clippy::cast_possible_truncation)]
        bytes.extend_from_slice(&(x as f32).to_le_bytes());
    }
    Ok(Vector::Base64(
        base64::engine::general_purpose::STANDARD.encode(bytes),
    ))
}

/// A vector as OpenAI sends it: floats, or base64 of little-endian `f32`s.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum Vector {
    Floats(Vec<Value>),
    Base64(String),
}

/// The parts of a `batchEmbedContents` answer the translation reads.
#[derive(Deserialize, Default)]
#[serde(default)]
struct BatchIn {
    embeddings: Lax<Vec<Lax<EmbeddingIn>>>,
}

impl Object for BatchIn {}

/// One embedding; its values are kept as the JSON numbers they were (for floats, passed on
/// as written by serde_json).
#[derive(Deserialize, Default)]
#[serde(default)]
struct EmbeddingIn {
    values: Lax<Vec<Value>>,
}

impl Object for EmbeddingIn {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn base64_vectors_are_little_endian_f32() {
        let out = decode_embeddings(
            br#"{"embeddings":[{"values":[1.0,-2.5]}]}"#,
            &map(json!({"encoding_format": "base64"})),
            "e",
        )
        .unwrap();
        assert_eq!(out.usage, None, "Johi counts the input itself");
        let out: Value = serde_json::from_slice(&out.body).unwrap();
        let b64 = out["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let mut want = 1.0f32.to_le_bytes().to_vec();
        want.extend_from_slice(&(-2.5f32).to_le_bytes());
        assert_eq!(bytes, want);
    }

    #[test]
    fn token_arrays_and_unknown_fields_are_refused() {
        let err = encode_embeddings(&map(json!({"input": [[1, 2]]})), "e").unwrap_err();
        assert_eq!(err.field(), "input[0]");
        let err = encode_embeddings(&map(json!({"input": "x", "user": "u"})), "e").unwrap_err();
        assert_eq!(err.field(), "user");
    }
}
