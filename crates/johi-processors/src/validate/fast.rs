//! The one-pass check of a chat request: the body is walked once by serde, exactly as
//! strictly as parsing it into a `Value` would be (every string's UTF-8 and escapes, every
//! number's range, the nesting limit), but nothing is stored except the few fields the
//! checks need, borrowed from the bytes, and where the prompt's texts are (so that the
//! limiter can count their tokens without reading the body again).
//!
//! It only ever *accepts*: a body it cannot vouch for, for any reason, is handed to the
//! general check, which builds the tree and words the error. So the errors are the general
//! check's, and this path needs only to be no more lenient than it (the tests compare the
//! two over many bodies).

use std::borrow::Cow;
use std::fmt;

use std::ops::Range;

use johi_core::exchange::PromptSpans;
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::ROLES;
use johi_providers::Str;

/// What a chat request that passed the checks says of itself.
#[derive(Debug, PartialEq)]
pub(super) struct Accepted {
    /// `model`, non-empty.
    pub model: String,
    /// `stream`.
    pub stream: bool,
    /// `stream_options.include_usage`, as `Exchange::stream_usage_requested` records it.
    pub stream_usage_requested: Option<bool>,
    /// Where the prompt's texts are, when every one can be pointed at.
    pub prompt: Option<PromptSpans>,
    /// The byte range of `model`'s value (its quotes included), when the translation may
    /// splice the upstream's name there: the key appears once, no top-level key has
    /// escapes and the value has none. Exactly what `splice::top_level_value(body,
    /// "model")` finds, without a second scan of the body.
    pub model_span: Option<Range<usize>>,
}

/// The chat request `body` if it passes every check `check` would make, else `None`.
pub(super) fn chat(body: &[u8]) -> Option<Accepted> {
    // The body is valid UTF-8 as a whole or it is refused anyway (outside strings any byte
    // above 0x7F is a syntax error): checked at once with SIMD, serde then reads a `str` and
    // skips its per-string check, which cost more than a quarter of this pass.
    let text = simdutf8::basic::from_utf8(body).ok()?;
    let mut spans = Spans::new(body);
    let mut de = serde_json::Deserializer::from_str(text);
    let top = TopSeed(&mut spans).deserialize(&mut de).ok()?;
    de.end().ok()?;
    let model_span = match &top.model {
        Scalar::Str(Cow::Borrowed(m)) if top.model_keys == 1 && !top.escaped_key => spans
            .range_of(m)
            .and_then(|inner| Some(inner.start.checked_sub(1)?..inner.end + 1)),
        _ => None,
    };
    let model = match top.model {
        Scalar::Str(m) if !m.is_empty() => m.into_owned(),
        _ => return None,
    };
    let stream = match top.stream {
        Scalar::Absent | Scalar::Null => false,
        Scalar::Bool(b) => b,
        _ => return None,
    };
    let stream_usage_requested = match top.stream_options {
        Options::Absent => Some(false),
        Options::Null if !stream => None,
        Options::Object {
            include_usage: Scalar::Bool(true),
        } if stream => Some(true),
        Options::Object { .. } if stream => None,
        _ => return None,
    };
    let counts_ok = [&top.max_tokens, &top.max_completion_tokens, &top.n]
        .iter()
        .all(|s| {
            matches!(s, Scalar::Absent | Scalar::Null) || matches!(s, Scalar::U64(n) if *n >= 1)
        });
    let ranges_ok = [(&top.temperature, 2.0), (&top.top_p, 1.0)]
        .iter()
        .all(|(s, max)| match s {
            Scalar::Absent | Scalar::Null => true,
            other => other.as_f64().is_some_and(|x| (0.0..=*max).contains(&x)),
        });
    let cap = |s: &Scalar<'_>| match s {
        Scalar::U64(n) => Some(*n),
        _ => None,
    };
    let caps = [cap(&top.max_completion_tokens), cap(&top.max_tokens)];
    (counts_ok && ranges_ok && top.messages_ok).then(|| Accepted {
        model,
        model_span,
        stream,
        prompt: spans.into_prompt(caps),
        stream_usage_requested,
    })
}

/// A value the checks look at: its kind, and the value itself where a check needs it.
/// Arrays and objects are walked and recorded as [`Scalar::Other`].
#[derive(Debug, Default)]
enum Scalar<'a> {
    #[default]
    Absent,
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Other,
}

impl Scalar<'_> {
    /// As `Value::as_f64`.
    fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::U64(n) => Some(n as f64),
            Scalar::I64(n) => Some(n as f64),
            Scalar::F64(x) => Some(x),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::I64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::F64(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Walk::seq(seq).map(|_| Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Walk::map(map).map(|_| Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Any JSON value, walked as strictly as `Value` would read it (strings through serde_json's
/// validating string reader, not `IgnoredAny`'s skipping one) and not kept.
struct Walk;

impl Walk {
    fn seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Walk, A::Error> {
        while seq.next_element::<Walk>()?.is_some() {}
        Ok(Walk)
    }

    fn map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Walk, A::Error> {
        while map.next_key::<Walk>()?.is_some() {
            map.next_value::<Walk>()?;
        }
        Ok(Walk)
    }
}

impl<'de> Deserialize<'de> for Walk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Walk;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Walk, E> {
                Ok(Walk)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Walk, E> {
                Ok(Walk)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Walk, E> {
                Ok(Walk)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Walk, E> {
                Ok(Walk)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Walk, E> {
                Ok(Walk)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Walk, E> {
                Ok(Walk)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Walk, A::Error> {
                Walk::seq(seq)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Walk, A::Error> {
                Walk::map(map)
            }
        }
        d.deserialize_any(V)
    }
}

/// The top-level fields the checks read; every other field is walked.
#[derive(Default)]
struct Top<'a> {
    model: Scalar<'a>,
    stream: Scalar<'a>,
    stream_options: Options<'a>,
    max_tokens: Scalar<'a>,
    max_completion_tokens: Scalar<'a>,
    n: Scalar<'a>,
    temperature: Scalar<'a>,
    top_p: Scalar<'a>,
    /// `messages` is a non-empty array of messages that each pass (false when absent).
    messages_ok: bool,
    /// How many `model` keys there were.
    model_keys: u32,
    /// Whether some key had escapes (serde unescaped it into a copy).
    escaped_key: bool,
}

/// Reads an object's entries: `field` takes the keys it knows (reading their value) and
/// returns `false` for the others, which are walked. A later duplicate key overwrites an
/// earlier one, as in `Value`.
fn entries<'de, A: MapAccess<'de>>(
    mut map: A,
    mut field: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
) -> Result<(), A::Error> {
    while let Some(Str(key)) = map.next_key()? {
        if !field(&key, &mut map)? {
            map.next_value::<Walk>()?;
        }
    }
    Ok(())
}

/// Reads the top-level object, the messages' texts going to the spans.
struct TopSeed<'s>(&'s mut Spans);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Top<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = Top<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Top<'de>, A::Error> {
        let spans = self.0;
        let mut top = Top::default();
        entries(map, |key, map| {
            // A key serde lent from the body had no escapes.
            top.escaped_key |= spans.range_of(key).is_none();
            match key {
                "model" => {
                    top.model_keys += 1;
                    top.model = map.next_value()?;
                }
                "stream" => top.stream = map.next_value()?,
                "stream_options" => top.stream_options = map.next_value()?,
                "max_tokens" => top.max_tokens = map.next_value()?,
                "max_completion_tokens" => top.max_completion_tokens = map.next_value()?,
                "n" => top.n = map.next_value()?,
                "temperature" => top.temperature = map.next_value()?,
                "top_p" => top.top_p = map.next_value()?,
                "messages" => top.messages_ok = map.next_value_seed(MessagesSeed(&mut *spans))?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(top)
    }
}

/// The `Visitor` methods for the kinds a reader does not look into: `null` gives `$null`,
/// any other scalar `$other`, and an array is walked and gives `$other` (the `@scalars`
/// form leaves arrays to the reader).
macro_rules! visit_scalars {
    ($null:expr, $other:expr) => {
        visit_scalars!(@scalars $null, $other);
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Walk::seq(seq).map(|_| $other)
        }
    };
    (@scalars $null:expr, $other:expr) => {
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($null)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($other)
        }
    };
}

/// `stream_options`: only `include_usage` is read.
#[derive(Default)]
enum Options<'a> {
    #[default]
    Absent,
    Null,
    Object {
        include_usage: Scalar<'a>,
    },
    Other,
}

impl<'de> Deserialize<'de> for Options<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Options<'de>;
            visit_scalars!(Options::Null, Options::Other);
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Options<'de>, A::Error> {
                let mut include_usage = Scalar::Absent;
                entries(map, |key, map| {
                    if key == "include_usage" {
                        include_usage = map.next_value()?;
                        return Ok(true);
                    }
                    Ok(false)
                })?;
                Ok(Options::Object { include_usage })
            }
        }
        d.deserialize_any(V)
    }
}

/// Where the prompt's texts are in the body: byte ranges of every string the token count
/// reads, gathered while the messages are checked (see `Exchange::prompt_spans`).
pub(super) struct Spans {
    /// Address of the body's first byte, to turn a borrowed string into a range.
    base: usize,
    /// The body's length.
    len: usize,
    /// The ranges, in body order.
    texts: Vec<Range<usize>>,
    /// Texts that had escapes, unescaped (no range can stand for them).
    unescaped: Vec<String>,
    /// Messages in the (last) `messages` array.
    messages: u64,
    /// False once a lent text was not inside the body (never expected): the estimate then
    /// reads the body itself.
    exact: bool,
}

impl Spans {
    fn new(body: &[u8]) -> Spans {
        Spans {
            base: body.as_ptr() as usize,
            len: body.len(),
            texts: Vec::new(),
            unescaped: Vec::new(),
            messages: 0,
            exact: true,
        }
    }

    /// Notes a text that had escapes, which serde unescaped into a copy: kept as text.
    fn unescaped(&mut self, s: &str) {
        self.unescaped.push(s.to_owned());
    }

    /// The range of `s` in the body, if serde lent it from there (a string without escapes).
    fn range_of(&self, s: &str) -> Option<Range<usize>> {
        let start = (s.as_ptr() as usize).wrapping_sub(self.base);
        (start <= self.len && s.len() <= self.len - start).then(|| start..start + s.len())
    }

    /// Notes a text serde lent from the body: its range.
    fn text(&mut self, s: &str) {
        match self.range_of(s) {
            Some(range) => self.texts.push(range),
            None => self.exact = false,
        }
    }

    /// Notes a string value read as a [`Scalar`].
    fn scalar(&mut self, value: &Scalar<'_>) {
        match value {
            Scalar::Str(Cow::Borrowed(s)) => self.text(s),
            Scalar::Str(Cow::Owned(s)) => self.unescaped(s),
            _ => {}
        }
    }

    /// What the exchange keeps, if every text had a range.
    pub(super) fn into_prompt(self, caps: [Option<u64>; 2]) -> Option<PromptSpans> {
        self.exact.then_some(PromptSpans {
            messages: self.messages,
            texts: self.texts,
            unescaped: self.unescaped,
            max_completion_tokens: caps[0],
            max_tokens: caps[1],
        })
    }
}

/// Keys whose values are not prompt text (an image's or a file's bytes), as the token
/// count skips them.
fn not_text(key: &str) -> bool {
    matches!(key, "image_url" | "input_audio" | "file")
}

/// `messages`: `true` when it is a non-empty array of messages that each pass; their texts
/// go to the spans.
struct MessagesSeed<'s>(&'s mut Spans);

impl<'de> DeserializeSeed<'de> for MessagesSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessagesSeed<'_> {
    type Value = bool;
    visit_scalars!(@scalars false, false);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        // A repeated `messages` key: only the last array counts, as in the tree.
        self.0.texts.clear();
        self.0.messages = 0;
        let mut all_ok = true;
        while let Some(ok) = seq.next_element_seed(MessageSeed(&mut *self.0))? {
            self.0.messages += 1;
            all_ok &= ok;
        }
        Ok(self.0.messages > 0 && all_ok)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        Walk::map(map).map(|_| false)
    }
}

/// One message: `true` when it passes the general check's rules for a message.
struct MessageSeed<'s>(&'s mut Spans);

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_> {
    type Value = bool;
    visit_scalars!(false, false);
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        let spans = self.0;
        let mut role = Scalar::Absent;
        let mut content = Content::Absent;
        let mut tool_call_id = Scalar::Absent;
        let mut content_may_be_absent = false;
        entries(map, |key, map| {
            match key {
                "role" => {
                    role = map.next_value()?;
                    spans.scalar(&role);
                }
                "content" => content = map.next_value_seed(ContentSeed(&mut *spans))?,
                "tool_call_id" => {
                    tool_call_id = map.next_value()?;
                    spans.scalar(&tool_call_id);
                }
                "tool_calls" | "function_call" | "refusal" => {
                    content_may_be_absent = true;
                    map.next_value_seed(Texts(&mut *spans))?;
                }
                k if not_text(k) => return Ok(false),
                _ => map.next_value_seed(Texts(&mut *spans))?,
            }
            Ok(true)
        })?;
        let Scalar::Str(role) = role else {
            return Ok(false);
        };
        let role = role.as_ref();
        let content_optional = role == "assistant"
            && (content_may_be_absent || matches!(content, Content::Absent | Content::Null));
        let content_ok = match content {
            Content::Text | Content::Parts(true) => true,
            Content::Absent | Content::Null => content_optional,
            Content::Parts(false) | Content::Other => false,
        };
        let tool_ok = role != "tool" || matches!(tool_call_id, Scalar::Str(_));
        Ok(ROLES.contains(&role) && content_ok && tool_ok)
    }
}

/// A message's `content`.
#[derive(Default)]
enum Content {
    #[default]
    Absent,
    Null,
    Text,
    /// An array of parts: `true` when every part is an object with a string `type`.
    Parts(bool),
    Other,
}

/// Reads a `content`, its texts going to the spans.
struct ContentSeed<'s>(&'s mut Spans);

impl<'de> DeserializeSeed<'de> for ContentSeed<'_> {
    type Value = Content;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Content, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ContentSeed<'_> {
    type Value = Content;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Content, E> {
        Ok(Content::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Content, E> {
        Ok(Content::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Content, E> {
        Ok(Content::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Content, E> {
        Ok(Content::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Content, E> {
        Ok(Content::Other)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Content, E> {
        self.0.text(v);
        Ok(Content::Text)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
        self.0.unescaped(v);
        Ok(Content::Text)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
        let mut all_ok = true;
        while let Some(ok) = seq.next_element_seed(PartSeed(&mut *self.0))? {
            all_ok &= ok;
        }
        Ok(Content::Parts(all_ok))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Content, A::Error> {
        Walk::map(map).map(|_| Content::Other)
    }
}

/// A content part: `true` when it is an object with a string `type`; its texts (but not an
/// image's or a file's data) go to the spans.
struct PartSeed<'s>(&'s mut Spans);

impl<'de> DeserializeSeed<'de> for PartSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PartSeed<'_> {
    type Value = bool;
    visit_scalars!(false, false);
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        let spans = self.0;
        let mut kind = Scalar::Absent;
        entries(map, |key, map| {
            match key {
                "type" => {
                    kind = map.next_value()?;
                    spans.scalar(&kind);
                }
                k if not_text(k) => return Ok(false),
                _ => map.next_value_seed(Texts(&mut *spans))?,
            }
            Ok(true)
        })?;
        Ok(matches!(kind, Scalar::Str(_)))
    }
}

/// Any value inside a message, walked as strictly as [`Walk`], its strings going to the
/// spans (but not under the keys [`not_text`] names).
struct Texts<'s>(&'s mut Spans);

impl<'de> DeserializeSeed<'de> for Texts<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Texts<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.0.text(v);
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.unescaped(v);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Texts(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        entries(map, |key, map| {
            if not_text(key) {
                return Ok(false);
            }
            map.next_value_seed(Texts(&mut *self.0))?;
            Ok(true)
        })
    }
}
