//! The tray's link to `lanyard agent`: one background thread that keeps a status subscription open,
//! starts the agent when none runs, and reconnects with a backoff when the agent goes away. Every
//! change (a status, a lost agent) goes to one callback.
//!
//! It owns the subscription and the agent it started, nothing else. It never asks the agent for a
//! token: the only requests it sends are hello and subscribe.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lanyard_core::engine::Status;
use lanyard_core::ipc::{AgentInfo, BlockingClient, ClientError, StatusUpdates};
use tracing::{info, warn};

/// Names the `lanyard` binary to start (tests point it at their build).
pub const CLI_ENV: &str = "LANYARD_CLI";

/// The first and the longest wait between two connection attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What the link reports.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    Connected(AgentInfo),
    Status(Box<Status>),
    /// The agent is gone (or not yet there); the link keeps trying.
    Lost {
        reason: String,
    },
}

/// How to reach (and start) the agent.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub endpoint: PathBuf,
    /// The `lanyard` binary to start when no agent answers; `None`: never start one.
    pub cli: Option<PathBuf>,
    /// Passed to a started agent.
    /// A policy file named for the agent; `None`: the agent reads this OS's managed policy.
    pub policy_path: Option<PathBuf>,
    pub no_keychain: bool,
}

/// The `lanyard` binary: `$LANYARD_CLI`, else next to this executable, else on `PATH`.
pub fn find_cli() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(CLI_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let name = if cfg!(windows) {
        "lanyard.exe"
    } else {
        "lanyard"
    };
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)));
    if let Some(path) = beside.filter(|p| p.is_file()) {
        return Some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Starts `lanyard agent` in the background, detached from the tray: its own process group (Unix),
/// no console window and no console of its own (Windows: the tray is a GUI program, and a console
/// program started from one would open a console window), its log in `agent.log` in the agent's
/// own directory (the socket's directory; `%LOCALAPPDATA%\Lanyard` on Windows), which the agent
/// writes and rotates itself (`--log-file`). Does not wait: the link's next attempt finds it.
fn start_agent(options: &LinkOptions, cli: &Path) -> Result<(), String> {
    let dir = lanyard_core::ipc::endpoint::prepare_directory(&options.endpoint)
        .map_err(|e| e.to_string())?;
    let mut command = Command::new(cli);
    if let Some(policy) = &options.policy_path {
        command.arg("--policy").arg(policy);
    }
    command
        .arg("agent")
        .arg("--log-file")
        .arg(dir.join("agent.log"))
        .env(lanyard_core::ipc::ENDPOINT_ENV, &options.endpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if options.no_keychain {
        command.arg("--no-keychain");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        command.creation_flags(AGENT_CREATION_FLAGS);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting {}: {e}", cli.display()))?;
    // Reap it when it ends, without blocking anyone.
    std::thread::Builder::new()
        .name("agent-reaper".into())
        .spawn(move || child.wait())
        .map_err(|e| e.to_string())?;
    info!(cli = %cli.display(), "started lanyard agent");
    Ok(())
}

/// Windows process creation flags for the agent: `CREATE_NO_WINDOW` (no console window), its own
/// process group (a console's Ctrl-C never reaches it).
#[cfg(windows)]
const AGENT_CREATION_FLAGS: u32 = {
    const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
    const CREATE_NO_WINDOW: u32 = 0x0800_0000;
    CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
};

/// A running link; dropping it does not stop the thread (it lives as long as the app).
pub struct Link {
    stopped: Arc<AtomicBool>,
}

impl Link {
    /// Ends the link at its next wake-up (the app is quitting).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// Starts the link thread.
pub fn start(
    options: LinkOptions,
    on_event: impl Fn(LinkEvent) + Send + 'static,
) -> std::io::Result<Link> {
    let stopped = Arc::new(AtomicBool::new(false));
    let stop = stopped.clone();
    std::thread::Builder::new()
        .name("agent-link".into())
        .spawn(move || run(options, stop, on_event))?;
    Ok(Link { stopped })
}

/// Opens the agent's status stream (hello, then subscribe; its first item is the current status).
fn subscribe(endpoint: &Path) -> Result<StatusUpdates, ClientError> {
    BlockingClient::connect(endpoint)?.subscribe()
}

fn run(options: LinkOptions, stopped: Arc<AtomicBool>, on_event: impl Fn(LinkEvent)) {
    let mut backoff = FIRST_BACKOFF;
    // Start the agent at most once per outage: a second start would only meet the first's lock.
    let mut started_this_outage = false;
    while !stopped.load(Ordering::SeqCst) {
        match subscribe(&options.endpoint) {
            Ok(updates) => {
                backoff = FIRST_BACKOFF;
                started_this_outage = false;
                on_event(LinkEvent::Connected(updates.agent().clone()));
                let mut reason = "the agent closed the connection".to_owned();
                for update in updates {
                    match update {
                        Ok(status) => on_event(LinkEvent::Status(Box::new(status))),
                        Err(e) => {
                            reason = e.to_string();
                            break;
                        }
                    }
                }
                warn!("lost the agent: {reason}");
                on_event(LinkEvent::Lost { reason });
            }
            Err(e) => {
                if matches!(e, ClientError::NotRunning { .. }) && !started_this_outage {
                    started_this_outage = true;
                    match &options.cli {
                        Some(cli) => {
                            if let Err(why) = start_agent(&options, cli) {
                                warn!("cannot start the agent: {why}");
                            }
                        }
                        None => warn!("no lanyard binary to start the agent with"),
                    }
                }
                on_event(LinkEvent::Lost {
                    reason: e.to_string(),
                });
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
