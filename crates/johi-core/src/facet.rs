//! Facets: the named parts of an exchange a processor declares it reads or writes.
//!
//! The pipeline builder orders processors by these declarations (a reader runs after every
//! writer), so a facet is a promise, not documentation.

use std::fmt;

/// One part of the exchange that processors depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Facet {
    /// Who is calling: organisation, team, user, key.
    Identity = 0,
    /// The prompt text: messages, prompt, embedding input.
    Prompt,
    /// Generation parameters: temperature, max_tokens, stream, tools …
    Params,
    /// The model named by the request, and the logical route it resolves to.
    Model,
    /// The upstream target picked for the current attempt.
    Endpoint,
    /// Credentials attached for the current destination.
    Credentials,
    /// Headers sent upstream and echoed to the client.
    Headers,
    /// Token counts and reservations.
    Tokens,
    /// The response from upstream (or from a short-circuit).
    Response,
}

impl Facet {
    /// Every facet, in declaration order.
    pub const ALL: [Facet; 9] = [
        Facet::Identity,
        Facet::Prompt,
        Facet::Params,
        Facet::Model,
        Facet::Endpoint,
        Facet::Credentials,
        Facet::Headers,
        Facet::Tokens,
        Facet::Response,
    ];

    /// The facet's name as written in config and diagnostics.
    pub fn as_str(self) -> &'static str {
        match self {
            Facet::Identity => "identity",
            Facet::Prompt => "prompt",
            Facet::Params => "params",
            Facet::Model => "model",
            Facet::Endpoint => "endpoint",
            Facet::Credentials => "credentials",
            Facet::Headers => "headers",
            Facet::Tokens => "tokens",
            Facet::Response => "response",
        }
    }
}

impl fmt::Display for Facet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A small set of facets, copied freely; contracts are built from these at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct FacetSet(u16);

impl FacetSet {
    /// The empty set.
    pub const EMPTY: FacetSet = FacetSet(0);

    /// A set holding exactly the given facets.
    pub const fn of(facets: &[Facet]) -> FacetSet {
        let mut bits = 0u16;
        let mut i = 0;
        while i < facets.len() {
            bits |= 1 << facets[i] as u8;
            i += 1;
        }
        FacetSet(bits)
    }

    /// Whether `facet` is in the set.
    pub fn contains(self, facet: Facet) -> bool {
        self.0 & (1 << facet as u8) != 0
    }

    /// The facets in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Facet> {
        Facet::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for FacetSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for facet in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(facet.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_membership_and_display() {
        let set = FacetSet::of(&[Facet::Prompt, Facet::Model]);
        assert!(set.contains(Facet::Prompt));
        assert!(set.contains(Facet::Model));
        assert!(!set.contains(Facet::Identity));
        assert_eq!(set.to_string(), "prompt,model");
        assert_eq!(FacetSet::EMPTY.to_string(), "-");
    }
}
