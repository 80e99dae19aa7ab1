//! OpenAI `/v1/embeddings` ↔ Vertex AI's text-embedding `:predict`.
//!
//! Vertex does not serve the Gemini API's `batchEmbedContents`; its Google embedding models
//! (`text-embedding-005`, `gemini-embedding-001`, …) answer the prediction service's
//! `:predict` with `instances` / `predictions`, and report the tokens they read per input.

use johi_core::Usage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::embed::{dimensions, text_inputs, vector, wants_base64, EMBEDDING_FIELDS};
use super::TranslateError;
use crate::codec::Decoded;
use crate::openai_shape::{EmbeddingList, EmbeddingOut};
use crate::wire::{read_body, Lax, Object};

/// Translates an OpenAI embeddings body into a Vertex `:predict` body: one instance per input
/// string, `dimensions` as `parameters.outputDimensionality`.
///
/// `task_type` is the model's configured embedding `input_type` (see [`task_type`]), set on
/// every instance; without one Vertex's default applies. Token arrays and any field Vertex
/// cannot express (`user`, …) are refused naming them, as for the Gemini API. The body is
/// written from structs borrowing the inputs, not built as a `Value` tree.
pub fn encode_predict_embeddings(
    body: &Map<String, Value>,
    input_type: Option<&str>,
) -> Result<Vec<u8>, TranslateError> {
    for (key, value) in body {
        if !value.is_null() && !EMBEDDING_FIELDS.contains(&key.as_str()) {
            return Err(TranslateError::unsupported(
                key.as_str(),
                "Vertex AI's text-embedding predict has no equivalent",
            ));
        }
    }
    wants_base64(body)?;
    let task_type = input_type.map(task_type);
    let instances = text_inputs(body)?
        .into_iter()
        .map(|content| Instance { content, task_type })
        .collect();
    let parameters = dimensions(body)?.map(|n| Parameters {
        output_dimensionality: n,
    });
    serde_json::to_vec(&PredictRequest {
        instances,
        parameters,
    })
    .map_err(|e| TranslateError::invalid("body", e.to_string()))
}

/// Vertex's `task_type` for a model's configured `input_type`. Cohere's names (the ones the
/// config documents) are mapped to Vertex's, so one model may fail over between the two;
/// anything else (`SEMANTIC_SIMILARITY`, `QUESTION_ANSWERING`, …) is Vertex's own name and is
/// passed as written, for Vertex to judge.
pub fn task_type(input_type: &str) -> &str {
    match input_type {
        "search_document" => "RETRIEVAL_DOCUMENT",
        "search_query" => "RETRIEVAL_QUERY",
        "classification" => "CLASSIFICATION",
        "clustering" => "CLUSTERING",
        other => other,
    }
}

/// A text-embedding `:predict` body, borrowing the client's inputs.
#[derive(Serialize)]
struct PredictRequest<'a> {
    instances: Vec<Instance<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Parameters>,
}

/// One input; Vertex spells its instance keys in snake case.
#[derive(Serialize)]
struct Instance<'a> {
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_type: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Parameters {
    output_dimensionality: u64,
}

/// Translates a text-embedding `:predict` answer into OpenAI's embeddings list, in input
/// order, as bytes with the usage Johi meters.
///
/// Vectors are passed as the JSON numbers they were, or as base64 of little-endian `f32`s
/// when the client asked for `encoding_format: base64` (as for the Gemini API). The usage is
/// the sum of the predictions' `statistics.token_count` (prompt tokens; an embedding
/// generates none); a prediction without statistics counts zero. The answer is read
/// leniently ([`Lax`]) into typed structs, without a `Value` tree around the vectors.
pub fn decode_predict_embeddings(
    body: &[u8],
    request: &Map<String, Value>,
    model: &str,
) -> Result<Decoded, TranslateError> {
    let base64 = wants_base64(request).unwrap_or(false);
    let msg = read_body::<PredictIn>(body)?.get().unwrap_or_default();
    let predictions = msg
        .predictions
        .get()
        .ok_or_else(|| TranslateError::upstream("predictions", "missing"))?;
    let mut data = Vec::with_capacity(predictions.len());
    let mut tokens = 0u64;
    for (i, p) in predictions.into_iter().enumerate() {
        let embeddings = p.get().and_then(|p| p.embeddings.get()).unwrap_or_default();
        tokens = tokens.saturating_add(embeddings.statistics.get().map_or(0, |s| s.token_count()));
        let values = embeddings.values.get().ok_or_else(|| {
            TranslateError::upstream(format!("predictions[{i}].embeddings.values"), "missing")
        })?;
        let path = format!("predictions[{i}].embeddings.values");
        data.push(EmbeddingOut::new(i, vector(values, base64, &path)?));
    }
    let usage = Usage {
        input_tokens: tokens,
        ..Usage::default()
    };
    EmbeddingList::new(data, model, Some(usage)).write()
}

/// The parts of a `:predict` answer the translation reads (`metadata`, the billable
/// characters, is not Johi's unit).
#[derive(Deserialize, Default)]
#[serde(default)]
struct PredictIn {
    predictions: Lax<Vec<Lax<PredictionIn>>>,
}

impl Object for PredictIn {}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PredictionIn {
    embeddings: Lax<EmbeddingsIn>,
}

impl Object for PredictionIn {}

/// One input's vector, its values kept as the JSON numbers they were, and its statistics.
#[derive(Deserialize, Default)]
#[serde(default)]
struct EmbeddingsIn {
    values: Lax<Vec<Value>>,
    statistics: Lax<Statistics>,
}

impl Object for EmbeddingsIn {}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Statistics {
    /// A number; Vertex's answers are protobuf `Struct`s, whose numbers are doubles, so an
    /// integral count may arrive as `7.0`.
    token_count: Lax<f64>,
}

impl Object for Statistics {}

impl Statistics {
    /// The count as an integer; a negative or absurd one saturates (`as` does) rather than
    /// panicking the relay.
    fn token_count(&self) -> u64 {
        // Counts are integral; the saturating conversion is the intent.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.token_count.as_ref().map_or(0, |n| *n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn task_type_maps_cohere_names_and_passes_vertex_ones() {
        let out =
            encode_predict_embeddings(&map(json!({"input": "x"})), Some("search_query")).unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            out,
            json!({"instances": [{"content": "x", "task_type": "RETRIEVAL_QUERY"}]})
        );
        assert_eq!(task_type("SEMANTIC_SIMILARITY"), "SEMANTIC_SIMILARITY");
    }

    #[test]
    fn token_counts_are_summed_and_missing_statistics_count_zero() {
        let out = decode_predict_embeddings(
            br#"{"predictions":[
                {"embeddings":{"values":[1.0],"statistics":{"token_count":7.0}}},
                {"embeddings":{"values":[2.0]}},
                {"embeddings":{"values":[3.0],"statistics":{"token_count":2}}}]}"#,
            &Map::new(),
            "e",
        )
        .unwrap();
        assert_eq!(out.usage.unwrap().input_tokens, 9);
        let err =
            decode_predict_embeddings(br#"{"predictions":[{}]}"#, &Map::new(), "e").unwrap_err();
        assert_eq!(err.field(), "predictions[0].embeddings.values");
    }
}
