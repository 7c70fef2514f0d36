//! The managed policy: which IdP, which MCP servers, and how Lanyard authenticates at each.
//!
//! One serde model, loaded from JSON, validated into named errors that carry the key path. Secrets
//! never appear inline: a policy *refers* to a keychain entry, a protected file or an environment
//! variable. This module reads files only when asked to load one; it owns no other I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::oauth::KeyAlgorithm;

/// The whole policy as deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The corporate IdP. Optional when every server uses client credentials.
    #[serde(default)]
    pub idp: Option<IdpPolicy>,
    #[serde(default)]
    pub servers: Vec<ServerPolicy>,
    #[serde(default)]
    pub settings: Settings,
    /// Allows plain-HTTP loopback endpoints (the dev testbed). Never set in production.
    #[serde(default)]
    pub dev_mode: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpPolicy {
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_auth: ClientAuthPolicy,
    #[serde(default = "default_idp_scopes")]
    pub scopes: Vec<String>,
    /// Extra query parameters for the authorization request (e.g. `domain_hint`).
    #[serde(default)]
    pub extra_authorize_params: BTreeMap<String, String>,
}

fn default_idp_scopes() -> Vec<String> {
    ["openid", "offline_access", "email"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// How an MCP server's token is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ServerMode {
    #[default]
    EnterpriseManaged,
    ClientCredentials,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerPolicy {
    pub id: String,
    pub display_name: String,
    pub url: String,
    /// The authorization server's issuer; discovered from the server when absent.
    #[serde(default)]
    pub authorization_server: Option<String>,
    /// The RFC 9728 resource identifier; discovered (or the URL) when absent.
    #[serde(default)]
    pub resource: Option<String>,
    pub client_id: String,
    #[serde(default)]
    pub client_auth: ClientAuthPolicy,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub mode: ServerMode,
}

/// Where a client secret comes from. Never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    /// An entry of Lanyard's keychain service.
    Keychain(String),
    /// A root-deployed file (one trailing newline is ignored).
    File(PathBuf),
    /// An environment variable (CI and daemons).
    Env(String),
}

/// Client authentication at a token endpoint, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientAuthPolicy {
    #[default]
    None,
    ClientSecretBasic {
        secret: SecretSource,
    },
    ClientSecretPost {
        secret: SecretSource,
    },
    PrivateKeyJwt {
        key_file: PathBuf,
        #[serde(default = "default_alg")]
        alg: KeyAlgorithm,
        #[serde(default)]
        kid: Option<String>,
    },
}

fn default_alg() -> KeyAlgorithm {
    KeyAlgorithm::RS256
}

/// Tunables with safe defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Refresh when this fraction of a token's lifetime has passed (0.5–0.9).
    pub refresh_at_fraction: f64,
    /// Never refresh later than this many seconds before expiry.
    pub min_refresh_lead_secs: u64,
    /// Concurrent grants after sign-in.
    pub max_concurrency: usize,
    /// Where "contact IT" points.
    pub support_url: Option<String>,
    /// An explicit HTTPS proxy.
    pub proxy: Option<String>,
    /// Extra PEM CA bundles trusted on top of the OS store.
    pub extra_ca_files: Vec<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            refresh_at_fraction: 0.75,
            min_refresh_lead_secs: 60,
            max_concurrency: 32,
            support_url: None,
            proxy: None,
            extra_ca_files: Vec::new(),
        }
    }
}

/// A policy problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {key_path}: {message}")]
pub struct PolicyError {
    /// The file (or other source) the problem is in.
    pub source_name: String,
    /// A dotted key path such as `servers[1].url` (`.` for the document).
    pub key_path: String,
    pub message: String,
}

impl Policy {
    /// Parses and validates policy JSON from `source_name`.
    pub fn from_json(text: &str, source_name: &str) -> Result<Policy, Vec<PolicyError>> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let policy: Policy = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            vec![PolicyError {
                source_name: source_name.to_owned(),
                key_path: if path.is_empty() { ".".into() } else { path },
                message: e.into_inner().to_string(),
            }]
        })?;
        let errors = policy.validate(source_name);
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }

    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, Vec<PolicyError>> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![PolicyError {
                source_name: name.clone(),
                key_path: ".".into(),
                message: format!("cannot read: {e}"),
            }]
        })?;
        Self::from_json(&text, &name)
    }

    /// Every problem of a parsed policy.
    pub fn validate(&self, source_name: &str) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        let mut err = |key_path: String, message: String| {
            errors.push(PolicyError {
                source_name: source_name.to_owned(),
                key_path,
                message,
            })
        };
        let check_url = |value: &str| -> Result<(), String> {
            let url = Url::parse(value).map_err(|e| format!("{value:?} is not a URL ({e})"))?;
            match url.scheme() {
                "https" => Ok(()),
                "http" if self.dev_mode && is_loopback(&url) => Ok(()),
                "http" if is_loopback(&url) => Err(format!(
                    "{value:?} uses plain HTTP; loopback HTTP is allowed only with dev_mode"
                )),
                _ => Err(format!("{value:?} must use https")),
            }
        };
        if let Some(idp) = &self.idp {
            if let Err(m) = check_url(&idp.issuer) {
                err("idp.issuer".into(), m);
            }
            if idp.client_id.trim().is_empty() {
                err("idp.client_id".into(), "must not be empty".into());
            }
            if !idp.scopes.iter().any(|s| s == "openid") {
                err("idp.scopes".into(), "must include \"openid\"".into());
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, server) in self.servers.iter().enumerate() {
            let at = |k: &str| format!("servers[{i}].{k}");
            if server.id.is_empty()
                || !server
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                err(
                    at("id"),
                    format!(
                        "{:?} must be non-empty letters, digits, '-', '_' or '.'",
                        server.id
                    ),
                );
            }
            if !seen.insert(server.id.as_str()) {
                err(at("id"), format!("duplicate server id {:?}", server.id));
            }
            if let Err(m) = check_url(&server.url) {
                err(at("url"), m);
            }
            if let Some(issuer) = &server.authorization_server {
                if let Err(m) = check_url(issuer) {
                    err(at("authorization_server"), m);
                }
            }
            if server.client_id.trim().is_empty() {
                err(at("client_id"), "must not be empty".into());
            }
            if server.mode == ServerMode::EnterpriseManaged && self.idp.is_none() {
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
        }
        let s = &self.settings;
        if !(0.5..=0.9).contains(&s.refresh_at_fraction) {
            err(
                "settings.refresh_at_fraction".into(),
                "must be between 0.5 and 0.9".into(),
            );
        }
        if s.max_concurrency == 0 || s.max_concurrency > 256 {
            err(
                "settings.max_concurrency".into(),
                "must be between 1 and 256".into(),
            );
        }
        errors
    }

    pub fn server(&self, id: &str) -> Option<&ServerPolicy> {
        self.servers.iter().find(|s| s.id == id)
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "idp": {"issuer": "https://idp.example", "client_id": "lanyard"},
        "servers": [
            {"id": "docs", "display_name": "Docs", "url": "https://docs.example/mcp", "client_id": "c1"},
            {"id": "ci", "display_name": "CI", "url": "https://ci.example/mcp", "client_id": "c2",
             "mode": "client-credentials",
             "client_auth": {"method": "client_secret_basic", "secret": {"env": "CI_SECRET"}}}
        ]
    }"#;

    #[test]
    fn parses_a_good_policy_with_defaults() {
        let p = Policy::from_json(GOOD, "test").expect("valid");
        assert_eq!(p.idp.as_ref().map(|i| i.scopes.len()), Some(3));
        assert_eq!(p.servers[1].mode, ServerMode::ClientCredentials);
        assert_eq!(p.settings.max_concurrency, 32);
    }

    #[test]
    fn unknown_key_names_its_path() {
        let bad = GOOD.replace(
            "\"display_name\": \"Docs\"",
            "\"display_name\": \"Docs\", \"urll\": 1",
        );
        let errs = Policy::from_json(&bad, "p.json").expect_err("unknown key");
        assert_eq!(errs[0].key_path, "servers[0]");
        assert!(
            errs[0].message.contains("unknown field `urll`"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn plain_http_needs_dev_mode_and_duplicates_are_named() {
        let bad = GOOD
            .replace("https://docs.example/mcp", "http://127.0.0.1:1/mcp")
            .replace("\"ci\"", "\"docs\"");
        let errs = Policy::from_json(&bad, "p.json").expect_err("invalid");
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with("p.json: servers[0].url:") && e.contains("dev_mode")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|e| e.contains("servers[1].id") && e.contains("duplicate")),
            "{shown:?}"
        );
        let dev = bad
            .replace("\"servers\"", "\"dev_mode\": true, \"servers\"")
            .replace(
                "\"id\": \"docs\", \"display_name\": \"CI\"",
                "\"id\": \"ci\", \"display_name\": \"CI\"",
            );
        assert!(Policy::from_json(&dev, "p.json").is_ok());
    }
}
