//! Keys in the macOS Keychain, found by label: a P-256 key in the Secure Enclave (made by
//! `lanyard device-key create` where the Mac has one) or a key a Jamf certificate payload put
//! in the login keychain. The Secure Enclave signs and never lets the key out; a software key is
//! marked non-extractable by the Keychain.
//!
//! Written and compiled here (`make check-macos`), not run: no Mac was available.

use security_framework::item::{ItemClass, ItemSearchOptions, Location, Reference, SearchResult};
use security_framework::key::{Algorithm, GenerateKeyOptions, KeyType, SecKey, Token};
use serde_json::Value;

use super::{ec_jwk, ecdsa_der_to_jws, HeldKey, KeyError, KeyKind, KeyLocation};
use crate::oauth::{KeyAlgorithm, KeySigner};

const STORE: &str = "the macOS Keychain";

/// A Keychain key open for signing.
pub struct KeychainKey {
    key: SecKey,
    label: String,
    kind: KeyKind,
}

// SAFETY: SecKey is a CoreFoundation object whose operations are thread-safe (Apple documents
// SecKey as usable from any thread); the crate marks it Send already.
unsafe impl Sync for KeychainKey {}

impl std::fmt::Debug for KeychainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeychainKey({:?})", self.label)
    }
}

fn refuse_rsa(label: &str, alg: KeyAlgorithm) -> Result<(), KeyError> {
    if alg == KeyAlgorithm::RS256 {
        return Err(KeyError::AlgorithmRefused {
            store: STORE.into(),
            key: format!("{label:?}"),
            alg: "RS256".into(),
            detail: "Lanyard's macOS keys are P-256".into(),
        });
    }
    Ok(())
}

impl KeychainKey {
    /// Finds the private key labelled `label`.
    pub fn open(label: &str, alg: KeyAlgorithm) -> Result<Self, KeyError> {
        refuse_rsa(label, alg)?;
        let found = ItemSearchOptions::new()
            .class(ItemClass::key())
            .label(label)
            .load_refs(true)
            .search()
            .map_err(|e| KeyError::Store {
                store: STORE.into(),
                key: format!("{label:?}"),
                detail: e.to_string(),
            })?;
        let key = found
            .into_iter()
            .find_map(|item| match item {
                SearchResult::Ref(Reference::Key(key)) => Some(key),
                _ => None,
            })
            .ok_or_else(|| KeyError::KeyNotFound {
                store: STORE.into(),
                key: format!("{label:?}"),
            })?;
        // A Secure Enclave key's attributes name its token; a software key's do not.
        let in_enclave = format!("{:?}", key.attributes()).contains("com.apple.setoken");
        Ok(Self {
            key,
            label: label.to_owned(),
            kind: if in_enclave {
                KeyKind::SecureEnclave
            } else {
                KeyKind::SoftwareStore
            },
        })
    }

    /// Makes a P-256 key labelled `label` in the Secure Enclave, else (a Mac without one) a
    /// non-extractable software key in the data-protection keychain.
    pub fn create(label: &str, alg: KeyAlgorithm) -> Result<Self, KeyError> {
        refuse_rsa(label, alg)?;
        if Self::open(label, alg).is_ok() {
            return Err(KeyError::Store {
                store: STORE.into(),
                key: format!("{label:?}"),
                detail: "a key of this label is already there; it is kept (its registration at \
                         the IdP would break): use it, or choose another label"
                    .into(),
            });
        }
        let attempt = |token: Token| {
            SecKey::new(
                GenerateKeyOptions::default()
                    .set_key_type(KeyType::ec_sec_prime_random())
                    .set_size_in_bits(256)
                    .set_label(label)
                    .set_token(token)
                    .set_location(Location::DataProtectionKeychain),
            )
        };
        attempt(Token::SecureEnclave)
            .or_else(|_| attempt(Token::Software))
            .map_err(|e| KeyError::Store {
                store: STORE.into(),
                key: format!("{label:?}"),
                detail: format!("creating the key: {e}"),
            })?;
        Self::open(label, alg)
    }
}

impl KeySigner for KeychainKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let der = self
            .key
            .create_signature(Algorithm::ECDSASignatureMessageX962SHA256, message)
            .map_err(|e| e.to_string())?;
        ecdsa_der_to_jws(&der).ok_or_else(|| "the Keychain's signature is not DER ECDSA".into())
    }
}

impl HeldKey for KeychainKey {
    fn public_jwk(&self) -> Result<Value, KeyError> {
        let failed = |detail: &str| KeyError::Store {
            store: STORE.into(),
            key: format!("{:?}", self.label),
            detail: detail.into(),
        };
        let public = self
            .key
            .public_key()
            .ok_or_else(|| failed("no public key"))?;
        let point = public
            .external_representation()
            .ok_or_else(|| failed("the public key cannot be exported"))?;
        ec_jwk(point.bytes()).ok_or_else(|| failed("the public key is not P-256"))
    }

    fn location(&self) -> KeyLocation {
        KeyLocation {
            kind: self.kind,
            name: format!("Keychain key {:?}", self.label),
        }
    }
}
