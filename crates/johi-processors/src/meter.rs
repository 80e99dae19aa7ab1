//! Metering: one usage record per request that reached a provider, into the ledger.
//!
//! An observer: it acts only in the completion hook, after the response (or stream) has
//! ended, when the provider's `usage` is known. The record carries the caller's tenant (from
//! the identity), the model and provider, the tokens as the provider reported them, and the
//! cost from the model's prices in integer micro-dollars. [`Ledger::record`] never waits: a
//! slow database costs usage data (counted), never request latency.
//!
//! Requests refused before any provider was called (401, 403, 429, 400) spent nothing and
//! are not recorded here; the audit log has them.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use johi_core::exchange::Outcome;
use johi_core::{Exchange, Facet, FacetSet, Usage};
use johi_ledger::{Ledger, UsageRecord, UsageSource};
use johi_pipeline::{Category, Contract, FailureMode, Processor, RetryScope};

/// See the module docs.
pub struct Meter {
    contract: Contract,
    ledger: Option<Ledger>,
}

impl Meter {
    /// Builds the processor over the process's ledger (`None` only in `johi check`).
    pub fn new(ledger: Option<Ledger>) -> Self {
        Meter {
            contract: Contract {
                name: "meter",
                category: Category::Observe,
                reads: FacetSet::of(&[Facet::Identity, Facet::Model, Facet::Endpoint]),
                writes: FacetSet::EMPTY,
                retry: RetryScope::Once,
                on_failure: FailureMode::FailOpen,
            },
            ledger,
        }
    }
}

/// The ledger record for a finished exchange, or `None` if no provider was called.
pub fn usage_record(ex: &Exchange, outcome: &Outcome) -> Option<UsageRecord> {
    let target = ex.target()?;
    let identity = ex.identity.as_deref();
    // A stream that ended without a usage report (cut mid-way) is recorded with what passed:
    // the estimated prompt and the output counted as it was relayed. A successful answer
    // whose provider reports no usage at all (Gemini API and Bedrock Cohere embeddings) is
    // recorded with Johi's own count of the input, so that nothing served is free.
    let counted_input = || {
        crate::tokens::count_input_tokens(
            ex.route.as_ref().map(|r| r.tokenizer).unwrap_or_default(),
            ex.api,
            ex.body(),
        )
    };
    let served = outcome.error.is_none() && !outcome.cancelled && outcome.status.is_success();
    let (usage, source) = match (ex.usage, ex.counted_output_tokens) {
        (Some(usage), _) => (usage, UsageSource::Reported),
        (None, Some(output)) => (
            Usage {
                input_tokens: counted_input(),
                output_tokens: output,
                cached_tokens: 0,
                reasoning_tokens: 0,
            },
            UsageSource::Counted,
        ),
        (None, None) if served => (
            Usage {
                input_tokens: counted_input(),
                ..Usage::default()
            },
            UsageSource::Counted,
        ),
        (None, None) => (Usage::default(), UsageSource::None),
    };
    let cost = ex
        .route
        .as_ref()
        .and_then(|r| r.pricing)
        .map_or(0, |p| p.cost_micros(&usage));
    let at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Some(UsageRecord {
        at_unix_ms,
        request_id: ex.request_id.clone(),
        organization: ex
            .organization
            .as_deref()
            .map(|n| shared(Field::Organization, n)),
        team: identity
            .and_then(|i| i.team.as_deref())
            .map(|n| shared(Field::Team, n)),
        project: identity
            .and_then(|i| i.project.as_deref())
            .map(|n| shared(Field::Project, n)),
        user: identity
            .and_then(|i| i.user.as_deref())
            .map(|n| shared(Field::User, n)),
        key_id: identity
            .and_then(|i| i.credential_id.as_deref())
            .map(|n| shared(Field::Key, n)),
        api: ex.api.as_str().into(),
        model: shared(Field::Model, ex.model.as_deref().unwrap_or_default()),
        provider: Some(shared(Field::Provider, &target.provider.name)),
        upstream_model: Some(shared(Field::UpstreamModel, &target.model)),
        status: outcome.status.as_u16(),
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cached_input_tokens: usage.cached_tokens,
        reasoning_tokens: usage.reasoning_tokens,
        cost_micros: i64::try_from(cost).unwrap_or(i64::MAX),
        usage_source: source,
    })
}

/// Most distinct names one thread keeps for sharing; past it the set starts over.
const SHARED_NAMES: usize = 4096;

/// A record's name fields, each remembering the last name it took (see [`LAST`]).
#[derive(Clone, Copy)]
enum Field {
    Organization,
    Team,
    Project,
    User,
    Key,
    Model,
    Provider,
    UpstreamModel,
}

thread_local! {
    /// The names this thread's records used lately, each allocated once: a record takes a
    /// reference to the name (an atomic increment) instead of a copy (an allocation), and
    /// the records waiting in the ledger's queue share a few warm strings.
    static NAMES: RefCell<HashSet<Arc<str>, foldhash::fast::RandomState>> =
        RefCell::new(HashSet::default());
    /// The name each [`Field`] took last on this thread: consecutive requests mostly name
    /// the same model, provider and tenant, and comparing with the last one is cheaper than
    /// hashing the name to find it in [`NAMES`].
    static LAST: RefCell<[Option<Arc<str>>; 8]> = const { RefCell::new([const { None }; 8]) };
}

/// `name` as a shared string (see [`NAMES`]), for `field`.
fn shared(field: Field, name: &str) -> Arc<str> {
    LAST.with(|last| {
        let slot = &mut last.borrow_mut()[field as usize];
        match slot {
            Some(known) if **known == *name => known.clone(),
            _ => {
                let interned = intern(name);
                *slot = Some(interned.clone());
                interned
            }
        }
    })
}

/// `name` from [`NAMES`], added if new.
fn intern(name: &str) -> Arc<str> {
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some(known) = names.get(name) {
            return known.clone();
        }
        if names.len() >= SHARED_NAMES {
            names.clear();
        }
        let new: Arc<str> = Arc::from(name);
        names.insert(new.clone());
        new
    })
}

impl Processor for Meter {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    fn has_request_phase(&self) -> bool {
        false
    }

    fn on_complete(&self, ex: &Exchange, outcome: &Outcome) {
        if let (Some(ledger), Some(record)) = (&self.ledger, usage_record(ex, outcome)) {
            ledger.record(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{shared, Field, SHARED_NAMES};

    /// A name is allocated once and shared after, across fields too; the set is bounded and
    /// starts over when full, still answering with the right text; a field's last name is
    /// never answered for another name.
    #[test]
    fn names_are_shared_and_the_set_is_bounded() {
        let a = shared(Field::Organization, "acme");
        assert!(Arc::ptr_eq(&a, &shared(Field::Organization, "acme")));
        assert!(Arc::ptr_eq(&a, &shared(Field::Team, "acme")));
        assert!(!Arc::ptr_eq(&a, &shared(Field::Organization, "globex")));
        assert_eq!(&*shared(Field::Organization, "acme"), "acme");
        for i in 0..SHARED_NAMES + 10 {
            let name = format!("key-{i}");
            assert_eq!(&*shared(Field::Key, &name), name);
            assert_eq!(&*shared(Field::Key, &name), name);
        }
        assert_eq!(&*shared(Field::Model, "acme"), "acme");
        assert_eq!(&*shared(Field::Model, "acm"), "acm");
        assert!(super::NAMES.with(|names| names.borrow().len()) <= SHARED_NAMES);
    }
}
