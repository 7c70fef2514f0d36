//! The policy's JSON Schema, generated from the model's Rust types, and the human-readable key
//! table of the book (`docs/src/admin/policy.md`). Both are derived data: tests fail when the
//! committed copies are stale.

use serde_json::Value;

use super::model::{setting_spec, SETTING_SPECS};

pub use super::model::json_schema;

/// The schema as committed in `deploy/policy.schema.json` (pretty JSON, trailing newline).
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

fn type_name(schema: &Value, root: &Value) -> String {
    let schema = resolve(schema, root);
    if let Some(Value::Array(values)) = schema.get("enum") {
        let names: Vec<String> = values
            .iter()
            .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
            .collect();
        return format!("one of {}", names.join(", "));
    }
    if let Some(Value::Array(variants)) = schema.get("oneOf") {
        let consts: Vec<String> = variants
            .iter()
            .filter_map(|v| v.get("const")?.as_str().map(|c| format!("`{c}`")))
            .collect();
        if consts.len() == variants.len() {
            return format!("one of {}", consts.join(", "));
        }
        return "object".into();
    }
    match schema.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let item = schema
                .get("items")
                .map(|i| type_name(i, root))
                .unwrap_or_default();
            format!("list of {item}")
        }
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "object".into(),
    }
}

/// `schema` itself, or the definition its `$ref` points to within `root`.
pub(crate) fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|p| root.pointer(p))
        .unwrap_or(schema)
}

/// A Markdown table of every policy key: type, default, lockable, dynamic, description.
pub fn key_table() -> String {
    let root = json_schema();
    let mut rows = vec![
        "| Key | Type | Default | Lockable | Applies live | Description |".to_owned(),
        "| --- | --- | --- | --- | --- | --- |".to_owned(),
    ];
    let section = |prefix: &str, schema: &Value, rows: &mut Vec<String>, settings: bool| {
        let schema = resolve(schema, &root);
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let defaults = schema.get("default");
        for (key, prop) in props {
            let default = if required.contains(&key.as_str()) {
                "required".to_owned()
            } else {
                match prop
                    .get("default")
                    .or_else(|| defaults.and_then(|d| d.get(key)))
                {
                    Some(Value::Null) | None => "—".to_owned(),
                    Some(v) => format!("`{v}`"),
                }
            };
            let (lockable, dynamic) = if settings {
                match setting_spec(key) {
                    Some(s) if s.admin_only => ("always (administrator only)", yes_no(s.dynamic)),
                    Some(s) => (yes_no(s.lockable), yes_no(s.dynamic)),
                    None => ("?", "?"),
                }
            } else {
                ("always (administrator only)", "yes")
            };
            let description = prop
                .get("description")
                .or_else(|| resolve(prop, &root).get("description"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .replace('\n', " ");
            rows.push(format!(
                "| `{prefix}{key}` | {} | {default} | {lockable} | {dynamic} | {description} |",
                type_name(prop, &root)
            ));
        }
    };
    let top = root.get("properties").cloned().unwrap_or_default();
    if let Some(dev) = top.get("dev_mode") {
        let mut one = serde_json::Map::new();
        one.insert("dev_mode".into(), dev.clone());
        section(
            "",
            &serde_json::json!({"properties": one}),
            &mut rows,
            false,
        );
    }
    if let Some(idp) = root.pointer("/$defs/IdpPolicy") {
        section("idp.", idp, &mut rows, false);
    }
    if let Some(server) = root.pointer("/$defs/ServerPolicy") {
        section("servers[].", server, &mut rows, false);
    }
    if let Some(settings) = root.pointer("/$defs/Settings") {
        section("settings.", settings, &mut rows, true);
    }
    debug_assert_eq!(
        SETTING_SPECS.len(),
        root.pointer("/$defs/Settings/properties")
            .and_then(Value::as_object)
            .map_or(0, |p| p.len())
    );
    rows.join("\n") + "\n"
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
