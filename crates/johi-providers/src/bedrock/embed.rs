//! OpenAI `/v1/embeddings` ↔ Bedrock's `InvokeModel` for embedding models.
//!
//! Converse serves no embeddings; Bedrock embeds through `InvokeModel`
//! (`POST {base}/model/{modelId}/invoke`), whose body is the model family's own. Two families
//! are translated: Amazon Titan Text Embeddings (one text per call) and Cohere Embed (a list
//! of texts). Any other model is refused before anything is sent, since Johi cannot know its
//! body. Signing is the credentials processor's, as for Converse.

use johi_core::Usage;
use serde::de::{MapAccess, SeqAccess};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::codec::Decoded;
use crate::gemini::{dimensions, texts_for, vector, wants_base64, Vector};
use crate::openai_shape::{present, EmbeddingList, EmbeddingOut};
use crate::wire::{read_body, Accept, Lax, Object};
use crate::TranslateError;

/// The embedding model families Bedrock's `InvokeModel` is spoken to, by model id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedFamily {
    /// `amazon.titan-embed-text-*`: `{inputText}` → `{embedding, inputTextTokenCount}`.
    Titan,
    /// `cohere.embed-*`: `{texts, input_type}` → `{embeddings}`.
    Cohere,
}

impl EmbedFamily {
    /// The family of a Bedrock model id, or `None` for a model Johi cannot embed with.
    ///
    /// The id may be a foundation model id (`amazon.titan-embed-text-v2:0`), a cross-region
    /// inference profile (`us.cohere.embed-v4:0`: one geography segment before it) or an ARN
    /// ending in either (`arn:…:foundation-model/cohere.embed-english-v3`).
    pub fn of(model_id: &str) -> Option<EmbedFamily> {
        let id = model_id.rsplit('/').next().unwrap_or(model_id);
        let family = |id: &str| {
            if id.starts_with("amazon.titan-embed-text") {
                Some(EmbedFamily::Titan)
            } else if id.starts_with("cohere.embed") {
                Some(EmbedFamily::Cohere)
            } else {
                None
            }
        };
        family(id).or_else(|| id.split_once('.').and_then(|(_, rest)| family(rest)))
    }
}

/// Cohere requires an `input_type`; the Cohere adapter's default, so a model fails over
/// between Cohere and Bedrock with the same meaning.
const DEFAULT_INPUT_TYPE: &str = crate::cohere::DEFAULT_INPUT_TYPE;

/// Translates an OpenAI embeddings body into an `InvokeModel` body for `model_id`'s family.
///
/// Titan embeds one text per request: an `input` of more than one string is refused naming
/// `input` (one string, or a one-element array, is fine); `dimensions` is Titan's
/// `dimensions`. Cohere takes the texts as a list with the model's configured `input_type`
/// (or the client's, or `search_document`); `dimensions` is `output_dimension`, which only
/// Embed v4 has, so it is refused for other Cohere models. Vectors are always asked for as
/// floats: `encoding_format: base64` is written by the decoder, as for Gemini. A model of
/// another family, token arrays and unknown fields are refused naming them.
pub fn encode_embeddings(
    body: &Map<String, Value>,
    model_id: &str,
    input_type: Option<&str>,
) -> Result<Vec<u8>, TranslateError> {
    let Some(family) = EmbedFamily::of(model_id) else {
        return Err(TranslateError::unsupported(
            "model",
            format!(
                "Bedrock model `{model_id}` has no embeddings translation: Johi embeds through \
                 InvokeModel with Amazon Titan Text (amazon.titan-embed-text-*) and Cohere \
                 Embed (cohere.embed-*) models only"
            ),
        ));
    };
    for (key, value) in body {
        let known = matches!(
            key.as_str(),
            "model" | "input" | "encoding_format" | "dimensions"
        ) || (family == EmbedFamily::Cohere && key == "input_type");
        if !known && !value.is_null() {
            return Err(TranslateError::unsupported(
                key.as_str(),
                "Bedrock's InvokeModel embeddings have no equivalent",
            ));
        }
    }
    wants_base64(body)?;
    let texts = texts_for(
        body,
        "Bedrock's embedding models embed text only, not token ids",
    )?;
    let dimensions = dimensions(body)?;
    let out = match family {
        EmbedFamily::Titan => {
            let [input_text] = texts[..] else {
                return Err(TranslateError::unsupported(
                    "input",
                    "Titan embeds one text per request; send one string",
                ));
            };
            serde_json::to_vec(&TitanRequest {
                input_text,
                dimensions,
            })
        }
        EmbedFamily::Cohere => {
            let is_v4 = EmbedFamily::cohere_v4(model_id);
            if dimensions.is_some() && !is_v4 {
                return Err(TranslateError::unsupported(
                    "dimensions",
                    "only Cohere Embed v4 on Bedrock sets an output dimension",
                ));
            }
            let input_type = match present(body, "input_type") {
                None => input_type.unwrap_or(DEFAULT_INPUT_TYPE),
                Some(v) => v
                    .as_str()
                    .ok_or_else(|| TranslateError::invalid("input_type", "must be a string"))?,
            };
            serde_json::to_vec(&CohereRequest {
                texts,
                input_type,
                embedding_types: ["float"],
                output_dimension: dimensions,
            })
        }
    };
    out.map_err(|e| TranslateError::invalid("body", e.to_string()))
}

impl EmbedFamily {
    /// Whether a Cohere model id is Embed v4 (the one with `output_dimension`).
    fn cohere_v4(model_id: &str) -> bool {
        model_id.contains("cohere.embed-v4")
    }
}

/// A Titan Text Embeddings body. `normalize` is left to Titan's default (true for v2).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TitanRequest<'a> {
    input_text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u64>,
}

/// A Cohere Embed body on Bedrock (the model is in the URL, not the body).
#[derive(Serialize)]
struct CohereRequest<'a> {
    texts: Vec<&'a str>,
    input_type: &'a str,
    embedding_types: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimension: Option<u64>,
}

/// Translates an `InvokeModel` embeddings answer into OpenAI's embeddings list, as bytes with
/// the usage Johi meters.
///
/// The family is read from the answer's shape (Titan's `embedding`, Cohere's `embeddings`),
/// since the decoder is given the client's model name, not the upstream id. Titan's usage is
/// its `inputTextTokenCount`; Bedrock's Cohere answer carries no token count (Bedrock puts it
/// in a response header the codec does not see): the body shows zero and no usage is
/// metered here, so Johi counts the input itself, as for the Gemini API.
/// Vectors are passed as the JSON numbers they were, or as base64 of little-endian `f32`s
/// when the client asked for `encoding_format: base64`.
pub fn decode_embeddings(
    body: &[u8],
    request: &Map<String, Value>,
    model: &str,
) -> Result<Decoded, TranslateError> {
    let base64 = wants_base64(request).unwrap_or(false);
    let msg = read_body::<InvokeIn>(body)?.get().unwrap_or_default();
    if let Lax::Is(values) = msg.embedding {
        let usage = Usage {
            input_tokens: msg.input_text_token_count.get().unwrap_or(0),
            ..Usage::default()
        };
        let data = vec![EmbeddingOut::new(0, vector(values, base64, "embedding")?)];
        return EmbeddingList::new(data, model, Some(usage)).write();
    }
    let (path, vectors) = match msg.embeddings {
        Lax::Is(CohereEmbeddings::List(v)) => ("embeddings", v),
        Lax::Is(CohereEmbeddings::ByType(t)) => match t.float {
            Lax::Is(v) => ("embeddings.float", v),
            _ => return Err(TranslateError::upstream("embeddings.float", "missing")),
        },
        Lax::Absent | Lax::Null | Lax::Other => {
            return Err(TranslateError::upstream(
                "embedding",
                "neither Titan's embedding nor Cohere's embeddings",
            ))
        }
    };
    let mut data: Vec<EmbeddingOut<Vector>> = Vec::with_capacity(vectors.len());
    for (i, v) in vectors.into_iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Value::Array(values) = v else {
            return Err(TranslateError::upstream(path, "not an embedding"));
        };
        data.push(EmbeddingOut::new(i, vector(values, base64, &path)?));
    }
    EmbeddingList::new(data, model, Some(Usage::default())).write_unmetered()
}

/// The parts of either family's answer the translation reads.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct InvokeIn {
    /// Titan's vector.
    embedding: Lax<Vec<Value>>,
    /// Titan's count of the tokens it read.
    input_text_token_count: Lax<u64>,
    /// Cohere's vectors.
    #[serde(rename = "embeddings")]
    embeddings: Lax<CohereEmbeddings>,
}

impl Object for InvokeIn {}

/// Cohere's `embeddings`: a list of float vectors (no `embedding_types` asked, the
/// `embeddings_floats` answer), or vectors by type.
enum CohereEmbeddings {
    List(Vec<Value>),
    ByType(ByType),
}

impl<'de> Accept<'de> for CohereEmbeddings {
    fn from_seq<A: SeqAccess<'de>>(seq: A) -> Result<Option<Self>, A::Error> {
        Ok(Vec::from_seq(seq)?.map(CohereEmbeddings::List))
    }
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        Ok(ByType::from_map(map)?.map(CohereEmbeddings::ByType))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ByType {
    float: Lax<Vec<Value>>,
}

impl Object for ByType {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn families_are_read_from_ids_profiles_and_arns() {
        assert_eq!(
            EmbedFamily::of("amazon.titan-embed-text-v2:0"),
            Some(EmbedFamily::Titan)
        );
        assert_eq!(
            EmbedFamily::of("us.cohere.embed-v4:0"),
            Some(EmbedFamily::Cohere)
        );
        assert_eq!(
            EmbedFamily::of("arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-english-v3"),
            Some(EmbedFamily::Cohere)
        );
        assert_eq!(EmbedFamily::of("amazon.titan-embed-image-v1"), None);
        assert_eq!(EmbedFamily::of("anthropic.claude-3-haiku"), None);
    }

    #[test]
    fn titan_takes_one_text_and_cohere_v3_no_dimensions() {
        let err = encode_embeddings(
            &map(json!({"input": ["a", "b"]})),
            "amazon.titan-embed-text-v2:0",
            None,
        )
        .unwrap_err();
        assert_eq!(err.field(), "input");
        let err = encode_embeddings(
            &map(json!({"input": "a", "dimensions": 256})),
            "cohere.embed-english-v3",
            None,
        )
        .unwrap_err();
        assert_eq!(err.field(), "dimensions");
        let err = encode_embeddings(&map(json!({"input": "a"})), "meta.llama3", None).unwrap_err();
        assert_eq!(err.field(), "model");
    }

    #[test]
    fn a_missing_vector_is_an_upstream_error() {
        let err = decode_embeddings(br#"{"id":"x"}"#, &Map::new(), "e").unwrap_err();
        assert!(matches!(err, TranslateError::Upstream { .. }));
        let err = decode_embeddings(br#"{"embeddings":[1]}"#, &Map::new(), "e").unwrap_err();
        assert_eq!(err.field(), "embeddings[0]");
    }
}
