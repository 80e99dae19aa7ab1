//! `POST /v1/embeddings`: deterministic unit vectors, as floats or base64.

use base64::Engine as _;
use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::{json, model, BadRequest, Ctx, Resp};
use crate::reply::words;

/// Dimension when the request does not ask for one.
const DEFAULT_DIMENSIONS: usize = 16;
/// Largest `dimensions` accepted, to keep a typo from allocating gigabytes.
const MAX_DIMENSIONS: u64 = 65_536;

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Embedding>,
    model: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

/// `float` → a JSON array; `base64` → the little-endian `f32` bytes, base64-encoded.
#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// One input to embed.
enum Input<'a> {
    Text(&'a str),
    Tokens(Vec<u64>),
}

impl Input<'_> {
    fn tokens(&self) -> u64 {
        match self {
            Input::Text(text) => words(text),
            Input::Tokens(ids) => ids.len() as u64,
        }
    }

    /// FNV-1a (64 bit) of the input: the seed of its vector.
    fn hash(&self) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash = OFFSET;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(PRIME);
            }
        };
        match self {
            Input::Text(text) => feed(text.as_bytes()),
            Input::Tokens(ids) => ids.iter().for_each(|id| feed(&id.to_le_bytes())),
        }
        hash
    }
}

/// Parses `input`: a string, strings, token ids, or arrays of token ids.
fn inputs(input: Option<&Value>) -> Option<Vec<Input<'_>>> {
    let token_ids = |items: &[Value]| items.iter().map(Value::as_u64).collect::<Option<Vec<_>>>();
    match input? {
        Value::String(text) => Some(vec![Input::Text(text)]),
        Value::Array(items) => match items.first()? {
            Value::String(_) => items
                .iter()
                .map(|item| item.as_str().map(Input::Text))
                .collect(),
            Value::Number(_) => token_ids(items).map(|ids| vec![Input::Tokens(ids)]),
            Value::Array(_) => items
                .iter()
                .map(|item| match item {
                    Value::Array(ids) => token_ids(ids).map(Input::Tokens),
                    _ => None,
                })
                .collect(),
            _ => None,
        },
        _ => None,
    }
}

/// A deterministic unit vector of `dims` values seeded by `seed` (xorshift64*, values in
/// [-1, 1], then L2-normalised).
pub(crate) fn vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut state = if seed == 0 {
        0x9e37_79b9_7f4a_7c15
    } else {
        seed
    };
    let mut values: Vec<f64> = (0..dims)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
            (bits as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        values.iter_mut().for_each(|v| *v /= norm);
    }
    values.into_iter().map(|v| v as f32).collect()
}

/// Answers an embeddings request.
pub(super) fn handle(body: &Value, _ctx: &Ctx<'_>) -> Result<Resp, BadRequest> {
    let model = model(body)?;
    let Some(inputs) = inputs(body.get("input")) else {
        return Err(BadRequest::new(
            "'input' must be a non-empty string, array of strings, array of token ids, or \
             array of token-id arrays",
            Some("input"),
        ));
    };
    let dims = match body.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(value) => match value.as_u64().filter(|d| (1..=MAX_DIMENSIONS).contains(d)) {
            Some(dims) => dims as usize,
            None => {
                return Err(BadRequest::new(
                    "'dimensions' must be an integer between 1 and 65536",
                    Some("dimensions"),
                ))
            }
        },
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(BadRequest::new(
                "'encoding_format' must be 'float' or 'base64'",
                Some("encoding_format"),
            ))
        }
    };

    let prompt_tokens = inputs.iter().map(Input::tokens).sum();
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let values = vector(input.hash(), dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Float(values)
            };
            Embedding {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let list = EmbeddingList {
        object: "list",
        data,
        model,
        usage: Usage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    Ok(json(StatusCode::OK, &list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_vectors() {
        let a = vector(Input::Text("hello").hash(), 16);
        let b = vector(Input::Text("hello").hash(), 16);
        let c = vector(Input::Text("world").hash(), 16);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| (-1.0..=1.0).contains(v)));
        let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_eq!(vector(0, 3).len(), 3);
    }
}
