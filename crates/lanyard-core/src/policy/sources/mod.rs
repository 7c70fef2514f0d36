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

/// What a source read: its layers, and the problems that kept a part of it from being read.
#[derive(Debug, Default)]
pub struct SourceRead {
    pub layers: Vec<Layer>,
    pub errors: Vec<PolicyError>,
}

/// Reads the optional JSON file `path` as one `scope` layer: nothing when it does not exist, an
/// error when `check` refuses its metadata (ownership) or it cannot be read or parsed.
pub(crate) fn read_json_file(
    path: &Path,
    scope: Scope,
    read: &mut SourceRead,
    check: impl FnOnce(&std::fs::Metadata) -> Result<(), String>,
) {
    let name = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            read.errors
                .push(PolicyError::new(&name, "", format!("cannot read: {e}")));
            return;
        }
    };
    let text = check(&meta)
        .and_then(|()| std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}")));
    match text {
        Ok(text) => match parse_json(&text, &name) {
            Ok(document) => read.layers.push(Layer::new(name, scope, document)),
            Err(errors) => read.errors.extend(errors),
        },
        Err(message) => read.errors.push(PolicyError::new(&name, "", message)),
    }
}
