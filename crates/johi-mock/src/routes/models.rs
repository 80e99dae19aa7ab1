//! `GET /v1/models` and `GET /v1/models/{id}`.

use http::StatusCode;
use serde::Serialize;

use super::{json, Resp, CREATED};

/// The models the mock lists.
const MODELS: [&str; 2] = ["mock-small", "mock-large"];

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

impl<'a> Model<'a> {
    fn new(id: &'a str) -> Self {
        Model {
            id,
            object: "model",
            created: CREATED,
            owned_by: "johi-mock",
        }
    }
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

/// The model list.
pub(super) fn list() -> Resp {
    let list = ModelList {
        object: "list",
        data: MODELS.iter().map(|id| Model::new(id)).collect(),
    };
    json(StatusCode::OK, &list)
}

/// Any model id is "found", so tests can use whatever model names they like.
pub(super) fn one(id: &str) -> Resp {
    json(StatusCode::OK, &Model::new(id))
}
