//! W3C trace context (`traceparent`), continued from the client or started here.

/// A parsed or freshly started W3C trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, never all zeros.
    pub trace_id: String,
    /// The span this hop creates (16 hex digits); the client's span becomes its parent.
    pub span_id: String,
    /// Trace flags byte as two hex digits (`01` = sampled).
    pub flags: String,
    /// The client's `tracestate`, passed on unchanged.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Continues the client's trace if its `traceparent` is valid, else starts a new one.
    ///
    /// Either way Johi gets a span of its own, so the upstream sees Johi as its parent.
    pub fn continue_or_start(traceparent: Option<&str>, tracestate: Option<&str>) -> Self {
        match traceparent.and_then(parse_traceparent) {
            Some((trace_id, flags)) => TraceContext {
                trace_id: trace_id.to_owned(),
                span_id: random_hex(8),
                flags: flags.to_owned(),
                tracestate: tracestate.map(str::to_owned),
            },
            None => TraceContext {
                trace_id: random_hex(16),
                span_id: random_hex(8),
                flags: "01".to_owned(),
                tracestate: None,
            },
        }
    }

    /// The `traceparent` header value for this hop. Built by hand rather than with
    /// `format!`, which cost ten times as much: this runs for every request.
    pub fn traceparent(&self) -> String {
        let mut value =
            String::with_capacity(6 + self.trace_id.len() + self.span_id.len() + self.flags.len());
        for part in ["00-", &self.trace_id, "-", &self.span_id, "-", &self.flags] {
            value.push_str(part);
        }
        value
    }
}

/// Returns (trace-id, flags) of a valid version-00 `traceparent`.
fn parse_traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let is_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = version == "00"
        && parts.next().is_none()
        && is_hex(trace_id, 32)
        && is_hex(parent_id, 16)
        && is_hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.bytes().any(|b| b != b'0');
    valid.then_some((trace_id, flags))
}

/// `bytes` random bytes as lowercase hex, never all zeros. Written digit by digit rather
/// than through `format!`: three of these are made for every request.
pub fn random_hex(bytes: usize) -> String {
    let mut out = vec![0; bytes * 2];
    fill_random_hex(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Fills `out` with random lowercase hex digits, never all zeros: a random ID written where
/// the caller keeps it (a stack buffer), without a `String` of its own.
pub fn fill_random_hex(out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    loop {
        // Sixteen digits from each random `u64`, most significant nibble first.
        for chunk in out.chunks_mut(16) {
            let value = fastrand::u64(..);
            for (i, digit) in chunk.iter_mut().enumerate() {
                *digit = DIGITS[((value >> (60 - 4 * i)) & 0xf) as usize];
            }
        }
        if out.iter().any(|&b| b != b'0') {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_is_lowercase_hex_of_the_asked_length_and_varies() {
        for bytes in [1, 8, 12, 16] {
            let a = random_hex(bytes);
            assert_eq!(a.len(), bytes * 2);
            assert!(
                a.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{a}"
            );
            assert!(a.bytes().any(|b| b != b'0'));
        }
        assert_ne!(random_hex(16), random_hex(16));
    }

    #[test]
    fn continues_a_valid_trace_with_a_new_span() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::continue_or_start(Some(tp), Some("congo=t61rcWkgMzE"));
        assert_eq!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(ctx.span_id, "00f067aa0ba902b7");
        assert_eq!(ctx.span_id.len(), 16);
        assert_eq!(ctx.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        assert!(ctx
            .traceparent()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }

    #[test]
    fn starts_a_new_trace_on_garbage() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            let ctx = TraceContext::continue_or_start(Some(bad), Some("x=y"));
            assert_eq!(ctx.trace_id.len(), 32, "{bad}");
            assert_ne!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(ctx.tracestate.is_none());
        }
    }
}
