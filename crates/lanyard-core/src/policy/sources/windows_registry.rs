//! Windows Group Policy: `HKLM\SOFTWARE\Policies\Lanyard` (machine, mandatory) and
//! `HKCU\SOFTWARE\Policies\Lanyard` (user scope; it never overrides a machine value), mapped onto
//! the policy model through a registry-shaped tree.
//!
//! Value and subkey names are the policy's JSON keys (matched case-insensitively, as the registry
//! does). Sections (`idp`, `settings`, `client_auth`) are subkeys; a list of servers is a subkey
//! holding one subkey per server, or one string value per server whose data is the server's JSON
//! object (the ADMX list shape; either way the name is the server id unless an `id` says otherwise);
//! a list of strings is a `REG_MULTI_SZ` value or a subkey of values named `1`, `2`, …. Booleans are
//! `REG_DWORD` 0/1 and fractions are `REG_SZ`. The mapping is directed by the JSON Schema and pure,
//! so it is tested on every OS with an in-memory tree; only reading the live registry is Windows-only.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use crate::policy::{json_schema, Layer, Scope};

/// A registry value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryValue {
    Dword(u32),
    Qword(u64),
    String(String),
    MultiString(Vec<String>),
}

/// A registry key: its values and subkeys (names compared case-insensitively).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryKey {
    pub values: BTreeMap<String, RegistryValue>,
    pub subkeys: BTreeMap<String, RegistryKey>,
}

impl RegistryKey {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value (builder style, for trees built in code).
    pub fn value(mut self, name: &str, value: RegistryValue) -> Self {
        self.values.insert(name.to_owned(), value);
        self
    }

    /// Adds a subkey (builder style).
    pub fn subkey(mut self, name: &str, key: RegistryKey) -> Self {
        self.subkeys.insert(name.to_owned(), key);
        self
    }
}

/// The machine policy key.
pub const MACHINE_KEY: &str = r"HKLM\SOFTWARE\Policies\Lanyard";
/// The user policy key.
pub const USER_KEY: &str = r"HKCU\SOFTWARE\Policies\Lanyard";

/// The layers of the two policy keys (either may be absent). The user key comes first so that
/// the machine key wins wherever both set a value.
pub fn layers_from_trees(machine: Option<&RegistryKey>, user: Option<&RegistryKey>) -> Vec<Layer> {
    let mut layers = Vec::new();
    if let Some(user) = user {
        layers.push(Layer::new(USER_KEY, Scope::Mandatory, tree_to_json(user)));
    }
    if let Some(machine) = machine {
        layers.push(Layer::new(
            MACHINE_KEY,
            Scope::Mandatory,
            tree_to_json(machine),
        ));
    }
    layers
}

/// A policy key as a policy JSON document.
pub fn tree_to_json(key: &RegistryKey) -> Value {
    let schema = json_schema();
    let mapper = Mapper { root: &schema };
    mapper.key(key, &schema)
}

struct Mapper<'a> {
    root: &'a Value,
}

impl<'a> Mapper<'a> {
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|p| self.root.pointer(p))
            .unwrap_or(schema)
    }

    /// Every property an object schema (or any of its variants) knows.
    fn properties(&self, schema: &'a Value) -> BTreeMap<String, &'a Value> {
        let schema = self.resolve(schema);
        let mut out = BTreeMap::new();
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                out.insert(k.clone(), v);
            }
        }
        for variants in ["oneOf", "anyOf"] {
            if let Some(Value::Array(vs)) = schema.get(variants) {
                for v in vs {
                    for (k, s) in self.properties(v) {
                        out.entry(k).or_insert(s);
                    }
                }
            }
        }
        out
    }

    fn types(&self, schema: &'a Value) -> Vec<String> {
        let schema = self.resolve(schema);
        let mut types: Vec<String> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        for variants in ["oneOf", "anyOf"] {
            if let Some(Value::Array(vs)) = schema.get(variants) {
                for v in vs {
                    types.extend(self.types(v));
                }
            }
        }
        types
    }

    fn key(&self, key: &RegistryKey, schema: &'a Value) -> Value {
        let props = self.properties(schema);
        let extra = self
            .resolve(schema)
            .get("additionalProperties")
            .filter(|a| a.is_object());
        let mut map = Map::new();
        for (name, value) in &key.values {
            let (json_name, prop) = match props.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                Some((k, s)) => (k.clone(), Some(*s)),
                None => (name.clone(), extra),
            };
            map.insert(json_name, self.value(value, prop));
        }
        for (name, sub) in &key.subkeys {
            let (json_name, prop) = match props.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                Some((k, s)) => (k.clone(), Some(*s)),
                None => (name.clone(), extra),
            };
            map.insert(json_name, self.subkey(sub, prop));
        }
        Value::Object(map)
    }

    fn subkey(&self, key: &RegistryKey, schema: Option<&'a Value>) -> Value {
        let Some(schema) = schema else {
            return self.key(key, &Value::Null);
        };
        let resolved = self.resolve(schema);
        if self.types(schema).iter().any(|t| t == "array") {
            let items = resolved.get("items").unwrap_or(&Value::Null);
            if self.types(items).iter().any(|t| t == "object") || !self.properties(items).is_empty()
            {
                let has_id = self.properties(items).contains_key("id");
                // Entries are subkeys (a `.reg` import), or string values holding the entry's
                // JSON object (the ADMX list Group Policy and Intune rewrite whole, so a removed
                // line is a removed entry); either way the name is the id unless one is given.
                let mut entries: Vec<(&String, Value)> = key
                    .subkeys
                    .iter()
                    .map(|(name, sub)| (name, self.key(sub, items)))
                    .chain(key.values.iter().map(|(name, value)| {
                        let entry = match value {
                            RegistryValue::String(text) => serde_json::from_str::<Value>(text)
                                .ok()
                                .filter(Value::is_object)
                                .unwrap_or_else(|| Value::String(text.clone())),
                            other => self.value(other, None),
                        };
                        (name, entry)
                    }))
                    .collect();
                entries.sort_by(|a, b| natural(a.0, b.0));
                return Value::Array(
                    entries
                        .into_iter()
                        .map(|(name, mut v)| {
                            if let Value::Object(m) = &mut v {
                                if has_id && !m.contains_key("id") {
                                    m.insert("id".into(), Value::String(name.clone()));
                                }
                            }
                            v
                        })
                        .collect(),
                );
            }
            let mut values: Vec<(&String, &RegistryValue)> = key.values.iter().collect();
            values.sort_by(|a, b| natural(a.0, b.0));
            return Value::Array(
                values
                    .into_iter()
                    .map(|(_, v)| self.value(v, Some(items)))
                    .collect(),
            );
        }
        self.key(key, schema)
    }

    fn value(&self, value: &RegistryValue, schema: Option<&'a Value>) -> Value {
        let types = schema.map(|s| self.types(s)).unwrap_or_default();
        let wants = |t: &str| types.iter().any(|x| x == t);
        match value {
            RegistryValue::Dword(n) if wants("boolean") && *n <= 1 => Value::Bool(*n == 1),
            RegistryValue::Dword(n) => Value::Number((*n).into()),
            RegistryValue::Qword(n) => Value::Number((*n).into()),
            RegistryValue::String(s) if wants("number") && !wants("string") => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(s.clone())),
            RegistryValue::String(s) if wants("integer") && !wants("string") => s
                .trim()
                .parse::<u64>()
                .map(|n| Value::Number(n.into()))
                .unwrap_or_else(|_| Value::String(s.clone())),
            RegistryValue::String(s) if wants("boolean") && !wants("string") => {
                match s.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" => Value::Bool(true),
                    "false" | "0" => Value::Bool(false),
                    _ => Value::String(s.clone()),
                }
            }
            RegistryValue::String(s) => Value::String(s.clone()),
            RegistryValue::MultiString(items) => {
                Value::Array(items.iter().map(|s| Value::String(s.clone())).collect())
            }
        }
    }
}

/// Orders `2` before `10`, then by name.
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase()),
    }
}

/// Calls `on_change` (on a tokio task) once changes under either policy key (HKLM, HKCU) have
/// settled for `debounce`: a Group Policy refresh or an Intune push applies live. The keys may not
/// exist yet; their creation is noticed too. Must be called inside a tokio runtime; dropping the
/// watcher stops the notification thread.
#[cfg(windows)]
pub fn watch_registry(
    debounce: std::time::Duration,
    mut on_change: impl FnMut() + Send + 'static,
) -> Result<crate::policy::watch::PolicyWatcher, String> {
    use crate::policy::watch::{settle, PolicyWatcher};

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let registry = crate::os::windows::watch_registry_keys(POLICY_SUBKEY, move || {
        let _ = tx.send(());
    })
    .map_err(|e| format!("cannot watch the policy keys in the registry: {e}"))?;
    let task = tokio::spawn(async move {
        // Owned by the task: aborting it drops the watch, which stops its thread.
        let _registry = registry;
        while rx.recv().await.is_some() {
            settle(&mut rx, debounce).await;
            on_change();
        }
    });
    Ok(PolicyWatcher::from_task(task))
}

/// The policy key under HKLM and HKCU.
pub const POLICY_SUBKEY: &str = r"SOFTWARE\Policies\Lanyard";

/// Reads both policy keys from the live registry.
#[cfg(windows)]
pub fn read_registry() -> super::SourceRead {
    use winreg::enums::{HKEY_CURRENT_USER, HKEY_LOCAL_MACHINE, KEY_READ};
    use winreg::RegKey;

    fn read_key(key: &RegKey) -> RegistryKey {
        let mut out = RegistryKey::new();
        for (name, raw) in key.enum_values().flatten() {
            use winreg::enums::RegType;
            let value = match raw.vtype {
                RegType::REG_DWORD => key
                    .get_value::<u32, _>(&name)
                    .ok()
                    .map(RegistryValue::Dword),
                RegType::REG_QWORD => key
                    .get_value::<u64, _>(&name)
                    .ok()
                    .map(RegistryValue::Qword),
                RegType::REG_MULTI_SZ => key
                    .get_value::<Vec<String>, _>(&name)
                    .ok()
                    .map(RegistryValue::MultiString),
                _ => key
                    .get_value::<String, _>(&name)
                    .ok()
                    .map(RegistryValue::String),
            };
            if let Some(value) = value {
                out.values.insert(name, value);
            }
        }
        for name in key.enum_keys().flatten() {
            if let Ok(sub) = key.open_subkey_with_flags(&name, KEY_READ) {
                out.subkeys.insert(name, read_key(&sub));
            }
        }
        out
    }

    let path = POLICY_SUBKEY;
    let machine = RegKey::predef(HKEY_LOCAL_MACHINE)
        .open_subkey_with_flags(path, KEY_READ)
        .ok()
        .map(|k| read_key(&k));
    let user = RegKey::predef(HKEY_CURRENT_USER)
        .open_subkey_with_flags(path, KEY_READ)
        .ok()
        .map(|k| read_key(&k));
    super::SourceRead {
        layers: layers_from_trees(machine.as_ref(), user.as_ref()),
        ..Default::default()
    }
}
