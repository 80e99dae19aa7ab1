//! `providers.<name>.aws:` — the region and keys a Bedrock provider signs with (SigV4).

use std::path::PathBuf;

use johi_core::model::{AwsAuth, Protocol, Secret};

use crate::raw::RawAws;

/// The signing service of the Bedrock runtime (the credential scope's service name).
const BEDROCK_SERVICE: &str = "bedrock";

/// Validates the `aws` block: required (with a region) for `protocol: bedrock`, refused for
/// every other protocol, so a key meant for AWS is never configured where it is not used.
/// `profile` and `credentials_file` pick the credential chain's source, so they are refused
/// next to static keys (which would silently win).
pub(crate) fn aws(
    path: &str,
    protocol: Protocol,
    raw: Option<RawAws>,
    resolve: &dyn Fn(&str) -> PathBuf,
    errors: &mut Vec<String>,
) -> Option<AwsAuth> {
    let secret = |v: Option<String>| v.filter(|s| !s.is_empty()).map(Secret::new);
    match (protocol, raw) {
        (Protocol::Bedrock, Some(raw)) => {
            let region = raw.region.filter(|r| !r.is_empty()).or_else(|| {
                errors.push(format!("{path}.aws.region: required for protocol bedrock"));
                None
            })?;
            if !region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                errors.push(format!(
                    "{path}.aws.region: '{region}' is not a region name"
                ));
                return None;
            }
            let auth = AwsAuth {
                region,
                service: BEDROCK_SERVICE.to_owned(),
                access_key_id: secret(raw.access_key_id),
                secret_access_key: secret(raw.secret_access_key),
                session_token: secret(raw.session_token),
                profile: raw.profile.filter(|p| !p.is_empty()),
                credentials_file: raw
                    .credentials_file
                    .filter(|f| !f.is_empty())
                    .map(|f| resolve(&f)),
            };
            if auth.access_key_id.is_some() != auth.secret_access_key.is_some() {
                errors.push(format!(
                    "{path}.aws: access_key_id and secret_access_key go together"
                ));
            }
            let static_keys = auth.access_key_id.is_some()
                || auth.secret_access_key.is_some()
                || auth.session_token.is_some();
            if static_keys && auth.profile.is_some() {
                errors.push(format!(
                    "{path}.aws.profile: a profile replaces static keys (access_key_id, secret_access_key, session_token); set only one"
                ));
            }
            if static_keys && auth.credentials_file.is_some() {
                errors.push(format!(
                    "{path}.aws.credentials_file: static keys are used as they are; a credentials file is for the credential chain"
                ));
            }
            Some(auth)
        }
        (Protocol::Bedrock, None) => {
            errors.push(format!(
                "{path}.aws: required for protocol bedrock (at least a region)"
            ));
            None
        }
        (_, Some(_)) => {
            errors.push(format!("{path}.aws: only for protocol bedrock"));
            None
        }
        (_, None) => None,
    }
}

/// A Bedrock provider's base URL when config gives none: the region's runtime endpoint.
pub(crate) fn default_base_url(auth: Option<&AwsAuth>) -> String {
    auth.map(|a| format!("https://bedrock-runtime.{}.amazonaws.com", a.region))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::parse;

    fn env(name: &str) -> Option<String> {
        (name == "AWS_SECRET").then(|| "s3cr3t".to_owned())
    }

    #[test]
    fn a_bedrock_provider_defaults_its_url_from_the_region() {
        let cfg = parse(
            r#"
server: { listen: "127.0.0.1:0" }
auth: { public_routes: ["*"] }
providers:
  aws: { protocol: bedrock, aws: { region: eu-central-1, access_key_id: AKID, secret_access_key: "${AWS_SECRET}" } }
  env: { protocol: bedrock, base_url: "http://127.0.0.1:9", aws: { region: us-east-1 } }
models:
  b: { targets: [{ provider: aws, model: m }, { provider: env, model: m }] }
"#,
            Path::new("."),
            &env,
        )
        .unwrap();
        let route = cfg.models.get("b").unwrap();
        let p = &route.targets[0].provider;
        assert_eq!(
            p.base_url,
            "https://bedrock-runtime.eu-central-1.amazonaws.com"
        );
        let aws = p.aws.as_ref().unwrap();
        assert_eq!(
            (aws.region.as_str(), aws.service.as_str()),
            ("eu-central-1", "bedrock")
        );
        assert_eq!(aws.secret_access_key.as_ref().unwrap().expose(), "s3cr3t");
        let p = &route.targets[1].provider;
        assert_eq!(p.base_url, "http://127.0.0.1:9");
        assert!(
            p.aws.as_ref().unwrap().access_key_id.is_none(),
            "read from the environment"
        );
    }

    #[test]
    fn aws_blocks_are_checked() {
        let err = parse(
            r#"
providers:
  none:   { protocol: bedrock }
  noreg:  { protocol: bedrock, aws: { access_key_id: a, secret_access_key: b } }
  half:   { protocol: bedrock, aws: { region: us-east-1, access_key_id: a } }
  openai: { base_url: "http://127.0.0.1:1/v1", aws: { region: us-east-1 } }
models:
  m: { targets: [{ provider: openai, model: x }] }
"#,
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "providers.none.aws: required for protocol bedrock",
            "providers.noreg.aws.region: required for protocol bedrock",
            "providers.half.aws: access_key_id and secret_access_key go together",
            "providers.openai.aws: only for protocol bedrock",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
    }

    #[test]
    fn a_profile_picks_the_credential_chain_and_excludes_static_keys() {
        let cfg = parse(
            r#"
server: { listen: "127.0.0.1:0" }
auth: { public_routes: ["*"] }
providers:
  prof: { protocol: bedrock, aws: { region: us-east-1, profile: bedrock, credentials_file: aws/credentials } }
models:
  b: { targets: [{ provider: prof, model: m }] }
"#,
            Path::new("/etc/johi"),
            &env,
        )
        .unwrap();
        let aws = cfg.models.get("b").unwrap().targets[0]
            .provider
            .aws
            .clone()
            .unwrap();
        assert_eq!(aws.profile.as_deref(), Some("bedrock"));
        assert_eq!(
            aws.credentials_file.as_deref(),
            Some(Path::new("/etc/johi/aws/credentials")),
            "resolved against the config's directory"
        );
        assert!(aws.access_key_id.is_none() && aws.secret_access_key.is_none());

        let err = parse(
            r#"
providers:
  both:  { protocol: bedrock, aws: { region: us-east-1, profile: p, access_key_id: a, secret_access_key: b } }
  token: { protocol: bedrock, aws: { region: us-east-1, profile: p, session_token: t } }
  file:  { protocol: bedrock, aws: { region: us-east-1, credentials_file: c, access_key_id: a, secret_access_key: b } }
models:
  m: { targets: [{ provider: both, model: x }] }
"#,
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        for expected in [
            "providers.both.aws.profile: a profile replaces static keys",
            "providers.token.aws.profile: a profile replaces static keys",
            "providers.file.aws.credentials_file: static keys are used as they are",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
    }
}
