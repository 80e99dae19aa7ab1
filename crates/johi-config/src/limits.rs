//! `limits:` and model prices → validated [`LimitRule`]s.

use std::sync::Arc;
use std::time::Duration;

use johi_core::model::ModelRegistry;
use johi_core::pricing::{parse_price_per_million, Pricing};
use johi_limits::{LimitSpec, Window};

use crate::raw::{RawLimit, RawPricing};

/// What a limit is counted for: each request is charged to the instance of the scope it
/// belongs to (its organisation, its key, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The caller's organisation.
    Organization,
    /// The caller's team.
    Team,
    /// The caller's project.
    Project,
    /// The caller's end user.
    User,
    /// The caller's credential.
    Key,
    /// The logical model requested.
    Model,
}

impl Scope {
    /// The scope's name in config and counter keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Organization => "organization",
            Scope::Team => "team",
            Scope::Project => "project",
            Scope::User => "user",
            Scope::Key => "key",
            Scope::Model => "model",
        }
    }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Requests.
    Requests,
    /// Requests in flight (a gauge, no window).
    Concurrent,
    /// Prompt tokens.
    InputTokens,
    /// Generated tokens.
    OutputTokens,
    /// Prompt plus generated tokens.
    TotalTokens,
    /// Money, in micro-dollars.
    Cost,
}

impl Measure {
    /// The measure's name in config and diagnostics.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Requests => "requests",
            Measure::Concurrent => "concurrent",
            Measure::InputTokens => "input_tokens",
            Measure::OutputTokens => "output_tokens",
            Measure::TotalTokens => "total_tokens",
            Measure::Cost => "cost",
        }
    }

    /// Whether the measure counts tokens (it reports in `x-ratelimit-*-tokens`).
    pub fn is_tokens(self) -> bool {
        matches!(
            self,
            Measure::InputTokens | Measure::OutputTokens | Measure::TotalTokens
        )
    }
}

/// One validated limit.
#[derive(Debug, Clone)]
pub struct LimitRule {
    /// Window and ceiling (for `cost`, in micro-dollars).
    pub spec: Arc<LimitSpec>,
    /// What it is counted for.
    pub scope: Scope,
    /// Only this scope instance, when set.
    pub match_: Option<String>,
    /// What it counts.
    pub measure: Measure,
    /// Hard (deny) or soft (flag).
    pub enforce: bool,
    /// Budget tip: when this hard limit has no room, the request is sent to this (cheaper)
    /// model instead of being refused, if the caller may use it and its limits have room.
    pub fallback: Option<String>,
}

/// Validates a model's `pricing:`.
pub(crate) fn pricing(raw: RawPricing, path: &str, errors: &mut Vec<String>) -> Option<Pricing> {
    let mut price = |v: &serde_yaml_ng::Value, field: &str| {
        decimal(v)
            .and_then(|t| parse_price_per_million(&t))
            .map_err(|e| errors.push(format!("{path}.pricing.{field}: {e}")))
            .ok()
    };
    let input = price(&raw.input, "input");
    let output = price(&raw.output, "output");
    let cached_input = match &raw.cached_input {
        Some(v) => price(v, "cached_input"),
        None => input,
    };
    Some(Pricing {
        input: input?,
        output: output?,
        cached_input: cached_input?,
    })
}

/// A YAML number or string as decimal text (numbers are re-rendered, which is exact for the
/// short decimals prices and budgets are written with).
fn decimal(v: &serde_yaml_ng::Value) -> Result<String, String> {
    match v {
        serde_yaml_ng::Value::Number(n) => Ok(n.to_string()),
        serde_yaml_ng::Value::String(s) => Ok(s.clone()),
        _ => Err("must be a number".into()),
    }
}

/// Validates `limits:`.
pub(crate) fn limits(
    raw: Vec<RawLimit>,
    models: &ModelRegistry,
    errors: &mut Vec<String>,
) -> Vec<LimitRule> {
    let mut rules: Vec<LimitRule> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, l) in raw.into_iter().enumerate() {
        let path = format!("limits[{i}]");
        if l.id.is_empty() || !ids.insert(l.id.clone()) {
            errors.push(format!(
                "{path}.id: '{}' must be non-empty and unique",
                l.id
            ));
        }
        let scope = match l.scope.as_str() {
            "organization" => Some(Scope::Organization),
            "team" => Some(Scope::Team),
            "project" => Some(Scope::Project),
            "user" => Some(Scope::User),
            "key" => Some(Scope::Key),
            "model" => Some(Scope::Model),
            other => {
                errors.push(format!("{path}.scope: unknown scope '{other}' (known: organization, team, project, user, key, model)"));
                None
            }
        };
        let measure = match l.measure.as_str() {
            "requests" => Some(Measure::Requests),
            "concurrent" => Some(Measure::Concurrent),
            "input_tokens" => Some(Measure::InputTokens),
            "output_tokens" => Some(Measure::OutputTokens),
            "total_tokens" => Some(Measure::TotalTokens),
            "cost" => Some(Measure::Cost),
            other => {
                errors.push(format!("{path}.measure: unknown measure '{other}' (known: requests, concurrent, input_tokens, output_tokens, total_tokens, cost)"));
                None
            }
        };
        let window = match (measure, l.window.as_deref()) {
            (Some(Measure::Concurrent), None) => None,
            (Some(Measure::Concurrent), Some(_)) => {
                errors.push(format!("{path}.window: a concurrent limit has no window"));
                None
            }
            (_, None) => {
                errors.push(format!(
                    "{path}.window: required (minute, hour, day, month, or a duration like 10m)"
                ));
                None
            }
            (_, Some(w)) => window(w, &format!("{path}.window"), errors),
        };
        let amount = |v: &serde_yaml_ng::Value, field: &str, errors: &mut Vec<String>| {
            let parsed = decimal(v).and_then(|t| {
                if measure == Some(Measure::Cost) {
                    // dollars → micro-dollars: the same exact decimal parse as prices
                    parse_price_per_million(&t)
                } else {
                    t.parse::<u64>()
                        .map_err(|_| format!("'{t}' is not a whole number"))
                }
            });
            parsed
                .map_err(|e| errors.push(format!("{path}.{field}: {e}")))
                .unwrap_or(0)
        };
        let limit = amount(&l.limit, "limit", errors);
        let burst = l.burst.as_ref().map_or(0, |b| amount(b, "burst", errors));
        let enforce = match l.kind.as_deref() {
            None | Some("hard") => true,
            Some("soft") => false,
            Some(other) => {
                errors.push(format!(
                    "{path}.kind: unknown kind '{other}' (known: hard, soft)"
                ));
                true
            }
        };
        if let (Some(Scope::Model), Some(m)) = (scope, &l.match_) {
            if models.get(m).is_none() {
                errors.push(format!("{path}.match: unknown model '{m}'"));
            }
        }
        if let Some(fallback) = &l.fallback {
            if models.get(fallback).is_none() {
                errors.push(format!("{path}.fallback: unknown model '{fallback}'"));
            }
            if !enforce {
                errors.push(format!(
                    "{path}.fallback: only a hard limit can fall back (a soft one never refuses)"
                ));
            }
            if scope == Some(Scope::Model) && l.match_.as_deref() == Some(fallback.as_str()) {
                errors.push(format!(
                    "{path}.fallback: '{fallback}' is the model this limit counts; fall back to another"
                ));
            }
        }
        if let (Some(scope), Some(measure)) = (scope, measure) {
            rules.push(LimitRule {
                spec: Arc::new(LimitSpec {
                    id: l.id,
                    window,
                    limit,
                    burst,
                }),
                scope,
                match_: l.match_,
                measure,
                enforce,
                fallback: l.fallback,
            });
        }
    }
    if rules.iter().any(|r| r.measure == Measure::Cost) {
        for name in models.names() {
            if models.get(name).is_some_and(|m| m.pricing.is_none()) {
                errors.push(format!("models.{name}.pricing: required, because a cost limit is configured (a model without prices would spend nothing)"));
            }
        }
    }
    rules
}

fn window(text: &str, path: &str, errors: &mut Vec<String>) -> Option<Window> {
    match text {
        "minute" => Some(Window::Minute),
        "hour" => Some(Window::Hour),
        "day" => Some(Window::Day),
        "month" => Some(Window::Month),
        other => {
            let (rolling, length) = match other.strip_prefix("rolling ") {
                Some(length) => (true, length.trim()),
                None => (false, other),
            };
            match humantime::parse_duration(length) {
                Ok(d) if d >= Duration::from_secs(1) && d.subsec_nanos() == 0 => Some(if rolling {
                    Window::Rolling(d)
                } else {
                    Window::Fixed(d)
                }),
                _ => {
                    errors.push(format!(
                        "{path}: '{other}' is not minute, hour, day, month, a duration of whole seconds (at least 1s), or 'rolling' and such a duration"
                    ));
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn windows_parse_calendar_fixed_and_rolling() {
        let mut errors = Vec::new();
        let mut parse = |text: &str| window(text, "w", &mut errors);
        assert_eq!(parse("day"), Some(Window::Day));
        assert_eq!(parse("10m"), Some(Window::Fixed(Duration::from_secs(600))));
        assert_eq!(
            parse("rolling 24h"),
            Some(Window::Rolling(Duration::from_secs(86_400)))
        );
        assert_eq!(parse("rolling soon"), None);
        assert_eq!(parse("1500ms"), None);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("w: 'rolling soon' is not minute"),
            "{errors:?}"
        );
    }
}
