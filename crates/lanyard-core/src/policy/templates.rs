//! The administrators' templates, generated from the policy model so that none can disagree with
//! it: the Group Policy template (ADMX and its en-US ADML) from the JSON Schema, and the macOS
//! configuration profile and the Windows `.reg` example from the one hand-written example policy
//! (`deploy/linux/policy.json`), which sets every key.
//!
//! Pure text generators: no I/O. Tests compare each with its committed copy (and rewrite it with
//! `LANYARD_BLESS=1`), and check that the example sets every key of the model.
//!
//! The Group Policy shape of servers: one policy, *Servers*, whose list holds one value per
//! server: the name is the server id, the data the server's JSON object (`{"display_name": …,
//! "url": …, "client_id": …}`). Group Policy and Intune rewrite the whole list on every refresh,
//! so removing a line removes the server; the registry reader takes such values beside the
//! subkey-per-server shape of a `.reg` import.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

use super::model::{json_schema, setting_spec};
use super::schema::resolve;
use super::sources::macos_plist::PREFERENCE_DOMAIN;

/// The registry key every Lanyard policy value lives under (HKLM or HKCU).
const POLICY_KEY: &str = r"Software\Policies\Lanyard";

/// One policy of the ADMX: a leaf key of the model.
struct Leaf {
    /// `idp.client_auth.method`.
    path: String,
    /// The registry key holding the value (`Software\Policies\Lanyard\idp\client_auth`).
    key: String,
    /// The value name (`method`).
    value_name: String,
    /// The policy's name (`IdpClientAuthMethod`).
    name: String,
    kind: LeafKind,
    description: String,
    default: Option<Value>,
}

enum LeafKind {
    Text,
    Decimal {
        min: u64,
        max: u64,
    },
    Boolean,
    Enum(Vec<String>),
    /// A list of strings: values `1`, `2`, … under a subkey named after the key.
    List,
    /// A map of strings: one value per entry under a subkey named after the key.
    Map,
}

/// The properties of an object schema, its variants' included, in schema order.
fn properties(schema: &Value, root: &Value) -> Vec<(String, Value)> {
    let schema = resolve(schema, root);
    let mut out: Vec<(String, Value)> = Vec::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            out.push((k.clone(), v.clone()));
        }
    }
    for variants in ["oneOf", "anyOf"] {
        if let Some(Value::Array(vs)) = schema.get(variants) {
            for v in vs {
                for (k, s) in properties(v, root) {
                    if !out.iter().any(|(seen, _)| *seen == k) {
                        out.push((k, s));
                    }
                }
            }
        }
    }
    out
}

fn types(schema: &Value, root: &Value) -> Vec<String> {
    let schema = resolve(schema, root);
    let mut out: Vec<String> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    };
    for variants in ["oneOf", "anyOf"] {
        if let Some(Value::Array(vs)) = schema.get(variants) {
            for v in vs {
                out.extend(types(v, root));
            }
        }
    }
    out.retain(|t| t != "null");
    out
}

/// The string constants an enum schema allows (`None` when it is not one).
fn enum_values(schema: &Value, root: &Value) -> Option<Vec<String>> {
    let schema = resolve(schema, root);
    if let Some(Value::Array(values)) = schema.get("enum") {
        return Some(
            values
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
        );
    }
    for variants in ["oneOf", "anyOf"] {
        if let Some(Value::Array(vs)) = schema.get(variants) {
            let non_null: Vec<&Value> = vs
                .iter()
                .filter(|v| v.get("type") != Some(&Value::String("null".into())))
                .collect();
            let mut consts = Vec::new();
            for v in &non_null {
                match resolve(v, root).get("const").and_then(Value::as_str) {
                    Some(c) => consts.push(c.to_owned()),
                    None => match enum_values(v, root) {
                        Some(inner) => consts.extend(inner),
                        None => return None,
                    },
                }
            }
            if !consts.is_empty() {
                return Some(consts);
            }
        }
    }
    None
}

fn description(schema: &Value, root: &Value) -> String {
    schema
        .get("description")
        .or_else(|| resolve(schema, root).get("description"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .replace('\n', " ")
}

/// `client_auth` → `ClientAuth`.
fn camel(name: &str) -> String {
    name.split(['_', '.', '-'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Every leaf below `schema` (an object), each a policy of its own.
fn leaves(schema: &Value, root: &Value, path: &str, key: &str, out: &mut Vec<Leaf>) {
    let defaults = resolve(schema, root).get("default").cloned();
    for (name, prop) in properties(schema, root) {
        let json_path = format!("{path}.{name}");
        let resolved = resolve(&prop, root);
        let nested = !properties(&prop, root).is_empty();
        let is_map = resolved
            .get("additionalProperties")
            .is_some_and(Value::is_object);
        let kinds = types(&prop, root);
        let kind = if let Some(values) = enum_values(&prop, root) {
            LeafKind::Enum(values)
        } else if nested {
            leaves(&prop, root, &json_path, &format!(r"{key}\{name}"), out);
            continue;
        } else if is_map {
            LeafKind::Map
        } else if kinds.iter().any(|t| t == "array") {
            LeafKind::List
        } else if kinds.iter().any(|t| t == "boolean") {
            LeafKind::Boolean
        } else if kinds.iter().any(|t| t == "integer") {
            let bound = |k: &str| resolved.get(k).and_then(Value::as_u64);
            LeafKind::Decimal {
                min: bound("minimum").unwrap_or(0),
                max: bound("maximum").unwrap_or(u64::from(u32::MAX)),
            }
        } else {
            // Strings, and fractions (REG_SZ: Group Policy has no decimal fractions).
            LeafKind::Text
        };
        let default = prop
            .get("default")
            .cloned()
            .or_else(|| defaults.as_ref().and_then(|d| d.get(&name)).cloned())
            .filter(|d| !d.is_null());
        out.push(Leaf {
            name: camel(&json_path),
            path: json_path.trim_start_matches('.').to_owned(),
            key: key.to_owned(),
            value_name: name,
            kind,
            description: description(&prop, root),
            default,
        });
    }
}

/// The leaves of the Group Policy template, in order: `dev_mode`, `idp.*`, `settings.*`.
fn admx_leaves() -> Vec<Leaf> {
    let root = json_schema();
    let mut out = Vec::new();
    let mut top = Vec::new();
    leaves(&root, &root, "", POLICY_KEY, &mut top);
    // `servers` is its own list policy (module doc); `idp` and `settings` are recursed below.
    out.extend(top.into_iter().filter(|l| l.path == "dev_mode"));
    for (section, def) in [("idp", "IdpPolicy"), ("settings", "Settings")] {
        if let Some(schema) = root.pointer(&format!("/$defs/{def}")) {
            leaves(
                schema,
                &root,
                section,
                &format!(r"{POLICY_KEY}\{section}"),
                &mut out,
            );
        }
    }
    out
}

fn category_of(leaf: &Leaf) -> &'static str {
    if leaf.path.starts_with("idp.") {
        "IdentityProvider"
    } else if leaf.path.starts_with("settings.") {
        "Settings"
    } else {
        "Lanyard"
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The Group Policy template (`deploy/windows/lanyard.admx`).
pub fn admx_text() -> String {
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    x.push_str(
        "<!-- Generated from Lanyard's policy model (crates/lanyard-core/src/policy/templates.rs):\n     \
         do not edit. Values land under HKLM (Computer Configuration) or HKCU (User Configuration)\n     \
         \\Software\\Policies\\Lanyard; machine values always win. Value names are the policy's JSON\n     \
         keys. Servers: the Servers policy's list, one line per server (name: the id; value: its\n     \
         JSON object); removing a line removes the server. -->\n",
    );
    x.push_str("<policyDefinitions xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" revision=\"1.0\" schemaVersion=\"1.0\" xmlns=\"http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions\">\n");
    x.push_str("  <policyNamespaces>\n    <target prefix=\"lanyard\" namespace=\"Lanyard.Policies.Lanyard\" />\n    <using prefix=\"windows\" namespace=\"Microsoft.Policies.Windows\" />\n  </policyNamespaces>\n");
    x.push_str("  <resources minRequiredRevision=\"1.0\" />\n");
    x.push_str("  <supportedOn>\n    <definitions>\n      <definition name=\"SUPPORTED_Lanyard1\" displayName=\"$(string.SUPPORTED_Lanyard1)\" />\n    </definitions>\n  </supportedOn>\n");
    x.push_str(
        "  <categories>\n    <category name=\"Lanyard\" displayName=\"$(string.Lanyard)\" />\n",
    );
    for category in ["IdentityProvider", "McpServers", "Settings"] {
        let _ = writeln!(
            x,
            "    <category name=\"{category}\" displayName=\"$(string.{category})\">\n      <parentCategory ref=\"Lanyard\" />\n    </category>"
        );
    }
    x.push_str("  </categories>\n  <policies>\n");
    let _ = writeln!(
        x,
        "    <policy name=\"Servers\" class=\"Both\" displayName=\"$(string.Servers)\" explainText=\"$(string.Servers_Help)\" presentation=\"$(presentation.Servers)\" key=\"{POLICY_KEY}\\servers\">\n      <parentCategory ref=\"McpServers\" />\n      <supportedOn ref=\"SUPPORTED_Lanyard1\" />\n      <elements>\n        <list id=\"ServersList\" key=\"{POLICY_KEY}\\servers\" explicitValue=\"true\" />\n      </elements>\n    </policy>"
    );
    for leaf in admx_leaves() {
        let name = &leaf.name;
        let _ = write!(
            x,
            "    <policy name=\"{name}\" class=\"Both\" displayName=\"$(string.{name})\" explainText=\"$(string.{name}_Help)\" presentation=\"$(presentation.{name})\" key=\"{}\">\n      <parentCategory ref=\"{}\" />\n      <supportedOn ref=\"SUPPORTED_Lanyard1\" />\n      <elements>\n",
            leaf.key,
            category_of(&leaf)
        );
        let id = format!("{name}Value");
        let value_name = &leaf.value_name;
        let key = &leaf.key;
        let element = match &leaf.kind {
            LeafKind::Text => format!("<text id=\"{id}\" valueName=\"{value_name}\" />"),
            LeafKind::Decimal { min, max } => format!(
                "<decimal id=\"{id}\" valueName=\"{value_name}\" minValue=\"{min}\" maxValue=\"{max}\" />"
            ),
            LeafKind::Boolean => format!(
                "<boolean id=\"{id}\" valueName=\"{value_name}\"><trueValue><decimal value=\"1\" /></trueValue><falseValue><decimal value=\"0\" /></falseValue></boolean>"
            ),
            LeafKind::Enum(values) => {
                let mut e = format!("<enum id=\"{id}\" valueName=\"{value_name}\">");
                for (i, v) in values.iter().enumerate() {
                    let _ = write!(
                        e,
                        "\n          <item displayName=\"$(string.{name}_{i})\"><value><string>{}</string></value></item>",
                        xml_escape(v)
                    );
                }
                e.push_str("\n        </enum>");
                e
            }
            LeafKind::List => format!(
                "<list id=\"{id}\" key=\"{key}\\{value_name}\" valuePrefix=\"\" />"
            ),
            LeafKind::Map => {
                format!("<list id=\"{id}\" key=\"{key}\\{value_name}\" explicitValue=\"true\" />")
            }
        };
        let _ = writeln!(x, "        {element}\n      </elements>\n    </policy>");
    }
    x.push_str("  </policies>\n</policyDefinitions>\n");
    x
}

/// How a setting behaves, for its help text.
fn behaviour(leaf: &Leaf) -> String {
    let mut parts = Vec::new();
    if let Some(default) = &leaf.default {
        let shown = match default {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        parts.push(format!("Default: {shown}."));
    }
    if let Some(key) = leaf.path.strip_prefix("settings.") {
        if let Some(spec) = setting_spec(key) {
            parts.push(if spec.dynamic {
                "Applies live.".into()
            } else {
                "Applies at the next start.".into()
            });
            if spec.admin_only {
                parts
                    .push("Administrators only: a user's own configuration may not set it.".into());
            }
            parts.push(if spec.lockable {
                "Set here, users cannot change it.".into()
            } else {
                "Set here, it is a default users may change.".into()
            });
        }
    } else {
        parts.push("Administrators only; applies live.".into());
    }
    parts.join(" ")
}

/// The label of a leaf's control in the Group Policy editor.
fn label(leaf: &Leaf) -> String {
    format!("{}:", leaf.value_name.replace('_', " "))
}

/// The en-US strings and presentations of the template (`deploy/windows/en-US/lanyard.adml`).
pub fn adml_text() -> String {
    let leaves = admx_leaves();
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    x.push_str("<!-- Generated from Lanyard's policy model (crates/lanyard-core/src/policy/templates.rs): do not edit. -->\n");
    x.push_str("<policyDefinitionResources xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" revision=\"1.0\" schemaVersion=\"1.0\" xmlns=\"http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions\">\n");
    x.push_str("  <displayName>Lanyard</displayName>\n  <description>Policies for Lanyard, the MCP sign-in agent.</description>\n  <resources>\n    <stringTable>\n");
    let mut string = |id: &str, text: &str| {
        let _ = writeln!(x, "      <string id=\"{id}\">{}</string>", xml_escape(text));
    };
    string("SUPPORTED_Lanyard1", "Lanyard 0.1 and later");
    string("Lanyard", "Lanyard");
    string("IdentityProvider", "Identity provider");
    string("McpServers", "MCP servers");
    string("Settings", "Settings");
    string("Servers", "Servers");
    string(
        "Servers_Help",
        "The MCP servers Lanyard obtains tokens for, one line each. Value name: the server id \
         (letters, digits, '-', '_', '.'). Value: the server's JSON object without its id, for \
         example {\"display_name\": \"Docs\", \"url\": \"https://docs.example.com/mcp\", \
         \"client_id\": \"lanyard-docs\", \"scopes\": [\"docs.read\"]}. Every key of \
         servers[] in the policy reference may be set. Removing a line removes the server. \
         Administrators only; applies live.",
    );
    for leaf in &leaves {
        string(&leaf.name, &leaf.path);
        string(
            &format!("{}_Help", leaf.name),
            &format!("{} {}", leaf.description, behaviour(leaf)),
        );
        if let LeafKind::Enum(values) = &leaf.kind {
            for (i, v) in values.iter().enumerate() {
                string(&format!("{}_{i}", leaf.name), v);
            }
        }
    }
    x.push_str("    </stringTable>\n    <presentationTable>\n");
    x.push_str("      <presentation id=\"Servers\"><listBox refId=\"ServersList\">Servers (id, JSON object):</listBox></presentation>\n");
    for leaf in &leaves {
        let (name, id, label) = (&leaf.name, format!("{}Value", leaf.name), label(leaf));
        let control = match &leaf.kind {
            LeafKind::Text => match &leaf.default {
                Some(d) if !d.is_string() => format!(
                    "<textBox refId=\"{id}\"><label>{label}</label><defaultValue>{d}</defaultValue></textBox>"
                ),
                _ => format!("<textBox refId=\"{id}\"><label>{label}</label></textBox>"),
            },
            LeafKind::Decimal { .. } => match leaf.default.as_ref().and_then(Value::as_u64) {
                Some(d) => format!(
                    "<decimalTextBox refId=\"{id}\" defaultValue=\"{d}\">{label}</decimalTextBox>"
                ),
                None => format!("<decimalTextBox refId=\"{id}\">{label}</decimalTextBox>"),
            },
            LeafKind::Boolean => {
                let checked = leaf.default.as_ref().and_then(Value::as_bool) == Some(true);
                format!(
                    "<checkBox refId=\"{id}\" defaultChecked=\"{checked}\">{label}</checkBox>"
                )
            }
            LeafKind::Enum(values) => {
                let default = leaf
                    .default
                    .as_ref()
                    .and_then(Value::as_str)
                    .and_then(|d| values.iter().position(|v| v == d))
                    .unwrap_or(0);
                format!(
                    "<dropdownList refId=\"{id}\" defaultItem=\"{default}\">{label}</dropdownList>"
                )
            }
            LeafKind::List | LeafKind::Map => {
                format!("<listBox refId=\"{id}\">{label}</listBox>")
            }
        };
        let _ = writeln!(
            x,
            "      <presentation id=\"{name}\">{control}</presentation>"
        );
    }
    x.push_str("    </presentationTable>\n  </resources>\n</policyDefinitionResources>\n");
    x
}

/// Every leaf key path of the model (`idp.issuer`, `servers[].scopes`, …). Client
/// authentication has one shape wherever it appears, so its keys are named once:
/// `client_auth.secret.env`, `client_auth.key_file`, … (see [`coverage_paths`]).
pub fn model_key_paths() -> BTreeSet<String> {
    let root = json_schema();
    let mut out = BTreeSet::new();
    collect_paths(&root, &root, "", &mut out);
    out
}

/// `paths` with every `….client_auth.x` named `client_auth.x`: an example covers a variant of
/// client authentication once, at the IdP or at any server.
///
/// A key reference's `pin` and a server's `workload_token` are secret sources like `secret`, so
/// the example's `secret.env`, `secret.file` and `secret.keychain` cover them. The keys of the Windows (CNG) and macOS stores
/// are left out: the example is a Linux policy, whose validation refuses them, and the
/// administrator's guide shows each store's reference in full.
pub fn coverage_paths(paths: &BTreeSet<String>) -> BTreeSet<String> {
    const OTHER_OS_KEY_PATHS: [&str; 3] = [
        "client_auth.key.name",
        "client_auth.key.thumbprint",
        "client_auth.key.scope",
    ];
    paths
        .iter()
        .map(|p| match p.find("client_auth") {
            Some(i) => p[i..].replace("client_auth.key.pin.", "client_auth.secret."),
            // A workload token is a secret source too.
            None => match p.find("workload_token.") {
                Some(i) => p[i..].replace("workload_token.", "client_auth.secret."),
                None => p.clone(),
            },
        })
        .filter(|p| !OTHER_OS_KEY_PATHS.contains(&p.as_str()))
        .collect()
}

fn collect_paths(schema: &Value, root: &Value, path: &str, out: &mut BTreeSet<String>) {
    for (name, prop) in properties(schema, root) {
        let here = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let resolved = resolve(&prop, root);
        let items = resolved.get("items").map(|i| resolve(i, root));
        if let Some(items) = items.filter(|i| !properties(i, root).is_empty()) {
            collect_paths(items, root, &format!("{here}[]"), out);
        } else if !properties(&prop, root).is_empty() && enum_values(&prop, root).is_none() {
            collect_paths(&prop, root, &here, out);
        } else {
            out.insert(here);
        }
    }
}

/// The leaf key paths a policy document sets (same notation as [`model_key_paths`]).
pub fn document_key_paths(document: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    document_paths(document, "", &mut out);
    out
}

fn document_paths(value: &Value, path: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) if !path.ends_with("extra_authorize_params") => {
            for (k, v) in map {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                document_paths(v, &here, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for item in items {
                document_paths(item, &format!("{path}[]"), out);
            }
        }
        _ => {
            out.insert(path.to_owned());
        }
    }
}

/// A policy document as plist XML, indented by `depth` levels of two spaces.
fn plist_value(value: &Value, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    match value {
        Value::Null => {}
        Value::Bool(b) => {
            let _ = writeln!(out, "{pad}<{}/>", if *b { "true" } else { "false" });
        }
        Value::Number(n) => {
            if n.is_f64() {
                let _ = writeln!(out, "{pad}<real>{n}</real>");
            } else {
                let _ = writeln!(out, "{pad}<integer>{n}</integer>");
            }
        }
        Value::String(s) => {
            let _ = writeln!(out, "{pad}<string>{}</string>", xml_escape(s));
        }
        Value::Array(items) => {
            let _ = writeln!(out, "{pad}<array>");
            for item in items {
                plist_value(item, depth + 1, out);
            }
            let _ = writeln!(out, "{pad}</array>");
        }
        Value::Object(map) => {
            let _ = writeln!(out, "{pad}<dict>");
            for (k, v) in map {
                let _ = writeln!(out, "{pad}  <key>{}</key>", xml_escape(k));
                plist_value(v, depth + 1, out);
            }
            let _ = writeln!(out, "{pad}</dict>");
        }
    }
}

/// Splits `example`'s settings into the lockable ones (forced) and the rest (set once: defaults
/// users may change), per the model's setting specs.
fn split_settings(example: &Value) -> (Value, serde_json::Map<String, Value>) {
    let mut forced = example.clone();
    let mut set_once = serde_json::Map::new();
    if let Some(settings) = forced.get_mut("settings").and_then(Value::as_object_mut) {
        let keys: Vec<String> = settings.keys().cloned().collect();
        for key in keys {
            if setting_spec(&key).is_some_and(|s| !s.lockable) {
                if let Some(v) = settings.remove(&key) {
                    set_once.insert(key, v);
                }
            }
        }
    }
    (forced, set_once)
}

/// The macOS configuration profile (`deploy/macos/lanyard.mobileconfig`): `example`'s lockable
/// keys as forced values of the preference domain, the others as set-once defaults.
pub fn mobileconfig_text(example: &Value) -> String {
    let (forced, set_once) = split_settings(example);
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n");
    x.push_str("<!-- Generated from deploy/linux/policy.json by Lanyard's policy model (crates/lanyard-core/src/policy/templates.rs): do not edit; replace the example values with yours. -->\n");
    x.push_str("<plist version=\"1.0\">\n<dict>\n");
    x.push_str("  <key>PayloadDisplayName</key>\n  <string>Lanyard</string>\n  <key>PayloadIdentifier</key>\n  <string>com.example.lanyard</string>\n  <key>PayloadType</key>\n  <string>Configuration</string>\n  <key>PayloadUUID</key>\n  <string>6C1B1D52-3B7B-4C84-9E0C-2A1C3F6E9D10</string>\n  <key>PayloadVersion</key>\n  <integer>1</integer>\n  <key>PayloadScope</key>\n  <string>System</string>\n  <key>PayloadContent</key>\n  <array>\n");
    x.push_str("    <!-- Forced: every key here is mandatory and locks the settings it sets. -->\n    <dict>\n");
    let _ = writeln!(
        x,
        "      <key>PayloadType</key>\n      <string>{PREFERENCE_DOMAIN}</string>\n      <key>PayloadIdentifier</key>\n      <string>com.example.lanyard.policy</string>\n      <key>PayloadUUID</key>\n      <string>0F4E7A2B-9C1D-4E8F-B3A5-7D6C5B4A3F21</string>\n      <key>PayloadVersion</key>\n      <integer>1</integer>"
    );
    if let Value::Object(map) = &forced {
        for (k, v) in map {
            let _ = writeln!(x, "      <key>{}</key>", xml_escape(k));
            plist_value(v, 3, &mut x);
        }
    }
    x.push_str("    </dict>\n");
    x.push_str("    <!-- Set-once: defaults the user may change (Managed Client preferences). -->\n    <dict>\n      <key>PayloadType</key>\n      <string>com.apple.ManagedClient.preferences</string>\n      <key>PayloadIdentifier</key>\n      <string>com.example.lanyard.defaults</string>\n      <key>PayloadUUID</key>\n      <string>A8D3C2B1-5E4F-4A3B-9C8D-1E2F3A4B5C6D</string>\n      <key>PayloadVersion</key>\n      <integer>1</integer>\n      <key>PayloadContent</key>\n      <dict>\n");
    let _ = writeln!(
        x,
        "        <key>{PREFERENCE_DOMAIN}</key>\n        <dict>\n          <key>Set-Once</key>\n          <array>\n            <dict>\n              <key>mcx_preference_settings</key>\n              <dict>\n                <key>settings</key>"
    );
    plist_value(&Value::Object(set_once), 8, &mut x);
    x.push_str("              </dict>\n            </dict>\n          </array>\n        </dict>\n      </dict>\n    </dict>\n  </array>\n</dict>\n</plist>\n");
    x
}

/// A `.reg` string value's data, escaped.
fn reg_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn reg_key(value: &Value, path: &str, x: &mut String) {
    let Value::Object(map) = value else {
        return;
    };
    let mut plain = Vec::new();
    let mut nested = Vec::new();
    for (k, v) in map {
        match v {
            Value::Object(_) | Value::Array(_) => nested.push((k, v)),
            _ => plain.push((k, v)),
        }
    }
    let _ = writeln!(x, "\n[{path}]");
    for (k, v) in plain {
        let data = match v {
            Value::Bool(b) => format!("dword:{:08x}", u32::from(*b)),
            Value::Number(n) if n.is_u64() => match n.as_u64() {
                Some(n) if n <= u64::from(u32::MAX) => format!("dword:{n:08x}"),
                _ => reg_string(&n.to_string()),
            },
            Value::Number(n) => reg_string(&n.to_string()),
            Value::String(s) => reg_string(s),
            _ => continue,
        };
        let _ = writeln!(x, "{}={data}", reg_string(k));
    }
    for (k, v) in nested {
        match v {
            Value::Array(items) if k == "servers" => {
                // The Group Policy shape: one value per server, its JSON object as the data.
                let _ = writeln!(x, "\n[{path}\\servers]");
                for item in items {
                    let mut entry = item.clone();
                    let id = entry
                        .as_object_mut()
                        .and_then(|m| m.remove("id"))
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    let _ = writeln!(x, "{}={}", reg_string(&id), reg_string(&entry.to_string()));
                }
            }
            Value::Array(items) => {
                let _ = writeln!(x, "\n[{path}\\{k}]");
                for (i, item) in items.iter().enumerate() {
                    let text = match item {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let _ = writeln!(x, "\"{}\"={}", i + 1, reg_string(&text));
                }
            }
            object => reg_key(object, &format!("{path}\\{k}"), x),
        }
    }
}

/// The registry example (`deploy/windows/servers-example.reg`): `example` as Group Policy would
/// write it under HKLM.
pub fn reg_text(example: &Value) -> String {
    let mut x = String::from("Windows Registry Editor Version 5.00\n\n; Generated from deploy/linux/policy.json by Lanyard's policy model\n; (crates/lanyard-core/src/policy/templates.rs): do not edit. The machine policy as the ADMX\n; writes it; servers are values of the servers key (name: id, data: JSON), so a Group Policy or\n; Intune refresh that drops one removes that server.\n");
    reg_key(
        example,
        r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Lanyard",
        &mut x,
    );
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_camel_case_paths() {
        assert_eq!(camel(".idp.client_auth.method"), "IdpClientAuthMethod");
        assert_eq!(camel("settings.max_concurrency"), "SettingsMaxConcurrency");
    }

    #[test]
    fn every_setting_becomes_a_policy_with_its_range() {
        let admx = admx_text();
        assert!(admx.contains(
            "<decimal id=\"SettingsMaxConcurrencyValue\" valueName=\"max_concurrency\" minValue=\"1\" maxValue=\"256\" />"
        ), "{admx}");
        assert!(admx.contains("valueName=\"client_auth\"") || admx.contains("idp\\client_auth"));
        for spec in super::super::model::SETTING_SPECS {
            assert!(
                admx.contains(&format!("valueName=\"{}\"", spec.key))
                    || admx.contains(&format!("settings\\{}\"", spec.key)),
                "{}",
                spec.key
            );
        }
    }
}
