//! Keys on a PKCS#11 token (Linux): a TPM 2.0 through `tpm2-pkcs11`, a smart card, SoftHSM2.
//!
//! The module is loaded once per process and kept (C_Finalize only at exit: two servers may share
//! a token). A key is found by the token's label and the key's `CKA_LABEL` and/or `CKA_ID`; one
//! logged-in session per key signs, re-opened once if the token dropped it. Keys made here are
//! `CKA_SENSITIVE` and not `CKA_EXTRACTABLE`: the token signs with them and never hands them out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    check_module, decode_hex, ec_jwk, key_name, module_file, pkcs11_kind, rsa_jwk, HeldKey,
    KeyError, KeyLocation,
};
use crate::oauth::{KeyAlgorithm, KeySigner};
use crate::policy::KeyReference;
use crate::secret::Secret;

/// DER of the P-256 curve's OID (1.2.840.10045.3.1.7), the `CKA_EC_PARAMS` of ES256 keys.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Modules loaded in this process, by path.
fn modules() -> &'static Mutex<HashMap<PathBuf, Pkcs11>> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    MODULES.get_or_init(Mutex::default)
}

/// Loads and initialises `path` once; later calls get the same context.
pub fn load_module(path: &Path) -> Result<Pkcs11, KeyError> {
    let missing = |detail: String| KeyError::StoreMissing {
        store: format!("PKCS#11 module {}", path.display()),
        detail,
    };
    let mut loaded = modules().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(context) = loaded.get(path) {
        return Ok(context.clone());
    }
    // Loading runs the module's code in this process: only an administrator's file.
    check_module(path).map_err(missing)?;
    let context = Pkcs11::new(path).map_err(|e| missing(e.to_string()))?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(missing(e.to_string())),
    }
    loaded.insert(path.to_owned(), context.clone());
    Ok(context)
}

/// The parts of a PKCS#11 key reference.
struct Reference<'a> {
    module: &'a Path,
    token: &'a str,
    label: Option<&'a str>,
    id: Option<Vec<u8>>,
}

impl<'a> Reference<'a> {
    fn of(reference: &'a KeyReference) -> Result<Self, KeyError> {
        let KeyReference::Pkcs11 {
            module,
            token,
            label,
            id,
            ..
        } = reference
        else {
            return Err(KeyError::Unsupported("non-PKCS#11"));
        };
        let id = match id {
            Some(hex) => Some(decode_hex(hex).ok_or_else(|| KeyError::KeyNotFound {
                store: store_name(module, token),
                key: format!("id {hex} (not hex)"),
            })?),
            None => None,
        };
        Ok(Self {
            module,
            token,
            label: label.as_deref(),
            id,
        })
    }

    fn store(&self) -> String {
        store_name(self.module, self.token)
    }

    fn key(&self) -> String {
        key_name(self.label, self.id.as_deref().map(encode_hex).as_deref())
    }

    /// The template that finds this key's objects of `class`.
    fn template(&self, class: ObjectClass) -> Vec<Attribute> {
        let mut template = vec![Attribute::Class(class)];
        if let Some(label) = self.label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &self.id {
            template.push(Attribute::Id(id.clone()));
        }
        template
    }
}

fn store_name(module: &Path, token: &str) -> String {
    format!("PKCS#11 token {token:?} ({})", module_file(module))
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key on a PKCS#11 token, with a logged-in session to sign with.
pub struct TokenKey {
    context: Pkcs11,
    slot: Slot,
    module: PathBuf,
    token: String,
    label: Option<String>,
    id: Option<Vec<u8>>,
    alg: KeyAlgorithm,
    pin: Option<Secret>,
    session: Mutex<Option<(Session, ObjectHandle)>>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({})", self.location())
    }
}

impl TokenKey {
    /// Finds the key `reference` names and logs in to its token.
    pub fn open(
        reference: &KeyReference,
        alg: KeyAlgorithm,
        pin: Option<Secret>,
    ) -> Result<Self, KeyError> {
        let (parts, context, slot) = token_of(reference)?;
        let key = Self {
            context,
            slot,
            module: parts.module.to_owned(),
            token: parts.token.to_owned(),
            label: parts.label.map(str::to_owned),
            id: parts.id.clone(),
            alg,
            pin,
            session: Mutex::new(None),
        };
        let opened = key.open_session()?;
        *key.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(opened);
        Ok(key)
    }

    /// Generates a non-exportable key pair for `alg` on the token, then opens it. A key already
    /// there under this label/id is refused.
    pub fn create(
        reference: &KeyReference,
        alg: KeyAlgorithm,
        pin: Option<Secret>,
    ) -> Result<Self, KeyError> {
        let (parts, context, slot) = token_of(reference)?;
        let session = logged_in(&context, slot, &parts, pin.as_ref(), true)?;
        let existing = session
            .find_objects(&parts.template(ObjectClass::PRIVATE_KEY))
            .map_err(|e| store_error(&parts, "looking for the key", e))?;
        if !existing.is_empty() {
            return Err(KeyError::Store {
                store: parts.store(),
                key: parts.key(),
                detail: "a key of this name is already there; it is kept (its registration at \
                         the IdP would break): use it, or choose another label"
                    .into(),
            });
        }
        let mut public = vec![Attribute::Token(true), Attribute::Verify(true)];
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
        ];
        for template in [&mut public, &mut private] {
            if let Some(label) = parts.label {
                template.push(Attribute::Label(label.as_bytes().to_vec()));
            }
            if let Some(id) = &parts.id {
                template.push(Attribute::Id(id.clone()));
            }
        }
        let mechanism = match alg {
            KeyAlgorithm::ES256 => {
                public.push(Attribute::EcParams(P256_PARAMS.to_vec()));
                Mechanism::EccKeyPairGen
            }
            KeyAlgorithm::RS256 => {
                public.push(Attribute::ModulusBits(2048.into()));
                public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        session
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(|e| match e {
                CkError::Pkcs11(RvError::MechanismInvalid, _)
                | CkError::Pkcs11(RvError::TemplateInconsistent, _) => KeyError::AlgorithmRefused {
                    store: parts.store(),
                    key: parts.key(),
                    alg: format!("{alg:?}"),
                    detail: e.to_string(),
                },
                e => store_error(&parts, "generating the key pair", e),
            })?;
        drop(session);
        Self::open(reference, alg, pin)
    }

    fn parts(&self) -> Reference<'_> {
        Reference {
            module: &self.module,
            token: &self.token,
            label: self.label.as_deref(),
            id: self.id.clone(),
        }
    }

    /// A read-only session, logged in, and the private key's handle.
    fn open_session(&self) -> Result<(Session, ObjectHandle), KeyError> {
        let parts = self.parts();
        let session = logged_in(&self.context, self.slot, &parts, self.pin.as_ref(), false)?;
        let found = session
            .find_objects(&parts.template(ObjectClass::PRIVATE_KEY))
            .map_err(|e| store_error(&parts, "looking for the key", e))?;
        let handle = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(KeyError::KeyNotFound {
                    store: parts.store(),
                    key: parts.key(),
                })
            }
            _ => {
                return Err(KeyError::Store {
                    store: parts.store(),
                    key: parts.key(),
                    detail: format!(
                        "{} private keys match; name it by label and id",
                        found.len()
                    ),
                })
            }
        };
        let key_type = session
            .get_attributes(handle, &[AttributeType::KeyType])
            .map_err(|e| store_error(&parts, "reading the key type", e))?;
        let wanted = match self.alg {
            KeyAlgorithm::ES256 => KeyType::EC,
            KeyAlgorithm::RS256 => KeyType::RSA,
        };
        if let Some(Attribute::KeyType(found)) = key_type.first() {
            if *found != wanted {
                return Err(KeyError::AlgorithmRefused {
                    store: parts.store(),
                    key: parts.key(),
                    alg: format!("{:?}", self.alg),
                    detail: format!("the key is of type {found}"),
                });
            }
        }
        Ok((session, handle))
    }

    /// Runs `f` with the session, re-opening it once if the token closed it (a TPM reset, a
    /// token re-inserted).
    fn with_session<T>(
        &self,
        f: impl Fn(&Session, ObjectHandle) -> Result<T, CkError>,
    ) -> Result<T, KeyError> {
        let mut held = self.session.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            if held.is_none() {
                *held = Some(self.open_session()?);
            }
            let Some((session, handle)) = held.as_ref() else {
                continue;
            };
            match f(session, *handle) {
                Ok(value) => return Ok(value),
                Err(CkError::Pkcs11(
                    RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::UserNotLoggedIn
                    | RvError::ObjectHandleInvalid
                    | RvError::KeyHandleInvalid
                    | RvError::DeviceRemoved
                    | RvError::TokenNotPresent,
                    _,
                )) if attempt == 0 => *held = None,
                Err(e) => return Err(store_error(&self.parts(), "signing", e)),
            }
        }
        Err(KeyError::Store {
            store: self.parts().store(),
            key: self.parts().key(),
            detail: "the token keeps closing the session".into(),
        })
    }

    /// The matching public key object's attributes.
    fn public_attributes(&self, types: &[AttributeType]) -> Result<Vec<Attribute>, KeyError> {
        let parts = self.parts();
        self.with_session(|session, _| {
            let found = session.find_objects(&parts.template(ObjectClass::PUBLIC_KEY))?;
            let Some(public) = found.first() else {
                return Ok(Vec::new());
            };
            session.get_attributes(*public, types)
        })
    }
}

/// Whether the token was made now or was there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenInit {
    Created,
    AlreadyThere,
}

/// Initialises the token `reference` names on the module's first free slot, with the
/// security officer's PIN `so_pin`, and sets the user PIN. A token of that label already there
/// is left alone.
pub fn init_token(
    reference: &KeyReference,
    so_pin: &Secret,
    user_pin: &Secret,
) -> Result<TokenInit, KeyError> {
    let parts = Reference::of(reference)?;
    let context = load_module(parts.module)?;
    if find_token(&context, &parts).is_ok() {
        return Ok(TokenInit::AlreadyThere);
    }
    let free = context
        .get_slots_with_token()
        .map_err(|e| store_error(&parts, "listing the slots", e))?
        .into_iter()
        .find(|slot| {
            context
                .get_token_info(*slot)
                .is_ok_and(|info| !info.token_initialized())
        })
        .ok_or_else(|| KeyError::Store {
            store: parts.store(),
            key: parts.key(),
            detail: "the module has no free slot for a new token".into(),
        })?;
    let so = AuthPin::from(so_pin.expose().to_owned());
    context
        .init_token(free, &so, parts.token)
        .map_err(|e| store_error(&parts, "initialising the token", e))?;
    // Some modules renumber their slots once a token is made: find it again by label.
    let slot = find_token(&context, &parts)?;
    let session = context
        .open_rw_session(slot)
        .map_err(|e| store_error(&parts, "opening a session", e))?;
    session
        .login(UserType::So, Some(&so))
        .map_err(|e| store_error(&parts, "logging in as security officer", e))?;
    session
        .init_pin(&AuthPin::from(user_pin.expose().to_owned()))
        .map_err(|e| store_error(&parts, "setting the user PIN", e))?;
    Ok(TokenInit::Created)
}

/// The reference's parts, its module loaded, and the slot of its token.
fn token_of(reference: &KeyReference) -> Result<(Reference<'_>, Pkcs11, Slot), KeyError> {
    let parts = Reference::of(reference)?;
    let context = load_module(parts.module)?;
    let slot = find_token(&context, &parts)?;
    Ok((parts, context, slot))
}

/// A session on the token, logged in as its user.
fn logged_in(
    context: &Pkcs11,
    slot: Slot,
    parts: &Reference<'_>,
    pin: Option<&Secret>,
    writable: bool,
) -> Result<Session, KeyError> {
    let opened = if writable {
        context.open_rw_session(slot)
    } else {
        context.open_ro_session(slot)
    };
    let session = opened.map_err(|e| store_error(parts, "opening a session", e))?;
    login(&session, parts, pin)?;
    Ok(session)
}

fn find_token(context: &Pkcs11, parts: &Reference<'_>) -> Result<Slot, KeyError> {
    let slots = context
        .get_slots_with_initialized_token()
        .map_err(|e| store_error(parts, "listing the tokens", e))?;
    for slot in slots {
        if let Ok(info) = context.get_token_info(slot) {
            if info.label().trim_end() == parts.token {
                return Ok(slot);
            }
        }
    }
    Err(KeyError::TokenAbsent {
        store: format!("the PKCS#11 module {}", parts.module.display()),
        token: parts.token.to_owned(),
    })
}

fn login(session: &Session, parts: &Reference<'_>, pin: Option<&Secret>) -> Result<(), KeyError> {
    let pin = pin.map(|p| AuthPin::from(p.expose().to_owned()));
    match session.login(UserType::User, pin.as_ref()) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(
            rv @ (RvError::PinIncorrect
            | RvError::PinLenRange
            | RvError::PinLocked
            | RvError::PinExpired
            | RvError::ArgumentsBad
            | RvError::UserPinNotInitialized),
            _,
        )) => Err(KeyError::PinNeeded {
            store: parts.store(),
            key: parts.key(),
            detail: if pin.is_none() {
                format!("no PIN is configured ({rv})")
            } else {
                format!("the configured PIN was refused ({rv})")
            },
        }),
        Err(e) => Err(store_error(parts, "logging in", e)),
    }
}

fn store_error(parts: &Reference<'_>, doing: &str, e: CkError) -> KeyError {
    KeyError::Store {
        store: parts.store(),
        key: parts.key(),
        detail: format!("{doing}: {e}"),
    }
}

impl KeySigner for TokenKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let alg = self.alg;
        self.with_session(|session, key| match alg {
            // Hashed here and signed raw: every token has CKM_ECDSA, not all CKM_ECDSA_SHA256.
            KeyAlgorithm::ES256 => session.sign(&Mechanism::Ecdsa, key, &Sha256::digest(message)),
            KeyAlgorithm::RS256 => session.sign(&Mechanism::Sha256RsaPkcs, key, message),
        })
        .map_err(|e| e.to_string())
    }
}

impl HeldKey for TokenKey {
    fn public_jwk(&self) -> Result<Value, KeyError> {
        let missing = || KeyError::Store {
            store: self.parts().store(),
            key: self.parts().key(),
            detail: "the token holds no public key beside the private one".into(),
        };
        match self.alg {
            KeyAlgorithm::ES256 => {
                let attributes = self.public_attributes(&[AttributeType::EcPoint])?;
                let Some(Attribute::EcPoint(point)) = attributes.first() else {
                    return Err(missing());
                };
                // Usually a DER OCTET STRING around the point; some tokens give it bare.
                let bare = match point.as_slice() {
                    [0x04, 65, rest @ ..] if rest.len() == 65 => rest,
                    other => other,
                };
                ec_jwk(bare).ok_or_else(missing)
            }
            KeyAlgorithm::RS256 => {
                let attributes = self
                    .public_attributes(&[AttributeType::Modulus, AttributeType::PublicExponent])?;
                let (mut n, mut e) = (None, None);
                for attribute in attributes {
                    match attribute {
                        Attribute::Modulus(v) => n = Some(v),
                        Attribute::PublicExponent(v) => e = Some(v),
                        _ => {}
                    }
                }
                match (n, e) {
                    (Some(n), Some(e)) => Ok(rsa_jwk(&n, &e)),
                    _ => Err(missing()),
                }
            }
        }
    }

    fn location(&self) -> KeyLocation {
        let file = module_file(&self.module);
        KeyLocation {
            kind: pkcs11_kind(&file),
            name: format!(
                "PKCS#11 token {:?}, key {} ({file})",
                self.token,
                self.parts().key()
            ),
        }
    }
}
