//! Virtual API keys: `sk-johi-` followed by 256 random bits in URL-safe base64.
//!
//! A key is shown once, when it is generated, and stored only as its SHA-256 digest. A fast
//! hash is the right one here (as for GitHub's and Stripe's tokens): the key is 256 random
//! bits, so there is nothing to guess from a leaked digest, and the check stays well under
//! a microsecond on every request. Passwords, which people choose, would need a slow hash.

use std::fmt;

use base64::Engine;
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

/// Every key Johi generates starts with this, so secret scanners (and people) recognise one.
pub const KEY_PREFIX: &str = "sk-johi-";

/// The SHA-256 digest of a key; what config and stores hold. Written `sha256:<64 hex>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The digest of `key`.
    pub fn of(key: &str) -> KeyHash {
        KeyHash::of_bytes(key.as_bytes())
    }

    /// The digest of `bytes` (a JWKS document, to tell a refetch of the same one).
    pub fn of_bytes(bytes: &[u8]) -> KeyHash {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, bytes).as_ref());
        KeyHash(out)
    }

    /// Parses `sha256:<64 lowercase or uppercase hex digits>`.
    pub fn parse(text: &str) -> Result<KeyHash, String> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| "must start with 'sha256:'".to_owned())?;
        if hex.len() != 64 {
            return Err(format!(
                "must have 64 hex digits after 'sha256:' (found {})",
                hex.len()
            ));
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
            let byte = std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| "must be hexadecimal after 'sha256:'".to_owned())?;
            out[i] = byte;
        }
        Ok(KeyHash(out))
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({self})")
    }
}

/// A freshly generated key: the secret (to show once) and its hash (to store).
pub struct GeneratedKey {
    /// The key itself. Show it to the operator once; never log or store it.
    pub secret: String,
    /// Its digest, for config or a key store.
    pub hash: KeyHash,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("secret", &"<redacted>")
            .field("hash", &self.hash)
            .finish()
    }
}

/// Generates a new key from the operating system's random source.
pub fn generate() -> Result<GeneratedKey, String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the operating system's random source failed".to_owned())?;
    let secret = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = KeyHash::of(&secret);
    Ok(GeneratedKey { secret, hash })
}

/// A key shortened for display (`sk-johi-AbCd…wxyz`), as provider dashboards show them.
pub fn redacted(secret: &str) -> String {
    let body = secret.strip_prefix(KEY_PREFIX).unwrap_or(secret);
    let chars: Vec<char> = body.chars().collect();
    if chars.len() < 12 {
        return format!("{KEY_PREFIX}…");
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{KEY_PREFIX}{head}…{tail}")
}
