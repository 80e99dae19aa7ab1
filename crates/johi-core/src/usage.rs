//! Token usage in one shape, whatever the provider reported.

use serde::Serialize;

/// Tokens one exchange consumed, as reported by the provider.
///
/// Input, output and cached tokens are kept apart because they are priced apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    /// Prompt tokens (OpenAI's `prompt_tokens`).
    pub input_tokens: u64,
    /// Generated tokens (OpenAI's `completion_tokens`); zero for embeddings.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache (a subset of `input_tokens`).
    pub cached_tokens: u64,
    /// Reasoning tokens (a subset of `output_tokens`).
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Reads OpenAI's `usage` object; absent fields count as zero.
    pub fn from_openai(usage: &serde_json::Value) -> Option<Usage> {
        let obj = usage.as_object()?;
        let num =
            |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_u64).unwrap_or(0);
        Some(Usage {
            input_tokens: num(obj.get("prompt_tokens")),
            output_tokens: num(obj.get("completion_tokens")),
            cached_tokens: num(obj
                .get("prompt_tokens_details")
                .and_then(|d| d.get("cached_tokens"))),
            reasoning_tokens: num(obj
                .get("completion_tokens_details")
                .and_then(|d| d.get("reasoning_tokens"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openai_usage_with_details() {
        let v = serde_json::json!({
            "prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2}
        });
        let u = Usage::from_openai(&v).unwrap();
        assert_eq!(
            u,
            Usage {
                input_tokens: 12,
                output_tokens: 5,
                cached_tokens: 4,
                reasoning_tokens: 2
            }
        );
        assert!(Usage::from_openai(&serde_json::Value::Null).is_none());
    }
}
