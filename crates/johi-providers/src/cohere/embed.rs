//! OpenAI Embeddings ↔ Cohere v2 embed (`POST /v2/embed`).

use serde::de::{MapAccess, SeqAccess};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{CohereUsage, TranslateError};
use crate::codec::Decoded;
use crate::openai_shape::{present, EmbeddingList, EmbeddingOut};
use crate::wire::{read_body, Accept, Lax, Object};

/// Cohere requires an `input_type`; documents for a search index is what an OpenAI client
/// embedding text most often means. A model's config may choose another.
pub const DEFAULT_INPUT_TYPE: &str = "search_document";

/// Translates an OpenAI embeddings body into a Cohere v2 embed body for `upstream_model`.
///
/// `input_type` is the model's configured one ([`DEFAULT_INPUT_TYPE`] when `None`); a client
/// that knows its target may override it with an `input_type` field. `encoding_format:
/// base64` asks Cohere for its `base64` type (the same little-endian `f32` bytes OpenAI
/// sends); `dimensions` is Cohere's `output_dimension`. Token-id inputs and `user` are
/// refused: Cohere embeds text and has no end-user field. The body is written from structs
/// borrowing the client's texts, not built as a `Value` tree.
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
        Some(Value::String(s)) => Texts::One([s]),
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    return Err(TranslateError::unsupported(
                        format!("input[{i}]"),
                        "Cohere embeds text only, not token ids",
                    ));
                }
            }
            Texts::Many(items)
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
    let output_dimension =
        match present(body, "dimensions") {
            None => None,
            Some(d) => Some(d.as_u64().filter(|d| *d > 0).ok_or_else(|| {
                TranslateError::invalid("dimensions", "must be a positive integer")
            })?),
        };
    let out = EmbedBody {
        model: upstream_model,
        texts,
        input_type,
        embedding_types: [embedding_type],
        output_dimension,
    };
    serde_json::to_vec(&out).map_err(|e| TranslateError::invalid("body", e.to_string()))
}

/// A v2 embed body, borrowing the client's texts.
#[derive(Serialize)]
struct EmbedBody<'a> {
    model: &'a str,
    texts: Texts<'a>,
    input_type: &'a str,
    embedding_types: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimension: Option<u64>,
}

/// `texts`: OpenAI's single string becomes a one-element list; a list (of strings, checked)
/// is passed as it is.
#[derive(Serialize)]
#[serde(untagged)]
enum Texts<'a> {
    One([&'a String; 1]),
    Many(&'a [Value]),
}

/// Translates a Cohere v2 embed response into an OpenAI embeddings list, as bytes with the
/// usage Johi meters: one `embedding` per text, in order, as floats or base64 (whichever type
/// was asked for and came back), with the usage from `meta.billed_units`.
///
/// Read leniently ([`Lax`]) into typed structs: a field of an unexpected kind counts as
/// absent, as it did when this read a `Value`.
pub fn decode_embed_response(body: &[u8], model: &str) -> Result<Decoded, TranslateError> {
    let resp = read_body::<EmbedIn>(body)?.get().unwrap_or_default();
    let (path, vectors) = match resp.embeddings {
        Lax::Absent => return Err(TranslateError::upstream("embeddings", "missing")),
        // `embeddings_floats`, the shape of a request without `embedding_types`.
        Lax::Is(Embeddings::List(v)) => ("embeddings", v),
        Lax::Is(Embeddings::ByType(by_type)) => match (by_type.float, by_type.base64) {
            (Lax::Is(v), _) => ("embeddings.float", v),
            (_, Lax::Is(v)) => ("embeddings.base64", v),
            _ => return Err(neither()),
        },
        Lax::Null | Lax::Other => return Err(neither()),
    };
    let mut data = Vec::with_capacity(vectors.len());
    for (i, v) in vectors.into_iter().enumerate() {
        if !(v.is_array() || v.is_string()) {
            return Err(TranslateError::upstream(
                format!("{path}[{i}]"),
                "not an embedding",
            ));
        }
        data.push(EmbeddingOut::new(i, v));
    }
    let usage = resp
        .meta
        .get()
        .and_then(|u| u.usage())
        .or_else(|| resp.usage.get().and_then(|u| u.usage()));
    EmbeddingList::new(data, model, usage).write()
}

fn neither() -> TranslateError {
    TranslateError::upstream("embeddings", "neither float nor base64 embeddings")
}

/// The parts of an embed response the translation reads.
#[derive(Deserialize, Default)]
#[serde(default)]
struct EmbedIn {
    embeddings: Lax<Embeddings>,
    meta: Lax<CohereUsage>,
    usage: Lax<CohereUsage>,
}

impl Object for EmbedIn {}

/// `embeddings`: a list of float vectors (no `embedding_types` asked), or vectors by type.
/// Vectors are kept as the JSON they were, to be passed on as they are.
enum Embeddings {
    List(Vec<Value>),
    ByType(ByType),
}

impl<'de> Accept<'de> for Embeddings {
    fn from_seq<A: SeqAccess<'de>>(seq: A) -> Result<Option<Self>, A::Error> {
        Ok(Vec::from_seq(seq)?.map(Embeddings::List))
    }
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        Ok(ByType::from_map(map)?.map(Embeddings::ByType))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ByType {
    float: Lax<Vec<Value>>,
    base64: Lax<Vec<Value>>,
}

impl Object for ByType {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
