//! The managed policy: which IdP, which MCP servers, how Lanyard authenticates at each, and how the
//! app behaves — one model ([`model`]) read from every operating system's management channel.
//!
//! Sources ([`sources`]) turn Linux files, macOS managed preferences and the Windows registry into
//! [`Layer`]s; [`merge`] combines them into a [`PolicySnapshot`] that remembers each value's origin
//! and lock; [`validate`] names every problem with its source and key path; [`schema`] is the JSON
//! Schema generated from the model; [`watch`] notices changes so the engine can apply them live.
//! Secrets never appear inline: a policy *refers* to a keychain entry, a protected file or an
//! environment variable. Nothing here talks to the network or to the engine.

pub mod merge;
mod model;
pub mod schema;
pub mod sources;
pub mod templates;
pub mod validate;
pub mod watch;

use std::path::Path;

pub use merge::{resolve, Layer, Origin, PolicySnapshot, Scope};
pub use model::*;
pub use validate::{FileChecks, PolicyError};

impl Policy {
    /// Parses and validates one policy document (JSON) named `source_name`, as a mandatory source.
    pub fn from_json(text: &str, source_name: &str) -> Result<Policy, Vec<PolicyError>> {
        let document = parse_json(text, source_name)?;
        resolve(
            &[Layer::new(source_name, Scope::Mandatory, document)],
            FileChecks::Readable,
        )
        .map(|snapshot| snapshot.policy)
    }

    /// Reads and validates one policy file (no ownership checks: see [`sources::linux_files`]).
    pub fn load(path: &Path) -> Result<Policy, Vec<PolicyError>> {
        Self::load_with(path, FileChecks::Readable)
    }

    /// Like [`Policy::load`], choosing whether the key, secret and CA files it names must be
    /// readable here (`Skip` for work that needs no secret, such as wiring AI clients).
    pub fn load_with(path: &Path, files: FileChecks) -> Result<Policy, Vec<PolicyError>> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![PolicyError::new(&name, "", format!("cannot read: {e}"))])?;
        let document = parse_json(&text, &name)?;
        resolve(&[Layer::new(&name, Scope::Mandatory, document)], files)
            .map(|snapshot| snapshot.policy)
    }

    /// Every problem of a parsed policy, attributed to `source_name`.
    pub fn validate(&self, source_name: &str) -> Vec<PolicyError> {
        validate::check_semantics(self, FileChecks::Readable)
            .into_iter()
            .map(|(path, message)| PolicyError::new(source_name, &path, message))
            .collect()
    }
}

/// Parses JSON text, or names the syntax error with its line and column.
pub fn parse_json(text: &str, source_name: &str) -> Result<serde_json::Value, Vec<PolicyError>> {
    serde_json::from_str(text).map_err(|e| {
        vec![PolicyError::new(
            source_name,
            "",
            format!("not valid JSON: {e}"),
        )]
    })
}
