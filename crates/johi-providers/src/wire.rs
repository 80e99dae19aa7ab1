//! Reading upstream answers into typed, borrowed structs rather than `serde_json::Value`.
//!
//! A `Value` tree costs an allocation per string and an `IndexMap` (with a SipHash per key)
//! per object; a translated answer is read once and written once, so the adapters read it
//! into `#[derive(Deserialize)]` structs whose strings borrow from the upstream's bytes.
//! [`Str`] is the one piece serde does not give: a string that borrows when it can and owns
//! only when the JSON text had escapes to undo, also inside an `Option`.

use std::borrow::Cow;
use std::fmt;

use johi_core::Usage;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A JSON string borrowed from the input when it has no escapes, owned otherwise.
///
/// `Cow<str>` alone always owns unless it is a field's whole type (serde's `borrow` special
/// case does not reach into `Option<Cow<str>>`); this newtype borrows everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl<'a> Str<'a> {
    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// Appends `piece` to an optional text, borrowing while there is only one piece (the usual
/// answer: one text block) and copying only to join several.
pub(crate) fn push_text<'a>(acc: &mut Option<Cow<'a, str>>, piece: Cow<'a, str>) {
    match acc {
        None => *acc = Some(piece),
        Some(text) => text.to_mut().push_str(&piece),
    }
}

/// The usage of protocols that count prompt-cache writes and reads *beside* the input
/// (Anthropic, Bedrock Converse), read from either's field names.
///
/// OpenAI counts them inside `prompt_tokens`: the input here is the sum of all three, so
/// prices and limits see the whole prompt, and `cached_tokens` is the cache reads. Neither
/// protocol reports thinking tokens apart from output. Absent fields are zero; sums saturate.
#[derive(Debug, Deserialize)]
pub(crate) struct CacheBesideInput {
    #[serde(alias = "inputTokens")]
    input_tokens: Option<u64>,
    #[serde(alias = "cache_creation_input_tokens", alias = "cacheWriteInputTokens")]
    cache_write: Option<u64>,
    #[serde(alias = "cache_read_input_tokens", alias = "cacheReadInputTokens")]
    cache_read: Option<u64>,
    #[serde(alias = "outputTokens")]
    output_tokens: Option<u64>,
}

impl CacheBesideInput {
    /// In Johi's one shape.
    pub(crate) fn usage(&self) -> Usage {
        let cache_read = self.cache_read.unwrap_or(0);
        Usage {
            input_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(self.cache_write.unwrap_or(0))
                .saturating_add(cache_read),
            output_tokens: self.output_tokens.unwrap_or(0),
            cached_tokens: cache_read,
            reasoning_tokens: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        s: Option<Str<'a>>,
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let plain = br#"{"s":"hello"}"#;
        let p: Probe = serde_json::from_slice(plain).unwrap();
        assert!(matches!(p.s, Some(Str(Cow::Borrowed("hello")))));
        let escaped = br#"{"s":"a\nb"}"#;
        let p: Probe = serde_json::from_slice(escaped).unwrap();
        assert!(matches!(p.s, Some(Str(Cow::Owned(ref s))) if s == "a\nb"));
        let p: Probe = serde_json::from_slice(br#"{"s":null}"#).unwrap();
        assert!(p.s.is_none());
        assert!(serde_json::from_slice::<Probe>(br#"{"s":5}"#).is_err());
    }

    #[test]
    fn one_piece_is_borrowed_and_several_are_joined() {
        let mut acc = None;
        push_text(&mut acc, Cow::Borrowed("a"));
        assert!(matches!(acc, Some(Cow::Borrowed("a"))));
        push_text(&mut acc, Cow::Borrowed("b"));
        assert_eq!(acc.as_deref(), Some("ab"));
    }
}
