//! Limits and budgets: reserve before the call, commit the provider's usage after it.
//!
//! Every configured limit that applies to the request (by the caller's organisation, team,
//! project, user, key, or the model) is charged in one atomic reservation
//! ([`LimitStore::reserve`]): a request over any hard limit is refused with a 429 and charges
//! nothing; otherwise all limits are charged an *estimate* (prompt tokens from the prompt as
//! it will be sent — this processor reads the `prompt` facet, so the builder places it after
//! every processor that rewrites the prompt — plus `max_tokens` or the model's default). At
//! completion the estimate is replaced by the provider's reported `usage`, or given back if
//! the call failed. So what a budget holds is what was really spent, and racing requests can
//! never overshoot it by more than their estimates were short.
//!
//! Prompt tokens are counted with the model's tokenizer where known (see [`crate::tokens`]);
//! the estimate only decides whether a request may start, never what is charged.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue};
use johi_config::{LimitRule, Measure, Scope};
use johi_core::exchange::Outcome;
use johi_core::model::ModelRegistry;
use johi_core::{Api, Exchange, Facet, FacetSet, GatewayError, Usage};
use johi_limits::{Charge, CounterState, Decision, LimitStore, Reservation};
use johi_pipeline::{
    Category, Contract, FailureMode, Processor, ProcessorError, RetryScope, Verdict,
};
use serde_json::Value;
use smallvec::SmallVec;

/// Header naming soft limits the request went over (it was served anyway).
pub const LIMIT_WARNING: HeaderName = HeaderName::from_static("x-johi-limit-warning");

/// Header saying a budget tip moved the request to a cheaper model:
/// `<limit id>; from=<model>; to=<model>`, one entry per hop, comma-separated.
pub const BUDGET_FALLBACK: HeaderName = HeaderName::from_static("x-johi-budget-fallback");

/// How many budget tips one request may follow (a chain `a → b → c → d` at most).
const MAX_TIPS: usize = 3;

/// A request's charges (or the rules or measures behind them), held inline: a request is
/// usually charged a handful of limits, and these are built for every request.
type PerLimit<T> = SmallVec<[T; 4]>;

/// See the module docs.
pub struct Limit {
    contract: Contract,
    rules: Vec<LimitRule>,
    /// Whether any rule measures tokens or money: a gateway with request limits alone (or
    /// none) never counts the prompt.
    counts_tokens: bool,
    store: Arc<dyn LimitStore>,
    models: ModelRegistry,
}

/// What the request reserved; kept in the exchange's extensions for the completion hook.
#[derive(Debug, Clone)]
struct Reserved {
    reservation: Reservation,
    measures: PerLimit<Measure>,
    estimate: Usage,
}

impl Limit {
    /// Builds the processor over the configured rules and the process's limit store (which
    /// outlives config reloads, so counters do too). `models` resolves budget-tip fallbacks;
    /// with any configured, the processor also writes the `model` facet.
    pub fn new(rules: Vec<LimitRule>, store: Arc<dyn LimitStore>, models: ModelRegistry) -> Self {
        let mut writes = vec![Facet::Tokens, Facet::Headers];
        if rules.iter().any(|r| r.fallback.is_some()) {
            writes.push(Facet::Model);
        }
        let counts_tokens = rules
            .iter()
            .any(|r| !matches!(r.measure, Measure::Requests | Measure::Concurrent));
        Limit {
            contract: Contract {
                name: "limit",
                category: Category::AllowDeny,
                reads: FacetSet::of(&[Facet::Identity, Facet::Prompt, Facet::Params, Facet::Model]),
                writes: FacetSet::of(&writes),
                retry: RetryScope::Once,
                on_failure: FailureMode::FailClosed,
            },
            rules,
            counts_tokens,
            store,
            models,
        }
    }

    /// The charges for this request on every rule that applies to it, with those rules.
    fn charges(&self, ex: &Exchange, estimate: &Usage) -> (PerLimit<Charge>, PerLimit<&LimitRule>) {
        let mut charges = PerLimit::new();
        let mut applied = PerLimit::new();
        for rule in &self.rules {
            if let Some(scope_key) = Self::scope_key(rule, ex) {
                charges.push(Charge {
                    spec: rule.spec.clone(),
                    scope_key,
                    amount: amount(rule.measure, estimate, ex),
                    enforce: rule.enforce,
                });
                applied.push(rule);
            }
        }
        (charges, applied)
    }

    /// Follows `rule`'s budget tip if it has one the request may take: a model not tried
    /// yet, that the caller may use (the check `authorize` made for the first model). Moves
    /// the exchange to it and answers the hop for the header.
    fn tip(&self, rule: &LimitRule, ex: &mut Exchange, tried: &[String]) -> Option<String> {
        let fallback = rule.fallback.as_deref()?;
        if tried.len() > MAX_TIPS || tried.iter().any(|m| m == fallback) {
            return None;
        }
        if ex
            .identity
            .as_deref()
            .is_some_and(|i| !i.may_use_model(fallback))
        {
            return None;
        }
        let route = self.models.get(fallback)?.clone();
        let from = ex.model.replace(fallback.to_owned()).unwrap_or_default();
        crate::route::set_route(ex, route);
        tracing::info!(request_id = %ex.request_id, limit = %rule.spec.id, %from, to = fallback, "budget tip: falling back to a cheaper model");
        Some(format!("{}; from={from}; to={fallback}", rule.spec.id))
    }

    /// The scope instance `rule` counts this request for, if the rule applies to it.
    fn scope_key(rule: &LimitRule, ex: &Exchange) -> Option<String> {
        let identity = ex.identity.as_deref();
        let instance = match rule.scope {
            Scope::Organization => identity.and_then(|i| i.organization.as_deref()),
            Scope::Team => identity.and_then(|i| i.team.as_deref()),
            Scope::Project => identity.and_then(|i| i.project.as_deref()),
            Scope::User => identity.and_then(|i| i.user.as_deref()),
            Scope::Key => identity.and_then(|i| i.credential_id.as_deref()),
            Scope::Model => ex.model.as_deref(),
        }?;
        if rule.match_.as_deref().is_some_and(|m| m != instance) {
            return None;
        }
        // Team and project names are unique only within their parents: key by the path.
        // Built by hand rather than with `format!`: this runs for every limit of every request.
        let parents: &[Option<&str>] = match (rule.scope, identity) {
            (Scope::Team, Some(i)) => &[i.organization.as_deref()],
            (Scope::Project, Some(i)) => &[i.organization.as_deref(), i.team.as_deref()],
            _ => &[],
        };
        let scope = rule.scope.as_str();
        let length = parents
            .iter()
            .map(|p| p.map_or(0, str::len) + 1)
            .sum::<usize>();
        let mut key = String::with_capacity(scope.len() + 1 + length + instance.len());
        key.push_str(scope);
        key.push(':');
        for parent in parents {
            key.push_str(parent.unwrap_or(""));
            key.push('/');
        }
        key.push_str(instance);
        Some(key)
    }
}

/// Amount of `measure` in `usage` (cost through the model's prices).
fn amount(measure: Measure, usage: &Usage, ex: &Exchange) -> u64 {
    match measure {
        Measure::Requests | Measure::Concurrent => 1,
        Measure::InputTokens => usage.input_tokens,
        Measure::OutputTokens => usage.output_tokens,
        Measure::TotalTokens => usage.input_tokens + usage.output_tokens,
        Measure::Cost => ex
            .route
            .as_ref()
            .and_then(|r| r.pricing)
            .map_or(0, |p| p.cost_micros(usage)),
    }
}

/// The estimate reserved before the call.
///
/// While no processor has parsed the body (the tree would be built for this alone): from
/// the texts validation located, else from the body's bytes in one pass. Otherwise from the
/// tree, which then has every change made.
fn estimate(ex: &Exchange) -> Usage {
    let tokenizer = ex.route.as_ref().map(|r| r.tokenizer).unwrap_or_default();
    let unparsed = || {
        let spans = ex.prompt_spans.as_ref().and_then(|spans| {
            let input = crate::tokens::estimate_from_spans(tokenizer, &ex.raw_body, spans)?;
            Some((input, [spans.max_completion_tokens, spans.max_tokens]))
        });
        spans.or_else(|| {
            let e = crate::tokens::estimate_from_bytes(tokenizer, ex.api, &ex.raw_body)?;
            Some((e.input_tokens, [e.max_completion_tokens, e.max_tokens]))
        })
    };
    let found = if ex.body_parsed() { None } else { unparsed() };
    let (input, caps) = match found {
        Some(found) => found,
        None => {
            let body = ex.body();
            let cap = |f: &str| body.get(f).and_then(Value::as_u64);
            (
                crate::tokens::count_input_tokens(tokenizer, ex.api, body),
                [cap("max_completion_tokens"), cap("max_tokens")],
            )
        }
    };
    let output = match ex.api {
        Api::Embeddings => 0,
        Api::ChatCompletions | Api::Completions => caps
            .into_iter()
            .flatten()
            .next()
            .or_else(|| ex.route.as_ref().map(|r| r.default_max_tokens))
            .unwrap_or(0),
    };
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_tokens: 0,
        reasoning_tokens: 0,
    }
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-*` header names, for requests and tokens.
const REQUESTS_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
const TOKENS_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// OpenAI's `x-ratelimit-*` headers for the tightest requests and tokens limits.
///
/// The (up to six) values are written into one buffer and the headers take slices of it:
/// one allocation per response instead of one per header.
fn report(ex: &mut Exchange, charged: impl Iterator<Item = (Measure, CounterState)> + Clone) {
    let tightest = |pick: fn(Measure) -> bool| {
        charged
            .clone()
            .filter(|(m, _)| pick(*m))
            .min_by_key(|(_, s)| s.remaining())
            .map(|(_, s)| s)
    };
    let reported = [
        (
            &REQUESTS_HEADERS,
            tightest(|m: Measure| m == Measure::Requests),
        ),
        (&TOKENS_HEADERS, tightest(Measure::is_tokens)),
    ];
    // Each header's name and where its value ends in `text`, in order.
    let mut values: [(Option<&HeaderName>, usize); 6] = [(None, 0); 6];
    let mut text = bytes::BytesMut::with_capacity(64);
    let mut digits = itoa::Buffer::new();
    let mut slots = values.iter_mut();
    for (names, state) in &reported {
        let Some(state) = state else { continue };
        let reset = state.resets_in.map(|d| d.as_secs().max(1));
        let [limit, remaining, resets] = *names;
        for (name, value, unit) in [
            (limit, Some(state.limit), ""),
            (remaining, Some(state.remaining()), ""),
            (resets, reset, "s"),
        ] {
            let Some(value) = value else { continue };
            let Some(slot) = slots.next() else { break };
            text.extend_from_slice(digits.format(value).as_bytes());
            text.extend_from_slice(unit.as_bytes());
            *slot = (Some(name), text.len());
        }
    }
    let text = text.freeze();
    let mut start = 0;
    for (name, end) in values {
        let Some(name) = name else { break };
        // Digits and `s` only: always a valid header value.
        if let Ok(value) = HeaderValue::from_maybe_shared(text.slice(start..end)) {
            ex.response_headers.insert(name.clone(), value);
        }
        start = end;
    }
}

/// The output tokens a stream may produce before a hard limit would be exceeded: its own
/// output reservation plus the room each hard output-, total-token or money limit had left
/// after reserving (money converted at the model's output price); the smallest wins.
fn stream_allowance(
    ex: &Exchange,
    rules: &[&LimitRule],
    states: &[CounterState],
    estimate: &Usage,
) -> Option<u64> {
    let output_price = ex.route.as_ref().and_then(|r| r.pricing).map(|p| p.output);
    rules
        .iter()
        .zip(states)
        .filter(|(rule, _)| rule.enforce)
        .filter_map(|(rule, state)| {
            let room = (state.limit + rule.spec.burst).saturating_sub(state.used);
            let room_tokens = match rule.measure {
                Measure::OutputTokens | Measure::TotalTokens => room,
                // micro-dollars → tokens: 10^6 pico-dollars per micro-dollar
                Measure::Cost => match output_price {
                    Some(price) if price > 0 => room.saturating_mul(1_000_000) / price,
                    _ => return None,
                },
                Measure::Requests | Measure::Concurrent | Measure::InputTokens => return None,
            };
            Some(estimate.output_tokens.saturating_add(room_tokens))
        })
        .min()
}

impl Limit {
    /// The verdict on a reservation that no budget tip changed: a 429 naming the full limit,
    /// or the reservation kept for the completion hook with the allowance reported.
    fn decided(
        &self,
        ex: &mut Exchange,
        decision: Decision,
        charges: &[Charge],
        applied: &[&LimitRule],
        estimate: Usage,
    ) -> Verdict {
        match decision {
            Decision::Denied { index, state } => {
                let (rule, charge) = (applied[index], &charges[index]);
                report(ex, std::iter::once((rule.measure, state)));
                let retry_after_secs = state.resets_in.map(|d| d.as_secs().max(1));
                let unit = if rule.measure == Measure::Cost {
                    "micro-dollars"
                } else {
                    rule.measure.as_str()
                };
                Verdict::Deny(GatewayError::RateLimited {
                    limit: rule.spec.id.clone(),
                    message: format!(
                        "Limit '{}' reached for {}: {} of {} {unit} used, this request needs {}.{}",
                        rule.spec.id,
                        charge.scope_key,
                        state.used,
                        state.limit,
                        charge.amount.max(1),
                        retry_after_secs.map_or_else(
                            || " Retry when a request in flight finishes.".to_owned(),
                            |s| format!(" Retry in {s} s.")
                        )
                    ),
                    retry_after_secs,
                    quota: rule.measure == Measure::Cost,
                })
            }
            Decision::Granted {
                reservation,
                states,
            } => {
                let measures: PerLimit<Measure> = applied.iter().map(|r| r.measure).collect();
                report(ex, measures.iter().copied().zip(states.iter().copied()));
                let over: Vec<&str> = applied
                    .iter()
                    .zip(&states)
                    .filter(|(r, s)| !r.enforce && s.over())
                    .map(|(r, _)| r.spec.id.as_str())
                    .collect();
                if !over.is_empty() {
                    tracing::warn!(request_id = %ex.request_id, limits = ?over, "soft limit exceeded; request served");
                    if let Ok(v) = HeaderValue::from_str(&over.join(",")) {
                        ex.response_headers.insert(LIMIT_WARNING, v);
                    }
                }
                if ex.stream {
                    ex.output_token_allowance = stream_allowance(ex, applied, &states, &estimate);
                }
                ex.extensions.insert(Reserved {
                    reservation,
                    measures,
                    estimate,
                });
                Verdict::Continue
            }
        }
    }
}

/// Records the budget tips a request took in its response headers.
fn set_hops(ex: &mut Exchange, hops: &[String]) {
    if hops.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&hops.join(", ")) {
        ex.response_headers.insert(BUDGET_FALLBACK, v);
    }
}

#[async_trait]
impl Processor for Limit {
    fn contract(&self) -> &Contract {
        &self.contract
    }

    fn rechecks(&self) -> &'static [&'static str] {
        // A budget tip resolves the new model's route as `route` did for the first one, and
        // checks it against the caller's allowance as `authorize` did.
        &["route", "authorize"]
    }

    async fn on_request(&self, ex: &mut Exchange) -> Result<Verdict, ProcessorError> {
        // The models tried so far, filled at the first denial (most requests have none).
        let mut tried: Vec<String> = Vec::new();
        let mut hops: Vec<String> = Vec::new();
        loop {
            let estimate = if self.counts_tokens {
                estimate(ex)
            } else {
                Usage::default()
            };
            let (charges, applied) = self.charges(ex, &estimate);
            if charges.is_empty() {
                set_hops(ex, &hops);
                return Ok(Verdict::Continue);
            }
            let now = SystemTime::now();
            let decided = match self.store.reserve_now(&charges, now) {
                Some(decided) => decided,
                None => self.store.reserve(&charges, now).await,
            };
            let decision = match decided {
                Ok(decision) => decision,
                Err(error) => {
                    tracing::debug!(%error, "limit store unavailable; failing closed");
                    return Ok(Verdict::Deny(GatewayError::LimitsUnavailable));
                }
            };
            if let Decision::Denied { index, .. } = &decision {
                if tried.is_empty() {
                    tried.extend(ex.model.clone());
                }
                if let Some(hop) = self.tip(applied[*index], ex, &tried) {
                    tried.extend(ex.model.clone());
                    hops.push(hop);
                    continue;
                }
            }
            set_hops(ex, &hops);
            return Ok(self.decided(ex, decision, &charges, &applied, estimate));
        }
    }

    /// A concurrency lease is given back before the response goes out: a client that
    /// sends its next request as soon as it has the answer must find it released.
    fn completes_before_response(&self) -> bool {
        self.rules.iter().any(|r| r.measure == Measure::Concurrent)
    }

    /// Without a rule nothing is charged, reserved or tipped: the stage (a boxed future per
    /// request) is left out of the request phase. The pipeline is rebuilt with the rules on
    /// every reload, so a limit added later is enforced from the reload on.
    fn has_request_phase(&self) -> bool {
        !self.rules.is_empty()
    }

    fn on_complete(&self, ex: &Exchange, outcome: &Outcome) {
        let Some(reserved) = ex.extensions.get::<Reserved>() else {
            return;
        };
        // What was spent: the provider's own usage when it reported it; for a stream that
        // ended without it (cut mid-way), the estimated prompt plus the output counted as it
        // passed; the estimate when a successful answer carried none (so nothing served is
        // ever free); nothing when the call failed without an answer.
        let spent = match (ex.usage, ex.counted_output_tokens) {
            (Some(usage), _) => usage,
            (None, Some(output)) => Usage {
                input_tokens: reserved.estimate.input_tokens,
                output_tokens: output,
                ..Usage::default()
            },
            (None, None)
                if outcome.error.is_none() && !outcome.cancelled && outcome.status.is_success() =>
            {
                reserved.estimate
            }
            (None, None) => Usage::default(),
        };
        // The amounts spent, one per charged limit: on the stack for the usual few limits.
        let mut few = [0u64; 8];
        let many: Vec<u64>;
        let actual: &[u64] = match few.get_mut(..reserved.measures.len()) {
            Some(slots) => {
                for (slot, measure) in slots.iter_mut().zip(&reserved.measures) {
                    *slot = amount(*measure, &spent, ex);
                }
                slots
            }
            None => {
                many = reserved
                    .measures
                    .iter()
                    .map(|m| amount(*m, &spent, ex))
                    .collect();
                &many
            }
        };
        // An in-memory store commits right here, Redis queues it for its next round trip
        // (see `LimitStore::commit_detached`); any other store on a task of its own.
        if let Some(result) = self.store.commit_detached(&reserved.reservation, actual) {
            if let Err(error) = result {
                tracing::warn!(%error, "could not commit a limit reservation; it stands as estimated");
            }
            return;
        }
        let (store, reservation, actual) = (
            self.store.clone(),
            reserved.reservation.clone(),
            actual.to_vec(),
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("limit commit outside a runtime; the reservation stands as estimated");
            return;
        };
        runtime.spawn(async move {
            if let Err(error) = store.commit(&reservation, &actual).await {
                tracing::warn!(%error, "could not commit a limit reservation; it stands as estimated");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http::HeaderMap;

    use super::*;

    /// The tightest requests and tokens limits are reported; a limit without a reset time
    /// leaves out only its own reset header.
    #[test]
    fn reports_the_tightest_limits_in_openais_headers() {
        let mut ex = Exchange::new(Api::ChatCompletions, HeaderMap::new(), Bytes::new());
        let state = |used, limit, resets_in| CounterState {
            used,
            limit,
            resets_in,
        };
        report(
            &mut ex,
            [
                (Measure::Requests, state(3, 10, None)),
                (
                    Measure::TotalTokens,
                    state(100, 1000, Some(Duration::from_secs(59))),
                ),
                (
                    Measure::InputTokens,
                    state(10, 50, Some(Duration::from_millis(300))),
                ),
                (Measure::Cost, state(0, 5, Some(Duration::from_secs(9)))),
            ]
            .into_iter(),
        );
        let h = |name: &str| ex.response_headers.get(name).map(|v| v.to_str().unwrap());
        assert_eq!(h("x-ratelimit-limit-requests"), Some("10"));
        assert_eq!(h("x-ratelimit-remaining-requests"), Some("7"));
        assert_eq!(h("x-ratelimit-reset-requests"), None);
        assert_eq!(h("x-ratelimit-limit-tokens"), Some("50"));
        assert_eq!(h("x-ratelimit-remaining-tokens"), Some("40"));
        assert_eq!(h("x-ratelimit-reset-tokens"), Some("1s"));
        assert_eq!(ex.response_headers.len(), 5);
    }
}
