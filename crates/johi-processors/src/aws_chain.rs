//! AWS credentials for Bedrock providers configured without static keys, from the official
//! `aws-config` crate: the standard chain (environment, shared config/credentials files and
//! their profiles incl. `role_arn`, web identity / EKS IRSA, ECS container, EC2 IMDS), or only
//! the named `aws.profile` when one is configured.
//!
//! [`AwsCredentialSource`] is built at load and does no I/O until a request needs credentials.
//! It caches them until five minutes before they expire (credentials without an expiry, such
//! as environment variables or a credentials file, are re-read every five minutes so a rotated
//! key needs no reload), and fetches single-flight: requests that need credentials while a
//! fetch is in progress wait for that fetch, like the Vertex token source.

use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider as TlsProvider};
use aws_smithy_types::error::display::DisplayErrorContext;
use johi_core::model::AwsAuth;

/// How long before their expiry cached credentials are replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// How long credentials without an expiry are kept before the chain is asked again.
const NO_EXPIRY_TTL: Duration = Duration::from_secs(5 * 60);
/// How long one fetch may take (IMDS and STS included), so a request never hangs on it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Cached credentials and when they stop being used.
struct Cached {
    credentials: Credentials,
    refresh_at: Instant,
}

/// Credentials for one Bedrock provider from the AWS credential chain, fetched on demand and
/// cached (see the module docs).
pub(crate) struct AwsCredentialSource {
    aws: AwsAuth,
    /// The chain, built on first use (building the default chain is async).
    provider: tokio::sync::OnceCell<SharedCredentialsProvider>,
    cached: RwLock<Option<Cached>>,
    /// Held while a fetch is in progress, so concurrent requests share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl AwsCredentialSource {
    /// A source for the provider's `aws` block. No I/O happens until the first
    /// [`AwsCredentialSource::credentials`].
    pub(crate) fn new(aws: &AwsAuth) -> Self {
        AwsCredentialSource {
            aws: aws.clone(),
            provider: tokio::sync::OnceCell::new(),
            cached: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Valid credentials: the cached ones, or fresh ones (one fetch however many requests ask
    /// at once). An error says what failed, never with a key in it.
    pub(crate) async fn credentials(&self) -> Result<Credentials, String> {
        if let Some(credentials) = self.fresh() {
            return Ok(credentials);
        }
        let _fetching = self.fetching.lock().await;
        // A fetch that finished while this request waited serves it too.
        if let Some(credentials) = self.fresh() {
            return Ok(credentials);
        }
        let credentials = tokio::time::timeout(FETCH_TIMEOUT, self.fetch())
            .await
            .map_err(|_| {
                format!(
                    "the AWS credential chain timed out after {}s",
                    FETCH_TIMEOUT.as_secs()
                )
            })??;
        let lifetime = match credentials.expiry() {
            Some(expiry) => expiry
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .saturating_sub(REFRESH_MARGIN),
            None => NO_EXPIRY_TTL,
        };
        if let Ok(mut cached) = self.cached.write() {
            *cached = Some(Cached {
                credentials: credentials.clone(),
                refresh_at: Instant::now() + lifetime,
            });
        }
        Ok(credentials)
    }

    fn fresh(&self) -> Option<Credentials> {
        let cached = self.cached.read().ok()?;
        cached
            .as_ref()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.credentials.clone())
    }

    async fn fetch(&self) -> Result<Credentials, String> {
        let provider = self
            .provider
            .get_or_try_init(|| async {
                build_provider(&self.aws)
                    .await
                    .ok_or_else(|| "aws-config built no credential chain".to_owned())
            })
            .await?;
        provider
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials: {}", DisplayErrorContext(&e)))
    }
}

/// The named profile's provider when `aws.profile` is set, else the default chain; both over
/// an HTTPS client on rustls with ring (no second TLS or crypto stack).
async fn build_provider(aws: &AwsAuth) -> Option<SharedCredentialsProvider> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(TlsProvider::Rustls(CryptoMode::Ring))
        .build_https();
    let region = Region::new(aws.region.clone());
    let files = aws.credentials_file.as_ref().map(|file| {
        EnvConfigFiles::builder()
            .include_default_config_file(true)
            .with_file(EnvConfigFileKind::Credentials, file)
            .build()
    });
    match &aws.profile {
        // An explicit profile is used alone: credentials in the environment do not win over it.
        Some(profile) => {
            let config = ProviderConfig::default()
                .with_http_client(http)
                .with_region(Some(region))
                .with_behavior_version(Some(BehaviorVersion::latest()));
            let mut builder = ProfileFileCredentialsProvider::builder()
                .configure(&config)
                .profile_name(profile);
            if let Some(files) = files {
                builder = builder.profile_files(files);
            }
            Some(SharedCredentialsProvider::new(builder.build()))
        }
        None => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http)
                .region(region);
            if let Some(files) = files {
                loader = loader.profile_files(files);
            }
            let config = loader.load().await;
            config.credentials_provider()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(profile: &str, file: &std::path::Path) -> AwsAuth {
        AwsAuth {
            region: "us-east-1".into(),
            service: "bedrock".into(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            profile: Some(profile.into()),
            credentials_file: Some(file.to_owned()),
        }
    }

    #[tokio::test]
    async fn a_profile_is_read_once_and_cached_for_concurrent_requests() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[p]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = s3cr3t\n",
        )
        .unwrap();
        let source = AwsCredentialSource::new(&auth("p", &file));
        let (a, b) = tokio::join!(source.credentials(), source.credentials());
        assert_eq!(a.unwrap().access_key_id(), "AKIDPROFILE");
        assert_eq!(b.unwrap().secret_access_key(), "s3cr3t");
        // Served from the cache: the file is not read again.
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            source.credentials().await.unwrap().access_key_id(),
            "AKIDPROFILE"
        );
    }

    #[tokio::test]
    async fn a_missing_profile_is_an_error_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = s3cr3t\n",
        )
        .unwrap();
        let source = AwsCredentialSource::new(&auth("missing", &file));
        let err = source.credentials().await.unwrap_err();
        assert!(err.starts_with("no AWS credentials"), "{err}");
        assert!(err.contains("missing"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}
