//! `lanyard device-key`: the client key the OS holds for `private_key_jwt`, where the policy's
//! key reference points. `create` makes it (non-exportable, in the best store there), `show`
//! prints where it lives and its public half for registration at the IdP, and `init-token`
//! prepares a PKCS#11 token (Linux) for `create`. PINs come from the policy's `key.pin`, or
//! from `LANYARD_TOKEN_USER_PIN` (and `LANYARD_TOKEN_SO_PIN` for `init-token`): never argv.

use clap::Subcommand;
use lanyard_core::device_key::{self, HeldKey};
use lanyard_core::engine::credentials::key_pin;
use lanyard_core::oauth::KeyAlgorithm;
use lanyard_core::policy::sources::platform::PolicySources;
use lanyard_core::policy::{ClientAuthPolicy, FileChecks, KeyReference};
use lanyard_core::secret::Secret;
use lanyard_core::store::KeyringStore;
use serde_json::{json, Value};

use crate::exit;

/// The user PIN for `create` and `show` when the policy names no `key.pin`, and for
/// `init-token` always.
pub const USER_PIN_ENV: &str = "LANYARD_TOKEN_USER_PIN";
/// The token's security-officer PIN, for `init-token` only.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub const SO_PIN_ENV: &str = "LANYARD_TOKEN_SO_PIN";

#[derive(Subcommand)]
pub enum DeviceKeyCommand {
    /// Make a non-exportable key where the policy's key reference points (a TPM or the Secure
    /// Enclave where the machine has one), then show it.
    Create {
        /// The key of servers[ID].client_auth instead of the identity provider's.
        #[arg(long, value_name = "ID")]
        server: Option<String>,
        /// A key already there is not an error: show it instead.
        #[arg(long)]
        keep_existing: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show where the client key lives, and its public JWK and RFC 7638 thumbprint (the `kid`
    /// Lanyard sends unless the policy sets one) for registration at the identity provider.
    Show {
        #[arg(long, value_name = "ID")]
        server: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Initialise the PKCS#11 token the key reference names (Linux), with the PINs from
    /// LANYARD_TOKEN_SO_PIN and LANYARD_TOKEN_USER_PIN. A token already there is kept.
    InitToken {
        #[arg(long, value_name = "ID")]
        server: Option<String>,
    },
}

pub fn run(command: &DeviceKeyCommand, sources: &PolicySources) -> u8 {
    let server = match command {
        DeviceKeyCommand::Create { server, .. }
        | DeviceKeyCommand::Show { server, .. }
        | DeviceKeyCommand::InitToken { server } => server.as_deref(),
    };
    let (at, reference, alg, kid) = match configured_key(sources, server) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("lanyard device-key: {message}");
            return exit::MISCONFIGURED;
        }
    };
    match command {
        DeviceKeyCommand::InitToken { .. } => init_token(&reference),
        DeviceKeyCommand::Create {
            keep_existing,
            json,
            ..
        } => {
            let pin = match pin_for(&reference) {
                Ok(pin) => pin,
                Err(message) => return fail(&message),
            };
            match device_key::create(&reference, alg, pin.clone()) {
                Ok(key) => show(&at, &key, alg, kid, *json),
                Err(e) if *keep_existing && e.to_string().contains("already there") => {
                    match device_key::open(&reference, alg, pin) {
                        Ok(key) => show(&at, &key, alg, kid, *json),
                        Err(e) => fail(&e.to_string()),
                    }
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        DeviceKeyCommand::Show { json, .. } => {
            let opened = pin_for(&reference)
                .and_then(|pin| device_key::open(&reference, alg, pin).map_err(|e| e.to_string()));
            match opened {
                Ok(key) => show(&at, &key, alg, kid, *json),
                Err(message) => fail(&message),
            }
        }
    }
}

fn fail(message: &str) -> u8 {
    eprintln!("lanyard device-key: {message}");
    exit::FAILURE
}

/// Where in the policy the key is (`idp.client_auth.key` or `servers[i].client_auth.key`), the
/// reference, its algorithm and its configured `kid`.
fn configured_key(
    sources: &PolicySources,
    server: Option<&str>,
) -> Result<(String, KeyReference, KeyAlgorithm, Option<String>), String> {
    let snapshot = sources.load_with(FileChecks::Skip).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let policy = snapshot.policy;
    let (at, auth) = match server {
        None => (
            "idp.client_auth".to_owned(),
            policy
                .idp
                .map(|idp| idp.client_auth)
                .ok_or("the policy has no identity provider")?,
        ),
        Some(id) => {
            let (index, entry) = policy
                .servers
                .into_iter()
                .enumerate()
                .find(|(_, s)| s.id == id)
                .ok_or_else(|| format!("the policy has no server {id:?}"))?;
            (format!("servers[{index}].client_auth"), entry.client_auth)
        }
    };
    let alg = auth.key_algorithm();
    match (auth, alg) {
        (
            ClientAuthPolicy::PrivateKeyJwt {
                key: Some(reference),
                kid,
                ..
            },
            Some(alg),
        ) => Ok((format!("{at}.key"), reference, alg, kid)),
        _ => Err(format!(
            "{at} names no key the OS holds (private_key_jwt with \"key\"); see the \
             administrator's guide, \"Client keys\""
        )),
    }
}

/// The token's user PIN: from the policy's `key.pin` (the keychain, a file, the environment),
/// else from LANYARD_TOKEN_USER_PIN; none for stores that ask for none.
fn pin_for(reference: &KeyReference) -> Result<Option<Secret>, String> {
    Ok(key_pin(reference, &KeyringStore::new("lanyard"))?
        .or_else(|| std::env::var(USER_PIN_ENV).ok().map(Secret::new)))
}

#[cfg(target_os = "linux")]
fn init_token(reference: &KeyReference) -> u8 {
    use lanyard_core::device_key::pkcs11::{init_token, TokenInit};
    let (Ok(so), Ok(user)) = (std::env::var(SO_PIN_ENV), std::env::var(USER_PIN_ENV)) else {
        return fail(&format!(
            "set {SO_PIN_ENV} and {USER_PIN_ENV} (the PINs are never taken from the command line)"
        ));
    };
    match init_token(reference, &Secret::new(so), &Secret::new(user)) {
        Ok(TokenInit::Created) => {
            println!("The token is ready.");
            0
        }
        Ok(TokenInit::AlreadyThere) => {
            println!("The token is already there; it is kept as it is.");
            0
        }
        Err(e) => fail(&e.to_string()),
    }
}

#[cfg(not(target_os = "linux"))]
fn init_token(_reference: &KeyReference) -> u8 {
    fail("init-token prepares PKCS#11 tokens, which Lanyard uses on Linux only")
}

fn show(
    at: &str,
    key: &std::sync::Arc<dyn HeldKey>,
    alg: KeyAlgorithm,
    kid: Option<String>,
    as_json: bool,
) -> u8 {
    let jwk = match key.public_jwk() {
        Ok(jwk) => jwk,
        Err(e) => return fail(&e.to_string()),
    };
    let thumbprint = device_key::jwk_thumbprint(&jwk);
    let kid = kid.unwrap_or_else(|| thumbprint.clone());
    let mut registered = jwk.clone();
    if let Value::Object(members) = &mut registered {
        members.insert("kid".into(), json!(kid));
        members.insert("alg".into(), json!(format!("{alg:?}")));
        members.insert("use".into(), json!("sig"));
    }
    let location = key.location();
    if as_json {
        println!(
            "{}",
            json!({
                "policy_key": at,
                "location": location,
                "alg": format!("{alg:?}"),
                "kid": kid,
                "thumbprint": thumbprint,
                "jwk": registered,
            })
        );
    } else {
        println!("Client key ({at})");
        println!("  lives in    {location}");
        println!("  algorithm   {alg:?}");
        println!("  kid         {kid}");
        println!("  thumbprint  {thumbprint} (RFC 7638, SHA-256)");
        println!("  public JWK  {registered}");
        println!(
            "Register the public JWK with the identity provider (for Okta: the AI agent's \
             public key). The private key cannot be read out of its store."
        );
    }
    0
}
