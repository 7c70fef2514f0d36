//! Merging policy sources into one snapshot that remembers where every value came from.
//!
//! Each source (a JSON file, a managed-preferences plist, a registry hive) arrives as a [`Layer`]:
//! its name, its [`Scope`] and a JSON document. Precedence: a mandatory value of a lockable setting
//! locks it; otherwise the user's own value wins over an administrator's default. Within one
//! scope a later layer beats an earlier one. `idp` merges key by key across administrator layers,
//! `servers` is the union of every administrator layer (a server id defined twice is an error),
//! and the user's layer may hold `settings` only — and not the administrator-only ones (`proxy`,
//! `extra_ca_files`). This module reads nothing from disk.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::model::{setting_spec, Policy, ADMIN_ONLY_KEYS};
use super::validate::{check_semantics, check_shape, join_key, FileChecks, PolicyError};

/// How much say a source has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// An administrator's default (macOS set-once values): the user may change it.
    Recommended,
    /// The user's own configuration: only settings that are not locked.
    User,
    /// Pushed by the administrator: locks every lockable setting it sets.
    Mandatory,
}

/// One source's document.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Where it comes from (a path, a registry key), as shown in errors and origins.
    pub source: String,
    pub scope: Scope,
    pub document: Value,
}

impl Layer {
    pub fn new(source: impl Into<String>, scope: Scope, document: Value) -> Self {
        Self {
            source: source.into(),
            scope,
            document,
        }
    }
}

/// Where a merged value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub source: String,
    pub scope: Scope,
    /// The value's key path inside its source.
    pub key_path: String,
    /// Whether the user cannot change it.
    pub locked: bool,
}

/// The effective policy and the origin of each value (keyed by merged key path: `idp.issuer`,
/// `servers[2]`, `settings.proxy`, `dev_mode`). Keys absent from `origins` are built-in defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySnapshot {
    pub policy: Policy,
    pub origins: BTreeMap<String, Origin>,
    /// Administrator's parts that were ignored because someone else owns them or may change them
    /// (each names the part and what an administrator must do); the policy above is the rest.
    pub refused: Vec<PolicyError>,
}

/// The source name used when no single source can be blamed.
pub const MERGED_SOURCE: &str = "(merged policy)";

/// Merges `layers` (in increasing precedence within each scope) and validates the result.
///
/// Every problem is reported in one go — each source's shape, the merged shape (keys required in
/// sections that several sources contribute to) and the meaning of every value that could be read
/// — so an administrator fixing a policy from an MDM console sees the whole list at once.
pub fn resolve(layers: &[Layer], files: FileChecks) -> Result<PolicySnapshot, Vec<PolicyError>> {
    let mut errors = Vec::new();
    for layer in layers {
        errors.extend(check_layer(layer));
    }
    let (merged, origins, merge_errors) = merge(layers);
    errors.extend(merge_errors);
    for e in check_shape(&merged, MERGED_SOURCE, false) {
        errors.push(attribute(&origins, &e.key_path, e.message));
    }
    if errors.is_empty() {
        match serde_path_to_error::deserialize::<_, Policy>(&merged) {
            Ok(policy) => {
                let semantic: Vec<PolicyError> = check_semantics(&policy, files)
                    .into_iter()
                    .map(|(path, message)| attribute(&origins, &path, message))
                    .collect();
                if semantic.is_empty() {
                    return Ok(PolicySnapshot {
                        policy,
                        origins,
                        refused: Vec::new(),
                    });
                }
                return Err(semantic);
            }
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                errors.push(attribute(&origins, &path, e.into_inner().to_string()));
            }
        }
    }
    // The shape is wrong somewhere: still judge the meaning of every part that can be read.
    for (path, message) in best_effort_semantics(&merged, files) {
        errors.push(attribute(&origins, &path, message));
    }
    let mut seen = std::collections::HashSet::new();
    errors.retain(|e| seen.insert((e.source_name.clone(), e.key_path.clone(), e.message.clone())));
    Err(errors)
}

/// The meaning checks of a document whose shape is wrong: each section is read on its own, with
/// neutral stand-ins for missing required keys (already reported) so that, say, a plain-HTTP
/// issuer is named in the same run as a missing `client_id`. Sections that still cannot be read
/// (a wrong type) are skipped; their shape errors say why.
fn best_effort_semantics(merged: &Value, files: FileChecks) -> Vec<(String, String)> {
    let Some(map) = merged.as_object() else {
        return Vec::new();
    };
    let mut partial = Map::new();
    if let Some(Value::Object(idp)) = map.get("idp") {
        let mut idp = idp.clone();
        stand_in(&mut idp, "issuer", "https://stand-in.invalid/");
        stand_in(&mut idp, "client_id", "stand-in");
        if serde_json::from_value::<super::model::IdpPolicy>(Value::Object(idp.clone())).is_ok() {
            partial.insert("idp".into(), Value::Object(idp));
        }
    }
    // A section that cannot be read is replaced by a neutral one whose own checks are dropped, so
    // that others (a server's "needs an `idp` section") are judged as if it were there, and
    // servers keep their index, so key paths point at the right entry.
    let mut neutral = std::collections::HashSet::new();
    if map.contains_key("idp") && !partial.contains_key("idp") {
        neutral.insert("idp.".to_owned());
        partial.insert(
            "idp".into(),
            serde_json::json!({"issuer": "https://stand-in.invalid/", "client_id": "stand-in"}),
        );
    }
    if let Some(Value::Array(servers)) = map.get("servers") {
        let mut list = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            let mut entry = server.as_object().cloned().unwrap_or_default();
            stand_in(&mut entry, "id", &format!("stand-in-{i}"));
            stand_in(&mut entry, "display_name", "stand-in");
            stand_in(&mut entry, "url", "https://stand-in.invalid/");
            stand_in(&mut entry, "client_id", "stand-in");
            let entry = Value::Object(entry);
            if serde_json::from_value::<super::model::ServerPolicy>(entry.clone()).is_ok() {
                list.push(entry);
            } else {
                neutral.insert(format!("servers[{i}]."));
                list.push(serde_json::json!({
                    "id": format!("stand-in-{i}"), "display_name": "stand-in",
                    "url": "https://stand-in.invalid/", "client_id": "stand-in",
                    "mode": "client-credentials", "client_auth": {"method": "none"},
                }));
            }
        }
        partial.insert("servers".into(), Value::Array(list));
    }
    for key in ["settings", "dev_mode"] {
        if let Some(value) = map.get(key) {
            let mut probe = Map::new();
            probe.insert(key.into(), value.clone());
            if serde_json::from_value::<Policy>(Value::Object(probe)).is_ok() {
                partial.insert(key.into(), value.clone());
            }
        }
    }
    let Ok(policy) = serde_json::from_value::<Policy>(Value::Object(partial)) else {
        return Vec::new();
    };
    check_semantics(&policy, files)
        .into_iter()
        .filter(|(path, _)| !neutral.iter().any(|n| path.starts_with(n.as_str())))
        .collect()
}

/// Puts `value` under `key` when the key is missing.
fn stand_in(map: &mut Map<String, Value>, key: &str, value: &str) {
    map.entry(key)
        .or_insert_with(|| Value::String(value.into()));
}

fn check_layer(layer: &Layer) -> Vec<PolicyError> {
    let Some(map) = layer.document.as_object() else {
        return vec![PolicyError::new(
            &layer.source,
            "",
            "expected an object at the top of the document",
        )];
    };
    let mut errors = check_shape(&layer.document, &layer.source, true);
    if layer.scope == Scope::User {
        for key in map.keys().filter(|k| ADMIN_ONLY_KEYS.contains(&k.as_str())) {
            errors.push(PolicyError::new(
                &layer.source,
                key,
                "only the administrator's policy can set this",
            ));
        }
        let settings = map.get("settings").and_then(Value::as_object);
        for key in settings.into_iter().flat_map(|s| s.keys()) {
            if setting_spec(key).is_some_and(|s| s.admin_only) {
                errors.push(PolicyError::new(
                    &layer.source,
                    &join_key("settings", key),
                    "only the administrator's policy can set this (it decides where sign-ins \
                     travel and which certificates are trusted); remove it from this file",
                ));
            }
        }
    }
    errors
}

/// The layers in the order they are applied (later wins).
fn ordered(layers: &[Layer]) -> Vec<&Layer> {
    let mut ordered: Vec<(usize, &Layer)> = layers.iter().enumerate().collect();
    ordered.sort_by_key(|(i, l)| (l.scope, *i));
    ordered.into_iter().map(|(_, l)| l).collect()
}

fn merge(layers: &[Layer]) -> (Value, BTreeMap<String, Origin>, Vec<PolicyError>) {
    let mut merged = Map::new();
    let mut origins = BTreeMap::new();
    let mut errors = Vec::new();
    let origin = |layer: &Layer, key_path: String, locked: bool| Origin {
        source: layer.source.clone(),
        scope: layer.scope,
        key_path,
        locked,
    };
    let admin: Vec<&Layer> = ordered(layers)
        .into_iter()
        .filter(|l| l.scope != Scope::User)
        .collect();

    // dev_mode and idp: the last administrator layer wins, key by key inside idp.
    let mut idp = Map::new();
    for layer in &admin {
        if let Some(v) = layer.document.get("dev_mode") {
            merged.insert("dev_mode".into(), v.clone());
            origins.insert("dev_mode".into(), origin(layer, "dev_mode".into(), true));
        }
        if let Some(Value::Object(section)) = layer.document.get("idp") {
            for (key, v) in section {
                let path = join_key("idp", key);
                idp.insert(key.clone(), v.clone());
                origins.insert(path.clone(), origin(layer, path, true));
            }
        }
    }
    if !idp.is_empty() {
        merged.insert("idp".into(), Value::Object(idp));
    }

    // servers: the union; each entry belongs whole to one source.
    let mut servers = Vec::new();
    let mut defined_by: BTreeMap<String, String> = BTreeMap::new();
    for layer in &admin {
        let Some(Value::Array(entries)) = layer.document.get("servers") else {
            continue;
        };
        for (i, entry) in entries.iter().enumerate() {
            let local = format!("servers[{i}]");
            if let Some(id) = entry.get("id").and_then(Value::as_str) {
                match defined_by.get(id) {
                    Some(other) if *other != layer.source => {
                        errors.push(PolicyError::new(
                            &layer.source,
                            &format!("{local}.id"),
                            format!("duplicate server id \"{id}\" (already defined by {other})"),
                        ));
                        continue;
                    }
                    _ => {
                        defined_by.insert(id.to_owned(), layer.source.clone());
                    }
                }
            }
            origins.insert(
                format!("servers[{}]", servers.len()),
                origin(layer, local, true),
            );
            servers.push(entry.clone());
        }
    }
    if !servers.is_empty() {
        merged.insert("servers".into(), Value::Array(servers));
    }

    // settings: key by key, honouring locks.
    let mut settings = Map::new();
    let mut keys: Vec<&String> = layers
        .iter()
        .filter_map(|l| l.document.get("settings").and_then(Value::as_object))
        .flat_map(|s| s.keys())
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let lockable = setting_spec(key).is_some_and(|s| s.lockable);
        let admin_only = setting_spec(key).is_some_and(|s| s.admin_only);
        let last_in = |scope: Scope| {
            ordered(layers)
                .into_iter()
                .filter(|l| l.scope == scope)
                .filter_map(|l| Some((l, l.document.get("settings")?.get(key.as_str())?)))
                .next_back()
        };
        let mandatory = last_in(Scope::Mandatory);
        let user = last_in(Scope::User).filter(|_| !admin_only);
        let recommended = last_in(Scope::Recommended);
        let (winner, locked) = match (mandatory, user, recommended) {
            (Some(m), _, _) if lockable => (m, true),
            (_, Some(u), _) => (u, false),
            (Some(m), None, _) => (m, false),
            (None, None, Some(r)) => (r, false),
            (None, None, None) => continue,
        };
        let path = join_key("settings", key);
        settings.insert(key.clone(), winner.1.clone());
        origins.insert(path.clone(), origin(winner.0, path, locked));
    }
    if !settings.is_empty() {
        merged.insert("settings".into(), Value::Object(settings));
    }
    (Value::Object(merged), origins, errors)
}

/// Names the source of a problem found in the merged document, with the key path in that source.
fn attribute(origins: &BTreeMap<String, Origin>, path: &str, message: String) -> PolicyError {
    let covering = origins
        .iter()
        .filter(|(key, _)| {
            path == key.as_str()
                || path.starts_with(&format!("{key}."))
                || path.starts_with(&format!("{key}["))
        })
        .max_by_key(|(key, _)| key.len());
    if let Some((key, origin)) = covering {
        let local = format!("{}{}", origin.key_path, &path[key.len()..]);
        return PolicyError::new(&origin.source, &local, message);
    }
    // A key missing from a section: blame the source that set the rest of it.
    let inside = origins
        .iter()
        .filter(|(key, _)| path.is_empty() || key.starts_with(&format!("{path}.")))
        .map(|(_, origin)| origin)
        .next_back();
    match inside {
        Some(origin) => PolicyError::new(&origin.source, path, message),
        None => PolicyError::new(MERGED_SOURCE, path, message),
    }
}
