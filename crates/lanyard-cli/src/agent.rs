//! `lanyard agent`: the headless host of the engine and the broker, one per user. Owns the agent
//! lock, the engine's start-up from this OS's policy sources (watched: changes apply live) and the clean shutdown on SIGTERM / Ctrl-C (the socket is
//! removed). The agent is the only `lanyard` process that opens a browser, and only when a client
//! asks it to sign in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lanyard_core::engine::{self, EngineConfig, EngineHandle};
use lanyard_core::ipc::{self, AgentLock, EndpointError};
use lanyard_core::policy::sources::platform::{PolicySources, SourcesWatcher};
use lanyard_core::policy::watch::DEFAULT_DEBOUNCE;
use lanyard_core::policy::Policy;
use lanyard_core::signin::SystemBrowser;
use lanyard_core::store::{KeyringStore, MemoryStore, SecretStore};
use lanyard_core::wake::SystemClock;
use tracing::{info, warn};

use crate::exit;

/// Runs the agent until SIGTERM / SIGINT. Returns the exit code.
pub fn run(policy_sources: PolicySources, no_keychain: bool, endpoint: PathBuf) -> u8 {
    // Before any secret is in memory: no core dumps, no same-user ptrace or /proc/<pid>/mem.
    let guard = lanyard_core::os::memory_guard::keep_memory_private();
    if let Err(e) = &guard.not_dumpable {
        tracing::debug!("the agent stays dumpable: {e}");
    }
    if let Err(e) = &guard.no_core_files {
        tracing::warn!("core files stay allowed: {e}");
    }
    // The lock first: a second agent must say who runs, not fail on the policy or the socket.
    let lock = match AgentLock::acquire(&endpoint) {
        Ok(lock) => lock,
        Err(EndpointError::AlreadyRunning { pid }) => {
            let pid = pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into());
            eprintln!(
                "lanyard agent: an agent already runs for this user (pid {pid}) at {}",
                endpoint.display()
            );
            return exit::AGENT_ALREADY_RUNNING;
        }
        Err(e) => {
            eprintln!("lanyard agent: {e}");
            return exit::MISCONFIGURED;
        }
    };
    // An unusable policy does not stop the agent: it runs Misconfigured (shown by `lanyard
    // status`) and picks up the fixed policy live.
    let (policy, policy_errors) = match policy_sources.load() {
        Ok(snapshot) => {
            for e in &snapshot.refused {
                eprintln!("lanyard agent: a part of the policy was ignored: {e}");
            }
            (snapshot.policy, Vec::new())
        }
        Err(errors) => {
            eprintln!("lanyard agent: the policy is not usable (running Misconfigured until it is fixed):");
            for e in &errors {
                eprintln!("  {e}");
            }
            (
                Policy::default(),
                errors.iter().map(|e| e.to_string()).collect(),
            )
        }
    };
    // One thread: the agent waits far more than it works, and every extra runtime thread is one
    // more to wake. Keychain calls run on tokio's blocking pool, whose threads end when idle.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lanyard agent: cannot start: {e}");
            return exit::FAILURE;
        }
    };
    let code = runtime.block_on(host(
        policy,
        policy_errors,
        policy_sources,
        no_keychain,
        &endpoint,
    ));
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(lock);
    code
}

async fn host(
    policy: Policy,
    policy_errors: Vec<String>,
    policy_sources: PolicySources,
    no_keychain: bool,
    endpoint: &Path,
) -> u8 {
    let store: Arc<dyn SecretStore> = if no_keychain {
        Arc::new(MemoryStore::new())
    } else {
        Arc::new(KeyringStore::new("lanyard"))
    };
    let mut config = EngineConfig::new(
        policy,
        store,
        Arc::new(SystemClock),
        Arc::new(SystemBrowser),
    );
    config.policy_errors = policy_errors;
    config.state_file = state_file();
    let engine = match engine::start(config) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("lanyard agent: {e}");
            return exit::FAILURE;
        }
    };
    let _policy_watcher = watch_policy(&policy_sources, &engine);
    info!(pid = std::process::id(), endpoint = %endpoint.display(), "agent starting");
    let result = ipc::serve(engine.clone(), endpoint, shutdown_signal()).await;
    engine.shutdown().await;
    match result {
        Ok(()) => {
            info!("agent stopped");
            0
        }
        Err(e) => {
            eprintln!("lanyard agent: {e}");
            exit::FAILURE
        }
    }
}

/// The agent's non-secret state (per-server usage counts): `usage.json` in `lanyard` under the
/// user's state folder (`$XDG_STATE_HOME`, else `~/.local/state`, on Linux), else the local data
/// folder (macOS: `~/Library/Application Support`, Windows: `%LOCALAPPDATA%`). `None` when the OS
/// names neither: the counts then last as long as the agent.
pub fn state_file() -> Option<PathBuf> {
    let dir = dirs::state_dir().or_else(dirs::data_local_dir)?;
    Some(dir.join("lanyard").join("usage.json"))
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    info!("shutting down");
}

/// Starts `lanyard agent` in the background (own process group, so the terminal's Ctrl-C does not
/// reach it), logging to `agent.log` next to the socket (written and rotated by the agent itself,
/// `--log-file`), and waits until it answers.
pub fn spawn_background(
    policy_sources: &PolicySources,
    no_keychain: bool,
    endpoint: &Path,
) -> Result<(), String> {
    let dir = ipc::endpoint::prepare_directory(endpoint).map_err(|e| e.to_string())?;
    let log_path = dir.join("agent.log");
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the lanyard binary: {e}"))?;
    let mut command = std::process::Command::new(exe);
    // The agent reads the same policy: the named file, or (none named) the platform's sources.
    if let Some(file) = policy_sources.explicit_file() {
        command.arg("--policy").arg(file);
    }
    command
        .arg("agent")
        .arg("--log-file")
        .arg(&log_path)
        .env(ipc::ENDPOINT_ENV, endpoint)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if no_keychain {
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
        // No console window, detached from this console (its Ctrl-C does not reach the agent).
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        const DETACHED_PROCESS: u32 = 0x0000_0008;
        const CREATE_NO_WINDOW: u32 = 0x0800_0000;
        command.creation_flags(CREATE_NEW_PROCESS_GROUP | DETACHED_PROCESS | CREATE_NO_WINDOW);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting the agent: {e}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if ipc::BlockingClient::connect(endpoint).is_ok() {
            // Reap the agent when it ends, without ever blocking on it.
            std::thread::spawn(move || child.wait());
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the agent exited ({status}); see {}",
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "the agent did not answer within 15 s; see {}",
        log_path.display()
    ))
}

/// Applies every change of the policy to the engine (or reports why it could not).
fn watch_policy(sources: &PolicySources, engine: &EngineHandle) -> Option<SourcesWatcher> {
    let engine = engine.clone();
    let watched = sources.watch(DEFAULT_DEBOUNCE, move |result| {
        let engine = engine.clone();
        tokio::spawn(async move {
            let _ = match result {
                Ok(snapshot) => {
                    for e in &snapshot.refused {
                        warn!(error = %e, "a part of the changed policy was ignored");
                    }
                    engine.apply_policy(snapshot.policy).await
                }
                Err(errors) => {
                    for e in &errors {
                        warn!(error = %e, "the changed policy is not usable");
                    }
                    engine
                        .reject_policy(errors.iter().map(|e| e.to_string()).collect())
                        .await
                }
            };
        });
    });
    match watched {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            warn!(error = %e, "policy changes will apply at the next start");
            None
        }
    }
}
