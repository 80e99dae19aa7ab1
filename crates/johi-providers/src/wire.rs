//! Reading upstream answers into typed, borrowed structs rather than `serde_json::Value`.
//!
//! A `Value` tree costs an allocation per string and an `IndexMap` (with a SipHash per key)
//! per object; a translated answer is read once and written once, so the adapters read it
//! into `#[derive(Deserialize)]` structs whose strings borrow from the upstream's bytes.
//! [`Str`] is the one piece serde does not give: a string that borrows when it can and owns
//! only when the JSON text had escapes to undo, also inside an `Option`.
//!
//! [`Lax`] reads a field the way `Value::get(…).and_then(Value::as_str)` (or `as_u64`,
//! `as_array`, `as_object` …) reads one: a value of another JSON kind is not an error but
//! counts as absent, so an adapter moved from `Value` to typed structs keeps answering (or
//! refusing) exactly what it answered before, whatever an odd upstream sends.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use johi_core::Usage;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// A JSON string borrowed from the input when it has no escapes, owned otherwise (also
/// what the gateway's one-pass body readers read object keys as: serde's own `Cow<str>`
/// always copies a key).
///
/// `Cow<str>` alone always owns unless it is a field's whole type (serde's `borrow` special
/// case does not reach into `Option<Cow<str>>`); this newtype borrows everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'a> Str<'a> {
    /// The text.
    pub fn as_str(&self) -> &str {
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

/// A field read leniently: [`Lax::Is`] when its JSON value is of the kind `T` accepts (see
/// [`Accept`]), otherwise which other case it was. A missing field is [`Lax::Absent`]
/// (structs using it say `#[serde(default)]`); an explicit `null` is [`Lax::Null`], apart,
/// because some translations tell the two apart (`Value::get` finds a `null`).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum Lax<T> {
    /// The key is not there.
    #[default]
    Absent,
    /// The value is `null`.
    Null,
    /// The value is of another kind than `T` takes (e.g. a number where a string belongs).
    Other,
    /// The value, read.
    Is(T),
}

impl<T> Lax<T> {
    /// The value when it is of the expected kind, as `Value::as_*` would give it.
    pub(crate) fn get(self) -> Option<T> {
        match self {
            Lax::Is(v) => Some(v),
            Lax::Absent | Lax::Null | Lax::Other => None,
        }
    }

    /// [`Lax::get`], borrowed.
    pub(crate) fn as_ref(&self) -> Option<&T> {
        match self {
            Lax::Is(v) => Some(v),
            Lax::Absent | Lax::Null | Lax::Other => None,
        }
    }

    /// Whether the key is there at all, `null` included (`Value::get(…).is_some()`).
    pub(crate) fn is_present(&self) -> bool {
        !matches!(self, Lax::Absent)
    }
}

impl<'a> Lax<Str<'a>> {
    /// The string when there is one, as `Value::as_str` gives it.
    pub(crate) fn str(&self) -> Option<&str> {
        self.as_ref().map(Str::as_str)
    }
}

/// The JSON kinds a [`Lax`] field takes; every method's default is "not this kind", and a
/// rejected array or object is skipped whole (a visitor must consume what it is given).
pub(crate) trait Accept<'de>: Sized {
    /// A string.
    fn from_str(_: Cow<'de, str>) -> Option<Self> {
        None
    }
    /// A non-negative integer.
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    /// A negative integer.
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    /// A number with a fraction or an exponent.
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    /// `true` or `false`.
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    /// An object.
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    /// An array.
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// A struct read from a JSON object (and only from one: serde's derive would also take an
/// array, positionally). Implemented, empty, by the adapters' `#[derive(Deserialize)]` structs
/// whose fields are all [`Lax`] (or otherwise infallible), so that reading never fails on a
/// value's kind.
pub(crate) trait Object {}

impl<'de, T: Object + Deserialize<'de>> Accept<'de> for T {
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }
}

impl<'de: 'a, 'a> Accept<'de> for Str<'a> {
    fn from_str(s: Cow<'de, str>) -> Option<Self> {
        Some(Str(s))
    }
}

/// As `Value::as_u64`.
impl Accept<'_> for u64 {
    fn from_u64(n: u64) -> Option<Self> {
        Some(n)
    }
    fn from_i64(n: i64) -> Option<Self> {
        u64::try_from(n).ok()
    }
}

/// As `Value::as_f64`: any number.
impl Accept<'_> for f64 {
    fn from_u64(n: u64) -> Option<Self> {
        // The conversion `Value::as_f64` makes.
        Some(n as f64)
    }
    fn from_i64(n: i64) -> Option<Self> {
        Some(n as f64)
    }
    fn from_f64(x: f64) -> Option<Self> {
        Some(x)
    }
}

impl Accept<'_> for bool {
    fn from_bool(b: bool) -> Option<Self> {
        Some(b)
    }
}

/// An array, its elements read as `T` (make `T` a [`Lax`] to take elements of any kind).
impl<'de, T: Deserialize<'de>> Accept<'de> for Vec<T> {
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            out.push(item);
        }
        Ok(Some(out))
    }
}

/// Any value but `null`, as a `Value` (for what is passed through re-serialised: tool call
/// arguments, vectors).
impl<'de> Accept<'de> for Value {
    fn from_str(s: Cow<'de, str>) -> Option<Self> {
        Some(Value::String(s.into_owned()))
    }
    fn from_u64(n: u64) -> Option<Self> {
        Some(Value::from(n))
    }
    fn from_i64(n: i64) -> Option<Self> {
        Some(Value::from(n))
    }
    fn from_f64(x: f64) -> Option<Self> {
        Some(Value::from(x))
    }
    fn from_bool(b: bool) -> Option<Self> {
        Some(Value::Bool(b))
    }
    fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }
    fn from_seq<A: SeqAccess<'de>>(seq: A) -> Result<Option<Self>, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Some)
    }
}

impl<'de, T: Accept<'de>> Deserialize<'de> for Lax<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LaxVisitor(PhantomData))
    }
}

struct LaxVisitor<T>(PhantomData<T>);

fn lax<T>(v: Option<T>) -> Lax<T> {
    v.map_or(Lax::Other, Lax::Is)
}

impl<'de, T: Accept<'de>> Visitor<'de> for LaxVisitor<T> {
    type Value = Lax<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(lax(T::from_bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(lax(T::from_i64(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(lax(T::from_u64(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(lax(T::from_f64(v)))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(lax(T::from_str(Cow::Borrowed(v))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(lax(T::from_str(Cow::Owned(v.to_owned()))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(lax(T::from_str(Cow::Owned(v))))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Lax::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Lax::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Lax::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Ok(lax(T::from_seq(seq)?))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(lax(T::from_map(map)?))
    }
}

/// Reads a whole upstream body leniently: `Lax::Is` for an object, the JSON error (as the
/// upstream error on `body` every adapter reports) when the bytes are not JSON.
pub(crate) fn read_body<'a, T: Object + Deserialize<'a>>(
    body: &'a [u8],
) -> Result<Lax<T>, crate::TranslateError> {
    serde_json::from_slice(body).map_err(|e| crate::TranslateError::upstream("body", e.to_string()))
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

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Loose<'a> {
        #[serde(borrow)]
        s: Lax<Str<'a>>,
        n: Lax<u64>,
        list: Lax<Vec<Lax<u64>>>,
        #[serde(borrow)]
        inner: Lax<Box<Loose<'a>>>,
    }
    impl Object for Loose<'_> {}
    impl Object for Box<Loose<'_>> {}

    #[test]
    fn lax_fields_read_other_kinds_as_absent() {
        let body = br#"{"s":5,"n":"x","list":[1,"a",-2,{"k":[1]}],"inner":{"s":"in","inner":[1]}}"#;
        let Lax::Is(l) = read_body::<Loose>(body).unwrap() else {
            panic!("an object")
        };
        assert_eq!(l.s, Lax::Other);
        assert_eq!(l.n, Lax::Other);
        assert_eq!(
            l.list.get().unwrap(),
            vec![Lax::Is(1), Lax::Other, Lax::Other, Lax::Other]
        );
        let inner = l.inner.get().unwrap();
        assert_eq!(inner.s.str(), Some("in"));
        assert!(matches!(inner.inner, Lax::Other));
        assert!(!inner.n.is_present());
        let l = read_body::<Loose>(br#"{"s":null}"#).unwrap().get().unwrap();
        assert_eq!(l.s, Lax::Null);
        assert!(l.s.is_present());
        assert!(matches!(read_body::<Loose>(b"[1, 2]"), Ok(Lax::Other)));
        assert!(read_body::<Loose>(b"{").is_err());
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
