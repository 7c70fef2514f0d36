//! Where policy comes from on each operating system, turned into [`Layer`]s for the merge.
//!
//! Each submodule reads one management channel and owns its rules (file ownership on Linux,
//! forced versus set-once on macOS, machine versus user hive on Windows). [`platform`] is the one
//! port the hosts use: this OS's default sources, or a file named on the command line. None of
//! them validates meaning or decides precedence beyond naming each layer's scope and order.

pub mod linux_files;
pub mod macos_files;
pub mod macos_plist;
pub mod platform;
pub mod windows_registry;

use std::path::Path;

use super::{parse_json, Layer, PolicyError, Scope};
use crate::admin_files::{self, AdminFileError, Trust};

/// What a source read: its layers, the problems that kept a part of it from being read, and the
/// administrator's parts it ignored because someone else could have written them.
#[derive(Debug, Default)]
pub struct SourceRead {
    pub layers: Vec<Layer>,
    /// Problems that make the policy unusable until fixed (a part unreadable or not parsable).
    pub errors: Vec<PolicyError>,
    /// Parts ignored because someone other than an administrator owns them or may change them
    /// (see [`crate::admin_files`]); the rest of the policy still applies.
    pub refused: Vec<PolicyError>,
}

impl SourceRead {
    /// When no administrator's part could be used and some were refused, the refusals are what
    /// makes the policy unusable: they become errors.
    pub(crate) fn refusals_are_errors_without_admin_layers(&mut self) {
        if !self.layers.iter().any(|l| l.scope != Scope::User) && !self.refused.is_empty() {
            self.errors.append(&mut self.refused);
        }
    }

    /// Adds `other`'s layers, errors and refusals after this one's.
    pub(crate) fn extend(&mut self, other: SourceRead) {
        self.layers.extend(other.layers);
        self.errors.extend(other.errors);
        self.refused.extend(other.refused);
    }
}

/// Reads the user's optional JSON file `path` as a [`Scope::User`] layer: nothing when it does
/// not exist, an error when it cannot be read or parsed. No ownership check: a user layer can
/// hold only what an administrator left to the user.
pub(crate) fn read_user_json(path: &Path, read: &mut SourceRead) {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => push_parsed(&text, &name, Scope::User, read),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => read
            .errors
            .push(PolicyError::new(&name, "", format!("cannot read: {e}"))),
    }
}

/// Reads the administrator's optional JSON file `path` as a `scope` layer, opened once and judged
/// on the open handle by `trust` ([`crate::admin_files`]). Returns whether it exists. A file
/// someone else could have written is refused by name (and ignored); one that cannot be read or
/// parsed is an error.
pub(crate) fn read_admin_json(
    path: &Path,
    scope: Scope,
    trust: &Trust,
    read: &mut SourceRead,
) -> bool {
    let name = path.display().to_string();
    match admin_files::read_trusted_text(path, trust) {
        Ok(Some(text)) => {
            push_parsed(&text, &name, scope, read);
            true
        }
        Ok(None) => false,
        Err(AdminFileError::Untrusted(message)) => {
            read.refused.push(refusal(&name, &message));
            true
        }
        Err(AdminFileError::Unreadable(message)) => {
            read.errors.push(PolicyError::new(&name, "", message));
            true
        }
    }
}

/// The error naming an administrator's part that was ignored, and why.
pub(crate) fn refusal(name: &str, message: &str) -> PolicyError {
    PolicyError::new(name, "", format!("ignored: {message}"))
}

pub(crate) fn push_parsed(text: &str, name: &str, scope: Scope, read: &mut SourceRead) {
    match parse_json(text, name) {
        Ok(document) => read.layers.push(Layer::new(name, scope, document)),
        Err(errors) => read.errors.extend(errors),
    }
}
