//! Incremental Server-Sent Events framing.
//!
//! Streams are relayed chunk by chunk as they arrive; this splitter only *observes* them,
//! keeping at most one incomplete event buffered, so inspecting a stream never delays it.

/// Splits a byte stream into SSE events and hands each event's `data` payload to a callback.
#[derive(Debug, Default)]
pub struct EventSplitter {
    /// Bytes of an event that has started but not yet ended.
    pending: Vec<u8>,
}

impl EventSplitter {
    /// Feeds the next chunk; `on_data` receives the data payload of each complete event
    /// (multi-line `data:` fields joined by `\n`, as the SSE spec says).
    pub fn feed(&mut self, chunk: &[u8], mut on_data: impl FnMut(&[u8])) {
        if self.pending.is_empty() {
            let consumed = split_events(chunk, &mut on_data);
            self.pending.extend_from_slice(&chunk[consumed..]);
        } else {
            self.pending.extend_from_slice(chunk);
            let pending = std::mem::take(&mut self.pending);
            let consumed = split_events(&pending, &mut on_data);
            self.pending = pending[consumed..].to_vec();
        }
    }

    /// Bytes buffered for an event that has not ended yet.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// Feeds `chunk` to the splitter a stream translator owns (`splitter` finds it), calling
/// `event(this, data, out)` for each complete event; returns what the events wrote. The
/// splitter is taken out of `this` meanwhile, so that `event` may borrow `this` mutably.
pub(crate) fn feed_events<T>(
    this: &mut T,
    chunk: &[u8],
    splitter: fn(&mut T) -> &mut EventSplitter,
    event: fn(&mut T, &[u8], &mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut taken = std::mem::take(splitter(this));
    taken.feed(chunk, |data| event(this, data, &mut out));
    *splitter(this) = taken;
    out
}

/// Processes every complete event in `buf`; returns how many bytes were consumed.
fn split_events(buf: &[u8], on_data: &mut impl FnMut(&[u8])) -> usize {
    let mut start = 0;
    while let Some((end, next)) = find_event_end(&buf[start..]) {
        emit(&buf[start..start + end], on_data);
        start += next;
    }
    start
}

/// Finds the blank line ending an event: returns (event length, offset after the separator).
pub(crate) fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(pos) = memchr::memchr(b'\n', &buf[i..]) {
        let nl = i + pos;
        let rest = &buf[nl + 1..];
        if rest.first() == Some(&b'\n') {
            return Some((nl, nl + 2));
        }
        if rest.starts_with(b"\r\n") {
            return Some((nl, nl + 3));
        }
        i = nl + 1;
    }
    None
}

fn emit(event: &[u8], on_data: &mut impl FnMut(&[u8])) {
    let mut data: Option<Vec<u8>> = None;
    let mut single: Option<&[u8]> = None;
    // Lines found with memchr: an event is one long `data:` line in practice, and a
    // byte-at-a-time split was the scanner's main cost.
    let mut rest = Some(event);
    while let Some(remaining) = rest {
        let line = match memchr::memchr(b'\n', remaining) {
            Some(end) => {
                rest = Some(&remaining[end + 1..]);
                &remaining[..end]
            }
            None => {
                rest = None;
                remaining
            }
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(value) = line.strip_prefix(b"data:") else {
            continue;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match (&mut data, single) {
            (None, None) => single = Some(value),
            (None, Some(first)) => {
                let mut joined = first.to_vec();
                joined.push(b'\n');
                joined.extend_from_slice(value);
                data = Some(joined);
            }
            (Some(joined), _) => {
                joined.push(b'\n');
                joined.extend_from_slice(value);
            }
        }
    }
    match (data, single) {
        (Some(joined), _) => on_data(&joined),
        (None, Some(value)) => on_data(value),
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = EventSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            splitter.feed(c, |d| out.push(String::from_utf8_lossy(d).into_owned()));
        }
        out
    }

    #[test]
    fn events_split_across_chunks_are_joined() {
        let out = collect(&[b"data: {\"a\"", b":1}\n", b"\ndata: [DONE]\n\n"]);
        assert_eq!(out, vec!["{\"a\":1}", "[DONE]"]);
    }

    #[test]
    fn crlf_comments_and_multiline_data() {
        let out = collect(&[
            b": keep-alive\r\n\r\nevent: x\r\ndata: one\r\ndata: two\r\n\r\ndata:three\n\n",
        ]);
        assert_eq!(out, vec!["one\ntwo", "three"]);
    }

    #[test]
    fn an_unfinished_event_stays_pending() {
        let mut s = EventSplitter::default();
        let mut n = 0;
        s.feed(b"data: x\n\ndata: y", |_| n += 1);
        assert_eq!(n, 1);
        assert_eq!(s.pending_len(), 7);
    }
}

/// Passes each whole event at the start of `bytes` to `each` until it returns `false`;
/// answers how many bytes those events took.
fn whole_events(bytes: &[u8], each: &mut impl FnMut(&[u8]) -> bool) -> usize {
    let mut start = 0;
    while let Some((_, next)) = find_event_end(&bytes[start..]) {
        let keep_going = each(&bytes[start..start + next]);
        start += next;
        if !keep_going {
            break;
        }
    }
    start
}

/// Re-frames a byte stream into whole SSE events (each with its separator), for a relay
/// that must act between events: drop one, or stop after one. At most one incomplete event
/// is held.
#[derive(Debug, Default)]
pub struct EventFramer {
    pending: Vec<u8>,
}

impl EventFramer {
    /// Feeds the next chunk; `each` receives every complete event's raw bytes, separator
    /// included, and returns `false` to stop: the rest of the chunk, and anything after, is
    /// then discarded by the caller's choice (the framer keeps it, but the caller is done).
    ///
    /// With nothing held from an earlier chunk (the usual case: upstreams send whole
    /// events), the events are slices of `chunk` itself, in order from its start, and only
    /// an unfinished tail is copied.
    pub fn feed(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8]) -> bool) {
        if self.pending.is_empty() {
            let used = whole_events(chunk, &mut each);
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            self.pending.extend_from_slice(chunk);
            let used = whole_events(&self.pending, &mut each);
            self.pending.drain(..used);
        }
    }

    /// Whether part of an unfinished event is held: the next chunk's events then start in
    /// the held bytes, not in the chunk.
    pub fn holds_partial(&self) -> bool {
        !self.pending.is_empty()
    }

    /// What is held of an event that has not ended (passed on as it is at the end).
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}
