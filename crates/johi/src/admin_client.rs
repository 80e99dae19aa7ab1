//! A small client for the admin API, for the `johi keys create|list|revoke` and
//! `johi tenants create|list|delete` commands.
//!
//! Plain HTTP/1.1 only, like the admin listener itself (it is meant for loopback or a
//! private network); the token comes from `--admin-token` or `JOHI_ADMIN_TOKEN`, never from
//! the config file.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::{header, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// How long one admin call may take before the command gives up.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin API is and the token that opens it.
#[derive(Args, Debug, Clone)]
pub struct AdminTarget {
    /// Base URL of the admin listener (`admin.listen`).
    #[arg(long, env = "JOHI_ADMIN_URL", default_value = "http://127.0.0.1:9090")]
    pub admin_url: String,
    /// The admin token (`admin.token`).
    #[arg(long, env = "JOHI_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
}

/// Sends one admin request; the status and the JSON body, or why no answer came. A non-2xx
/// answer is turned into its OpenAI-shaped error message.
pub async fn call(
    target: &AdminTarget,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let url = format!("{}{path}", target.admin_url.trim_end_matches('/'));
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("--admin-url '{}': {e}", target.admin_url))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "--admin-url '{}': the admin API is served over plain http://",
            target.admin_url
        ));
    }
    let payload = body.map(Value::to_string).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", target.admin_token),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| format!("request: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| format!("{url}: no answer within {TIMEOUT:?}"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let message = value["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    Err(format!("{} {message}", status.as_u16()))
}

/// Runs one admin command on a single-threaded runtime; its error goes to stderr after
/// `name` (`johi keys`), and the exit code says whether it worked.
pub fn block_on(name: &str, command: impl Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Percent-encodes everything but unreserved characters, for an ID or a tenant path (its
/// `/` included) in one path segment.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
