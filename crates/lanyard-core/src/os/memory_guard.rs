//! Keeping the agent's memory, which holds the session and every token, out of reach of core
//! dumps and of other processes.
//!
//! Linux: the process is made non-dumpable (`PR_SET_DUMPABLE` 0), so no core file is written
//! on a crash and processes of the same user can neither `ptrace` it nor read
//! `/proc/<pid>/mem` (root still can); the core-size limit is set to zero as well. macOS and the
//! other Unixes: the core-size limit only. Windows: nothing here (no core files by default;
//! Windows Error Reporting's LocalDumps, when an administrator configures them, are theirs to
//! protect). Callers log what [`keep_memory_private`] reports and carry on: none of it is a
//! reason not to start.

/// What was done, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryGuard {
    pub not_dumpable: Result<(), String>,
    pub no_core_files: Result<(), String>,
}

/// Applies the guards this OS has (see the module doc).
pub fn keep_memory_private() -> MemoryGuard {
    MemoryGuard {
        not_dumpable: not_dumpable(),
        no_core_files: no_core_files(),
    }
}

#[cfg(target_os = "linux")]
fn not_dumpable() -> Result<(), String> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("PR_SET_DUMPABLE: {e}"))
}

#[cfg(not(target_os = "linux"))]
fn not_dumpable() -> Result<(), String> {
    Err("not available on this OS".into())
}

#[cfg(unix)]
fn no_core_files() -> Result<(), String> {
    let zero = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    rustix::process::setrlimit(rustix::process::Resource::Core, zero)
        .map_err(|e| format!("RLIMIT_CORE: {e}"))
}

#[cfg(not(unix))]
fn no_core_files() -> Result<(), String> {
    Err("not available on this OS".into())
}

/// Whether this process is dumpable now (Linux; `None` elsewhere).
pub fn is_dumpable() -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::dumpable_behavior()
            .ok()
            .map(|b| b != rustix::process::DumpableBehavior::NotDumpable)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_guarded_process_is_not_dumpable_and_has_no_core_limit() {
        // The test process is dumpable to start with, so the check below can fail.
        assert_eq!(is_dumpable(), Some(true));
        let guard = keep_memory_private();
        assert_eq!(guard.not_dumpable, Ok(()));
        assert_eq!(guard.no_core_files, Ok(()));
        assert_eq!(is_dumpable(), Some(false));
        let limit = rustix::process::getrlimit(rustix::process::Resource::Core);
        assert_eq!(limit.current, Some(0));
    }
}
