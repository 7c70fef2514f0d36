//! The diagnostics archive's client keys: where each leg's `private_key_jwt` key lives, opened
//! to prove it is there (`client-keys.json`, and a summary line each). Only public parts are
//! written: the place, the algorithm's public thumbprint. A PIN is read to open the key, never
//! written.

use lanyard_core::store::KeyringStore;
use serde_json::{json, Value};

use super::Report;

/// Where each client key lives (the IdP's leg and every server's), opened to prove it is there:
/// its place, algorithm and public thumbprint. The private half cannot be read by anyone.
pub(super) fn client_keys(
    report: &mut Report,
    policy: &lanyard_core::policy::Policy,
    no_keychain: bool,
) {
    use lanyard_core::device_key;
    use lanyard_core::policy::ClientAuthPolicy;
    let legs = policy
        .idp
        .iter()
        .map(|idp| ("identity provider".to_owned(), &idp.client_auth))
        .chain(
            policy
                .servers
                .iter()
                .map(|s| (format!("server {}", s.id), &s.client_auth)),
        );
    let mut found = Vec::new();
    for (leg, auth) in legs {
        let Some(configured) = device_key::configured_location(auth) else {
            continue;
        };
        let mut entry = json!({"for": leg, "configured": configured});
        if let ClientAuthPolicy::PrivateKeyJwt {
            key: Some(reference),
            ..
        } = auth
        {
            let alg = auth
                .key_algorithm()
                .unwrap_or(lanyard_core::oauth::KeyAlgorithm::ES256);
            // With --no-keychain a keychain PIN is not read (and a key that needs one says so).
            let pin = if no_keychain {
                None
            } else {
                let store = KeyringStore::new("lanyard");
                lanyard_core::engine::credentials::key_pin(reference, &store)
                    .ok()
                    .flatten()
            };
            match device_key::open(reference, alg, pin) {
                Ok(key) => {
                    entry["location"] = json!(key.location());
                    if let Ok(jwk) = key.public_jwk() {
                        entry["thumbprint"] = json!(device_key::jwk_thumbprint(&jwk));
                    }
                    report.ok("client key", format!("{leg}: {}", key.location()));
                }
                Err(e) => {
                    entry["error"] = json!(e.to_string());
                    report.problem("client key", format!("{leg}: {e}"));
                }
            }
        } else {
            report.ok("client key", format!("{leg}: {configured}"));
        }
        found.push(entry);
    }
    if !found.is_empty() {
        report.json("client-keys.json", &Value::Array(found));
    }
}
