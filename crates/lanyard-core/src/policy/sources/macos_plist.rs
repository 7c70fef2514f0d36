//! macOS managed preferences: the property lists an MDM profile installs under
//! `/Library/Managed Preferences/` for Lanyard's preference domain, read with the `plist` crate.
//!
//! A plain managed-preferences plist holds forced values (a mandatory layer). A plist in the
//! Managed Client form (`{domain: {Forced: [...], Set-Once: [...]}}`, each entry holding
//! `mcx_preference_settings`) splits into a mandatory layer for `Forced` and a recommended layer
//! (defaults the user may change) for `Set-Once`/`Often`. Keys starting with `Payload` are profile
//! bookkeeping and ignored. The machine-wide file beats the per-user one. This module converts
//! shapes only; it decides neither precedence between scopes nor validity.

use std::path::{Path, PathBuf};

use serde_json::{Map, Number, Value};

use super::SourceRead;
use crate::admin_files::{self, AdminFileError, Trust};
use crate::policy::{Layer, PolicyError, Scope};

/// Lanyard's preference domain (the app's bundle identifier).
pub const PREFERENCE_DOMAIN: &str = "dev.lanyard.tray";

/// The directory MDM writes managed preferences to.
pub const MANAGED_PREFERENCES_DIR: &str = "/Library/Managed Preferences";

/// The managed-preferences files for `user` under `root`: per-user first, machine-wide last (it wins).
pub fn managed_preference_files(root: &Path, user: Option<&str>) -> Vec<PathBuf> {
    let file = format!("{PREFERENCE_DOMAIN}.plist");
    let mut files = Vec::new();
    if let Some(user) = user {
        files.push(root.join(user).join(&file));
    }
    files.push(root.join(file));
    files
}

/// Reads every managed-preferences file that exists, each opened once and judged by `trust`
/// ([`crate::admin_files`]): one someone else could have written is ignored with a named error.
pub fn read_managed_preferences(root: &Path, user: Option<&str>, trust: &Trust) -> SourceRead {
    let mut read = SourceRead::default();
    for path in managed_preference_files(root, user) {
        let name = path.display().to_string();
        match admin_files::read_trusted(&path, trust) {
            Ok(Some(bytes)) => match layers_from_plist(&bytes, &name) {
                Ok(layers) => read.layers.extend(layers),
                Err(e) => read.errors.push(e),
            },
            Ok(None) => {}
            Err(AdminFileError::Untrusted(m)) => read.refused.push(super::refusal(&name, &m)),
            Err(AdminFileError::Unreadable(m)) => read.errors.push(PolicyError::new(&name, "", m)),
        }
    }
    read
}

/// The layers of one managed-preferences plist (XML or binary).
pub fn layers_from_plist(bytes: &[u8], source_name: &str) -> Result<Vec<Layer>, PolicyError> {
    let value = parse_plist(bytes, source_name)?;
    let Some(dict) = value.as_dictionary() else {
        return Err(PolicyError::new(
            source_name,
            "",
            "expected a dictionary at the top of the property list",
        ));
    };
    if let Some(layers) = managed_client_layers(dict, source_name) {
        return layers;
    }
    let document = plist_to_json(&value, "", source_name)?;
    Ok(vec![Layer::new(
        source_name,
        Scope::Mandatory,
        without_payload_keys(document),
    )])
}

fn parse_plist(bytes: &[u8], source_name: &str) -> Result<plist::Value, PolicyError> {
    plist::Value::from_reader(std::io::Cursor::new(bytes))
        .map_err(|e| PolicyError::new(source_name, "", format!("not a valid property list: {e}")))
}

/// The Managed Client form `{domain: {Forced: [...], Set-Once: [...]}}`, if `dict` has it.
fn managed_client_layers(
    dict: &plist::Dictionary,
    source_name: &str,
) -> Option<Result<Vec<Layer>, PolicyError>> {
    let Some(plist::Value::Dictionary(mcx)) = dict.get(PREFERENCE_DOMAIN) else {
        return None;
    };
    let mut layers = Vec::new();
    for (state, scope) in [
        ("Set-Once", Scope::Recommended),
        ("Often", Scope::Recommended),
        ("Forced", Scope::Mandatory),
    ] {
        let Some(plist::Value::Array(entries)) = mcx.get(state) else {
            continue;
        };
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("{PREFERENCE_DOMAIN}.{state}[{i}].mcx_preference_settings");
            let Some(settings) = entry
                .as_dictionary()
                .and_then(|e| e.get("mcx_preference_settings"))
            else {
                return Some(Err(PolicyError::new(source_name, &at, "missing")));
            };
            let document = match plist_to_json(settings, &at, source_name) {
                Ok(document) => document,
                Err(e) => return Some(Err(e)),
            };
            layers.push(Layer::new(
                format!("{source_name} ({state})"),
                scope,
                without_payload_keys(document),
            ));
        }
    }
    Some(Ok(layers))
}

/// Drops profile bookkeeping (`PayloadType`, `PayloadUUID`, …) from a top-level dictionary.
pub fn without_payload_keys(document: Value) -> Value {
    match document {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !k.starts_with("Payload"))
                .collect(),
        ),
        other => other,
    }
}

/// A property-list value as JSON (dates and data have no place in a policy).
pub fn plist_to_json(value: &plist::Value, path: &str, source: &str) -> Result<Value, PolicyError> {
    Ok(match value {
        plist::Value::Boolean(b) => Value::Bool(*b),
        plist::Value::String(s) => Value::String(s.clone()),
        plist::Value::Integer(i) => match (i.as_signed(), i.as_unsigned()) {
            (Some(n), _) => Value::Number(n.into()),
            (None, Some(n)) => Value::Number(n.into()),
            (None, None) => return Err(PolicyError::new(source, path, "integer out of range")),
        },
        plist::Value::Real(r) => Number::from_f64(*r)
            .map(Value::Number)
            .ok_or_else(|| PolicyError::new(source, path, "not a finite number"))?,
        plist::Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| plist_to_json(item, &format!("{path}[{i}]"), source))
                .collect::<Result<_, _>>()?,
        ),
        plist::Value::Dictionary(dict) => {
            let mut map = Map::new();
            for (key, item) in dict {
                let child = crate::policy::validate::join_key(path, key);
                map.insert(key.clone(), plist_to_json(item, &child, source)?);
            }
            Value::Object(map)
        }
        plist::Value::Date(_) => {
            return Err(PolicyError::new(
                source,
                path,
                "dates are not policy values",
            ))
        }
        plist::Value::Data(_) => {
            return Err(PolicyError::new(
                source,
                path,
                "data is not a policy value (secrets belong in the keychain)",
            ))
        }
        _ => {
            return Err(PolicyError::new(
                source,
                path,
                "unsupported property-list value",
            ))
        }
    })
}

/// The layers of a configuration profile (`.mobileconfig`, an XML plist): every payload of type
/// [`PREFERENCE_DOMAIN`] (forced), and Managed Client payloads (`com.apple.ManagedClient.preferences`)
/// for the domain, split into forced and set-once.
pub fn layers_from_mobileconfig(
    bytes: &[u8],
    source_name: &str,
) -> Result<Vec<Layer>, PolicyError> {
    let value = parse_plist(bytes, source_name)?;
    let payloads = value
        .as_dictionary()
        .and_then(|d| d.get("PayloadContent"))
        .and_then(plist::Value::as_array)
        .ok_or_else(|| {
            PolicyError::new(
                source_name,
                "PayloadContent",
                "missing: not a configuration profile",
            )
        })?;
    let mut layers = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let at = format!("PayloadContent[{i}]");
        let Some(dict) = payload.as_dictionary() else {
            continue;
        };
        match dict.get("PayloadType").and_then(plist::Value::as_string) {
            Some(PREFERENCE_DOMAIN) => {
                let document = plist_to_json(payload, "", source_name)?;
                layers.push(Layer::new(
                    format!("{source_name} {at}"),
                    Scope::Mandatory,
                    without_payload_keys(document),
                ));
            }
            Some("com.apple.ManagedClient.preferences") => {
                let content = dict
                    .get("PayloadContent")
                    .and_then(plist::Value::as_dictionary);
                let name = format!("{source_name} {at}");
                if let Some(found) = content.and_then(|c| managed_client_layers(c, &name)) {
                    layers.extend(found?);
                }
            }
            _ => {}
        }
    }
    if layers.is_empty() {
        return Err(PolicyError::new(
            source_name,
            "PayloadContent",
            format!("no payload for {PREFERENCE_DOMAIN}"),
        ));
    }
    Ok(layers)
}
