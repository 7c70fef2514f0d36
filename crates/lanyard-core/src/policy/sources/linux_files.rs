//! Linux policy files: the mandatory `/etc/lanyard/policy.json` plus `/etc/lanyard/policy.d/*.json`
//! (in name order, later files win) and the user's `$XDG_CONFIG_HOME/lanyard/config.json`.
//!
//! A mandatory file, the fragments directory and, for the system locations, every directory
//! above them must be owned by root — or, for a policy path the user named on the command line,
//! by the user running Lanyard (then only the file and the fragments directory are judged) — and
//! not writable by group or others. Each file is opened once and judged on the open handle
//! ([`crate::admin_files`]); a part that fails is ignored with a named error in
//! [`SourceRead::refused`] and the rest of the policy still applies. The user's file needs no such
//! check: it can only hold settings an administrator did not lock. This module reads files; it
//! does not merge or validate meaning.

use std::path::{Path, PathBuf};

use super::{read_user_json, SourceRead};
use crate::admin_files::Trust;
use crate::policy::{PolicyError, Scope};

/// The files that make up the policy on Linux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxPolicyPaths {
    /// The main mandatory file.
    pub mandatory_file: PathBuf,
    /// Mandatory fragments (`*.json`, read in name order).
    pub mandatory_dir: PathBuf,
    /// The user's own settings, if any.
    pub user_file: Option<PathBuf>,
    /// Besides root, the owner a mandatory file may have (the user who named it explicitly).
    pub trusted_owner: Option<u32>,
    /// Every directory from this one down to the mandatory files must be root's and not writable
    /// by group or others: `/` for the system locations, a test's root for a copy of them, `None`
    /// for a file the user named (only the file and the fragments directory are judged).
    pub ancestors_from: Option<PathBuf>,
}

/// The system-wide policy file.
pub const SYSTEM_POLICY_FILE: &str = "/etc/lanyard/policy.json";

impl LinuxPolicyPaths {
    /// The standard locations.
    pub fn system() -> Self {
        let mut paths = Self::for_policy_file(Path::new(SYSTEM_POLICY_FILE));
        paths.trusted_owner = None;
        paths.ancestors_from = Some(PathBuf::from("/"));
        paths
    }

    /// `file`, its fragments directory `<file without .json>.d` next to it, and the user's
    /// settings; `file` may also be owned by the user running Lanyard (they chose it).
    pub fn for_policy_file(file: &Path) -> Self {
        Self {
            mandatory_file: file.to_owned(),
            mandatory_dir: file.with_extension("d"),
            user_file: user_config_file(),
            trusted_owner: current_uid(),
            ancestors_from: None,
        }
    }

    /// How the mandatory files are judged.
    pub fn trust(&self) -> Trust {
        Trust {
            also_uid: self.trusted_owner,
            ancestors_from: self.ancestors_from.clone(),
        }
    }

    /// Every directory whose changes may change the policy (for the watcher).
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.mandatory_dir.clone()];
        if let Some(parent) = self.mandatory_file.parent() {
            dirs.push(parent.to_owned());
        }
        if let Some(parent) = self.user_file.as_deref().and_then(Path::parent) {
            dirs.push(parent.to_owned());
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Reads every file that exists.
    pub fn read(&self) -> SourceRead {
        let mut read = SourceRead::default();
        let mut mandatory_found = self.read_mandatory(&self.mandatory_file, &mut read);
        mandatory_found |= self.read_fragments(&mut read);
        if !mandatory_found && read.errors.is_empty() {
            read.errors.push(PolicyError::new(
                &self.mandatory_file.display().to_string(),
                "",
                format!(
                    "no policy is installed (neither this file nor {}/*.json exists)",
                    self.mandatory_dir.display()
                ),
            ));
        }
        read.refusals_are_errors_without_admin_layers();
        if let Some(user_file) = &self.user_file {
            read_user_json(user_file, &mut read);
        }
        read
    }

    /// Reads one mandatory file; whether it exists.
    #[cfg(unix)]
    fn read_mandatory(&self, path: &Path, read: &mut SourceRead) -> bool {
        super::read_admin_json(path, Scope::Mandatory, &self.trust(), read)
    }

    /// Windows has no owner and mode bits in std's metadata: a file read by these rules there is
    /// one the user named (`--policy`); the managed channels are the registry and `%ProgramData%`
    /// (see `platform::windows`).
    #[cfg(not(unix))]
    fn read_mandatory(&self, path: &Path, read: &mut SourceRead) -> bool {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                super::push_parsed(&text, &name, Scope::Mandatory, read);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                read.errors
                    .push(PolicyError::new(&name, "", format!("cannot read: {e}")));
                true
            }
        }
    }

    /// Reads the fragments directory's `*.json` files in name order; whether any exists.
    #[cfg(unix)]
    fn read_fragments(&self, read: &mut SourceRead) -> bool {
        use crate::admin_files::{open_trusted_dir, AdminFileError};
        let dir_name = self.mandatory_dir.display().to_string();
        let dir = match open_trusted_dir(&self.mandatory_dir, &self.trust()) {
            Ok(Some(dir)) => dir,
            Ok(None) => return false,
            Err(AdminFileError::Untrusted(m)) => {
                read.refused.push(super::refusal(&dir_name, &m));
                return true;
            }
            Err(AdminFileError::Unreadable(m)) => {
                read.errors.push(PolicyError::new(&dir_name, "", m));
                return true;
            }
        };
        let files = match dir.names_ending(".json") {
            Ok(files) => files,
            Err(e) => {
                read.errors
                    .push(PolicyError::new(&dir_name, "", e.to_string()));
                return true;
            }
        };
        let mut found = false;
        for file in files {
            let name = file.display().to_string();
            match dir.read_text(&file) {
                Ok(Some(text)) => {
                    found = true;
                    super::push_parsed(&text, &name, Scope::Mandatory, read);
                }
                Ok(None) => {}
                Err(AdminFileError::Untrusted(m)) => {
                    found = true;
                    read.refused.push(super::refusal(&name, &m));
                }
                Err(AdminFileError::Unreadable(m)) => {
                    found = true;
                    read.errors.push(PolicyError::new(&name, "", m));
                }
            }
        }
        found
    }

    #[cfg(not(unix))]
    fn read_fragments(&self, read: &mut SourceRead) -> bool {
        let mut found = false;
        if self.mandatory_dir.is_dir() {
            match fragment_files(&self.mandatory_dir) {
                Ok(files) => {
                    for file in files {
                        found |= self.read_mandatory(&file, read);
                    }
                }
                Err(e) => read.errors.push(PolicyError::new(
                    &self.mandatory_dir.display().to_string(),
                    "",
                    format!("cannot read: {e}"),
                )),
            }
        }
        found
    }
}

/// `*.json` files of `dir`, in name order, hidden files skipped.
#[cfg(not(unix))]
fn fragment_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// No uids on Windows.
#[cfg(not(unix))]
fn current_uid() -> Option<u32> {
    None
}

/// `$XDG_CONFIG_HOME/lanyard/config.json`, else `~/.config/lanyard/config.json`.
pub fn user_config_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("lanyard").join("config.json"))
}

/// The uid this process runs as (rustix: no unsafe code here, and no `/proc`, which macOS lacks).
#[cfg(unix)]
fn current_uid() -> Option<u32> {
    Some(rustix::process::getuid().as_raw())
}

impl LinuxPolicyPaths {
    /// Reads, merges and validates the policy (every referenced file must be readable).
    pub fn load(&self) -> Result<crate::policy::PolicySnapshot, Vec<PolicyError>> {
        let read = self.read();
        if !read.errors.is_empty() {
            return Err(read.errors);
        }
        let mut snapshot =
            crate::policy::resolve(&read.layers, crate::policy::FileChecks::Readable)?;
        snapshot.refused = read.refused;
        Ok(snapshot)
    }
}

impl LinuxPolicyPaths {
    /// The standard locations for the system file, else `file` as named by the user.
    pub fn for_named_file(file: &Path) -> Self {
        if file == Path::new(SYSTEM_POLICY_FILE) {
            Self::system()
        } else {
            Self::for_policy_file(file)
        }
    }
}
