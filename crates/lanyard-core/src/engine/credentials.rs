//! Turning a policy's client-authentication *reference* into usable credentials: a secret from the
//! keychain, a protected file or the environment, or a private key from a PEM file. Blocking I/O;
//! the engine calls it off the actor's thread.

use crate::device_key;
use crate::oauth::{Client, ClientAuth, KeyAlgorithm, SigningKey};
use crate::policy::{ClientAuthPolicy, KeyReference, SecretSource};
use crate::secret::Secret;
use crate::store::SecretStore;

/// The keychain entry name of a policy secret reference.
pub fn keychain_key_for_secret(name: &str) -> String {
    format!("client-secret:{name}")
}

pub fn read_secret(source: &SecretSource, store: &dyn SecretStore) -> Result<Secret, String> {
    match source {
        SecretSource::Keychain(name) => match store.get(&keychain_key_for_secret(name)) {
            Ok(Some(secret)) => Ok(secret),
            Ok(None) => Err(format!("the keychain has no entry {name:?}")),
            Err(e) => Err(e.to_string()),
        },
        other => read_secret_outside_keychain(other),
    }
}

/// A secret from a file (read now, one trailing newline ignored) or the environment; a keychain
/// source is an error here. What a workload token's source may be. Never the secret in an error.
pub fn read_secret_outside_keychain(source: &SecretSource) -> Result<Secret, String> {
    match source {
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map(|text| Secret::from_file_contents(&text))
            .map_err(|e| format!("cannot read the secret file {}: {e}", path.display())),
        SecretSource::Env(var) => std::env::var(var)
            .map(Secret::new)
            .map_err(|_| format!("the environment variable {var} is not set")),
        SecretSource::Keychain(name) => Err(format!(
            "{name:?} is a keychain entry; only a file or the environment is read here"
        )),
    }
}

/// The PIN a key reference names (a PKCS#11 token's `key.pin`), read from its source; `None` for
/// stores that ask for none.
pub fn key_pin(
    reference: &KeyReference,
    store: &dyn SecretStore,
) -> Result<Option<Secret>, String> {
    match reference {
        KeyReference::Pkcs11 { pin: Some(pin), .. } => read_secret(pin, store)
            .map(Some)
            .map_err(|e| format!("the PIN of the client key: {e}")),
        _ => Ok(None),
    }
}

/// Opens a key the OS holds for signing client assertions. Its `kid` defaults to the RFC 7638
/// thumbprint of its public half (what `lanyard device-key show` prints for registration).
pub fn open_held_key(
    reference: &KeyReference,
    alg: KeyAlgorithm,
    kid: Option<String>,
    store: &dyn SecretStore,
) -> Result<SigningKey, String> {
    let pin = key_pin(reference, store)?;
    let held = device_key::open(reference, alg, pin).map_err(|e| e.to_string())?;
    let jwk = held.public_jwk().map_err(|e| e.to_string())?;
    let kid = kid.unwrap_or_else(|| device_key::jwk_thumbprint(&jwk));
    Ok(SigningKey::held(held, alg, Some(kid)).with_public_jwk(jwk))
}

/// Resolves `auth` for `client_id`.
pub fn resolve_client(
    client_id: &str,
    auth: &ClientAuthPolicy,
    store: &dyn SecretStore,
) -> Result<Client, String> {
    let auth = match auth {
        ClientAuthPolicy::None => ClientAuth::None,
        ClientAuthPolicy::ClientSecretBasic { secret } => {
            ClientAuth::SecretBasic(read_secret(secret, store)?)
        }
        ClientAuthPolicy::ClientSecretPost { secret } => {
            ClientAuth::SecretPost(read_secret(secret, store)?)
        }
        ClientAuthPolicy::PrivateKeyJwt {
            key_file, key, kid, ..
        } => {
            // Validation ensured a value; RS256 is what a bare PEM file always meant.
            let alg = auth.key_algorithm().unwrap_or(KeyAlgorithm::RS256);
            let signing = match (key, key_file) {
                (Some(reference), _) => open_held_key(reference, alg, kid.clone(), store)?,
                (None, Some(key_file)) => {
                    let pem = std::fs::read(key_file).map_err(|e| {
                        format!("cannot read the key file {}: {e}", key_file.display())
                    })?;
                    SigningKey::from_pem(&pem, alg, kid.clone()).map_err(|e| e.to_string())?
                }
                (None, None) => return Err("private_key_jwt names no key".into()),
            };
            ClientAuth::PrivateKeyJwt(signing)
        }
    };
    Ok(Client {
        client_id: client_id.to_owned(),
        auth,
    })
}

/// The HTTP client settings a policy asks for on top of `base`: its proxy and its extra CA files
/// (a TLS-inspecting corporate proxy). An unreadable CA file, or one that is not an
/// administrator's, is an error, not a silent skip; each is read from the handle that was judged.
pub fn http_config_for(
    settings: &crate::policy::Settings,
    mut base: crate::oauth::HttpConfig,
) -> Result<crate::oauth::HttpConfig, String> {
    if let Some(proxy) = &settings.proxy {
        base.proxy = Some(proxy.clone());
    }
    for path in &settings.extra_ca_files {
        base.extra_ca_pem
            .push(crate::policy::validate::read_ca_bundle(path)?);
    }
    Ok(base)
}
