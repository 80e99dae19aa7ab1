//! Removing the usage event Johi asked for from a stream the client did not ask it for.
//!
//! To meter a stream, Johi sets `stream_options.include_usage` on requests whose client did
//! not; the provider then sends one extra event before `[DONE]`: a chunk with an empty
//! `choices` list and a `usage` object. A client that did not ask for it may not expect a
//! chunk without choices (older SDK code indexes `choices[0]`), so the relay drops exactly
//! that event and passes every other byte through unchanged.
//!
//! Events are passed on as soon as they are complete; at most one incomplete event is held.

use serde_json::Value;

use crate::sse::find_event_end;

/// Filters the usage-only event out of an OpenAI SSE stream, chunk by chunk.
#[derive(Debug, Default)]
pub struct UsageEventFilter {
    pending: Vec<u8>,
    removed: u32,
}

impl UsageEventFilter {
    /// The bytes of `chunk` (with any held partial event before it) that can go to the
    /// client now: every complete event except a usage-only one. An incomplete trailing
    /// event is held until its end arrives.
    pub fn filter(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut start = 0;
        while let Some((end, next)) = find_event_end(&self.pending[start..]) {
            let event = &self.pending[start..start + end];
            if is_usage_only(event) {
                self.removed += 1;
            } else {
                out.extend_from_slice(&self.pending[start..start + next]);
            }
            start += next;
        }
        self.pending.drain(..start);
        out
    }

    /// Whatever is still held when the upstream ends (an unterminated event), unchanged.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// How many usage events were removed.
    pub fn removed(&self) -> u32 {
        self.removed
    }
}

/// Whether an event (without its separator) is a chunk with no choices and a usage object.
fn is_usage_only(event: &[u8]) -> bool {
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
