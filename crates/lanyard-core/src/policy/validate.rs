//! Policy validation: the shape of a source document checked against the JSON Schema generated
//! from the model (unknown keys with "did you mean", wrong types, values outside an enumeration,
//! missing keys), then the meaning of a parsed [`Policy`] (HTTPS endpoints, duplicate server ids,
//! readable key files, ranges).
//!
//! Every problem becomes a [`PolicyError`] naming its source and key path. This module decides
//! nothing about precedence or origins (that is `merge`) and reads no file but the ones a policy
//! points to when asked to check that they are readable.

use std::collections::HashSet;
use std::path::Path;

use serde_json::{Map, Value};
use url::Url;

use super::model::{
    ClientAuthPolicy, KeyReference, Policy, SecretSource, ServerMode, SignInProtocol,
};

/// A policy problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{source_name}: {key_path}: {message}")]
pub struct PolicyError {
    /// The file (or other source) the problem is in.
    pub source_name: String,
    /// A dotted key path such as `servers[1].url` (`.` for the document).
    pub key_path: String,
    pub message: String,
}

impl PolicyError {
    pub fn new(source_name: &str, key_path: &str, message: impl Into<String>) -> Self {
        Self {
            source_name: source_name.to_owned(),
            key_path: if key_path.is_empty() {
                ".".into()
            } else {
                key_path.to_owned()
            },
            message: message.into(),
        }
    }
}

/// `parent.key` (or `key` at the top).
pub(crate) fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The closest of `candidates` to `unknown`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(unknown: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = unknown.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(distance, c)| *distance <= (c.len().max(unknown.len()) / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

fn unknown_message(what: &str, unknown: &str, candidates: &[&str]) -> String {
    match did_you_mean(unknown, candidates) {
        Some(suggestion) => format!("unknown {what}; did you mean \"{suggestion}\"?"),
        None => format!("unknown {what}; expected one of: {}", candidates.join(", ")),
    }
}

fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("the text \"{}…\"", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("the text \"{s}\""),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn describe_type(name: &str) -> &'static str {
    match name {
        "string" => "text",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        "array" => "a list",
        "object" => "an object",
        "null" => "null",
        _ => "a value of another type",
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn schema_types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Checks a source document against the policy's JSON Schema. With `partial`, keys required
/// inside sections that several sources may each contribute to (`idp`) are not yet required.
pub fn check_shape(document: &Value, source_name: &str, partial: bool) -> Vec<PolicyError> {
    let schema = super::model::json_schema();
    let mut walker = ShapeWalker {
        root: &schema,
        source_name,
        partial,
        errors: Vec::new(),
    };
    walker.walk(document, &schema, "");
    walker.errors
}

struct ShapeWalker<'a> {
    root: &'a Value,
    source_name: &'a str,
    partial: bool,
    errors: Vec<PolicyError>,
}

impl<'a> ShapeWalker<'a> {
    fn error(&mut self, path: &str, message: String) {
        self.errors
            .push(PolicyError::new(self.source_name, path, message));
    }

    fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        // Definitions refer to each other only a few levels deep; the bound guards against a loop.
        for _ in 0..8 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                break;
            };
            match reference
                .strip_prefix('#')
                .and_then(|pointer| self.root.pointer(pointer))
            {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    fn walk(&mut self, value: &Value, schema: &'a Value, path: &str) {
        let schema = self.resolve(schema);
        if let Some(Value::Array(variants)) = schema.get("oneOf").or_else(|| schema.get("anyOf")) {
            self.walk_variants(value, variants, path);
            return;
        }
        let types = schema_types(schema);
        if !types.is_empty() && !types.iter().any(|t| type_matches(t, value)) {
            let expected: Vec<&str> = types
                .iter()
                .filter(|t| **t != "null")
                .map(|t| describe_type(t))
                .collect();
            self.error(
                path,
                format!(
                    "expected {}, found {}",
                    expected.join(" or "),
                    describe_value(value)
                ),
            );
            return;
        }
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            self.check_allowed(value, allowed.iter().collect(), path);
            return;
        }
        if let Some(constant) = schema.get("const") {
            self.check_allowed(value, vec![constant], path);
            return;
        }
        match value {
            Value::Object(map) => self.walk_object(map, schema, path),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.walk(item, item_schema, &format!("{path}[{i}]"));
                    }
                }
            }
            Value::Number(n) => {
                let bound = |k: &str| schema.get(k).and_then(Value::as_f64);
                if let Some(v) = n.as_f64() {
                    match (bound("minimum"), bound("maximum")) {
                        (Some(min), Some(max)) if v < min || v > max => {
                            self.error(path, format!("must be between {min} and {max}"));
                        }
                        (Some(min), None) if v < min => {
                            self.error(path, format!("must be at least {min}"));
                        }
                        (None, Some(max)) if v > max => {
                            self.error(path, format!("must be at most {max}"));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    fn check_allowed(&mut self, value: &Value, allowed: Vec<&Value>, path: &str) {
        if allowed.contains(&value) {
            return;
        }
        let names: Vec<&str> = allowed.iter().filter_map(|v| v.as_str()).collect();
        let listed: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        let mut message = format!(
            "{} is not one of {}",
            describe_value(value),
            listed.join(", ")
        );
        if let Some(suggestion) = value.as_str().and_then(|v| did_you_mean(v, &names)) {
            message.push_str(&format!("; did you mean \"{suggestion}\"?"));
        }
        self.error(path, message);
    }

    fn walk_object(&mut self, map: &Map<String, Value>, schema: &'a Value, path: &str) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let known: Vec<&str> = properties
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for (key, child) in map {
            let child_path = join_key(path, key);
            if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                self.walk(child, child_schema, &child_path);
                continue;
            }
            match additional {
                Some(Value::Bool(false)) => {
                    let message = unknown_message("key", key, &known);
                    self.error(&child_path, message);
                }
                Some(extra @ Value::Object(_)) => self.walk(child, extra, &child_path),
                _ => {}
            }
        }
        let partial_here = self.partial && (path.is_empty() || path == "idp");
        if !partial_here {
            if let Some(Value::Array(required)) = schema.get("required") {
                for key in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(key) {
                        self.error(path, format!("missing required key \"{key}\""));
                    }
                }
            }
        }
    }

    /// A value that may take one of several shapes (an optional value, a tagged or keyed enum).
    fn walk_variants(&mut self, value: &Value, variants: &'a [Value], path: &str) {
        let variants: Vec<&'a Value> = variants.iter().map(|v| self.resolve(v)).collect();
        let fitting: Vec<&'a Value> = variants
            .iter()
            .copied()
            .filter(|v| {
                let types = schema_types(v);
                types.is_empty() || types.iter().any(|t| type_matches(t, value))
            })
            .collect();
        if value.is_null() && fitting.iter().any(|v| schema_types(v).contains(&"null")) {
            return;
        }
        match value {
            Value::String(_) if fitting.iter().all(|v| v.get("const").is_some()) => {
                let allowed: Vec<&Value> = fitting.iter().filter_map(|v| v.get("const")).collect();
                if !allowed.is_empty() {
                    self.check_allowed(value, allowed, path);
                    return;
                }
            }
            Value::Object(map) if fitting.len() > 1 => {
                self.walk_object_variants(value, map, &fitting, path);
                return;
            }
            _ => {}
        }
        match fitting.as_slice() {
            [only] => self.walk(value, only, path),
            [] => {
                let mut expected: Vec<&str> = Vec::new();
                for variant in &variants {
                    for t in schema_types(variant) {
                        let shown = describe_type(t);
                        if t != "null" && !expected.contains(&shown) {
                            expected.push(shown);
                        }
                    }
                }
                self.error(
                    path,
                    format!(
                        "expected {}, found {}",
                        expected.join(" or "),
                        describe_value(value)
                    ),
                );
            }
            [first, ..] => self.walk(value, first, path),
        }
    }

    fn walk_object_variants(
        &mut self,
        value: &Value,
        map: &Map<String, Value>,
        variants: &[&'a Value],
        path: &str,
    ) {
        let props = |v: &'a Value| v.get("properties").and_then(Value::as_object);
        // A tag: one key whose constant value tells the variants apart (`method`).
        let tag = variants.first().and_then(|first| {
            props(first)?
                .iter()
                .find(|(k, _)| {
                    variants.iter().all(|v| {
                        props(v)
                            .and_then(|p| p.get(k.as_str()))
                            .is_some_and(|s| s.get("const").is_some())
                    })
                })
                .map(|(k, _)| k.clone())
        });
        if let Some(tag) = tag {
            let Some(tag_value) = map.get(&tag) else {
                self.error(path, format!("missing required key \"{tag}\""));
                return;
            };
            let chosen = variants.iter().find(|v| {
                props(v)
                    .and_then(|p| p.get(&tag))
                    .and_then(|s| s.get("const"))
                    == Some(tag_value)
            });
            match chosen {
                Some(variant) => self.walk(value, variant, path),
                None => {
                    let allowed: Vec<&Value> = variants
                        .iter()
                        .filter_map(|v| props(v)?.get(&tag)?.get("const"))
                        .collect();
                    self.check_allowed(tag_value, allowed, &join_key(path, &tag));
                }
            }
            return;
        }
        // Keyed: exactly one key names the variant (`{"keychain": "name"}`).
        let all_keys: Vec<&str> = variants
            .iter()
            .filter_map(|v| props(v))
            .flat_map(|p| p.keys().map(String::as_str))
            .collect();
        let chosen = variants.iter().find(|v| {
            props(v).is_some_and(|p| !map.is_empty() && map.keys().all(|k| p.contains_key(k)))
        });
        match chosen {
            Some(variant) if map.len() == 1 => self.walk(value, variant, path),
            _ => {
                for key in map.keys().filter(|k| !all_keys.contains(&k.as_str())) {
                    let message = unknown_message("key", key, &all_keys);
                    self.error(&join_key(path, key), message);
                }
                if map.keys().all(|k| all_keys.contains(&k.as_str())) {
                    self.error(
                        path,
                        format!("expected exactly one of: {}", all_keys.join(", ")),
                    );
                }
            }
        }
    }
}

/// Whether file references are checked for readability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChecks {
    /// Every key file, secret file and CA bundle must be readable now.
    Readable,
    /// Skip (validating a policy meant for another machine).
    Skip,
}

/// The meaning of a parsed policy: `(key path, message)` for every problem.
pub fn check_semantics(policy: &Policy, files: FileChecks) -> Vec<(String, String)> {
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut err = |key_path: String, message: String| errors.push((key_path, message));
    let check_url = |value: &str| -> Result<(), String> {
        let url = Url::parse(value).map_err(|e| format!("\"{value}\" is not a URL ({e})"))?;
        match url.scheme() {
            "https" => Ok(()),
            "http" if policy.dev_mode && is_loopback(&url) => Ok(()),
            "http" if is_loopback(&url) => Err(format!(
                "\"{value}\" uses plain HTTP; loopback HTTP is allowed only with dev_mode"
            )),
            _ => Err(format!("\"{value}\" must use https")),
        }
    };
    let check_file = |path: &Path, what: &str| -> Result<(), String> {
        if files == FileChecks::Skip {
            return Ok(());
        }
        std::fs::File::open(path)
            .map(|_| ())
            .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
    };
    let check_auth = |auth: &ClientAuthPolicy, at: &str, err: &mut dyn FnMut(String, String)| {
        let (path, what, key) = match auth {
            ClientAuthPolicy::ClientSecretBasic {
                secret: SecretSource::File(path),
            }
            | ClientAuthPolicy::ClientSecretPost {
                secret: SecretSource::File(path),
            } => (path, "secret file", "secret.file"),
            ClientAuthPolicy::PrivateKeyJwt {
                key_file, key, alg, ..
            } => match (key_file, key) {
                (Some(_), Some(_)) => {
                    return err(
                        format!("{at}.key"),
                        "give either key (a key the OS holds) or key_file, not both".into(),
                    )
                }
                (None, None) => {
                    return err(
                        format!("{at}.key"),
                        "private_key_jwt needs key (a key the OS holds) or key_file".into(),
                    )
                }
                (None, Some(reference)) => {
                    for (path, message) in check_key_reference(reference, *alg, files) {
                        err(format!("{at}.key{path}"), message);
                    }
                    return;
                }
                (Some(key_file), None) => (key_file, "key file", "key_file"),
            },
            _ => return,
        };
        if let Err(m) = check_file(path, what) {
            err(format!("{at}.{key}"), m);
        }
    };
    if let Some(idp) = &policy.idp {
        if let Err(m) = check_url(&idp.issuer) {
            err("idp.issuer".into(), m);
        }
        if idp.client_id.trim().is_empty() {
            err("idp.client_id".into(), "must not be empty".into());
        }
        if !idp.scopes.iter().any(|s| s == "openid") {
            err("idp.scopes".into(), "must include \"openid\"".into());
        }
        check_auth(&idp.client_auth, "idp.client_auth", &mut err);
        if idp.sign_in == SignInProtocol::Saml {
            match &idp.saml_sso_url {
                None => err(
                    "idp.saml_sso_url".into(),
                    "is required with \"sign_in\": \"saml\"".into(),
                ),
                Some(url) => {
                    if let Err(m) = check_url(url) {
                        err("idp.saml_sso_url".into(), m);
                    }
                }
            }
            if idp.sp_entity_id().trim().is_empty() {
                err("idp.saml_sp_entity_id".into(), "must not be empty".into());
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, server) in policy.servers.iter().enumerate() {
        let at = |k: &str| format!("servers[{i}].{k}");
        let id_ok = !server.id.is_empty()
            && server
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !id_ok {
            err(
                at("id"),
                format!(
                    "\"{}\" must be non-empty letters, digits, '-', '_' or '.'",
                    server.id
                ),
            );
        }
        if !seen.insert(server.id.as_str()) {
            err(at("id"), format!("duplicate server id \"{}\"", server.id));
        }
        if server.display_name.trim().is_empty() {
            err(at("display_name"), "must not be empty".into());
        }
        if let Err(m) = check_url(&server.url) {
            err(at("url"), m);
        }
        if let Some(issuer) = &server.authorization_server {
            if let Err(m) = check_url(issuer) {
                err(at("authorization_server"), m);
            }
        }
        for (j, issuer) in server.allowed_authorization_servers.iter().enumerate() {
            if let Err(m) = check_url(issuer) {
                err(at(&format!("allowed_authorization_servers[{j}]")), m);
            }
        }
        if server.client_auth != ClientAuthPolicy::None
            && server.authorization_server.is_none()
            && server.allowed_authorization_servers.is_empty()
        {
            // Otherwise the MCP server would choose where Lanyard sends the secret or assertion.
            err(
                at("authorization_server"),
                "a server Lanyard authenticates to with a secret or a key needs \
                 `authorization_server` (or `allowed_authorization_servers`): the MCP server must \
                 not choose where the credential is sent"
                    .into(),
            );
        }
        for (j, scope) in server.allowed_extra_scopes.iter().enumerate() {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                err(
                    at(&format!("allowed_extra_scopes[{j}]")),
                    format!("\"{scope}\" is not a scope (one token, no spaces)"),
                );
            }
        }
        if let Some(resource) = &server.resource {
            if let Err(e) = Url::parse(resource) {
                err(at("resource"), format!("\"{resource}\" is not a URL ({e})"));
            }
        }
        if server.mode == ServerMode::Oauth {
            if server.client_id.trim().is_empty()
                && server.client_id_metadata_url.is_none()
                && !server.allow_dynamic_registration
            {
                err(
                    at("client_id"),
                    "oauth needs a client identity: client_id (registered at the server's \
                     authorization server), client_id_metadata_url, or \
                     \"allow_dynamic_registration\": true"
                        .into(),
                );
            }
            if let Some(url) = &server.client_id_metadata_url {
                match Url::parse(url) {
                    Ok(u) if u.scheme() == "https" && u.path() != "/" => {}
                    Ok(_) => err(
                        at("client_id_metadata_url"),
                        format!(
                            "\"{url}\" must be an https URL with a path (the metadata document)"
                        ),
                    ),
                    Err(e) => err(
                        at("client_id_metadata_url"),
                        format!("\"{url}\" is not a URL ({e})"),
                    ),
                }
            }
        } else {
            if server.client_id.trim().is_empty() {
                err(
                    at("client_id"),
                    "is required (Lanyard's client id at the server's authorization server) and \
                     must not be empty"
                        .into(),
                );
            }
            if server.client_id_metadata_url.is_some() {
                err(
                    at("client_id_metadata_url"),
                    "is for \"mode\": \"oauth\" only".into(),
                );
            }
            if server.allow_dynamic_registration {
                err(
                    at("allow_dynamic_registration"),
                    "is for \"mode\": \"oauth\" only".into(),
                );
            }
        }
        if server.mode == ServerMode::EnterpriseManaged && policy.idp.is_none() {
            err(
                at("mode"),
                "enterprise-managed needs an `idp` section".into(),
            );
        }
        if server.mode == ServerMode::ClientCredentials
            && server.client_auth == ClientAuthPolicy::None
        {
            err(
                at("client_auth"),
                "client-credentials needs a secret or a private key".into(),
            );
        }
        match (server.mode, &server.workload_token) {
            (ServerMode::WorkloadIdentity, None) => err(
                at("workload_token"),
                "workload-identity needs the workload's token: {\"file\": …} or {\"env\": …}"
                    .into(),
            ),
            (ServerMode::WorkloadIdentity, Some(SecretSource::Keychain(_))) => err(
                at("workload_token"),
                "a workload token comes from its platform: a file or an environment variable, \
                 not the keychain"
                    .into(),
            ),
            (ServerMode::WorkloadIdentity, Some(_)) => {
                if server.authorization_server.is_none()
                    && server.allowed_authorization_servers.is_empty()
                {
                    err(
                        at("authorization_server"),
                        "a workload token goes only to an authorization server the policy names \
                         (authorization_server or allowed_authorization_servers)"
                            .into(),
                    );
                }
            }
            (_, Some(_)) => err(
                at("workload_token"),
                "is for \"mode\": \"workload-identity\" only".into(),
            ),
            (_, None) => {}
        }
        check_auth(&server.client_auth, &at("client_auth"), &mut err);
    }
    // The settings' ranges are in the schema (see the model), checked with the types.
    let s = &policy.settings;
    for (i, id) in s.on_demand_servers.iter().enumerate() {
        if id != "*" && policy.server(id).is_none() {
            err(
                format!("settings.on_demand_servers[{i}]"),
                format!("\"{id}\" is no configured server id (or `*` for all)"),
            );
        }
    }
    if !s.ai_clients_native.is_empty() && policy.idp.is_none() {
        err(
            "settings.ai_clients_native".into(),
            "needs \"idp\": a client doing enterprise-managed authorization itself signs in there"
                .into(),
        );
    }
    if let Some(support) = &s.support_url {
        match Url::parse(support) {
            Ok(url) if matches!(url.scheme(), "https" | "mailto") => {}
            Ok(_) => err(
                "settings.support_url".into(),
                format!("\"{support}\" must use https or mailto"),
            ),
            Err(e) => err(
                "settings.support_url".into(),
                format!("\"{support}\" is not a URL ({e})"),
            ),
        }
    }
    if let Some(proxy) = &s.proxy {
        // A proxy URL may carry a password: messages show it without its user information.
        match Url::parse(proxy) {
            Ok(url) if matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") => {}
            Ok(mut url) => {
                let shown = if url.username().is_empty() && url.password().is_none() {
                    proxy.clone()
                } else {
                    let _ = url.set_password(None);
                    let _ = url.set_username("");
                    url.to_string()
                };
                err(
                    "settings.proxy".into(),
                    format!("\"{shown}\" must be an http, https or socks5 proxy URL"),
                )
            }
            Err(e) => err("settings.proxy".into(), format!("is not a URL ({e})")),
        }
    }
    for (i, path) in s.extra_ca_files.iter().enumerate() {
        if files == FileChecks::Skip {
            continue;
        }
        if let Err(m) = read_ca_bundle(path) {
            err(format!("settings.extra_ca_files[{i}]"), m);
        }
    }
    errors
}

/// Reads a CA bundle the policy names: opened once and judged on the open handle, it must be an
/// administrator's (root's, or SYSTEM's / Administrators' on Windows) and writable by no one else,
/// since whoever can change it decides whom TLS trusts.
pub fn read_ca_bundle(path: &Path) -> Result<Vec<u8>, String> {
    use crate::admin_files::{read_trusted, AdminFileError, Trust};
    match read_trusted(path, &Trust::administrators()) {
        Ok(Some(pem)) => Ok(pem),
        // ENOENT, worded by the OS as any other missing file is.
        Ok(None) => Err(format!(
            "cannot read the CA bundle {}: {}",
            path.display(),
            std::io::Error::from_raw_os_error(2)
        )),
        Err(AdminFileError::Untrusted(m)) => {
            Err(format!("the CA bundle {} is refused: {m}", path.display()))
        }
        Err(AdminFileError::Unreadable(m)) => Err(format!("the CA bundle {}: {m}", path.display())),
    }
}

/// The problems of a key reference, as `(path below .key, message)`: its required parts, and
/// with [`FileChecks::Readable`] whether it can be used on this operating system and, for
/// PKCS#11, whether the module is an administrator's file (it is loaded into the agent).
fn check_key_reference(
    reference: &KeyReference,
    alg: Option<crate::oauth::KeyAlgorithm>,
    files: FileChecks,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let here = |store: &str| {
        (store == "pkcs11" && cfg!(target_os = "linux"))
            || (store == "windows" && cfg!(windows))
            || (store == "macos" && cfg!(target_os = "macos"))
    };
    let store = match reference {
        KeyReference::Pkcs11 {
            module,
            token,
            label,
            id,
            ..
        } => {
            if !module.is_absolute() {
                problems.push((".module".into(), "must be an absolute path".into()));
            } else if files == FileChecks::Readable && cfg!(target_os = "linux") {
                if let Err(m) = crate::device_key::check_module(module) {
                    problems.push((".module".into(), m));
                }
            }
            if token.trim().is_empty() {
                problems.push((".token".into(), "must name the token's label".into()));
            }
            if label.is_none() && id.is_none() {
                problems.push((
                    ".label".into(),
                    "name the private key by label, id or both".into(),
                ));
            }
            if let Some(id) = id {
                if !is_hex(id) {
                    problems.push((".id".into(), format!("\"{id}\" is not hex")));
                }
            }
            "pkcs11"
        }
        KeyReference::Windows {
            name, thumbprint, ..
        } => {
            match (name, thumbprint) {
                (Some(_), Some(_)) | (None, None) => problems.push((
                    ".name".into(),
                    "name the key by exactly one of name and thumbprint".into(),
                )),
                (None, Some(t)) if t.len() != 40 || !is_hex(t) => problems.push((
                    ".thumbprint".into(),
                    format!("\"{t}\" is not a SHA-1 thumbprint (40 hex digits)"),
                )),
                _ => {}
            }
            "windows"
        }
        KeyReference::Macos { label } => {
            if label.trim().is_empty() {
                problems.push((".label".into(), "must not be empty".into()));
            }
            if alg == Some(crate::oauth::KeyAlgorithm::RS256) {
                problems.push((
                    ".store".into(),
                    "macOS keys sign with ES256 here (the Secure Enclave's only algorithm)".into(),
                ));
            }
            "macos"
        }
    };
    if files == FileChecks::Readable && !here(store) {
        problems.push((
            ".store".into(),
            format!(
                "\"{store}\" keys cannot be used on {}",
                std::env::consts::OS
            ),
        ));
    }
    problems
}

/// Whether `s` is whole bytes of hex digits.
pub(crate) fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `url`'s host is this machine's loopback (127.0.0.0/8, ::1, `localhost`).
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}
