//! Removing the usage event Johi asked for from a stream the client did not ask it for.
//!
//! To meter a stream, Johi sets `stream_options.include_usage` on requests whose client did
//! not; the provider then sends one extra event before `[DONE]`: a chunk with an empty
//! `choices` list and a `usage` object. A client that did not ask for it may not expect a
//! chunk without choices (older SDK code indexes `choices[0]`), so the relay drops exactly
//! that event and passes every other byte through unchanged.
//!
//! The relay frames the stream into events with [`EventFramer`](crate::sse::EventFramer)
//! and drops the events this predicate picks; every other byte passes unchanged.

use serde_json::Value;

/// Whether an event (raw bytes, separator or not) is a chunk with no choices and a usage
/// object: the event `stream_options.include_usage` adds.
pub fn is_usage_only(event: &[u8]) -> bool {
    // Cheap test first: most events are content deltas without a usage object.
    if memchr::memmem::find(event, b"\"usage\"").is_none() {
        return false;
    }
    let data: Vec<u8> = event
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            line.strip_prefix(b"data:")
                .map(|d| d.strip_prefix(b" ").unwrap_or(d))
        })
        .collect::<Vec<_>>()
        .join(&b'\n');
    let Ok(value) = serde_json::from_slice::<Value>(&data) else {
        return false;
    };
    value.get("usage").is_some_and(Value::is_object)
        && value
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::EventFramer;

    /// What the relay does: frame, drop usage-only events, keep the rest.
    #[derive(Default)]
    struct UsageEventFilter {
        framer: EventFramer,
        removed: u32,
    }

    impl UsageEventFilter {
        fn filter(&mut self, chunk: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let removed = &mut self.removed;
            self.framer.feed(chunk, |event| {
                if is_usage_only(event) {
                    *removed += 1;
                } else {
                    out.extend_from_slice(event);
                }
                true
            });
            out
        }

        fn finish(&mut self) -> Vec<u8> {
            self.framer.finish()
        }

        fn removed(&self) -> u32 {
            self.removed
        }
    }

    const STREAM: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n",
        "data: [DONE]\n\n",
    );

    fn expected() -> String {
        STREAM.replace(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n",
            "",
        )
    }

    #[test]
    fn drops_only_the_usage_event_whatever_the_chunking() {
        let bytes = STREAM.as_bytes();
        for size in [1, 2, 3, 7, 16, 64, bytes.len()] {
            let mut f = UsageEventFilter::default();
            let mut out = Vec::new();
            for chunk in bytes.chunks(size) {
                out.extend(f.filter(chunk));
            }
            out.extend(f.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                expected(),
                "chunks of {size}"
            );
            assert_eq!(f.removed(), 1);
        }
    }

    #[test]
    fn keeps_events_with_choices_and_crlf_framing() {
        let mut f = UsageEventFilter::default();
        let with_both =
            "data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":1}}\r\n\r\n";
        assert_eq!(f.filter(with_both.as_bytes()), with_both.as_bytes());
        let crlf_usage = "data: {\"choices\": [], \"usage\": {\"prompt_tokens\": 1}}\r\n\r\ndata: [DONE]\r\n\r\n";
        assert_eq!(f.filter(crlf_usage.as_bytes()), b"data: [DONE]\r\n\r\n");
        assert_eq!(f.filter(b"data: {\"partial"), b"");
        assert_eq!(f.finish(), b"data: {\"partial");
    }
}
