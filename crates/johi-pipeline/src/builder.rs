//! Builds a [`Pipeline`] from a configured list and checks its order.
//!
//! The rules (each violation is reported with both processors named):
//! 1. names are unique;
//! 2. a processor that reads a facet runs after every processor that writes it — count
//!    tokens after every mutation of the prompt, key a cache after the last write of `model`
//!    — unless the writer re-applies that reader's check itself ([`Processor::rechecks`]);
//! 3. a facet that is read must be written by some earlier processor, unless it comes from
//!    the client as it is (`headers`);
//! 4. once-per-request processors come before per-attempt ones, because the runner executes
//!    them in that order and the configured order must be the executed order;
//! 5. the processor that writes credentials is the last one that can change the request:
//!    only observers may follow it, so no later step can redirect a request that already
//!    carries a destination's key.

use std::fmt;
use std::sync::Arc;

use johi_core::Facet;

use crate::contract::{Category, FailureMode, Processor, RetryScope};
use crate::runner::{Pipeline, Stage};

/// A processor as configured: the instance and, optionally, an overriding failure mode.
pub struct Configured {
    /// The processor.
    pub processor: Arc<dyn Processor>,
    /// Overrides the contract's default failure mode.
    pub on_failure: Option<FailureMode>,
}

impl Configured {
    /// A processor with its contract's default failure mode.
    pub fn new(processor: Arc<dyn Processor>) -> Self {
        Configured {
            processor,
            on_failure: None,
        }
    }
}

/// Why a configured order was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(pub String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// Facets that exist before any processor runs (they come from the client as received).
const FROM_CLIENT: [Facet; 1] = [Facet::Headers];

/// Checks the order and builds the pipeline; every violation is reported, not just the first.
pub fn build(processors: Vec<Configured>) -> Result<Pipeline, Vec<BuildError>> {
    let mut errors = Vec::new();
    let contracts: Vec<_> = processors.iter().map(|c| c.processor.contract()).collect();
    let rechecks: Vec<_> = processors.iter().map(|c| c.processor.rechecks()).collect();

    for (i, a) in contracts.iter().enumerate() {
        if contracts[..i].iter().any(|b| b.name == a.name) {
            errors.push(BuildError(format!(
                "processor '{}' is listed twice",
                a.name
            )));
        }
    }

    for (i, reader) in contracts.iter().enumerate() {
        for facet in reader.reads.iter() {
            for (writer, rechecked) in contracts[i + 1..].iter().zip(&rechecks[i + 1..]) {
                if writer.writes.contains(facet)
                    && writer.name != reader.name
                    && !rechecked.contains(&reader.name)
                {
                    errors.push(BuildError(format!(
                        "processor '{}' reads '{}' but runs before '{}', which writes it: \
                         move '{}' after '{}'",
                        reader.name, facet, writer.name, reader.name, writer.name
                    )));
                }
            }
            let written_before = contracts[..i].iter().any(|w| w.writes.contains(facet));
            if !written_before && !FROM_CLIENT.contains(&facet) {
                errors.push(BuildError(format!(
                    "processor '{}' reads '{}' but no processor before it writes '{}'",
                    reader.name, facet, facet
                )));
            }
        }
    }

    for (i, once) in contracts.iter().enumerate() {
        if once.retry != RetryScope::Once {
            continue;
        }
        if let Some(per_attempt) = contracts[..i].iter().find(|c| c.retry != RetryScope::Once) {
            if once.category != Category::Observe {
                errors.push(BuildError(format!(
                    "processor '{}' runs once per request but is placed after '{}', which runs \
                     on every upstream attempt: move '{}' before '{}'",
                    once.name, per_attempt.name, once.name, per_attempt.name
                )));
            }
        }
    }

    if let Some(pos) = contracts
        .iter()
        .position(|c| c.writes.contains(Facet::Credentials))
    {
        for later in &contracts[pos + 1..] {
            if later.category != Category::Observe {
                errors.push(BuildError(format!(
                    "processor '{}' must be the last to change the request, but '{}' ({}) runs \
                     after it: credentials are attached last, once the destination is final",
                    contracts[pos].name,
                    later.name,
                    later.category.as_str()
                )));
            }
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }

    let stages = processors
        .into_iter()
        .map(|c| {
            let on_failure = c
                .on_failure
                .unwrap_or_else(|| c.processor.contract().on_failure.clone());
            Stage {
                processor: c.processor,
                on_failure,
            }
        })
        .collect();
    Ok(Pipeline::new(stages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Contract, FailureMode};
    use johi_core::FacetSet;

    struct P(Contract);
    impl Processor for P {
        fn contract(&self) -> &Contract {
            &self.0
        }
    }

    fn p(
        name: &'static str,
        category: Category,
        reads: &[Facet],
        writes: &[Facet],
        retry: RetryScope,
    ) -> Configured {
        Configured::new(Arc::new(P(Contract {
            name,
            category,
            reads: FacetSet::of(reads),
            writes: FacetSet::of(writes),
            retry,
            on_failure: FailureMode::FailClosed,
        })))
    }

    fn errors(list: Vec<Configured>) -> Vec<String> {
        match build(list) {
            Ok(_) => vec![],
            Err(e) => e.into_iter().map(|e| e.0).collect(),
        }
    }

    #[test]
    fn a_reader_before_a_writer_is_refused_naming_both() {
        let errs = errors(vec![
            p(
                "parse",
                Category::AllowDeny,
                &[],
                &[Facet::Prompt],
                RetryScope::Once,
            ),
            p(
                "limit",
                Category::AllowDeny,
                &[Facet::Prompt],
                &[],
                RetryScope::Once,
            ),
            p(
                "redact",
                Category::Mutate,
                &[Facet::Prompt],
                &[Facet::Prompt],
                RetryScope::Once,
            ),
        ]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("'limit' reads 'prompt' but runs before 'redact'"),
            "{errs:?}"
        );
    }

    /// A writer that re-applies `authorize`'s check on what it writes.
    struct Rechecking(Contract);
    impl Processor for Rechecking {
        fn contract(&self) -> &Contract {
            &self.0
        }
        fn rechecks(&self) -> &'static [&'static str] {
            &["authorize"]
        }
    }

    #[test]
    fn a_writer_may_follow_only_the_readers_it_rechecks() {
        let route = || {
            p(
                "route",
                Category::Mutate,
                &[],
                &[Facet::Model],
                RetryScope::Once,
            )
        };
        let reader = |name| {
            p(
                name,
                Category::AllowDeny,
                &[Facet::Model],
                &[],
                RetryScope::Once,
            )
        };
        let tip = || {
            Configured::new(Arc::new(Rechecking(Contract {
                name: "limit",
                category: Category::AllowDeny,
                reads: FacetSet::of(&[Facet::Model]),
                writes: FacetSet::of(&[Facet::Model]),
                retry: RetryScope::Once,
                on_failure: FailureMode::FailClosed,
            })))
        };
        assert!(errors(vec![route(), reader("authorize"), tip()]).is_empty());
        let errs = errors(vec![route(), reader("cache"), tip()]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("'cache' reads 'model' but runs before 'limit'"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_read_with_no_writer_is_refused() {
        let errs = errors(vec![p(
            "route",
            Category::Mutate,
            &[Facet::Model],
            &[],
            RetryScope::Once,
        )]);
        assert_eq!(
            errs,
            vec!["processor 'route' reads 'model' but no processor before it writes 'model'"]
        );
    }

    #[test]
    fn credentials_must_be_last_to_mutate() {
        let errs = errors(vec![
            p(
                "pick",
                Category::Mutate,
                &[],
                &[Facet::Endpoint],
                RetryScope::EveryAttempt,
            ),
            p(
                "creds",
                Category::Mutate,
                &[Facet::Endpoint],
                &[Facet::Credentials],
                RetryScope::EveryAttempt,
            ),
            p(
                "rewrite",
                Category::Mutate,
                &[],
                &[Facet::Params],
                RetryScope::EveryAttempt,
            ),
            p("audit", Category::Observe, &[], &[], RetryScope::Once),
        ]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("'creds' must be the last"), "{errs:?}");
        assert!(errs[0].contains("'rewrite'"), "{errs:?}");
    }

    #[test]
    fn once_after_per_attempt_is_refused_and_all_errors_are_listed() {
        let errs = errors(vec![
            p(
                "pick",
                Category::Mutate,
                &[],
                &[Facet::Endpoint],
                RetryScope::EveryAttempt,
            ),
            p("guard", Category::AllowDeny, &[], &[], RetryScope::Once),
            p("guard", Category::AllowDeny, &[], &[], RetryScope::Once),
        ]);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("listed twice")));
        assert!(errs
            .iter()
            .any(|e| e.contains("'guard' runs once per request but is placed after 'pick'")));
    }

    #[test]
    fn a_good_order_builds() {
        let built = build(vec![
            p(
                "parse",
                Category::AllowDeny,
                &[],
                &[Facet::Prompt, Facet::Model],
                RetryScope::Once,
            ),
            p(
                "route",
                Category::Mutate,
                &[Facet::Model],
                &[Facet::Model],
                RetryScope::Once,
            ),
            p(
                "pick",
                Category::Mutate,
                &[Facet::Model],
                &[Facet::Endpoint],
                RetryScope::EveryAttempt,
            ),
            p(
                "creds",
                Category::Mutate,
                &[Facet::Endpoint],
                &[Facet::Credentials],
                RetryScope::EveryAttempt,
            ),
            p(
                "audit",
                Category::Observe,
                &[Facet::Endpoint],
                &[],
                RetryScope::Once,
            ),
        ]);
        let pipeline = built.unwrap();
        assert_eq!(
            pipeline.contracts().map(|c| c.name).collect::<Vec<_>>(),
            ["parse", "route", "pick", "creds", "audit"]
        );
    }
}
