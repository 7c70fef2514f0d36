//! The status window, in a process of its own. The tray process opens it by starting this
//! executable again with `--window` ([`open`]); that process shows the window ([`show_status`]) and
//! ends when the window closes, so its webview and WebKit processes exist only while the window is
//! open. A window process started by the tray also ends when the tray does (its stdin, a pipe from
//! the tray, reaches end of file).

use std::io::Read;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder};
use tracing::{info, warn};

/// The window's label (the capability file grants it the event permission).
pub const STATUS_WINDOW: &str = "status";

/// Set by the tray for a window process it starts: when the window was asked for (Unix ms).
const ASKED_AT_ENV: &str = "LANYARD_WINDOW_ASKED_AT";
/// Set by the tray for a window process it starts: end with the tray (stdin is its pipe).
const TIED_ENV: &str = "LANYARD_WINDOW_TIED";
/// Set by the tray process when it turned GDK's OpenGL off for itself (see [`quiet_gdk`]).
const GL_OFF_BY_US_ENV: &str = "LANYARD_TRAY_GL_OFF";

/// When the open window was asked for, in Unix ms (until its first paint is reported).
static ASKED_AT: Mutex<Option<u128>> = Mutex::new(None);
/// The pipes to the window processes this tray started (dropping one ends that process).
static OPENED: Mutex<Vec<(u32, ChildStdin)>> = Mutex::new(Vec::new());

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// For the tray process, before GTK starts (Linux): GDK probes OpenGL when it opens the display,
/// which loads the GL driver (with Mesa's software renderer, LLVM: ~50 MB resident) into a process
/// that draws nothing but a tray icon. `GDK_GL=disable` skips that. A user's own `GDK_GL` wins,
/// and the window process gets the environment back as it was.
pub fn quiet_gdk() {
    if cfg!(target_os = "linux") && std::env::var_os("GDK_GL").is_none() {
        // Called first thing in `main`, before any other thread exists.
        std::env::set_var("GDK_GL", "disable");
        std::env::set_var(GL_OFF_BY_US_ENV, "1");
    }
}

/// The window reports its first paint with live data: logs the time since it was asked for
/// (`make tray-bench` reads this line). Returns the milliseconds, if a window was being opened.
pub fn painted() -> Option<u64> {
    let asked = lock(&ASKED_AT).take()?;
    let elapsed_ms = unix_ms().saturating_sub(asked) as u64;
    info!(elapsed_ms, "status window painted");
    Some(elapsed_ms)
}

/// In the tray process: starts a window process (a running one raises its window instead: its
/// single-instance guard hands the second launch over to it).
pub fn open<R: Runtime>(app: &AppHandle<R>) -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    let host = app.state::<std::sync::Arc<crate::host::Host>>();
    let mut command = Command::new(exe);
    command
        .arg("--window")
        .env(ASKED_AT_ENV, unix_ms().to_string())
        .env(TIED_ENV, "1")
        .stdin(Stdio::piped());
    if let Some(policy) = host.policy_path() {
        command.arg("--policy").arg(policy);
    }
    if std::env::var_os(GL_OFF_BY_US_ENV).is_some() {
        command.env_remove("GDK_GL").env_remove(GL_OFF_BY_US_ENV);
    }
    let mut child: Child = command.spawn()?;
    let pid = child.id();
    if let Some(stdin) = child.stdin.take() {
        lock(&OPENED).push((pid, stdin));
    }
    info!(pid, "status window process started");
    // Reaps it when it ends (no zombie) and forgets its pipe; blocks, so off the UI thread.
    std::thread::spawn(move || {
        if let Err(e) = child.wait() {
            warn!("the status window process could not be waited for: {e}");
        }
        lock(&OPENED).retain(|(p, _)| *p != pid);
    });
    Ok(())
}

/// In the tray process, at exit: lets every window process it started end.
pub fn close_opened() {
    lock(&OPENED).clear();
}

/// In the window process: shows the status window, creating it if it is not there, and brings it
/// to the front. A window process the tray started also ends when the tray ends.
pub fn show_status<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    if let Some(window) = app.get_webview_window(STATUS_WINDOW) {
        window.unminimize()?;
        window.show()?;
        return window.set_focus();
    }
    let started = Instant::now();
    let asked = std::env::var(ASKED_AT_ENV)
        .ok()
        .and_then(|v| v.parse::<u128>().ok())
        .unwrap_or_else(unix_ms);
    *lock(&ASKED_AT) = Some(asked);
    if std::env::var_os(TIED_ENV).is_some() {
        let app = app.clone();
        std::thread::spawn(move || {
            // Nothing is ever written: this returns when the tray closes the pipe or ends.
            let _ = std::io::stdin().read(&mut [0u8; 1]);
            info!("the tray ended: closing the status window");
            app.exit(0);
        });
    }
    WebviewWindowBuilder::new(app, STATUS_WINDOW, WebviewUrl::App("index.html".into()))
        .title("Lanyard")
        .inner_size(460.0, 680.0)
        .min_inner_size(380.0, 420.0)
        .center()
        .build()?;
    info!(
        build_ms = started.elapsed().as_millis() as u64,
        "status window created"
    );
    Ok(())
}
