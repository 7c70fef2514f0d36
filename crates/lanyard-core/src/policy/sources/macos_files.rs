//! Where the policy lives on macOS, and in which order its parts count: the optional JSON file
//! `/Library/Application Support/Lanyard/policy.json` (mandatory), the per-user managed
//! preferences `/Library/Managed Preferences/<user>/dev.lanyard.tray.plist`, the machine-wide
//! `/Library/Managed Preferences/dev.lanyard.tray.plist` (forced values are mandatory, set-once
//! values recommended; see [`super::macos_plist`]) and the user's own
//! `~/Library/Application Support/Lanyard/config.json`.
//!
//! Precedence within the mandatory scope follows that order: the machine-wide profile beats the
//! per-user one, and both beat the JSON file, so an MDM profile always has the last word over a
//! file an installer or script left behind. Servers are the union of every part (the same id in
//! two parts is an error). The JSON file and the managed-preferences files get the same check as
//! on Linux (root-owned, not writable by group or others, and so is every directory above them),
//! on the open handle; a part that fails is ignored with a named error. Every path is a field, so the rules are tested on any OS with
//! a temporary directory as the root; this module reads and orders, it never validates meaning.

use std::path::PathBuf;

use super::macos_plist::{read_managed_preferences, MANAGED_PREFERENCES_DIR, PREFERENCE_DOMAIN};
use super::{read_admin_json, read_user_json, SourceRead};
use crate::admin_files::Trust;
use crate::policy::{PolicyError, Scope};

/// The administrator's JSON file on macOS (optional: profiles are the usual channel).
pub const MACOS_POLICY_FILE: &str = "/Library/Application Support/Lanyard/policy.json";

/// The parts of the policy on macOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacosPolicyPaths {
    /// `/Library/Managed Preferences` (or a test root standing in for it).
    pub managed_dir: PathBuf,
    /// The short user name whose per-user managed preferences apply, if known.
    pub user: Option<String>,
    /// The administrator's optional JSON file.
    pub json_file: PathBuf,
    /// The user's own settings, if any.
    pub user_file: Option<PathBuf>,
    /// Besides root, the owner the JSON file may have (tests: the user running them).
    pub trusted_owner: Option<u32>,
    /// Every directory from this one down to the administrator's files must be root's and not
    /// writable by group or others: `/` on a Mac, a test's temporary root elsewhere.
    pub ancestors_from: Option<PathBuf>,
}

impl MacosPolicyPaths {
    /// The standard locations for the user running Lanyard (`$USER`, else `$LOGNAME`).
    pub fn system() -> Self {
        let user = ["USER", "LOGNAME"]
            .iter()
            .filter_map(std::env::var_os)
            .map(|v| v.to_string_lossy().into_owned())
            .find(|name| is_plain_user_name(name));
        let user_file = std::env::var_os("HOME").map(|home| {
            PathBuf::from(home)
                .join("Library/Application Support/Lanyard")
                .join("config.json")
        });
        Self {
            managed_dir: PathBuf::from(MANAGED_PREFERENCES_DIR),
            user,
            json_file: PathBuf::from(MACOS_POLICY_FILE),
            user_file,
            trusted_owner: None,
            ancestors_from: Some(PathBuf::from("/")),
        }
    }

    /// How the administrator's files are judged.
    pub fn trust(&self) -> Trust {
        Trust {
            also_uid: self.trusted_owner,
            ancestors_from: self.ancestors_from.clone(),
        }
    }

    /// Reads every part that exists, in precedence order (the last mandatory layer wins).
    pub fn read(&self) -> SourceRead {
        let mut read = SourceRead::default();
        let trust = self.trust();
        read_admin_json(&self.json_file, Scope::Mandatory, &trust, &mut read);
        read.extend(read_managed_preferences(
            &self.managed_dir,
            self.user.as_deref(),
            &trust,
        ));
        if read.layers.is_empty() && read.errors.is_empty() && read.refused.is_empty() {
            read.errors.push(PolicyError::new(
                &self.managed_dir.join(format!("{PREFERENCE_DOMAIN}.plist")).display().to_string(),
                "",
                format!(
                    "no policy is installed (no configuration profile for {PREFERENCE_DOMAIN}, and {} does not exist)",
                    self.json_file.display()
                ),
            ));
        }
        read.refusals_are_errors_without_admin_layers();
        if let Some(user_file) = &self.user_file {
            read_user_json(user_file, &mut read);
        }
        read
    }

    /// Every file this policy is read from, in precedence order (for `lanyard policy show`).
    pub fn locations(&self) -> Vec<String> {
        let mut files = vec![format!(
            "{} (mandatory, optional)",
            self.json_file.display()
        )];
        for plist in
            super::macos_plist::managed_preference_files(&self.managed_dir, self.user.as_deref())
        {
            files.push(format!(
                "{} (managed preferences: forced = mandatory, set-once = recommended)",
                plist.display()
            ));
        }
        if let Some(user_file) = &self.user_file {
            files.push(format!("{} (user settings)", user_file.display()));
        }
        files
    }

    /// Every directory whose changes may change the policy. The parent of the managed-preferences
    /// directory is included so that the directory's creation (the first profile) is noticed.
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.managed_dir.clone()];
        if let Some(parent) = self.managed_dir.parent() {
            dirs.push(parent.to_owned());
        }
        if let Some(user) = &self.user {
            dirs.push(self.managed_dir.join(user));
        }
        for file in std::iter::once(&self.json_file).chain(self.user_file.as_ref()) {
            if let Some(parent) = file.parent() {
                dirs.push(parent.to_owned());
            }
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

/// A user name that can name a directory: no separators, not `.` or `..`, not empty.
fn is_plain_user_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}
