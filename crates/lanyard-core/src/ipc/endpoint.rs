//! Where the agent listens, and the one-agent-per-user lock.
//!
//! Owns the per-user endpoint path (Unix socket in `$XDG_RUNTIME_DIR/lanyard/`, a private
//! `lanyard-<uid>` directory under the temp dir when that is unset, `~/Library/Application
//! Support/Lanyard/` on macOS, a named pipe on Windows), the checks that its directory is private
//! (owned by this user, mode 0700) and [`AgentLock`]. It opens no connections and knows nothing of
//! the protocol.

use std::path::{Path, PathBuf};

/// Overrides the endpoint (tests, several agents on one account).
pub const ENDPOINT_ENV: &str = "LANYARD_AGENT_SOCKET";

/// Why the endpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("no place for the agent's socket: {0}")]
    NoLocation(String),
    #[error("{path}: {reason}")]
    Insecure { path: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Another agent holds the lock.
    #[error("a Lanyard agent already runs for this user (pid {pid})", pid = pid.map(|p| p.to_string()).unwrap_or_else(|| "unknown".into()))]
    AlreadyRunning { pid: Option<u32> },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EndpointError {
    let context = context.into();
    move |source| EndpointError::Io { context, source }
}

/// This user's endpoint: `$LANYARD_AGENT_SOCKET` when set, else the platform default.
pub fn default_endpoint() -> Result<PathBuf, EndpointError> {
    if let Some(path) = std::env::var_os(ENDPOINT_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    platform_endpoint()
}

#[cfg(all(unix, not(target_os = "macos")))]
fn platform_endpoint() -> Result<PathBuf, EndpointError> {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => Ok(dir.join("lanyard").join("agent.sock")),
        _ => {
            // MCP SDKs start stdio servers with a trimmed environment (no XDG_RUNTIME_DIR), so a
            // proxy started by one must still find the agent of the user's desktop session:
            // systemd's /run/user/<uid>, when it exists and is ours. Otherwise (cron, some SSH
            // setups) a private per-uid directory.
            let uid = rustix::process::geteuid().as_raw();
            let session_dir = PathBuf::from(format!("/run/user/{uid}"));
            let ours = std::fs::metadata(&session_dir)
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid && m.is_dir())
                .unwrap_or(false);
            if ours {
                Ok(session_dir.join("lanyard").join("agent.sock"))
            } else {
                Ok(std::env::temp_dir()
                    .join(format!("lanyard-{uid}"))
                    .join("agent.sock"))
            }
        }
    }
}

#[cfg(target_os = "macos")]
fn platform_endpoint() -> Result<PathBuf, EndpointError> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| EndpointError::NoLocation("HOME is not set".into()))?;
    Ok(PathBuf::from(home)
        .join("Library/Application Support/Lanyard")
        .join("agent.sock"))
}

#[cfg(windows)]
fn platform_endpoint() -> Result<PathBuf, EndpointError> {
    let user = std::env::var("USERNAME").unwrap_or_else(|_| "user".into());
    let user: String = user
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Ok(PathBuf::from(format!(r"\\.\pipe\lanyard-agent-{user}")))
}

/// Creates the endpoint's directory (mode 0700) if needed and checks that it is private: a real
/// directory owned by this user that nobody else may enter.
#[cfg(unix)]
pub fn prepare_directory(endpoint: &Path) -> Result<PathBuf, EndpointError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};

    let dir = endpoint
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| {
            EndpointError::NoLocation(format!("{} has no directory", endpoint.display()))
        })?
        .to_path_buf();
    if let Some(grandparent) = dir.parent() {
        std::fs::create_dir_all(grandparent)
            .map_err(io_error(format!("creating {}", grandparent.display())))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(format!("creating {}", dir.display()))(e)),
    }
    let meta =
        std::fs::symlink_metadata(&dir).map_err(io_error(format!("reading {}", dir.display())))?;
    let insecure = |reason: String| EndpointError::Insecure {
        path: dir.clone(),
        reason,
    };
    if !meta.is_dir() {
        return Err(insecure("is not a directory (a symlink?)".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(insecure(format!(
            "belongs to uid {}, not to you (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(insecure(format!(
            "is open to other users (mode {:o}); run `chmod 700 {}`",
            meta.mode() & 0o777,
            dir.display()
        )));
    }
    Ok(dir)
}

/// Proof that this process is the user's only agent: an exclusive `flock` on `agent.lock` next to
/// the socket, holding the owner's pid. Released when dropped or when the process dies, so a
/// crashed agent never blocks the next one.
#[derive(Debug)]
pub struct AgentLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl AgentLock {
    /// Takes the lock for `endpoint` (creating its private directory), or says which pid holds it.
    #[cfg(unix)]
    pub fn acquire(endpoint: &Path) -> Result<Self, EndpointError> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;

        let dir = prepare_directory(endpoint)?;
        let path = dir.join("agent.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(format!("opening {}", path.display())))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(EndpointError::AlreadyRunning {
                    pid: text.trim().parse().ok(),
                });
            }
            Err(e) => {
                return Err(io_error(format!("locking {}", path.display()))(e.into()));
            }
        }
        let write_pid = |file: &mut std::fs::File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())
        };
        write_pid(&mut file).map_err(io_error(format!("writing {}", path.display())))?;
        Ok(Self { _file: file, path })
    }

    /// Windows: the first pipe instance is the lock (see the server); nothing to hold here.
    #[cfg(windows)]
    pub fn acquire(endpoint: &Path) -> Result<Self, EndpointError> {
        let _ = endpoint;
        let path = std::env::temp_dir().join("lanyard-agent.lock");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_error(format!("opening {}", path.display())))?;
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lanyard-endpoint-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn directory_is_created_private() {
        let root = scratch("create");
        let dir = prepare_directory(&root.join("lanyard/agent.sock")).expect("prepare");
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn a_directory_open_to_others_is_refused() {
        let root = scratch("open");
        let dir = root.join("lanyard");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = prepare_directory(&dir.join("agent.sock")).expect_err("must refuse");
        assert!(matches!(err, EndpointError::Insecure { .. }), "{err}");
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn second_lock_names_the_first_holder() {
        let root = scratch("lock");
        let endpoint = root.join("lanyard/agent.sock");
        let first = AgentLock::acquire(&endpoint).expect("first lock");
        // flock locks belong to the open file description, so a second open in-process conflicts.
        match AgentLock::acquire(&endpoint) {
            Err(EndpointError::AlreadyRunning { pid }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        drop(first);
        AgentLock::acquire(&endpoint).expect("free again after drop");
        std::fs::remove_dir_all(root).ok();
    }
}
