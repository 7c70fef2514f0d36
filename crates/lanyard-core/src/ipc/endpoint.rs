//! Where the agent listens, and the one-agent-per-user lock.
//!
//! Owns the per-user endpoint path (Unix socket in `$XDG_RUNTIME_DIR/lanyard/`, else
//! `/run/user/<uid>/lanyard/` when that is ours, else `~/.cache/lanyard/`; `~/Library/Application
//! Support/Lanyard/` on macOS; the named pipe `\\.\pipe\lanyard-agent-<SID>` on Windows), the
//! checks that its directory is private (owned by this user, mode 0700; on Windows the agent's
//! directory is `%LOCALAPPDATA%\Lanyard`), the same checks as a client makes them before it
//! connects ([`check_before_connect`]), and [`AgentLock`]. It opens no connections and knows
//! nothing of the protocol.

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
            // setups, containers) a directory in the user's home, which the MCP SDKs pass on.
            // Never a shared directory such as /tmp: another user could create `lanyard-<uid>`
            // there first and answer in the agent's place.
            let uid = rustix::process::geteuid().as_raw();
            let session_dir = PathBuf::from(format!("/run/user/{uid}"));
            let ours = std::fs::metadata(&session_dir)
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid && m.is_dir())
                .unwrap_or(false);
            if ours {
                return Ok(session_dir.join("lanyard").join("agent.sock"));
            }
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|h| h.is_absolute())
                .ok_or_else(|| {
                    EndpointError::NoLocation(
                        "neither XDG_RUNTIME_DIR nor HOME is set, and /run/user/<uid> is not yours"
                            .into(),
                    )
                })?;
            Ok(home.join(".cache/lanyard").join("agent.sock"))
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
    // The SID, not the user name: pipe names are global to the machine, and two accounts on one
    // terminal server can share a name (DOMAIN1\bob, DOMAIN2\bob), never a SID.
    let user = match crate::os::windows::current_user_sid() {
        Ok(sid) => sid,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read this user's SID; naming the pipe by user name");
            std::env::var("USERNAME").unwrap_or_else(|_| "user".into())
        }
    };
    Ok(pipe_name(&user))
}

/// The broker's pipe for the user `user` (a SID, or a name): `\\.\pipe\lanyard-agent-<user>`,
/// with anything but ASCII letters, digits and `-` turned into `_`.
pub fn pipe_name(user: &str) -> PathBuf {
    PathBuf::from(format!(r"\\.\pipe\lanyard-agent-{}", name_safe(user)))
}

/// `s` with anything but ASCII letters, digits and `-` turned into `_` (for pipe and file names).
fn name_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Windows: the agent's own directory, `%LOCALAPPDATA%\Lanyard` (for the lock and the log),
/// created if needed. It inherits the profile's ACL: this user, SYSTEM and administrators. The
/// endpoint (a pipe) has no directory; it is accepted for the same signature as on Unix.
#[cfg(windows)]
pub fn prepare_directory(_endpoint: &Path) -> Result<PathBuf, EndpointError> {
    let base = std::env::var_os("LOCALAPPDATA")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| EndpointError::NoLocation("LOCALAPPDATA is not set".into()))?;
    let dir = base.join("Lanyard");
    std::fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// The lock file's name for `endpoint`: `agent.lock` for the default pipe, else one per pipe
/// name (tests and side-by-side agents name their own pipe).
pub fn lock_file_name(endpoint: &Path, default: Option<&Path>) -> String {
    if default == Some(endpoint) {
        return "agent.lock".into();
    }
    let whole = endpoint.to_string_lossy();
    let name = name_safe(whole.rsplit(['\\', '/']).next().unwrap_or_default());
    format!("agent-{name}.lock")
}

/// Creates the endpoint's directory (mode 0700) if needed and checks that it is private: a real
/// directory owned by this user that nobody else may enter.
#[cfg(unix)]
pub fn prepare_directory(endpoint: &Path) -> Result<PathBuf, EndpointError> {
    use std::os::unix::fs::DirBuilderExt;

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
    if let Some(problem) = private_directory_problem(&meta) {
        return Err(EndpointError::Insecure {
            path: dir,
            reason: problem.to_string(),
        });
    }
    Ok(dir)
}

/// What is wrong with the endpoint's directory, as the agent and its clients check it.
#[cfg(unix)]
#[derive(Debug, Clone, PartialEq, Eq)]
enum DirectoryProblem {
    NotADirectory,
    Foreign { owner: u32, me: u32 },
    OpenToOthers { mode: u32 },
}

#[cfg(unix)]
impl std::fmt::Display for DirectoryProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirectoryProblem::NotADirectory => f.write_str("is not a directory (a symlink?)"),
            DirectoryProblem::Foreign { owner, me } => {
                write!(f, "belongs to uid {owner}, not to you (uid {me})")
            }
            DirectoryProblem::OpenToOthers { mode } => write!(
                f,
                "is open to other users (mode {mode:o}); run `chmod 700` on it"
            ),
        }
    }
}

/// A private directory is a real directory (not a symlink) owned by this user that nobody else
/// may enter: only then can no other user have put a socket in it.
#[cfg(unix)]
fn private_directory_problem(meta: &std::fs::Metadata) -> Option<DirectoryProblem> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() {
        Some(DirectoryProblem::NotADirectory)
    } else if meta.uid() != me {
        Some(DirectoryProblem::Foreign {
            owner: meta.uid(),
            me,
        })
    } else if meta.mode() & 0o077 != 0 {
        Some(DirectoryProblem::OpenToOthers {
            mode: meta.mode() & 0o777,
        })
    } else {
        None
    }
}

/// Why a client will not talk to whatever answers at an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Distrust {
    /// Nothing is there: no agent runs.
    Missing,
    /// The endpoint, its directory or the process listening belongs to another user (`owner`:
    /// `uid N`, or a SID on Windows).
    Foreign { owner: String },
    /// It is ours but not private (open to others, a symlink, not a socket).
    Insecure { path: PathBuf, reason: String },
}

/// Unix: what a client checks before it connects, the checks the agent made when it created the
/// endpoint: the directory is a real directory owned by this user with mode 0700, and the
/// endpoint in it is a socket owned by this user. Another user cannot then have put it there; the
/// process listening on it is checked once connected (`SO_PEERCRED`).
#[cfg(unix)]
pub fn check_before_connect(endpoint: &Path) -> Result<(), Distrust> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    let dir = endpoint
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let missing_or = |e: std::io::Error, path: &Path| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Distrust::Missing
        } else {
            Distrust::Insecure {
                path: path.to_path_buf(),
                reason: format!("cannot be read: {e}"),
            }
        }
    };
    let dir_meta = std::fs::symlink_metadata(dir).map_err(|e| missing_or(e, dir))?;
    match private_directory_problem(&dir_meta) {
        None => {}
        Some(DirectoryProblem::Foreign { owner, .. }) => {
            return Err(Distrust::Foreign {
                owner: format!("uid {owner}"),
            })
        }
        Some(problem) => {
            return Err(Distrust::Insecure {
                path: dir.to_path_buf(),
                reason: problem.to_string(),
            })
        }
    }
    let meta = std::fs::symlink_metadata(endpoint).map_err(|e| missing_or(e, endpoint))?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(Distrust::Foreign {
            owner: format!("uid {}", meta.uid()),
        });
    }
    if !meta.file_type().is_socket() {
        return Err(Distrust::Insecure {
            path: endpoint.to_path_buf(),
            reason: "is not a socket".into(),
        });
    }
    Ok(())
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

    /// Windows: `agent.lock` in `%LOCALAPPDATA%\Lanyard`, opened for writing with sharing limited
    /// to readers, so a second agent's open fails (sharing violation) until this process ends or
    /// drops the lock; that agent then reads the pid from the file.
    #[cfg(windows)]
    pub fn acquire(endpoint: &Path) -> Result<Self, EndpointError> {
        use std::io::{Read, Write};
        use std::os::windows::fs::OpenOptionsExt;

        const FILE_SHARE_READ: u32 = 0x1;
        const FILE_SHARE_WRITE: u32 = 0x2;
        const ERROR_SHARING_VIOLATION: i32 = 32;

        let dir = prepare_directory(endpoint)?;
        let default = platform_endpoint().ok();
        let path = dir.join(lock_file_name(endpoint, default.as_deref()));
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .share_mode(FILE_SHARE_READ)
            .open(&path);
        let mut file = match opened {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(ERROR_SHARING_VIOLATION) => {
                let mut text = String::new();
                if let Ok(mut held) = std::fs::OpenOptions::new()
                    .read(true)
                    .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
                    .open(&path)
                {
                    let _ = held.read_to_string(&mut text);
                }
                return Err(EndpointError::AlreadyRunning {
                    pid: text.trim().parse().ok(),
                });
            }
            Err(e) => return Err(io_error(format!("opening {}", path.display()))(e)),
        };
        writeln!(file, "{}", std::process::id())
            .and_then(|()| file.flush())
            .map_err(io_error(format!("writing {}", path.display())))?;
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn pipe_names_are_per_user_and_tame() {
        assert_eq!(
            pipe_name("S-1-5-21-1-2-3-1001"),
            PathBuf::from(r"\\.\pipe\lanyard-agent-S-1-5-21-1-2-3-1001")
        );
        assert_eq!(
            pipe_name(r"DOM\bob smith"),
            PathBuf::from(r"\\.\pipe\lanyard-agent-DOM_bob_smith")
        );
        assert_ne!(
            pipe_name("S-1-5-21-1-2-3-1001"),
            pipe_name("S-1-5-21-1-2-3-1002")
        );
    }

    #[test]
    fn the_default_pipe_has_the_plain_lock_others_their_own() {
        let default = pipe_name("S-1-5-21-1-2-3-1001");
        assert_eq!(lock_file_name(&default, Some(&default)), "agent.lock");
        let other = PathBuf::from(r"\\.\pipe\lanyard-test-42");
        assert_eq!(
            lock_file_name(&other, Some(&default)),
            "agent-lanyard-test-42.lock"
        );
        assert_eq!(lock_file_name(&other, None), "agent-lanyard-test-42.lock");
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

    fn running_as_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// Binds a socket at `path` (and keeps it listening until dropped).
    fn socket_at(path: &Path) -> std::os::unix::net::UnixListener {
        std::os::unix::net::UnixListener::bind(path).expect("bind")
    }

    fn private_dir(root: &Path) -> PathBuf {
        let dir = root.join("lanyard");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        dir
    }

    #[test]
    fn a_client_trusts_a_socket_of_its_own_in_a_private_directory() {
        let root = scratch("trust");
        let endpoint = private_dir(&root).join("agent.sock");
        assert_eq!(check_before_connect(&endpoint), Err(Distrust::Missing));
        let _listening = socket_at(&endpoint);
        assert_eq!(check_before_connect(&endpoint), Ok(()));
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn a_client_distrusts_an_open_directory_a_symlink_or_a_plain_file() {
        let root = scratch("distrust");
        assert_eq!(
            check_before_connect(&root.join("nowhere/agent.sock")),
            Err(Distrust::Missing)
        );
        let open = root.join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let _listening = socket_at(&open.join("agent.sock"));
        match check_before_connect(&open.join("agent.sock")) {
            Err(Distrust::Insecure { path, reason }) => {
                assert_eq!(path, open);
                assert!(reason.contains("open to other users"), "{reason}");
            }
            other => panic!("an open directory was trusted: {other:?}"),
        }
        let link = root.join("link");
        std::os::unix::fs::symlink(private_dir(&root), &link).expect("symlink");
        assert!(
            matches!(
                check_before_connect(&link.join("agent.sock")),
                Err(Distrust::Insecure { .. })
            ),
            "a symlinked directory was trusted"
        );
        let file = root.join("lanyard/agent.sock");
        std::fs::write(&file, b"").expect("a plain file");
        match check_before_connect(&file) {
            Err(Distrust::Insecure { reason, .. }) => assert!(reason.contains("not a socket")),
            other => panic!("a plain file was trusted: {other:?}"),
        }
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn a_client_names_the_other_user_who_owns_the_directory_or_the_socket() {
        if !running_as_root() {
            eprintln!("SKIPPED: needs root to give files to another user (chown)");
            return;
        }
        let nobody = rustix::process::Uid::from_raw(65534);
        let root = scratch("foreign");
        // A directory squatted by another user (as /tmp/lanyard-<uid> could be).
        let theirs = private_dir(&root);
        let _listening = socket_at(&theirs.join("agent.sock"));
        rustix::fs::chown(&theirs, Some(nobody), None).expect("chown dir");
        assert_eq!(
            check_before_connect(&theirs.join("agent.sock")),
            Err(Distrust::Foreign {
                owner: "uid 65534".into()
            })
        );
        // Our directory, their socket.
        rustix::fs::chown(&theirs, Some(rustix::process::geteuid()), None).expect("chown back");
        rustix::fs::chown(theirs.join("agent.sock"), Some(nobody), None).expect("chown socket");
        assert_eq!(
            check_before_connect(&theirs.join("agent.sock")),
            Err(Distrust::Foreign {
                owner: "uid 65534".into()
            })
        );
        std::fs::remove_dir_all(root).ok();
    }
}
