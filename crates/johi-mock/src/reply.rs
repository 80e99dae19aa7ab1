//! The deterministic reply: its split into stream pieces, truncation, and token counting.

use std::borrow::Cow;

use serde_json::Value;

/// The reply when no `reply` knob is given.
pub(crate) const DEFAULT_REPLY: &str = "This is a deterministic reply from the Johi mock upstream.";

/// A reply cut into one piece per word, each piece carrying the whitespace before its word,
/// so concatenating the pieces gives the reply back exactly.
#[derive(Debug)]
pub(crate) struct Reply {
    text: String,
    /// Byte range of each piece (leading whitespace + word; the last piece also takes any
    /// trailing whitespace).
    pieces: Vec<(usize, usize)>,
    /// Byte range of each bare word, for cycling past the end (`chunks` knob).
    words: Vec<(usize, usize)>,
    /// Number of pieces actually emitted (completion tokens).
    count: usize,
    /// `"stop"`, or `"length"` when `max_tokens` cut the reply short.
    pub finish_reason: &'static str,
}

impl Reply {
    /// Plans the reply: `chunks` overrides the number of pieces (cycling through the words),
    /// then `max_tokens` truncates.
    pub(crate) fn new(text: Option<&str>, chunks: Option<u32>, max_tokens: Option<u64>) -> Reply {
        let text = text.unwrap_or(DEFAULT_REPLY).to_owned();
        let mut words = Vec::new();
        let mut start = None;
        for (i, c) in text.char_indices() {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    words.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            words.push((s, text.len()));
        }
        let mut pieces = Vec::with_capacity(words.len());
        let mut prev_end = 0;
        for &(_, end) in &words {
            pieces.push((prev_end, end));
            prev_end = end;
        }
        if let Some(last) = pieces.last_mut() {
            last.1 = text.len();
        }
        let mut count = match chunks {
            Some(_) if words.is_empty() => 0,
            Some(n) => n as usize,
            None => words.len(),
        };
        let mut finish_reason = "stop";
        if let Some(max) = max_tokens {
            if (count as u64) > max {
                count = max as usize;
                finish_reason = "length";
            }
        }
        Reply {
            text,
            pieces,
            words,
            count,
            finish_reason,
        }
    }

    /// Number of pieces emitted; also the completion token count.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Piece `i` (`i < count`). Past the end of the reply, words repeat with one space before.
    pub(crate) fn piece(&self, i: usize) -> Cow<'_, str> {
        if let Some(&(s, e)) = self.pieces.get(i) {
            return Cow::Borrowed(&self.text[s..e]);
        }
        match self.words.get(i % self.words.len().max(1)) {
            Some(&(s, e)) => Cow::Owned(format!(" {}", &self.text[s..e])),
            None => Cow::Borrowed(""),
        }
    }

    /// The full emitted text: the concatenation of all pieces.
    pub(crate) fn content(&self) -> Cow<'_, str> {
        if self.count == self.pieces.len() {
            return Cow::Borrowed(&self.text);
        }
        let mut out = String::new();
        for i in 0..self.count {
            out.push_str(&self.piece(i));
        }
        Cow::Owned(out)
    }
}

/// Number of whitespace-separated words: the mock's token count for text.
pub(crate) fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Prompt tokens of a chat request: words of every message's content plus 3 per message.
pub(crate) fn chat_prompt_tokens(messages: &[Value]) -> u64 {
    messages
        .iter()
        .map(|message| 3 + content_words(message.get("content")))
        .sum()
}

/// Words of a message content: a string, or the `text` of each content part.
pub(crate) fn content_words(content: Option<&Value>) -> u64 {
    match content {
        Some(Value::String(s)) => words(s),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(words)
            .sum(),
        _ => 0,
    }
}

/// Prompt tokens of a legacy completions prompt: a string, strings, or token ids.
pub(crate) fn prompt_tokens(prompt: Option<&Value>) -> u64 {
    match prompt {
        Some(Value::String(s)) => words(s),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => words(s),
                Value::Array(ids) => ids.len() as u64,
                Value::Number(_) => 1,
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all(reply: &Reply) -> Vec<String> {
        (0..reply.count())
            .map(|i| reply.piece(i).into_owned())
            .collect()
    }

    #[test]
    fn pieces_concatenate_to_the_reply() {
        let reply = Reply::new(Some("  Hello,\n big   world!  "), None, None);
        assert_eq!(all(&reply), ["  Hello,", "\n big", "   world!  "]);
        assert_eq!(all(&reply).concat(), "  Hello,\n big   world!  ");
        assert_eq!(reply.content(), "  Hello,\n big   world!  ");
        assert_eq!(reply.finish_reason, "stop");
        let reply = Reply::new(None, None, None);
        assert_eq!(all(&reply).concat(), DEFAULT_REPLY);
        assert_eq!(reply.count(), 10);
    }

    #[test]
    fn chunks_cycle_and_max_tokens_truncate() {
        let reply = Reply::new(Some("a b"), Some(5), None);
        assert_eq!(reply.content(), "a b a b a");
        let reply = Reply::new(Some("a b c"), Some(5), Some(2));
        assert_eq!(reply.content(), "a b");
        assert_eq!(reply.finish_reason, "length");
        let reply = Reply::new(Some(""), Some(5), None);
        assert_eq!(reply.count(), 0);
        assert_eq!(reply.content(), "");
    }

    #[test]
    fn token_counts() {
        let messages = [
            json!({"role": "system", "content": "be brief"}),
            json!({"role": "user", "content": [{"type": "text", "text": "one two three"}, {"type": "image_url"}]}),
            json!({"role": "assistant", "content": null}),
        ];
        assert_eq!(chat_prompt_tokens(&messages), 2 + 3 + 3 + 3 + 3);
        assert_eq!(prompt_tokens(Some(&json!("a b c"))), 3);
        assert_eq!(prompt_tokens(Some(&json!(["a b", "c"]))), 3);
        assert_eq!(prompt_tokens(Some(&json!([1, 2, 3, 4]))), 4);
    }
}
