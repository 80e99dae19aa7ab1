//! Tenants created at run time (through the admin API) merged into the config's tree.
//!
//! The config file's `tenants:` is validated at load; an operator may add organisations,
//! teams and projects while the gateway runs, and they are kept in the key store. Both end
//! up in one [`Tenants`] tree, so everything that checks tenants (key issuance, the model
//! allowance of an identity, JWT claims) sees one answer. A tenant declared in the config
//! wins over a run-time one with the same path.

use johi_core::model::ModelRegistry;

use crate::auth::{check_name, model_list, Organization, Team, Tenants};

/// Why a run-time tenant cannot be added to the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantError {
    /// The path is not `organization[/team[/project]]` of plain names, or a model is not
    /// configured; `field` is the request field at fault.
    Invalid {
        /// `path` or `allowed_models`.
        field: &'static str,
        /// What is wrong, for a person.
        message: String,
    },
    /// The parent (`org` of `org/team`, `org/team` of `org/team/project`) does not exist.
    NoParent(String),
    /// A tenant with this path already exists.
    Exists,
}

impl std::fmt::Display for TenantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TenantError::Invalid { field, message } => write!(f, "{field}: {message}"),
            TenantError::NoParent(parent) => {
                write!(f, "path: the parent '{parent}' does not exist")
            }
            TenantError::Exists => f.write_str("path: the tenant already exists"),
        }
    }
}

impl Tenants {
    /// Whether `path` (`org`, `org/team` or `org/team/project`) names a tenant.
    pub fn contains(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        let Some(org) = self.organizations.get(parts[0]) else {
            return false;
        };
        match parts[1..] {
            [] => true,
            [team] => org.teams.contains_key(team),
            [team, project] => org
                .teams
                .get(team)
                .is_some_and(|t| t.projects.contains_key(project)),
            _ => false,
        }
    }

    /// Whether `path` was created at run time rather than declared in the config file.
    pub fn is_runtime(&self, path: &str) -> bool {
        self.runtime.contains(path)
    }

    /// Whether the tenant at `path` has teams or projects under it.
    pub fn has_children(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        let Some(org) = self.organizations.get(parts[0]) else {
            return false;
        };
        match parts[1..] {
            [] => !org.teams.is_empty(),
            [team] => org.teams.get(team).is_some_and(|t| !t.projects.is_empty()),
            _ => false,
        }
    }

    /// Adds the run-time tenant `path` under its existing parent, its models checked against
    /// `models`. Nothing changes on error.
    pub fn add_runtime(
        &mut self,
        path: &str,
        allowed_models: Option<Vec<String>>,
        models: &ModelRegistry,
    ) -> Result<(), TenantError> {
        let mut errors = Vec::new();
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() > 3 {
            errors.push(format!("'{path}' is not organization[/team[/project]]"));
        }
        for part in &parts {
            check_name(part, "path", &mut errors);
        }
        if let Some(message) = errors.first() {
            let message = message.strip_prefix("path: ").unwrap_or(message).to_owned();
            return Err(TenantError::Invalid {
                field: "path",
                message,
            });
        }
        let allowed_models = model_list(allowed_models, "", models, &mut errors);
        if let Some(message) = errors.first() {
            return Err(TenantError::Invalid {
                field: "allowed_models",
                message: message.trim_start_matches('.').to_owned(),
            });
        }
        if self.contains(path) {
            return Err(TenantError::Exists);
        }
        let parent = || parts[..parts.len() - 1].join("/");
        let no_parent = || TenantError::NoParent(parent());
        match parts[..] {
            [org] => {
                self.organizations.insert(
                    org.to_owned(),
                    Organization {
                        allowed_models,
                        teams: Default::default(),
                    },
                );
            }
            [org, team] => {
                let org = self.organizations.get_mut(org).ok_or_else(no_parent)?;
                org.teams.insert(
                    team.to_owned(),
                    Team {
                        allowed_models,
                        projects: Default::default(),
                    },
                );
            }
            [org, team, project] => {
                let team = self
                    .organizations
                    .get_mut(org)
                    .and_then(|o| o.teams.get_mut(team))
                    .ok_or_else(no_parent)?;
                team.projects.insert(project.to_owned(), allowed_models);
            }
            _ => return Err(no_parent()),
        }
        self.runtime.insert(path.to_owned());
        Ok(())
    }

    /// This tree without its run-time tenants, then with `runtime` (path and models, parents
    /// first) added: how a new config, or a changed set of run-time tenants, is merged. A
    /// run-time tenant the config declares too is the config's; one that no longer fits
    /// (its parent or a model is gone) is left out, and described in the second value.
    pub fn with_runtime<'a>(
        &self,
        runtime: impl IntoIterator<Item = (&'a str, Option<Vec<String>>)>,
        models: &ModelRegistry,
    ) -> (Tenants, Vec<String>) {
        let mut merged = self.config_only();
        let mut skipped = Vec::new();
        for (path, allowed_models) in runtime {
            match merged.add_runtime(path, allowed_models, models) {
                Ok(()) | Err(TenantError::Exists) => {}
                Err(e) => skipped.push(format!("tenant '{path}': {e}")),
            }
        }
        (merged, skipped)
    }

    /// The tenants declared in the config file alone.
    fn config_only(&self) -> Tenants {
        let mut tree = Tenants {
            organizations: self.organizations.clone(),
            runtime: Default::default(),
        };
        // Children first, so a parent's removal never hides a child still to be removed.
        let mut paths: Vec<&String> = self.runtime.iter().collect();
        paths.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        for path in paths {
            let parts: Vec<&str> = path.split('/').collect();
            match parts[..] {
                [org] => {
                    tree.organizations.shift_remove(org);
                }
                [org, team] => {
                    if let Some(o) = tree.organizations.get_mut(org) {
                        o.teams.shift_remove(team);
                    }
                }
                [org, team, project] => {
                    if let Some(t) = tree
                        .organizations
                        .get_mut(org)
                        .and_then(|o| o.teams.get_mut(team))
                    {
                        t.projects.shift_remove(project);
                    }
                }
                _ => {}
            }
        }
        tree
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn runtime_tenants_merge_under_config_ones_and_are_redone_per_config() {
        let models = ModelRegistry::default();
        let mut config = Tenants::default();
        config.add_runtime("acme", None, &models).unwrap();
        config.runtime.clear(); // as if declared in the file
        let (merged, skipped) = config.with_runtime(
            [
                ("acme", None),
                ("acme/search", None),
                ("acme/search/web", None),
                ("globex/x", None),
                ("a/b/c/d", None),
            ],
            &models,
        );
        assert!(merged.contains("acme/search/web"));
        assert!(!merged.is_runtime("acme") && merged.is_runtime("acme/search"));
        assert!(merged.has_children("acme/search"));
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        // Redone without the team: its project goes too, and the config's org stays.
        let (again, skipped) = merged.with_runtime([("acme/search/web", None)], &models);
        assert!(again.contains("acme") && !again.contains("acme/search"));
        assert_eq!(skipped.len(), 1);
    }
}
