//! Swapping one top-level value of a JSON object in place, leaving every other byte as the
//! client sent it.
//!
//! Forwarding the client's own bytes is both cheaper than re-serialising (which costs time
//! in proportion to the prompt) and more faithful: numbers, key order, spacing and unicode
//! escapes reach the upstream exactly as written.

use std::ops::Range;

/// The byte range of the value of the top-level `key` in a JSON object, if the body is an
/// object that has the key exactly once, spelled without escapes. `None` means "do not
/// splice" (the caller re-serialises instead): escaped keys, duplicate keys and anything
/// that does not scan cleanly all take the safe path.
pub fn top_level_value(body: &[u8], key: &str) -> Option<Range<usize>> {
    let mut s = Scanner {
        bytes: body,
        pos: 0,
    };
    s.whitespace();
    s.expect(b'{')?;
    s.whitespace();
    let mut found = None;
    if s.peek() == Some(b'}') {
        return None;
    }
    loop {
        s.whitespace();
        let name = s.string()?;
        let name = &body[name.start + 1..name.end - 1];
        if name.contains(&b'\\') {
            return None;
        }
        s.whitespace();
        s.expect(b':')?;
        s.whitespace();
        let value = s.value()?;
        if name == key.as_bytes() {
            if found.is_some() {
                return None;
            }
            found = Some(value);
        }
        s.whitespace();
        match s.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    s.whitespace();
    if s.pos != body.len() {
        return None;
    }
    found
}

/// `body` with the range replaced by `replacement`.
pub fn splice(body: &[u8], range: Range<usize>, replacement: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() - range.len() + replacement.len());
    out.extend_from_slice(&body[..range.start]);
    out.extend_from_slice(replacement);
    out.extend_from_slice(&body[range.end..]);
    out
}

/// `body` (a JSON object) with `"key":value` added as its last member, or `None` if it does
/// not end as an object. Every byte before the closing brace stays where it was, so ranges
/// into the body stay valid. The caller knows the key is not there yet (a duplicate key
/// would be read differently by different parsers); `key` must need no escaping.
pub fn insert_last(body: &[u8], key: &str, value: &[u8]) -> Option<Vec<u8>> {
    let close = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if body[close] != b'}' {
        return None;
    }
    let before = body[..close]
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())?;
    let empty = body[before] == b'{';
    let mut out = Vec::with_capacity(body.len() + key.len() + value.len() + 4);
    out.extend_from_slice(&body[..close]);
    if !empty {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(value);
    out.extend_from_slice(&body[close..]);
    Some(out)
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// A string, quotes included.
    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.pos;
        self.expect(b'"')?;
        loop {
            let rest = &self.bytes[self.pos..];
            let i = memchr::memchr2(b'"', b'\\', rest)?;
            self.pos += i;
            match self.next()? {
                b'"' => return Some(start..self.pos),
                _ => {
                    self.next()?;
                }
            }
        }
    }

    /// Any value, skipped structurally (the body was already validated as JSON).
    fn value(&mut self) -> Option<Range<usize>> {
        let start = self.pos;
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.pos += 1;
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.pos += 1;
                }
                if self.pos == start {
                    return None;
                }
            }
        }
        Some(start..self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_last_adds_a_member_to_any_object() {
        let add = |b: &str| {
            insert_last(b.as_bytes(), "k", b"{\"x\":true}").map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(
            add(r#"{"a":1}"#).as_deref(),
            Some(r#"{"a":1,"k":{"x":true}}"#)
        );
        assert_eq!(add(" \n{ } ").as_deref(), Some(" \n{ \"k\":{\"x\":true}} "));
        assert_eq!(add("[1]"), None);
        assert_eq!(add("  "), None);
        assert_eq!(add("}"), None);
        let body = r#"{ "a" : [1, {"b": null}] }"#;
        let added = add(body).unwrap();
        assert!(
            added.starts_with(body.trim_end_matches('}')),
            "nothing before moves"
        );
        let v: serde_json::Value = serde_json::from_str(&added).unwrap();
        assert_eq!(v["k"]["x"], true);
        assert_eq!(v["a"][1]["b"], serde_json::Value::Null);
    }

    fn swap(body: &str, model: &str) -> Option<String> {
        let range = top_level_value(body.as_bytes(), "model")?;
        let replacement = serde_json::to_vec(model).unwrap();
        Some(String::from_utf8(splice(body.as_bytes(), range, &replacement)).unwrap())
    }

    #[test]
    fn only_the_top_level_model_changes_and_everything_else_is_byte_exact() {
        let body = r#"{ "messages":[{"role":"user","content":"say \"model\": {x}","model":"nested"}],
  "seed": 123456789012345678901234567890, "temperature":0.70, "model" : "gpt-4o", "x":"\u00e9"}"#;
        let out = swap(body, "gpt-4o-2024-08-06").unwrap();
        assert_eq!(
            out,
            body.replace(r#""model" : "gpt-4o""#, r#""model" : "gpt-4o-2024-08-06""#)
        );
    }

    #[test]
    fn the_safe_path_is_taken_when_in_doubt() {
        assert!(
            swap(r#"{"model":"a","model":"b"}"#, "x").is_none(),
            "duplicate keys"
        );
        assert!(swap(r#"{"mod\u0065l":"a"}"#, "x").is_none(), "escaped key");
        assert!(swap(r#"{"other":1}"#, "x").is_none(), "absent");
        assert!(swap(r#"[{"model":"a"}]"#, "x").is_none(), "not an object");
        assert!(swap(r#"{"model":"a"} trailing"#, "x").is_none());
        assert!(swap("{}", "x").is_none());
    }

    #[test]
    fn values_of_every_kind_are_skipped() {
        let body = r#"{"a":null,"b":true,"c":-1.5e3,"d":[1,[2,{"e":"]}"}]],"f":{"g":{}},"model":"m","h":"\\"}"#;
        assert_eq!(
            swap(body, "n").unwrap(),
            body.replace(r#""model":"m""#, r#""model":"n""#)
        );
    }

    #[test]
    fn agrees_with_serde_on_every_fixture() {
        // Whatever the splice produces must parse to what re-serialising would produce.
        for body in [
            r#"{"model":"a","messages":[{"role":"user","content":"hi"}]}"#,
            "{\n  \"model\" :\t\"a\" ,\n  \"stream\": true\n}\n",
            r#"{"tools":[{"type":"function","function":{"name":"model","parameters":{"model":{"type":"string"}}}}],"model":"a"}"#,
        ] {
            let spliced = swap(body, "b").unwrap();
            let mut expected: serde_json::Value = serde_json::from_str(body).unwrap();
            expected["model"] = serde_json::json!("b");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&spliced).unwrap(),
                expected,
                "{body}"
            );
        }
    }
}
