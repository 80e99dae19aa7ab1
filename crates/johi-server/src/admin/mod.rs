//! The admin API: run-time keys and tenants, the tenant tree, limits with their consumption, and spend,
//! on a listener of its own.
//!
//! * **Its own port.** The admin router is never mounted on the public listener, so no
//!   client of the inference API can reach it whatever the public routes allow; operators
//!   bind it to loopback or a private network (`admin.listen`).
//! * **One credential.** Every admin request (unknown paths included, so the route map is
//!   not revealed) needs `Authorization: Bearer <admin.token>`. The config keeps only the
//!   token's SHA-256; a presented token is hashed and compared in constant time, and the
//!   token is read from the current config, so a reload rotates it.
//! * **One route table.** [`routes`] lists every route with its handler; the router is built
//!   from it and `docs/admin-openapi.yaml` is tested against it, so the documentation and the
//!   server cannot drift apart.

mod error;
mod keys;
pub mod runtime_keys;
mod tenants;
mod views;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use http::Method;
use johi_auth::KeyHash;
use subtle::ConstantTimeEq;
use tower_http::catch_panic::CatchPanicLayer;

pub use error::AdminError;

use crate::{Loader, Shared};

/// The largest admin request body read: a key's fields are a few hundred bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What admin handlers work on: the live runtime (config, tenants, limits) and the stores the
/// process opened at start.
#[derive(Clone)]
pub struct AdminState {
    shared: Arc<Shared>,
    loader: Arc<Loader>,
}

/// Every admin route: method, path (axum syntax, `{id}` for a parameter) and handler. The
/// router is built from this table alone.
fn table() -> Vec<(Method, &'static str, MethodRouter<AdminState>)> {
    vec![
        (Method::GET, "/admin/v1/keys", get(keys::list)),
        (Method::POST, "/admin/v1/keys", post(keys::create)),
        (Method::GET, "/admin/v1/keys/{id}", get(keys::get_one)),
        (
            Method::POST,
            "/admin/v1/keys/{id}/revoke",
            post(keys::revoke),
        ),
        (Method::GET, "/admin/v1/tenants", get(views::tenants)),
        (Method::POST, "/admin/v1/tenants", post(tenants::create)),
        (
            Method::DELETE,
            "/admin/v1/tenants/{path}",
            delete(tenants::delete),
        ),
        (Method::GET, "/admin/v1/limits", get(views::limits)),
        (Method::GET, "/admin/v1/usage/spend", get(views::spend)),
        (
            Method::GET,
            "/admin/v1/usage/chargeback",
            get(views::chargeback),
        ),
    ]
}

/// Every admin route as (method, path), for the OpenAPI test.
pub fn routes() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The admin router over the gateway's shared state and loader.
pub(crate) fn router(shared: Arc<Shared>, loader: Arc<Loader>) -> Router {
    let state = AdminState { shared, loader };
    let mut by_path: BTreeMap<&'static str, MethodRouter<AdminState>> = BTreeMap::new();
    for (_, path, handler) in table() {
        let merged = match by_path.remove(path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(path, merged);
    }
    let mut router = Router::new();
    for (path, handler) in by_path {
        router = router.route(path, handler);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// Refuses any request without the configured admin token, before routing.
async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let runtime = state.shared.runtime.load();
    let expected = runtime.config.admin.as_ref().map(|a| &a.token_hash);
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| KeyHash::of(token.trim()));
    let allowed = match (expected, presented) {
        (Some(expected), Some(presented)) => {
            bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
        }
        // No token presented, or the admin section was removed by a reload: nobody is let in.
        _ => false,
    };
    drop(runtime);
    if allowed {
        next.run(request).await
    } else {
        AdminError::Unauthorized.into_response()
    }
}

async fn not_found(request: Request) -> Response {
    AdminError::NotFound {
        message: format!(
            "Unknown admin route: {} {} (see docs/admin-openapi.yaml)",
            request.method(),
            request.uri().path()
        ),
        code: "unknown_url",
    }
    .into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    AdminError::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    }
    .into_response()
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("admin handler panicked");
    AdminError::Internal {
        message: "the admin API hit an unexpected error".into(),
    }
    .into_response()
}

/// A JSON response with `status`.
fn json(status: http::StatusCode, value: serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
