//! Keys in Windows CNG: a persisted key by name in the Microsoft Platform Crypto Provider (the
//! TPM) or the Software Key Storage Provider, or the private key of a certificate in the user's
//! or the machine's `MY` store, by SHA-1 thumbprint (what an Intune PKCS or SCEP certificate
//! profile delivers, imported as non-exportable).
//!
//! Keys made here prefer the TPM and are finalised with an export policy of zero: CNG signs with
//! them and refuses to export them. Whether a key is hardware-held is read from the key itself
//! (`Impl Type`), not assumed from the provider asked.

use std::sync::Mutex;

use serde_json::Value;
use sha2::{Digest, Sha256};
use windows_sys::Win32::Foundation::{NTE_BAD_KEYSET, NTE_EXISTS, NTE_NOT_FOUND};
use windows_sys::Win32::Security::Cryptography::{
    CertCloseStore, CertFindCertificateInStore, CertFreeCertificateContext, CertOpenStore,
    CryptAcquireCertificatePrivateKey, NCryptCreatePersistedKey, NCryptExportKey,
    NCryptFinalizeKey, NCryptFreeObject, NCryptGetProperty, NCryptOpenKey,
    NCryptOpenStorageProvider, NCryptSetProperty, NCryptSignHash, BCRYPT_ECCPUBLIC_BLOB,
    BCRYPT_ECDSA_P256_ALGORITHM, BCRYPT_PKCS1_PADDING_INFO, BCRYPT_RSAPUBLIC_BLOB,
    BCRYPT_RSA_ALGORITHM, BCRYPT_SHA256_ALGORITHM, CERT_FIND_HASH, CERT_STORE_PROV_SYSTEM_W,
    CERT_STORE_READONLY_FLAG, CERT_SYSTEM_STORE_CURRENT_USER, CERT_SYSTEM_STORE_LOCAL_MACHINE,
    CRYPT_ACQUIRE_ONLY_NCRYPT_KEY_FLAG, CRYPT_ACQUIRE_SILENT_FLAG, CRYPT_INTEGER_BLOB,
    MS_KEY_STORAGE_PROVIDER, MS_PLATFORM_CRYPTO_PROVIDER, NCRYPT_EXPORT_POLICY_PROPERTY,
    NCRYPT_IMPL_HARDWARE_FLAG, NCRYPT_IMPL_TYPE_PROPERTY, NCRYPT_KEY_HANDLE,
    NCRYPT_LENGTH_PROPERTY, NCRYPT_MACHINE_KEY_FLAG, NCRYPT_PAD_PKCS1_FLAG, NCRYPT_PROV_HANDLE,
    NCRYPT_SILENT_FLAG, PKCS_7_ASN_ENCODING, X509_ASN_ENCODING,
};

use super::{decode_hex, ec_jwk, rsa_jwk, HeldKey, KeyError, KeyKind, KeyLocation};
use crate::oauth::{KeyAlgorithm, KeySigner};
use crate::policy::{KeyReference, KeyScope};

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The providers tried, best first, with the kind a key made there would be.
const PROVIDERS: [(windows_sys::core::PCWSTR, &str); 2] = [
    (MS_PLATFORM_CRYPTO_PROVIDER, "Platform Crypto Provider"),
    (MS_KEY_STORAGE_PROVIDER, "Software Key Storage Provider"),
];

/// An open CNG handle, freed on drop when this process owns it.
struct Handle {
    raw: usize,
    owned: bool,
}

impl Handle {
    fn owned(raw: usize) -> Self {
        Self { raw, owned: true }
    }

    /// A handle the certificate's cache owns: never freed here.
    fn borrowed(raw: usize) -> Self {
        Self { raw, owned: false }
    }

    fn handle(&self) -> usize {
        self.raw
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.owned && self.raw != 0 {
            // SAFETY: the handle came from NCryptOpen*/NCryptCreatePersistedKey and is freed once.
            unsafe { NCryptFreeObject(self.raw) };
        }
    }
}

/// A CNG key open for signing.
pub struct CngKey {
    key: Mutex<Handle>,
    alg: KeyAlgorithm,
    shown: String,
    kind: KeyKind,
}

// SAFETY: CNG key handles may be used from any thread; the Mutex serialises the calls anyway.
unsafe impl Send for CngKey {}
// SAFETY: as above; every use goes through the Mutex.
unsafe impl Sync for CngKey {}

impl std::fmt::Debug for CngKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CngKey({})", self.shown)
    }
}

fn store_error(shown: &str, doing: &str, status: i32) -> KeyError {
    let meaning = match status as u32 {
        0x8009_0029 => ": not supported by this key storage provider (NTE_NOT_SUPPORTED)",
        0x8009_0010 => ": access denied (NTE_PERM); a machine key needs an administrator",
        0x8009_0016 => ": no such key (NTE_BAD_KEYSET)",
        0x8009_0027 => ": a parameter was refused (NTE_INVALID_PARAMETER)",
        0x8009_0030 => ": the TPM or its driver failed (NTE_DEVICE_NOT_READY)",
        _ => "",
    };
    KeyError::Store {
        store: "Windows CNG".into(),
        key: shown.to_owned(),
        detail: format!("{doing} failed (0x{:08x}){meaning}", status as u32),
    }
}

fn open_provider(name: windows_sys::core::PCWSTR) -> Option<Handle> {
    let mut provider: NCRYPT_PROV_HANDLE = 0;
    // SAFETY: out-pointer to a local; the name is a static wide string.
    let status = unsafe { NCryptOpenStorageProvider(&mut provider, name, 0) };
    (status == 0).then_some(Handle::owned(provider))
}

fn scope_flags(scope: KeyScope) -> u32 {
    match scope {
        KeyScope::User => NCRYPT_SILENT_FLAG,
        KeyScope::Machine => NCRYPT_SILENT_FLAG | NCRYPT_MACHINE_KEY_FLAG,
    }
}

impl CngKey {
    /// Opens the key `reference` names.
    pub fn open(reference: &KeyReference, alg: KeyAlgorithm) -> Result<Self, KeyError> {
        let KeyReference::Windows {
            name,
            thumbprint,
            scope,
        } = reference
        else {
            return Err(KeyError::Unsupported("non-Windows"));
        };
        match (name, thumbprint) {
            (Some(name), _) => Self::open_named(name, *scope, alg),
            (None, Some(thumbprint)) => Self::open_certificate_key(thumbprint, *scope, alg),
            (None, None) => Err(KeyError::KeyNotFound {
                store: "Windows CNG".into(),
                key: "(unnamed)".into(),
            }),
        }
    }

    fn open_named(name: &str, scope: KeyScope, alg: KeyAlgorithm) -> Result<Self, KeyError> {
        let shown = format!("{name:?} ({scope:?} store)");
        let wide_name = wide(name);
        for (provider_name, _) in PROVIDERS {
            let Some(provider) = open_provider(provider_name) else {
                continue; // no TPM here: the software provider is next
            };
            let mut key: NCRYPT_KEY_HANDLE = 0;
            // SAFETY: valid provider handle, NUL-terminated name, out-pointer to a local.
            let status = unsafe {
                NCryptOpenKey(
                    provider.handle(),
                    &mut key,
                    wide_name.as_ptr(),
                    0,
                    scope_flags(scope),
                )
            };
            match status {
                0 => return Ok(Self::from_handle(Handle::owned(key), alg, shown)),
                NTE_BAD_KEYSET | NTE_NOT_FOUND => continue,
                other => return Err(store_error(&shown, "opening the key", other)),
            }
        }
        Err(KeyError::KeyNotFound {
            store: "Windows CNG".into(),
            key: shown,
        })
    }

    fn open_certificate_key(
        thumbprint: &str,
        scope: KeyScope,
        alg: KeyAlgorithm,
    ) -> Result<Self, KeyError> {
        let shown = format!("of certificate {thumbprint} ({scope:?} store)");
        let mut hash = decode_hex(thumbprint).ok_or_else(|| KeyError::KeyNotFound {
            store: "Windows CNG".into(),
            key: format!("{shown} (not hex)"),
        })?;
        let location = match scope {
            KeyScope::User => CERT_SYSTEM_STORE_CURRENT_USER,
            KeyScope::Machine => CERT_SYSTEM_STORE_LOCAL_MACHINE,
        };
        let my = wide("MY");
        // SAFETY: a system store opened read-only by name; closed below.
        let store = unsafe {
            CertOpenStore(
                CERT_STORE_PROV_SYSTEM_W,
                0,
                0,
                location | CERT_STORE_READONLY_FLAG,
                my.as_ptr().cast(),
            )
        };
        if store.is_null() {
            return Err(KeyError::StoreMissing {
                store: format!("the {scope:?} certificate store MY"),
                detail: std::io::Error::last_os_error().to_string(),
            });
        }
        let blob = CRYPT_INTEGER_BLOB {
            cbData: hash.len() as u32,
            pbData: hash.as_mut_ptr(),
        };
        // SAFETY: the store is open; the blob points at `hash`, alive for the call.
        let cert = unsafe {
            CertFindCertificateInStore(
                store,
                X509_ASN_ENCODING | PKCS_7_ASN_ENCODING,
                0,
                CERT_FIND_HASH,
                (&blob as *const CRYPT_INTEGER_BLOB).cast(),
                std::ptr::null(),
            )
        };
        let result = if cert.is_null() {
            Err(KeyError::KeyNotFound {
                store: format!("the {scope:?} certificate store MY"),
                key: shown.clone(),
            })
        } else {
            let mut key: usize = 0;
            let mut spec = 0u32;
            let mut caller_frees = 0;
            // SAFETY: a certificate context from the store; out-pointers to locals.
            let ok = unsafe {
                CryptAcquireCertificatePrivateKey(
                    cert,
                    CRYPT_ACQUIRE_ONLY_NCRYPT_KEY_FLAG | CRYPT_ACQUIRE_SILENT_FLAG,
                    std::ptr::null(),
                    &mut key,
                    &mut spec,
                    &mut caller_frees,
                )
            };
            // SAFETY: the context came from CertFindCertificateInStore.
            unsafe { CertFreeCertificateContext(cert) };
            if ok == 0 {
                Err(KeyError::KeyNotFound {
                    store: "Windows CNG".into(),
                    key: format!("{shown} (the certificate has no CNG private key)"),
                })
            } else {
                let handle = if caller_frees != 0 {
                    Handle::owned(key)
                } else {
                    Handle::borrowed(key)
                };
                Ok(Self::from_handle(handle, alg, shown))
            }
        };
        // SAFETY: opened above.
        unsafe { CertCloseStore(store, 0) };
        result
    }

    /// Makes a non-exportable persisted key named as `reference` says, in the TPM where the
    /// machine has one, else in the software provider.
    pub fn create(reference: &KeyReference, alg: KeyAlgorithm) -> Result<Self, KeyError> {
        let KeyReference::Windows {
            name: Some(name),
            scope,
            ..
        } = reference
        else {
            return Err(KeyError::Store {
                store: "Windows CNG".into(),
                key: "(certificate)".into(),
                detail: "a certificate's key is delivered by MDM (a PKCS or SCEP profile); \
                         device-key create makes keys by name only"
                    .into(),
            });
        };
        let shown = format!("{name:?} ({scope:?} store)");
        let wide_name = wide(name);
        let algorithm = match alg {
            KeyAlgorithm::ES256 => BCRYPT_ECDSA_P256_ALGORITHM,
            KeyAlgorithm::RS256 => BCRYPT_RSA_ALGORITHM,
        };
        let mut last = None;
        for (provider_name, _) in PROVIDERS {
            let Some(provider) = open_provider(provider_name) else {
                continue;
            };
            let mut key: NCRYPT_KEY_HANDLE = 0;
            // SAFETY: valid provider, NUL-terminated names, out-pointer to a local.
            let status = unsafe {
                NCryptCreatePersistedKey(
                    provider.handle(),
                    &mut key,
                    algorithm,
                    wide_name.as_ptr(),
                    0,
                    scope_flags(*scope) & !NCRYPT_SILENT_FLAG,
                )
            };
            if status == NTE_EXISTS {
                return Err(KeyError::Store {
                    store: "Windows CNG".into(),
                    key: shown,
                    detail: "a key of this name is already there; it is kept (its registration \
                             at the IdP would break): use it, or choose another name"
                        .into(),
                });
            }
            if status != 0 {
                last = Some(status);
                continue;
            }
            let key = Handle::owned(key);
            let no_export = 0u32.to_le_bytes();
            // SAFETY: a key handle not yet finalised; the value lives for the call.
            let status = unsafe {
                NCryptSetProperty(
                    key.handle(),
                    NCRYPT_EXPORT_POLICY_PROPERTY,
                    no_export.as_ptr(),
                    4,
                    0,
                )
            };
            if status != 0 {
                last = Some(status);
                continue;
            }
            if alg == KeyAlgorithm::RS256 {
                let bits = 2048u32.to_le_bytes();
                // SAFETY: as above.
                unsafe {
                    NCryptSetProperty(key.handle(), NCRYPT_LENGTH_PROPERTY, bits.as_ptr(), 4, 0)
                };
            }
            // SAFETY: the key handle is valid and configured.
            let status = unsafe { NCryptFinalizeKey(key.handle(), 0) };
            if status != 0 {
                last = Some(status);
                continue;
            }
            return Ok(Self::from_handle(key, alg, shown));
        }
        Err(store_error(
            &shown,
            "creating the key",
            last.unwrap_or(NTE_NOT_FOUND),
        ))
    }

    fn from_handle(key: Handle, alg: KeyAlgorithm, shown: String) -> Self {
        let mut impl_type = [0u8; 4];
        let mut got = 0u32;
        // SAFETY: a valid key handle; the output buffer is 4 bytes as the property is a DWORD.
        let status = unsafe {
            NCryptGetProperty(
                key.handle(),
                NCRYPT_IMPL_TYPE_PROPERTY,
                impl_type.as_mut_ptr(),
                4,
                &mut got,
                0,
            )
        };
        let hardware =
            status == 0 && u32::from_le_bytes(impl_type) & NCRYPT_IMPL_HARDWARE_FLAG != 0;
        Self {
            key: Mutex::new(key),
            alg,
            shown,
            kind: if hardware {
                KeyKind::Tpm
            } else {
                KeyKind::SoftwareStore
            },
        }
    }

    fn export(&self, blob: windows_sys::core::PCWSTR) -> Result<Vec<u8>, KeyError> {
        let key = self.key.lock().unwrap_or_else(|p| p.into_inner());
        let mut size = 0u32;
        // SAFETY: size query with a null output buffer.
        let status = unsafe {
            NCryptExportKey(
                key.handle(),
                0,
                blob,
                std::ptr::null(),
                std::ptr::null_mut(),
                0,
                &mut size,
                0,
            )
        };
        if status != 0 {
            return Err(store_error(&self.shown, "exporting the public key", status));
        }
        let mut out = vec![0u8; size as usize];
        // SAFETY: the buffer has the size CNG asked for.
        let status = unsafe {
            NCryptExportKey(
                key.handle(),
                0,
                blob,
                std::ptr::null(),
                out.as_mut_ptr(),
                size,
                &mut size,
                0,
            )
        };
        if status != 0 {
            return Err(store_error(&self.shown, "exporting the public key", status));
        }
        out.truncate(size as usize);
        Ok(out)
    }
}

impl KeySigner for CngKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let key = self.key.lock().unwrap_or_else(|p| p.into_inner());
        let digest = Sha256::digest(message);
        let padding = BCRYPT_PKCS1_PADDING_INFO {
            pszAlgId: BCRYPT_SHA256_ALGORITHM,
        };
        let (info, flags): (*const core::ffi::c_void, u32) = match self.alg {
            KeyAlgorithm::ES256 => (std::ptr::null(), 0),
            KeyAlgorithm::RS256 => (
                (&padding as *const BCRYPT_PKCS1_PADDING_INFO).cast(),
                NCRYPT_PAD_PKCS1_FLAG,
            ),
        };
        let mut signature = vec![0u8; 512];
        let mut size = 0u32;
        // SAFETY: a valid key; the digest and the output buffer live for the call.
        let status = unsafe {
            NCryptSignHash(
                key.handle(),
                info,
                digest.as_ptr(),
                digest.len() as u32,
                signature.as_mut_ptr(),
                signature.len() as u32,
                &mut size,
                flags | NCRYPT_SILENT_FLAG,
            )
        };
        if status != 0 {
            return Err(store_error(&self.shown, "signing", status).to_string());
        }
        // CNG's ECDSA signature is already r || s, as JWS wants.
        signature.truncate(size as usize);
        Ok(signature)
    }
}

impl HeldKey for CngKey {
    fn public_jwk(&self) -> Result<Value, KeyError> {
        let malformed = || store_error(&self.shown, "reading the public key blob", 0);
        let word = |b: &[u8], at: usize| -> Option<usize> {
            Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
        };
        match self.alg {
            KeyAlgorithm::ES256 => {
                // BCRYPT_ECCKEY_BLOB { magic, cbKey } then X and Y.
                let blob = self.export(BCRYPT_ECCPUBLIC_BLOB)?;
                let size = word(&blob, 4).ok_or_else(malformed)?;
                let xy = blob.get(8..8 + 2 * size).ok_or_else(malformed)?;
                let mut point = vec![0x04];
                point.extend_from_slice(xy);
                ec_jwk(&point).ok_or_else(malformed)
            }
            KeyAlgorithm::RS256 => {
                // BCRYPT_RSAKEY_BLOB { magic, bits, cbPublicExp, cbModulus, .. } then e, n.
                let blob = self.export(BCRYPT_RSAPUBLIC_BLOB)?;
                let e_len = word(&blob, 8).ok_or_else(malformed)?;
                let n_len = word(&blob, 12).ok_or_else(malformed)?;
                let e = blob.get(24..24 + e_len).ok_or_else(malformed)?;
                let n = blob
                    .get(24 + e_len..24 + e_len + n_len)
                    .ok_or_else(malformed)?;
                Ok(rsa_jwk(n, e))
            }
        }
    }

    fn location(&self) -> KeyLocation {
        KeyLocation {
            kind: self.kind,
            name: format!("CNG key {}", self.shown),
        }
    }
}
