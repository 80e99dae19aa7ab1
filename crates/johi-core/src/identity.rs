//! Who is calling: the tenant a request is charged to and what it may use.
//!
//! Authentication writes one [`Identity`] per request (the identity facet); authorisation,
//! limits, the ledger and the audit record read it. It is built once per credential at config
//! load and shared (`Arc`), so attaching it to a request costs a reference count.

use std::fmt;

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A virtual API key issued by Johi.
    ApiKey,
    /// A signed JSON Web Token.
    Jwt,
    /// A TLS client certificate.
    Mtls,
    /// No credential: the route is configured as public.
    Anonymous,
}

impl AuthMethod {
    /// The method's name in audit records and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Mtls => "mtls",
            AuthMethod::Anonymous => "anonymous",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operations an identity may be allowed or refused, as a small bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteSet(u8);

/// One operation of Johi's public surface, for authorisation and public-route settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Route {
    /// `POST /v1/chat/completions`
    ChatCompletions = 0,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `GET /v1/models` and `GET /v1/models/{id}`
    Models,
}

impl Route {
    /// Every route, in declaration order.
    pub const ALL: [Route; 4] = [
        Route::ChatCompletions,
        Route::Completions,
        Route::Embeddings,
        Route::Models,
    ];

    /// The route's path, as written in config (`auth.public_routes`, `allowed_routes`).
    pub fn path(self) -> &'static str {
        match self {
            Route::ChatCompletions => "/v1/chat/completions",
            Route::Completions => "/v1/completions",
            Route::Embeddings => "/v1/embeddings",
            Route::Models => "/v1/models",
        }
    }

    /// The route for a configured path, if it is one of Johi's.
    pub fn from_path(path: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.path() == path)
    }
}

impl From<crate::Api> for Route {
    fn from(api: crate::Api) -> Route {
        match api {
            crate::Api::ChatCompletions => Route::ChatCompletions,
            crate::Api::Completions => Route::Completions,
            crate::Api::Embeddings => Route::Embeddings,
        }
    }
}

impl RouteSet {
    /// No route.
    pub const NONE: RouteSet = RouteSet(0);
    /// Every route.
    pub const ALL: RouteSet = RouteSet(0b1111);

    /// Whether `route` is in the set.
    pub fn contains(self, route: Route) -> bool {
        self.0 & (1 << route as u8) != 0
    }

    /// The set with `route` added.
    pub fn with(self, route: Route) -> RouteSet {
        RouteSet(self.0 | (1 << route as u8))
    }

    /// The routes in both sets.
    pub fn intersect(self, other: RouteSet) -> RouteSet {
        RouteSet(self.0 & other.0)
    }
}

/// The caller of one request: the tenant it is attributed to and what it may use.
///
/// Every tenant field is a name from the config's `tenants:` (users are free-form). `None`
/// means the credential is not tied to that level: a key owned by a team has no project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// The credential's stable ID (a key's `id`, a token's subject, a certificate's name);
    /// what the audit log and the ledger record, never the secret.
    pub credential_id: Option<String>,
    /// Organisation.
    pub organization: Option<String>,
    /// Team within the organisation.
    pub team: Option<String>,
    /// Project within the team.
    pub project: Option<String>,
    /// End user.
    pub user: Option<String>,
    /// Logical models this identity may call; `None` means every configured model. Already
    /// the intersection of the credential's list and its tenants' lists.
    pub allowed_models: Option<Vec<String>>,
    /// Routes this identity may call.
    pub allowed_routes: RouteSet,
}

impl Identity {
    /// The identity of a request on a public route that presented no credential.
    pub fn anonymous() -> Identity {
        Identity {
            method: AuthMethod::Anonymous,
            credential_id: None,
            organization: None,
            team: None,
            project: None,
            user: None,
            allowed_models: None,
            allowed_routes: RouteSet::ALL,
        }
    }

    /// Whether this identity may call the logical model `model`.
    pub fn may_use_model(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|m| m == model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_sets_and_model_lists() {
        let set = RouteSet::NONE.with(Route::Embeddings);
        assert!(set.contains(Route::Embeddings));
        assert!(!set.contains(Route::Models));
        assert_eq!(RouteSet::ALL.intersect(set), set);
        assert_eq!(Route::from_path("/v1/models"), Some(Route::Models));
        assert_eq!(Route::from_path("/v1/files"), None);
        let mut id = Identity::anonymous();
        assert!(id.may_use_model("anything"));
        id.allowed_models = Some(vec!["a".into()]);
        assert!(id.may_use_model("a"));
        assert!(!id.may_use_model("b"));
    }
}
