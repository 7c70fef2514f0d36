//! Where policy comes from on each operating system, turned into [`Layer`]s for the merge.
//!
//! Each submodule reads one management channel and owns its rules (file ownership on Linux,
//! forced versus set-once on macOS, machine versus user hive on Windows). None of them validates
//! meaning or decides precedence beyond naming each layer's scope.

pub mod linux_files;
pub mod macos_plist;
pub mod windows_registry;

use super::{Layer, PolicyError};

/// What a source read: its layers, and the problems that kept a part of it from being read.
#[derive(Debug, Default)]
pub struct SourceRead {
    pub layers: Vec<Layer>,
    pub errors: Vec<PolicyError>,
}
