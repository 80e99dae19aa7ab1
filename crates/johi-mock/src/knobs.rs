//! Fault knobs: parsed from `x-mock-*` headers and the body's `"mock"` object (body wins).

use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;

/// Header prefix of every knob header.
const HEADER_PREFIX: &str = "x-mock-";

/// The knobs of one request; everything unset means "behave like OpenAI".
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Knobs {
    pub latency: Option<Duration>,
    pub status: Option<u16>,
    pub error_body: Option<String>,
    /// `drop = "before_response"`.
    pub drop_before_response: bool,
    pub stream_cut_after: Option<u32>,
    pub stream_no_done: bool,
    pub chunk_delay: Option<Duration>,
    pub chunks: Option<u32>,
    pub reply: Option<String>,
    pub fail_first: Option<u32>,
    pub fail_key: Option<String>,
}

/// A knob value as given: a header string or a JSON value.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Header(&'a str),
    Json(&'a Value),
}

impl Raw<'_> {
    fn describe(&self) -> String {
        match self {
            Raw::Header(s) => format!("{s:?}"),
            Raw::Json(v) => v.to_string(),
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            Raw::Header(s) => s.trim().parse().ok(),
            Raw::Json(Value::Number(n)) => n.as_u64(),
            Raw::Json(Value::String(s)) => s.trim().parse().ok(),
            Raw::Json(_) => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        let parse = |s: &str| match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        };
        match self {
            Raw::Header(s) => parse(s),
            Raw::Json(Value::Bool(b)) => Some(*b),
            Raw::Json(Value::String(s)) => parse(s),
            Raw::Json(Value::Number(n)) => n.as_u64().map(|n| n != 0),
            Raw::Json(_) => None,
        }
    }

    fn as_string(&self) -> Option<String> {
        match self {
            Raw::Header(s) => Some((*s).to_owned()),
            Raw::Json(Value::String(s)) => Some(s.clone()),
            Raw::Json(_) => None,
        }
    }
}

impl Knobs {
    /// Parses the knobs of a request. Errors carry a message for a 400 answer: unknown knob
    /// names and bad values are reported rather than ignored, so test typos surface.
    pub(crate) fn parse(headers: &HeaderMap, body: Option<&Value>) -> Result<Knobs, String> {
        let mut knobs = Knobs::default();
        for (name, value) in headers {
            let Some(knob) = name.as_str().strip_prefix(HEADER_PREFIX) else {
                continue;
            };
            let value = value
                .to_str()
                .map_err(|_| format!("header {name} is not valid text"))?;
            knobs.set(&knob.replace('-', "_"), Raw::Header(value))?;
        }
        if let Some(mock) = body.and_then(|b| b.get("mock")) {
            match mock {
                Value::Object(map) => {
                    for (knob, value) in map {
                        knobs.set(&knob.replace('-', "_"), Raw::Json(value))?;
                    }
                }
                Value::Null => {}
                _ => return Err("the \"mock\" body field must be an object of knobs".into()),
            }
        }
        Ok(knobs)
    }

    fn set(&mut self, name: &str, raw: Raw<'_>) -> Result<(), String> {
        let bad = || format!("invalid value {} for mock knob `{name}`", raw.describe());
        let u64_of = |raw: Raw<'_>| raw.as_u64().ok_or_else(bad);
        let u32_of = |raw: Raw<'_>| {
            raw.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(bad)
        };
        match name {
            "latency_ms" => self.latency = Some(Duration::from_millis(u64_of(raw)?)),
            "status" => {
                let status = raw
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| (200..=599).contains(n))
                    .ok_or_else(bad)?;
                self.status = Some(status);
            }
            "error_body" => {
                self.error_body = Some(match raw {
                    // A JSON object or array in the body is taken as the raw error body.
                    Raw::Json(v @ (Value::Object(_) | Value::Array(_))) => v.to_string(),
                    _ => raw.as_string().ok_or_else(bad)?,
                });
            }
            "drop" => match raw.as_string().as_deref().map(str::trim) {
                Some("before_response") => self.drop_before_response = true,
                Some("" | "none") => self.drop_before_response = false,
                _ => return Err(bad()),
            },
            "stream_cut_after" => self.stream_cut_after = Some(u32_of(raw)?),
            "stream_no_done" => self.stream_no_done = raw.as_bool().ok_or_else(bad)?,
            "chunk_delay_ms" => self.chunk_delay = Some(Duration::from_millis(u64_of(raw)?)),
            "chunks" => self.chunks = Some(u32_of(raw)?),
            "reply" => self.reply = Some(raw.as_string().ok_or_else(bad)?),
            "fail_first" => self.fail_first = Some(u32_of(raw)?),
            "fail_key" => self.fail_key = Some(raw.as_string().ok_or_else(bad)?),
            _ => return Err(format!("unknown mock knob `{name}`")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    #[test]
    fn headers_and_body_merge_with_body_winning() {
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-latency-ms", HeaderValue::from_static("50"));
        headers.insert("x-mock-reply", HeaderValue::from_static("from header"));
        headers.insert("x-mock-fail-key", HeaderValue::from_static("k1"));
        headers.insert("authorization", HeaderValue::from_static("Bearer x"));
        let body = json!({"model": "m", "mock": {"reply": "from body", "stream_no_done": true, "chunks": "7"}});
        let knobs = Knobs::parse(&headers, Some(&body)).unwrap();
        assert_eq!(knobs.latency, Some(Duration::from_millis(50)));
        assert_eq!(knobs.reply.as_deref(), Some("from body"));
        assert_eq!(knobs.fail_key.as_deref(), Some("k1"));
        assert!(knobs.stream_no_done);
        assert_eq!(knobs.chunks, Some(7));
    }

    #[test]
    fn bad_knobs_are_errors() {
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-statuss", HeaderValue::from_static("500"));
        assert!(Knobs::parse(&headers, None)
            .unwrap_err()
            .contains("unknown"));
        let body = json!({"mock": {"status": 1000}});
        assert!(Knobs::parse(&HeaderMap::new(), Some(&body)).is_err());
        let body = json!({"mock": {"drop": "after"}});
        assert!(Knobs::parse(&HeaderMap::new(), Some(&body)).is_err());
        let body = json!({"mock": 3});
        assert!(Knobs::parse(&HeaderMap::new(), Some(&body)).is_err());
    }

    #[test]
    fn error_body_may_be_json() {
        let body =
            json!({"mock": {"status": 429, "error_body": {"error": {"message": "slow down"}}}});
        let knobs = Knobs::parse(&HeaderMap::new(), Some(&body)).unwrap();
        assert_eq!(knobs.status, Some(429));
        assert_eq!(
            knobs.error_body.as_deref(),
            Some(r#"{"error":{"message":"slow down"}}"#)
        );
    }
}
