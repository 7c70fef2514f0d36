//! Linux policy files: the mandatory `/etc/lanyard/policy.json` plus `/etc/lanyard/policy.d/*.json`
//! (in name order, later files win) and the user's `$XDG_CONFIG_HOME/lanyard/config.json`.
//!
//! A mandatory file (and its directory) is refused with a clear error unless it is owned by root —
//! or, for a policy path the user named on the command line, by the user running Lanyard — and not
//! writable by group or others. The user's file needs no such check: it can only hold settings an
//! administrator did not lock. This module reads files; it does not merge or validate meaning.

use std::path::{Path, PathBuf};

use super::SourceRead;
use crate::policy::{parse_json, Layer, PolicyError, Scope};

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
}

/// The system-wide policy file.
pub const SYSTEM_POLICY_FILE: &str = "/etc/lanyard/policy.json";

impl LinuxPolicyPaths {
    /// The standard locations.
    pub fn system() -> Self {
        let mut paths = Self::for_policy_file(Path::new(SYSTEM_POLICY_FILE));
        paths.trusted_owner = None;
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
        let mut mandatory_found = false;
        match std::fs::metadata(&self.mandatory_file) {
            Ok(_) => {
                mandatory_found = true;
                self.read_mandatory(&self.mandatory_file, &mut read);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => read.errors.push(PolicyError::new(
                &self.mandatory_file.display().to_string(),
                "",
                format!("cannot read: {e}"),
            )),
        }
        if self.mandatory_dir.is_dir() {
            let dir_name = self.mandatory_dir.display().to_string();
            match std::fs::metadata(&self.mandatory_dir) {
                Ok(meta) => {
                    if let Err(message) = self.check_protected(&meta) {
                        read.errors.push(PolicyError::new(&dir_name, "", message));
                        return read;
                    }
                }
                Err(e) => {
                    read.errors
                        .push(PolicyError::new(&dir_name, "", format!("cannot read: {e}")));
                    return read;
                }
            }
            match fragment_files(&self.mandatory_dir) {
                Ok(files) => {
                    for file in files {
                        mandatory_found = true;
                        self.read_mandatory(&file, &mut read);
                    }
                }
                Err(e) => {
                    read.errors
                        .push(PolicyError::new(&dir_name, "", format!("cannot read: {e}")))
                }
            }
        }
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
        if let Some(user_file) = &self.user_file {
            match std::fs::read_to_string(user_file) {
                Ok(text) => {
                    let name = user_file.display().to_string();
                    match parse_json(&text, &name) {
                        Ok(document) => read.layers.push(Layer::new(name, Scope::User, document)),
                        Err(errors) => read.errors.extend(errors),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => read.errors.push(PolicyError::new(
                    &user_file.display().to_string(),
                    "",
                    format!("cannot read: {e}"),
                )),
            }
        }
        read
    }

    fn read_mandatory(&self, path: &Path, read: &mut SourceRead) {
        let name = path.display().to_string();
        let checked = std::fs::metadata(path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|meta| self.check_protected(&meta))
            .and_then(|()| std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}")));
        match checked {
            Ok(text) => match parse_json(&text, &name) {
                Ok(document) => read
                    .layers
                    .push(Layer::new(name, Scope::Mandatory, document)),
                Err(errors) => read.errors.extend(errors),
            },
            Err(message) => read.errors.push(PolicyError::new(&name, "", message)),
        }
    }

    /// Refuses a mandatory file or directory that someone other than root could change.
    #[cfg(unix)]
    pub fn check_protected(&self, meta: &std::fs::Metadata) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;

        let uid = meta.uid();
        if uid != 0 && Some(uid) != self.trusted_owner {
            return Err(format!(
                "refused: owned by uid {uid}, but a mandatory policy must be owned by root"
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(format!(
                "refused: mode {mode:04o} lets group or others write it; use chmod go-w"
            ));
        }
        Ok(())
    }
}

/// Windows has no owner and mode bits in std's metadata; a policy file there is one the user named
/// (`--policy`) or one under `%ProgramData%`, whose default ACL lets only administrators write. The
/// registry is the managed channel on Windows.
#[cfg(not(unix))]
impl LinuxPolicyPaths {
    pub fn check_protected(&self, _meta: &std::fs::Metadata) -> Result<(), String> {
        Ok(())
    }
}

/// `*.json` files of `dir`, in name order, hidden files skipped.
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
        crate::policy::resolve(&read.layers, crate::policy::FileChecks::Readable)
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
