//! What one request costs: the row the ledger stores.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// One request's metered usage, as the completion hook saw it.
///
/// Names (tenants, key, model, provider) are shared `Arc<str>`s: consecutive records name
/// the same few, and a record waits in the writer's queue for up to a flush interval, so
/// sharing them keeps that queue small and its memory warm.
///
/// Money is integer micro-units of the price currency (1 USD = 1 000 000), never a float, so
/// that sums over millions of requests are exact and a chargeback adds up to the cent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// Completion time, milliseconds since the Unix epoch (UTC). Time ranges and the
    /// chargeback month are taken on this.
    pub at_unix_ms: i64,
    /// The request ID (the response's `x-request-id`), to join with the audit log. Not unique
    /// in the ledger: it is an index, not a key. Shared with the request that made it.
    pub request_id: Arc<str>,
    /// Organisation the request is attributed to.
    pub organization: Option<Arc<str>>,
    /// Team within the organisation.
    pub team: Option<Arc<str>>,
    /// Project within the team; the unit of chargeback.
    pub project: Option<Arc<str>>,
    /// End user, as identified by the caller.
    pub user: Option<Arc<str>>,
    /// The ID (never the secret) of the API key used.
    pub key_id: Option<Arc<str>>,
    /// Operation: `chat.completions`, `completions`, `embeddings`, `messages` (a static name,
    /// borrowed: no allocation per record).
    pub api: Cow<'static, str>,
    /// The logical model the client asked for (what budgets and prices are keyed on).
    pub model: Arc<str>,
    /// Provider that served the last attempt, if one was reached.
    pub provider: Option<Arc<str>>,
    /// The provider's own model name for the last attempt.
    pub upstream_model: Option<Arc<str>>,
    /// HTTP status returned to the client (499 if the client went away).
    pub status: u16,
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Generated tokens, reasoning ones included.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache (priced apart).
    pub cached_input_tokens: u64,
    /// Reasoning tokens among the output tokens.
    pub reasoning_tokens: u64,
    /// What the request cost, in micro-units of the price currency.
    pub cost_micros: i64,
    /// Where the token counts come from, so a bill can say which figures are estimates.
    pub usage_source: UsageSource,
}

/// Where a record's token counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UsageSource {
    /// The provider's own `usage` figures: what the provider will bill.
    Reported,
    /// Counted by Johi (the provider reported none, e.g. a stream cut short): an estimate.
    Counted,
    /// No usage at all (the request failed before a provider was reached).
    None,
}

impl UsageSource {
    /// The stored spelling: `reported`, `counted`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Reported => "reported",
            UsageSource::Counted => "counted",
            UsageSource::None => "none",
        }
    }
}

impl fmt::Display for UsageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stored spelling was not one of `reported`, `counted`, `none`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown usage source {0:?}: expected reported, counted or none")]
pub struct UnknownUsageSource(pub String);

impl FromStr for UsageSource {
    type Err = UnknownUsageSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reported" => Ok(UsageSource::Reported),
            "counted" => Ok(UsageSource::Counted),
            "none" => Ok(UsageSource::None),
            other => Err(UnknownUsageSource(other.to_owned())),
        }
    }
}
