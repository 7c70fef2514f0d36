//! Noticing policy changes: watches the directories that hold policy files (`notify`: inotify on
//! Linux, FSEvents on macOS) and, once a burst of changes has settled, re-reads the policy and
//! hands the result to the host, which applies it to the engine or reports why it could not.
//!
//! Watching directories rather than files catches editors and MDM agents that replace a file by
//! renaming a new one over it, and directories created later (`policy.d`). The Windows registry is
//! watched by [`super::sources::windows_registry`] and settles through the same [`settle`]. This
//! module never judges a policy and never talks to the engine.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::sources::linux_files::LinuxPolicyPaths;
use super::{PolicyError, PolicySnapshot};

/// A running watch; dropping it stops watching.
#[derive(Debug)]
pub struct PolicyWatcher {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PolicyWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long changes must be quiet before the policy is re-read.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(250);

/// Calls `on_change` (on a tokio task) after changes in any of `dirs` settle for `debounce`.
/// Directories that do not exist yet are watched once they appear (noticed through a change in a
/// watched parent). Must be called inside a tokio runtime.
pub fn watch_dirs(
    dirs: Vec<PathBuf>,
    debounce: Duration,
    mut on_change: impl FnMut() + Send + 'static,
) -> Result<PolicyWatcher, String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let policy_dirs = dirs.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if event.kind.is_access() => {}
            // Only policy files (and the policy directories appearing) count: a log or socket
            // that shares a directory with the policy must not wake the agent, let alone loop.
            Ok(event) if !event.paths.iter().any(|p| is_policy_path(p, &policy_dirs)) => {}
            Ok(_) => {
                let _ = tx.send(());
            }
            Err(e) => warn!(error = %e, "watching the policy failed"),
        })
        .map_err(|e| format!("cannot watch the policy files: {e}"))?;
    let mut watched = BTreeSet::new();
    let arm = move |watcher: &mut notify::RecommendedWatcher, watched: &mut BTreeSet<PathBuf>| {
        for dir in &dirs {
            if !watched.contains(dir) && dir.is_dir() {
                match watcher.watch(dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        debug!(dir = %dir.display(), "watching for policy changes");
                        watched.insert(dir.clone());
                    }
                    Err(e) => warn!(dir = %dir.display(), error = %e, "cannot watch"),
                }
            }
        }
    };
    arm(&mut watcher, &mut watched);
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            settle(&mut rx, debounce).await;
            arm(&mut watcher, &mut watched);
            on_change();
        }
    });
    Ok(PolicyWatcher { task })
}

/// Waits until no change has arrived on `rx` for `debounce`: a burst (write, rename, chmod; a
/// Group Policy refresh rewriting many values) is read once.
pub(crate) async fn settle(rx: &mut mpsc::UnboundedReceiver<()>, debounce: Duration) {
    loop {
        tokio::time::sleep(debounce).await;
        let mut more = false;
        while rx.try_recv().is_ok() {
            more = true;
        }
        if !more {
            return;
        }
    }
}

impl PolicyWatcher {
    /// A watcher whose work is `task` (aborted, with everything it owns, when the watcher drops).
    #[cfg_attr(not(windows), allow(dead_code))] // the Windows registry watch
    pub(crate) fn from_task(task: tokio::task::JoinHandle<()>) -> Self {
        Self { task }
    }
}

/// Whether a changed path can matter to the policy: a policy file, or a watched directory itself.
fn is_policy_path(path: &std::path::Path, dirs: &[PathBuf]) -> bool {
    let is_policy_file = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "json" | "plist" | "mobileconfig"));
    is_policy_file || dirs.iter().any(|d| d == path)
}

/// Watches the Linux policy files and calls `on_result` with every re-read policy.
pub fn watch_linux(
    paths: LinuxPolicyPaths,
    debounce: Duration,
    mut on_result: impl FnMut(Result<PolicySnapshot, Vec<PolicyError>>) + Send + 'static,
) -> Result<PolicyWatcher, String> {
    let dirs = paths.watched_dirs();
    watch_dirs(dirs, debounce, move || on_result(paths.load()))
}
