//! The tenant tree as credentials checked at request time (JWTs) need it: which
//! `organization[/team[/project]]` paths exist, and the model allowance each inherits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

/// The owner paths and their allowances.
type Owners = HashMap<String, Option<Vec<String>>>;

/// Every valid owner path of one config load (with the tenants created at run time), with
/// its inherited model allowance.
///
/// Keys and certificate identities are resolved against the tenant tree at load; a token's
/// tenants are only known when it arrives, so the verifier looks them up here, and a token
/// naming a tenant that is not declared is refused like any invalid credential.
///
/// Clones share one map behind an atomic pointer, so a tenant created or deleted through
/// the admin API reaches the verifier of the running config ([`TenantIndex::replace`])
/// without a reload; a lookup takes no lock.
#[derive(Debug, Clone, Default)]
pub struct TenantIndex {
    owners: Arc<ArcSwap<Owners>>,
    /// Bumped after every change of `owners`, shared by the clones: what the JWT cache
    /// compares to tell whether a token's mapping may be out of date.
    generation: Arc<AtomicU64>,
}

impl TenantIndex {
    /// Records `path` (`org`, `org/team` or `org/team/project`) with the allowance already
    /// intersected over its levels (`None`: any model). Copies the map: meant for building
    /// an index, not for the request path.
    pub fn insert(&mut self, path: String, allowed_models: Option<Vec<String>>) {
        let mut owners = Owners::clone(&self.owners.load());
        owners.insert(path, allowed_models);
        self.owners.store(Arc::new(owners));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Makes every clone of this index see `other`'s paths from the next lookup.
    pub fn replace(&self, other: &TenantIndex) {
        self.owners.store(other.owners.load_full());
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The inherited allowance of the owner path, or `None` if the path is not declared.
    /// `Some(None)` is a declared tenant limited to no particular models.
    pub fn allowance(
        &self,
        organization: &str,
        team: Option<&str>,
        project: Option<&str>,
    ) -> Option<Option<Vec<String>>> {
        let path = match (team, project) {
            (None, None) => organization.to_owned(),
            (Some(team), None) => format!("{organization}/{team}"),
            (Some(team), Some(project)) => format!("{organization}/{team}/{project}"),
            (None, Some(_)) => return None,
        };
        self.owners.load().get(&path).cloned()
    }
}

/// Which change of the index a lookup saw: held by the JWT verifier's cache to tell whether
/// the tenants changed (a team deleted, an allowance narrowed) since a token was mapped. A
/// number, not the map: a cache entry must not keep an old tenant tree alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TenantVersion(u64);

impl TenantIndex {
    /// The version as of now. Taken before a lookup: a change landing between the two
    /// leaves the version behind, so the entry made from the lookup is already stale (never
    /// the other way round, since a change stores the map before it bumps the number).
    pub(crate) fn version(&self) -> TenantVersion {
        TenantVersion(self.generation.load(Ordering::Acquire))
    }

    /// Whether the index is unchanged since `version`.
    pub(crate) fn is_version(&self, version: &TenantVersion) -> bool {
        self.version() == *version
    }
}

impl FromIterator<(String, Option<Vec<String>>)> for TenantIndex {
    /// Builds an index in one go (no copy per path, unlike [`TenantIndex::insert`]).
    fn from_iter<I: IntoIterator<Item = (String, Option<Vec<String>>)>>(paths: I) -> Self {
        TenantIndex {
            owners: Arc::new(ArcSwap::from_pointee(paths.into_iter().collect())),
            generation: Arc::default(),
        }
    }
}

/// The models in both allowances (`None` is "any", so it leaves the other unchanged).
pub fn intersect_models(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
    match (a, b) {
        (None, other) | (other, None) => other,
        (Some(a), Some(b)) => Some(a.into_iter().filter(|m| b.contains(m)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::TenantIndex;

    /// The verifier holds a clone of the index built at load; a run-time change replaces
    /// what every clone sees.
    #[test]
    fn replacing_an_index_reaches_its_clones() {
        let mut built = TenantIndex::default();
        built.insert("acme".into(), None);
        let held = built.clone();
        let mut next = TenantIndex::default();
        next.insert("acme".into(), None);
        next.insert("acme/labs".into(), Some(vec!["m".into()]));
        assert_eq!(held.allowance("acme", Some("labs"), None), None);
        built.replace(&next);
        assert_eq!(
            held.allowance("acme", Some("labs"), None),
            Some(Some(vec!["m".to_owned()]))
        );
    }
}
