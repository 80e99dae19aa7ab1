//! TLS client certificates: the listener verifies a client's certificate against the
//! configured CA during the handshake; this module maps the verified certificate to an
//! [`Identity`] by its subject alternative names or its subject common name.

use std::collections::HashMap;
use std::sync::Arc;

use johi_core::Identity;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The leaf certificate a client presented and the listener verified (DER), attached to
/// every request of that connection. Only the listener creates one, and only after the
/// handshake verified the chain, so its presence is the proof.
#[derive(Debug, Clone)]
pub struct PeerCertificate(Arc<[u8]>);

impl PeerCertificate {
    /// Wraps a certificate the TLS handshake has verified.
    pub fn verified(der: &[u8]) -> Self {
        PeerCertificate(Arc::from(der))
    }

    /// The certificate, DER-encoded.
    pub fn der(&self) -> &[u8] {
        &self.0
    }
}

/// How a configured identity recognises its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertificateName {
    /// A subject alternative name: a DNS name, a URI (SPIFFE IDs) or an email address,
    /// compared exactly.
    San(String),
    /// The subject's common name (`CN=`), for certificates without SANs.
    CommonName(String),
}

/// The identities certificates map to.
#[derive(Debug, Clone, Default)]
pub struct MtlsIdentities {
    by_san: HashMap<String, Arc<Identity>>,
    by_cn: HashMap<String, Arc<Identity>>,
}

impl MtlsIdentities {
    /// Maps certificates with `name` to `identity`; `false` if the name is already mapped.
    pub fn insert(&mut self, name: CertificateName, identity: Arc<Identity>) -> bool {
        let (map, key) = match name {
            CertificateName::San(san) => (&mut self.by_san, san),
            CertificateName::CommonName(cn) => (&mut self.by_cn, cn),
        };
        if map.contains_key(&key) {
            return false;
        }
        map.insert(key, identity);
        true
    }

    /// How many certificate names are mapped.
    pub fn len(&self) -> usize {
        self.by_san.len() + self.by_cn.len()
    }

    /// Whether no identity is configured.
    pub fn is_empty(&self) -> bool {
        self.by_san.is_empty() && self.by_cn.is_empty()
    }

    /// The identity a verified certificate maps to. SANs are looked at first, in the
    /// certificate's order (they are what a modern certificate identifies itself by), then
    /// the subject's common names. `None` for a certificate that maps to no identity, or
    /// that does not parse.
    pub fn identify(&self, cert: &PeerCertificate) -> Option<Arc<Identity>> {
        let (_, cert) = X509Certificate::from_der(cert.der()).ok()?;
        if let Ok(Some(sans)) = cert.subject_alternative_name() {
            for name in &sans.value.general_names {
                let text = match name {
                    GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
                        *s
                    }
                    _ => continue,
                };
                if let Some(identity) = self.by_san.get(text) {
                    return Some(identity.clone());
                }
            }
        }
        let by_cn = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .find_map(|cn| self.by_cn.get(cn).cloned());
        by_cn
    }
}
