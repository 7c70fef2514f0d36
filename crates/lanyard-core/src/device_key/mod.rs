//! Client keys the operating system holds: the private half of a `private_key_jwt` registration
//! kept in a TPM, the Secure Enclave, a PKCS#11 token or CNG, where Lanyard can ask for a
//! signature but nobody — Lanyard included — can read the key out.
//!
//! The policy names a key by reference ([`KeyReference`]); [`open`] finds it and returns a
//! [`HeldKey`], which signs a JWS signing input and tells where it lives and its public half.
//! [`create`] makes a new non-exportable key there (`lanyard device-key create`). Each store is a
//! room of its own: [`pkcs11`] on Linux, `cng` on Windows, `keychain` on macOS. Every call
//! blocks (a TPM takes tens of milliseconds to sign); callers keep them off the engine's task.
//!
//! Errors name the store, the key and the fix ([`KeyError`]).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::oauth::{KeyAlgorithm, KeySigner};
use crate::policy::{ClientAuthPolicy, KeyReference};
use crate::secret::Secret;

// With `os::windows`, the only modules allowed `unsafe`: CNG is reached through `windows-sys`
// FFI, and a Keychain key is shared across threads; every block says why it is sound.
#[cfg(windows)]
#[allow(unsafe_code)]
mod cng;
#[cfg(target_os = "macos")]
#[allow(unsafe_code)]
mod keychain;
#[cfg(target_os = "linux")]
pub mod pkcs11;

/// What kind of place a client key lives in: what IT asks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// A TPM 2.0 (tpm2-pkcs11 on Linux, the Platform Crypto Provider on Windows).
    Tpm,
    /// The Secure Enclave of a Mac.
    SecureEnclave,
    /// A hardware token or smart card behind PKCS#11.
    HardwareToken,
    /// The OS's software key store (SoftHSM2, the Software Key Storage Provider, the login
    /// keychain): not readable through the store, but not hardware-bound either.
    SoftwareStore,
    /// A PEM file: readable by every process of the account it is deployed for.
    PemFile,
    /// CNG or the Keychain, before the key is opened: which of its providers holds the key (a
    /// TPM or software, the Secure Enclave or not) is read from the key itself
    /// (`lanyard device-key show`, `lanyard diagnose`).
    OsKeyStore,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tpm => "TPM",
            Self::SecureEnclave => "Secure Enclave",
            Self::HardwareToken => "hardware token",
            Self::SoftwareStore => "software store",
            Self::PemFile => "PEM file",
            Self::OsKeyStore => "OS key store",
        })
    }
}

/// Where one client key lives: its kind and a name an administrator can find it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLocation {
    pub kind: KeyKind,
    /// e.g. `PKCS#11 token "lanyard", key "client" (libtpm2_pkcs11.so)`.
    pub name: String,
}

impl fmt::Display for KeyLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.name)
    }
}

/// Why a held key cannot be used; each names the store, the key and what fixes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key store {store} cannot be opened: {detail}")]
    StoreMissing { store: String, detail: String },
    #[error("{store} has no token {token:?}: provision it (deploy/linux/provision-pkcs11-token.sh) or correct key.token")]
    TokenAbsent { store: String, token: String },
    #[error("{store} has no private key {key}: run `lanyard device-key create`, or correct the key reference")]
    KeyNotFound { store: String, key: String },
    #[error(
        "{store} refused to sign with key {key} as {alg}: {detail}; set alg to the key's algorithm"
    )]
    AlgorithmRefused {
        store: String,
        key: String,
        alg: String,
        detail: String,
    },
    #[error("{store} needs the PIN of {key}: {detail}; set key.pin (keychain, file or env)")]
    PinNeeded {
        store: String,
        key: String,
        detail: String,
    },
    #[error("{store}, key {key}: {detail}")]
    Store {
        store: String,
        key: String,
        detail: String,
    },
    #[error("{0} keys cannot be used on this operating system")]
    Unsupported(&'static str),
}

/// A private key the OS holds, open for signing.
pub trait HeldKey: KeySigner + fmt::Debug {
    /// The public half as a JWK (`kty`, `crv`/`x`/`y` or `n`/`e`), for registration at the IdP.
    fn public_jwk(&self) -> Result<Value, KeyError>;
    /// Where the key lives.
    fn location(&self) -> KeyLocation;
}

/// Opens the key `reference` names, to sign as `alg`. `pin` is the token's PIN where the store
/// asks for one, already read from its source.
pub fn open(
    reference: &KeyReference,
    alg: KeyAlgorithm,
    pin: Option<Secret>,
) -> Result<Arc<dyn HeldKey>, KeyError> {
    reach(reference, alg, pin, Reach::Open)
}

/// Makes a new non-exportable key where `reference` points, in the best store there (a TPM or
/// the Secure Enclave where the machine has one), and opens it. An existing key of that name
/// is an error, never replaced: its registration at the IdP would break.
pub fn create(
    reference: &KeyReference,
    alg: KeyAlgorithm,
    pin: Option<Secret>,
) -> Result<Arc<dyn HeldKey>, KeyError> {
    reach(reference, alg, pin, Reach::Create)
}

/// Whether a key is found or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Open,
    Create,
}

/// The store of this OS that `reference` names, opening or making the key there.
fn reach(
    reference: &KeyReference,
    alg: KeyAlgorithm,
    pin: Option<Secret>,
    how: Reach,
) -> Result<Arc<dyn HeldKey>, KeyError> {
    match reference {
        #[cfg(target_os = "linux")]
        KeyReference::Pkcs11 { .. } => Ok(Arc::new(match how {
            Reach::Open => pkcs11::TokenKey::open(reference, alg, pin)?,
            Reach::Create => pkcs11::TokenKey::create(reference, alg, pin)?,
        })),
        #[cfg(windows)]
        KeyReference::Windows { .. } => {
            let _ = pin;
            Ok(Arc::new(match how {
                Reach::Open => cng::CngKey::open(reference, alg)?,
                Reach::Create => cng::CngKey::create(reference, alg)?,
            }))
        }
        #[cfg(target_os = "macos")]
        KeyReference::Macos { label } => {
            let _ = pin;
            Ok(Arc::new(match how {
                Reach::Open => keychain::KeychainKey::open(label, alg)?,
                Reach::Create => keychain::KeychainKey::create(label, alg)?,
            }))
        }
        other => {
            let _ = (alg, pin, how);
            Err(KeyError::Unsupported(store_name(other)))
        }
    }
}

fn store_name(reference: &KeyReference) -> &'static str {
    match reference {
        KeyReference::Pkcs11 { .. } => "PKCS#11",
        KeyReference::Windows { .. } => "Windows CNG",
        KeyReference::Macos { .. } => "macOS Keychain",
    }
}

/// Where a policy's client key lives, from the policy alone (no store is opened): what
/// `lanyard status` and the status window show. `None` for methods without a key.
pub fn configured_location(auth: &ClientAuthPolicy) -> Option<KeyLocation> {
    let ClientAuthPolicy::PrivateKeyJwt { key_file, key, .. } = auth else {
        return None;
    };
    if let Some(path) = key_file {
        return Some(KeyLocation {
            kind: KeyKind::PemFile,
            name: path.display().to_string(),
        });
    }
    Some(match key.as_ref()? {
        KeyReference::Pkcs11 {
            module,
            token,
            label,
            id,
            ..
        } => {
            let file = module_file(module);
            KeyLocation {
                kind: pkcs11_kind(&file),
                name: format!(
                    "PKCS#11 token {token:?}, key {} ({file})",
                    key_name(label.as_deref(), id.as_deref())
                ),
            }
        }
        KeyReference::Windows {
            name,
            thumbprint,
            scope,
        } => KeyLocation {
            kind: KeyKind::OsKeyStore,
            name: match (name, thumbprint) {
                (Some(name), _) => format!("CNG key {name:?} ({scope:?} store)"),
                (None, Some(t)) => format!("CNG key of certificate {t} ({scope:?} store)"),
                (None, None) => "CNG key (unnamed)".into(),
            },
        },
        KeyReference::Macos { label } => KeyLocation {
            kind: KeyKind::OsKeyStore,
            name: format!("Keychain key {label:?}"),
        },
    })
}

/// Whether a PKCS#11 module may be loaded into the agent: an administrator's file, as CA bundles
/// must be (owned by root, not writable by others, nor its directories). Checked when the policy
/// is validated and again before the module is loaded.
pub fn check_module(module: &std::path::Path) -> Result<(), String> {
    use crate::admin_files::{read_trusted, AdminFileError, Trust};
    // The whole path, not only the file: whoever may replace a directory on it may swap the code.
    let trust = Trust {
        ancestors_from: Some(std::path::PathBuf::from("/")),
        ..Trust::administrators()
    };
    match read_trusted(module, &trust) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!(
            "the PKCS#11 module {} is not installed (for a TPM: the libtpm2-pkcs11-1 package)",
            module.display()
        )),
        Err(AdminFileError::Untrusted(m)) => Err(format!(
            "the PKCS#11 module {} is refused: {m}",
            module.display()
        )),
        Err(AdminFileError::Unreadable(m)) => {
            Err(format!("the PKCS#11 module {}: {m}", module.display()))
        }
    }
}

/// Bytes from hex digits (a key id, a certificate thumbprint), or `None`.
#[cfg_attr(target_os = "macos", allow(dead_code))]
pub(crate) fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !crate::policy::validate::is_hex(hex) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// A PKCS#11 module's file name, for messages.
pub(crate) fn module_file(module: &std::path::Path) -> String {
    module
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The kind of a PKCS#11 module, from its file name.
pub(crate) fn pkcs11_kind(module_file: &str) -> KeyKind {
    let lower = module_file.to_ascii_lowercase();
    if lower.contains("tpm") {
        KeyKind::Tpm
    } else if lower.contains("softhsm") {
        KeyKind::SoftwareStore
    } else {
        KeyKind::HardwareToken
    }
}

/// A key named by label, id or both, for messages.
pub(crate) fn key_name(label: Option<&str>, id: Option<&str>) -> String {
    match (label, id) {
        (Some(l), Some(i)) => format!("{l:?} (id {i})"),
        (Some(l), None) => format!("{l:?}"),
        (None, Some(i)) => format!("id {i}"),
        (None, None) => "(unnamed)".into(),
    }
}

/// The RFC 7638 thumbprint of a public JWK: SHA-256 over its required members in lexicographic
/// order, base64url. Also the default `kid` of a held key.
pub fn jwk_thumbprint(jwk: &Value) -> String {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str).unwrap_or_default();
    // serde_json's maps keep keys sorted, as RFC 7638 wants.
    let members = match field("kty") {
        "EC" => json!({"crv": field("crv"), "kty": "EC", "x": field("x"), "y": field("y")}),
        "RSA" => json!({"e": field("e"), "kty": "RSA", "n": field("n")}),
        other => json!({ "kty": other }),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(members.to_string().as_bytes()))
}

/// The JWK of an uncompressed P-256 point (`04 || X || Y`).
pub(crate) fn ec_jwk(point: &[u8]) -> Option<Value> {
    let xy = point.strip_prefix(&[0x04])?;
    (xy.len() == 64).then(|| {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        json!({"kty": "EC", "crv": "P-256", "x": b64(&xy[..32]), "y": b64(&xy[32..])})
    })
}

/// The JWK of an RSA public key from its big-endian modulus and exponent.
#[cfg_attr(target_os = "macos", allow(dead_code))]
pub(crate) fn rsa_jwk(modulus: &[u8], exponent: &[u8]) -> Value {
    let trim = |b: &[u8]| {
        let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&b[start..])
    };
    json!({"kty": "RSA", "n": trim(modulus), "e": trim(exponent)})
}

/// An ECDSA signature in DER (what CNG-less stores and the Keychain return) as the JWS `r || s`.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub(crate) fn ecdsa_der_to_jws(der: &[u8]) -> Option<Vec<u8>> {
    // SEQUENCE { INTEGER r, INTEGER s }, short lengths only (a P-256 signature is < 128 bytes).
    let rest = der.strip_prefix(&[0x30])?;
    let (&len, rest) = rest.split_first()?;
    if len as usize != rest.len() {
        return None;
    }
    let mut out = Vec::with_capacity(64);
    let mut rest = rest;
    for _ in 0..2 {
        let tail = rest.strip_prefix(&[0x02])?;
        let (&n, tail) = tail.split_first()?;
        let (int, after) = tail.split_at_checked(n as usize)?;
        let int = int.strip_prefix(&[0x00]).unwrap_or(int);
        if int.len() > 32 {
            return None;
        }
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        rest = after;
    }
    rest.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7638_example_thumbprint() {
        // RFC 7638 §3.1's RSA key.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            jwk_thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn a_der_ecdsa_signature_becomes_r_and_s_of_32_bytes_each() {
        // r with a leading zero (high bit set), s short by one byte.
        let mut der = vec![0x30, 0x00, 0x02, 33, 0x00];
        der.extend([0x80; 32]);
        der.extend([0x02, 31]);
        der.extend([0x11; 31]);
        der[1] = (der.len() - 2) as u8;
        let jws = ecdsa_der_to_jws(&der).expect("valid");
        assert_eq!(jws.len(), 64);
        assert_eq!(&jws[..32], &[0x80; 32]);
        assert_eq!(jws[32], 0);
        assert_eq!(&jws[33..], &[0x11; 31]);
        assert_eq!(ecdsa_der_to_jws(&der[..der.len() - 1]), None);
    }

    #[test]
    fn pkcs11_modules_are_told_apart_by_name() {
        assert_eq!(pkcs11_kind("libtpm2_pkcs11.so"), KeyKind::Tpm);
        assert_eq!(pkcs11_kind("libsofthsm2.so"), KeyKind::SoftwareStore);
        assert_eq!(pkcs11_kind("opensc-pkcs11.so"), KeyKind::HardwareToken);
    }
}
