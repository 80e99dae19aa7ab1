//! The tenant tree as credentials checked at request time (JWTs) need it: which
//! `organization[/team[/project]]` paths exist, and the model allowance each inherits.

use std::collections::HashMap;

/// Every valid owner path of one config load, with its inherited model allowance.
///
/// Keys and certificate identities are resolved against the tenant tree at load; a token's
/// tenants are only known when it arrives, so the verifier looks them up here, and a token
/// naming a tenant the config does not declare is refused like any invalid credential.
#[derive(Debug, Clone, Default)]
pub struct TenantIndex {
    owners: HashMap<String, Option<Vec<String>>>,
}

impl TenantIndex {
    /// Records `path` (`org`, `org/team` or `org/team/project`) with the allowance already
    /// intersected over its levels (`None`: any model).
    pub fn insert(&mut self, path: String, allowed_models: Option<Vec<String>>) {
        self.owners.insert(path, allowed_models);
    }

    /// The inherited allowance of the owner path, or `None` if the path is not declared.
    /// `Some(None)` is a declared tenant limited to no particular models.
    pub fn allowance(
        &self,
        organization: &str,
        team: Option<&str>,
        project: Option<&str>,
    ) -> Option<&Option<Vec<String>>> {
        let path = match (team, project) {
            (None, None) => organization.to_owned(),
            (Some(team), None) => format!("{organization}/{team}"),
            (Some(team), Some(project)) => format!("{organization}/{team}/{project}"),
            (None, Some(_)) => return None,
        };
        self.owners.get(&path)
    }
}

/// The models in both allowances (`None` is "any", so it leaves the other unchanged).
pub fn intersect_models(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
    match (a, b) {
        (None, other) | (other, None) => other,
        (Some(a), Some(b)) => Some(a.into_iter().filter(|m| b.contains(m)).collect()),
    }
}
