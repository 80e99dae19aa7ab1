//! Prices and money in integers: no floating point anywhere money is added up.
//!
//! A price is configured in US dollars per million tokens (the unit every provider's price
//! list uses) and held as pico-dollars per token, which represents every published price
//! exactly ($0.0375 per million tokens is 37 500 pico-dollars per token). A request's cost is
//! computed in pico-dollars and rounded *up* to whole micro-dollars once, so a sum of costs
//! never under-charges and never drifts with the order of addition.

use crate::Usage;

/// Pico-dollars per micro-dollar.
const PICO_PER_MICRO: u64 = 1_000_000;

/// A model's prices, in pico-dollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pricing {
    /// Per input (prompt) token not served from the provider's cache.
    pub input: u64,
    /// Per output (generated) token, reasoning included.
    pub output: u64,
    /// Per cached input token.
    pub cached_input: u64,
}

impl Pricing {
    /// The cost of `usage` in micro-dollars, rounded up.
    pub fn cost_micros(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_tokens.min(usage.input_tokens);
        let pico = u128::from(usage.input_tokens - cached) * u128::from(self.input)
            + u128::from(cached) * u128::from(self.cached_input)
            + u128::from(usage.output_tokens) * u128::from(self.output);
        u64::try_from(pico.div_ceil(u128::from(PICO_PER_MICRO))).unwrap_or(u64::MAX)
    }
}

/// Parses a decimal amount of US dollars per million tokens (`"2.50"`, `"0.0375"`) into
/// pico-dollars per token, exactly. At most six decimal places (a millionth of a dollar
/// per million tokens, a thousand times finer than any published price).
pub fn parse_price_per_million(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) {
        return Err(format!(
            "'{text}' is not a price like 2.50 (US dollars per million tokens)"
        ));
    }
    if fraction.len() > 6 {
        return Err(format!("'{text}' has more than 6 decimal places"));
    }
    let whole: u64 = whole
        .parse()
        .map_err(|_| format!("'{text}' is too large"))?;
    let fraction_micro: u64 = format!("{fraction:0<6}")
        .parse()
        .map_err(|_| format!("'{text}' is not a price"))?;
    // dollars per million tokens × 10^12 pico-dollars per dollar ÷ 10^6 tokens
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(fraction_micro))
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Renders micro-dollars as a decimal dollar amount with six places (`1234567` → `1.234567`).
pub fn format_micros(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_exactly() {
        assert_eq!(parse_price_per_million("2.50"), Ok(2_500_000));
        assert_eq!(parse_price_per_million("0.0375"), Ok(37_500));
        assert_eq!(parse_price_per_million("15"), Ok(15_000_000));
        assert_eq!(parse_price_per_million("0.000001"), Ok(1));
        assert!(parse_price_per_million("1.0000001").is_err());
        assert!(parse_price_per_million("-1").is_err());
        assert!(parse_price_per_million("1e3").is_err());
        assert!(parse_price_per_million("").is_err());
    }

    #[test]
    fn cost_is_rounded_up_once_in_micros() {
        // gpt-4o-like: $2.50 in, $1.25 cached in, $10.00 out per million tokens.
        let p = Pricing {
            input: 2_500_000,
            cached_input: 1_250_000,
            output: 10_000_000,
        };
        let u = Usage {
            input_tokens: 1000,
            cached_tokens: 400,
            output_tokens: 100,
            reasoning_tokens: 0,
        };
        // 600 × 2.5 + 400 × 1.25 + 100 × 10 micro-dollars = 1500 + 500 + 1000
        assert_eq!(p.cost_micros(&u), 3000);
        let one = Usage {
            input_tokens: 1,
            ..Usage::default()
        };
        assert_eq!(p.cost_micros(&one), 3, "2.5 micro-dollars round up to 3");
        assert_eq!(format_micros(1_234_567), "1.234567");
        assert_eq!(format_micros(5), "0.000005");
    }
}
