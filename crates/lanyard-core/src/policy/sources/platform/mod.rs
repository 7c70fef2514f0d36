//! The port the hosts (`lanyard agent`, the tray app) read and watch the policy through:
//! [`PolicySources::platform`] is this operating system's management channel, and
//! [`PolicySources::file`] a policy file named on the command line (`--policy`, `LANYARD_POLICY`:
//! tests, demos and administrators trying a file), which works the same on every OS.
//!
//! | OS      | default sources (later wins among mandatory ones)                                   |
//! |---------|--------------------------------------------------------------------------------------|
//! | Linux   | `/etc/lanyard/policy.json`, `/etc/lanyard/policy.d/*.json`, user `config.json`       |
//! | macOS   | `/Library/Application Support/Lanyard/policy.json`, managed preferences (per-user, then machine-wide), user `config.json` |
//! | Windows | `%ProgramData%\Lanyard\policy.json`, `HKCU\…\Policies\Lanyard`, `HKLM\…\Policies\Lanyard` |
//!
//! Each OS has one submodule, chosen here by `cfg` and nowhere else; the reading rules themselves
//! live in [`super::linux_files`], [`super::macos_files`] and [`super::windows_registry`], which
//! compile (and are tested) on every OS where they can be. This module neither validates meaning
//! nor talks to the engine: it hands whole re-read snapshots to the host.

#[cfg(all(unix, not(target_os = "macos")))]
#[path = "linux.rs"]
mod os;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod os;
#[cfg(windows)]
#[path = "windows.rs"]
mod os;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::linux_files::LinuxPolicyPaths;
use super::macos_files::MacosPolicyPaths;
use super::SourceRead;
use crate::policy::watch::{watch_dirs, PolicyWatcher};
use crate::policy::{resolve, FileChecks, PolicyError, PolicySnapshot};

/// One way of getting the policy: read it whole, say where from, notice changes.
pub trait PolicySource: Send + Sync + 'static {
    /// Reads every part that exists, in precedence order.
    fn read(&self) -> SourceRead;
    /// Where the policy is read from, one line per part (for `lanyard policy show --origins`).
    fn locations(&self) -> Vec<String>;
    /// Calls `on_change` once a burst of changes to any part has settled for `debounce`.
    fn watch(
        &self,
        debounce: Duration,
        on_change: Box<dyn FnMut() + Send>,
    ) -> Result<Vec<PolicyWatcher>, String>;
}

impl PolicySource for LinuxPolicyPaths {
    fn read(&self) -> SourceRead {
        LinuxPolicyPaths::read(self)
    }

    fn locations(&self) -> Vec<String> {
        let mut lines = vec![
            format!("{} (mandatory)", self.mandatory_file.display()),
            format!("{}/*.json (mandatory)", self.mandatory_dir.display()),
        ];
        if let Some(user_file) = &self.user_file {
            lines.push(format!("{} (user settings)", user_file.display()));
        }
        lines
    }

    fn watch(
        &self,
        debounce: Duration,
        on_change: Box<dyn FnMut() + Send>,
    ) -> Result<Vec<PolicyWatcher>, String> {
        watch_dirs(self.watched_dirs(), debounce, on_change).map(|w| vec![w])
    }
}

impl PolicySource for MacosPolicyPaths {
    fn read(&self) -> SourceRead {
        MacosPolicyPaths::read(self)
    }

    fn locations(&self) -> Vec<String> {
        MacosPolicyPaths::locations(self)
    }

    fn watch(
        &self,
        debounce: Duration,
        on_change: Box<dyn FnMut() + Send>,
    ) -> Result<Vec<PolicyWatcher>, String> {
        watch_dirs(self.watched_dirs(), debounce, on_change).map(|w| vec![w])
    }
}

/// Where the policy comes from for this process.
#[derive(Clone)]
pub struct PolicySources {
    source: Arc<dyn PolicySource>,
    explicit_file: Option<PathBuf>,
}

impl std::fmt::Debug for PolicySources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySources")
            .field("locations", &self.source.locations())
            .finish()
    }
}

impl PolicySources {
    /// This operating system's default sources (see the table above).
    pub fn platform() -> Self {
        Self {
            source: os::default_source(),
            explicit_file: None,
        }
    }

    /// A policy file named by the user, with its `.d` fragments and the user's settings, read by
    /// the Linux file rules on every OS (the file may be owned by the user who named it).
    pub fn file(path: &Path) -> Self {
        Self {
            source: Arc::new(LinuxPolicyPaths::for_named_file(path)),
            explicit_file: Some(path.to_owned()),
        }
    }

    /// `file` when one was named, else the platform default.
    pub fn chosen(file: Option<&Path>) -> Self {
        file.map_or_else(Self::platform, Self::file)
    }

    /// Like [`PolicySources::chosen`], but a named file is refused when this computer has a
    /// managed policy that does not set `dev_mode` ([`PolicySources::named_file_over`]).
    pub fn chosen_checked(file: Option<&Path>) -> Result<Self, String> {
        match file {
            None => Ok(Self::platform()),
            Some(file) => Self::named_file_over(&Self::platform(), file),
        }
    }

    /// The policy file `file` named on the command line (`--policy`, `LANYARD_POLICY`), which
    /// replaces every administrator's source — so it is refused while `managed` holds an
    /// administrator's policy, unless that policy sets `dev_mode` (a developer's machine). The
    /// error names the managed sources. Without a managed policy (a laptop under test, the demo)
    /// any file may be named.
    pub fn named_file_over(managed: &PolicySources, file: &Path) -> Result<Self, String> {
        let named = Self::file(file);
        if managed.explicit_file.is_none() && named.locations() == managed.locations() {
            return Ok(named);
        }
        let read = managed.read();
        let mut admin: Vec<(usize, &crate::policy::Layer)> = read
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.scope != crate::policy::Scope::User)
            .collect();
        if admin.is_empty() {
            return Ok(named);
        }
        admin.sort_by_key(|(i, l)| (l.scope, *i));
        let dev_mode = admin
            .iter()
            .filter_map(|(_, l)| {
                l.document
                    .get("dev_mode")
                    .and_then(serde_json::Value::as_bool)
            })
            .next_back()
            .unwrap_or(false);
        if dev_mode {
            return Ok(named);
        }
        let mut sources: Vec<&str> = admin.iter().map(|(_, l)| l.source.as_str()).collect();
        sources.dedup();
        Err(format!(
            "{} cannot replace this computer's managed policy ({}): a policy named with --policy or \
             LANYARD_POLICY is used only where the managed policy sets dev_mode. Remove --policy \
             and unset LANYARD_POLICY to use the managed policy.",
            file.display(),
            sources.join(", ")
        ))
    }

    /// Any source (tests: a [`MacosPolicyPaths`] under a temporary root).
    pub fn from_source(source: impl PolicySource) -> Self {
        Self {
            source: Arc::new(source),
            explicit_file: None,
        }
    }

    /// The file named on the command line, if the policy comes from one (passed on to a
    /// background agent so that it reads the same policy).
    pub fn explicit_file(&self) -> Option<&Path> {
        self.explicit_file.as_deref()
    }

    /// A short name for the policy as a whole, for messages: the named file, or the OS's channel.
    pub fn name(&self) -> String {
        self.explicit_file.as_ref().map_or_else(
            || "this computer's managed policy".to_owned(),
            |file| file.display().to_string(),
        )
    }

    /// Where the policy is read from, one line per part.
    pub fn locations(&self) -> Vec<String> {
        self.source.locations()
    }

    /// Reads every part that exists, unmerged.
    pub fn read(&self) -> SourceRead {
        self.source.read()
    }

    /// Reads, merges and validates the policy (every referenced file must be readable).
    pub fn load(&self) -> Result<PolicySnapshot, Vec<PolicyError>> {
        self.load_with(FileChecks::Readable)
    }

    /// Like [`PolicySources::load`], choosing whether referenced key, secret and CA files must be
    /// readable here.
    pub fn load_with(&self, files: FileChecks) -> Result<PolicySnapshot, Vec<PolicyError>> {
        let read = self.source.read();
        if !read.errors.is_empty() {
            return Err(read.errors);
        }
        let mut snapshot = resolve(&read.layers, files)?;
        snapshot.refused = read.refused;
        Ok(snapshot)
    }

    /// Re-reads the policy after every settled burst of changes and hands the result to
    /// `on_result` (on a tokio task or the OS's notification thread). Must be called inside a
    /// tokio runtime.
    pub fn watch(
        &self,
        debounce: Duration,
        mut on_result: impl FnMut(Result<PolicySnapshot, Vec<PolicyError>>) + Send + 'static,
    ) -> Result<SourcesWatcher, String> {
        let sources = self.clone();
        self.source
            .watch(debounce, Box::new(move || on_result(sources.load())))
            .map(|watchers| SourcesWatcher {
                _watchers: watchers,
            })
    }
}

/// A running watch of every part of the policy; dropping it stops watching.
#[derive(Debug)]
pub struct SourcesWatcher {
    _watchers: Vec<PolicyWatcher>,
}
