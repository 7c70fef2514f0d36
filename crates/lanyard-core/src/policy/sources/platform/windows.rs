//! Windows: Group Policy in the registry (`HKCU` then `HKLM` `SOFTWARE\Policies\Lanyard`, the
//! machine winning) over an optional `%ProgramData%\Lanyard\policy.json`; registry changes are
//! noticed by [`windows_registry::watch_registry`], the file's by `notify`. This module composes
//! the two; the registry rules are [`windows_registry`]'s.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::PolicySource;
use crate::admin_files::Trust;
use crate::policy::sources::{read_admin_json, windows_registry, SourceRead};
use crate::policy::watch::{watch_dirs, PolicyWatcher};
use crate::policy::{PolicyError, Scope};

/// The registry keys and the optional JSON file.
struct WindowsSources {
    json_file: Option<PathBuf>,
}

pub(super) fn default_source() -> Arc<dyn PolicySource> {
    let json_file = std::env::var_os("ProgramData")
        .filter(|v| !v.is_empty())
        .map(|dir| PathBuf::from(dir).join("Lanyard").join("policy.json"));
    Arc::new(WindowsSources { json_file })
}

impl PolicySource for WindowsSources {
    fn read(&self) -> SourceRead {
        let mut read = SourceRead::default();
        // %ProgramData% lets every user create a folder (theirs) and, through an inherited entry,
        // add files to a new folder: the file and its folder must belong to an administrator
        // and be writable by administrators alone (the MSI creates the folder so).
        if let Some(file) = &self.json_file {
            let trust = Trust {
                also_uid: None,
                ancestors_from: file.parent().map(Into::into),
            };
            read_admin_json(file, Scope::Mandatory, &trust, &mut read);
        }
        read.extend(windows_registry::read_registry());
        if read.layers.is_empty() && read.errors.is_empty() && read.refused.is_empty() {
            read.errors.push(PolicyError::new(
                windows_registry::MACHINE_KEY,
                "",
                "no policy is installed (neither policy key exists, nor %ProgramData%\\Lanyard\\policy.json)",
            ));
        }
        read.refusals_are_errors_without_admin_layers();
        read
    }

    fn locations(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(file) = &self.json_file {
            lines.push(format!("{} (mandatory, optional)", file.display()));
        }
        lines.push(format!("{} (mandatory)", windows_registry::USER_KEY));
        lines.push(format!(
            "{} (mandatory, wins)",
            windows_registry::MACHINE_KEY
        ));
        lines
    }

    fn watch(
        &self,
        debounce: Duration,
        on_change: Box<dyn FnMut() + Send>,
    ) -> Result<Vec<PolicyWatcher>, String> {
        let shared = Arc::new(Mutex::new(on_change));
        let notify = move |shared: &Arc<Mutex<Box<dyn FnMut() + Send>>>| {
            let shared = Arc::clone(shared);
            move || {
                // A poisoned lock means an earlier re-read panicked; the next one may succeed.
                let mut on_change = shared.lock().unwrap_or_else(|e| e.into_inner());
                on_change();
            }
        };
        let mut watchers = vec![windows_registry::watch_registry(debounce, notify(&shared))?];
        if let Some(dir) = self.json_file.as_ref().and_then(|f| f.parent()) {
            let parent = dir.parent().map(|p| p.to_owned());
            let dirs = std::iter::once(dir.to_owned()).chain(parent).collect();
            watchers.push(watch_dirs(dirs, debounce, notify(&shared))?);
        }
        Ok(watchers)
    }
}
