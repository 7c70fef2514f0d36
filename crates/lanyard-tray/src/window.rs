//! Starting the status window process (`lanyard-status`) on "Open status…", and letting it go at
//! exit. The window process shows the webview and ends when its window closes; a second start
//! raises the open window (its own single-instance guard). A window started here also ends when
//! the tray does: its stdin is a pipe from the tray, which reaches end of file.

use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use lanyard_desktop::launch::{self, ASKED_AT_ENV, GL_OFF_BY_US_ENV, TIED_ENV};
use tracing::{info, warn};

/// The pipes to the window processes this tray started (dropping one ends that process).
static OPENED: Mutex<Vec<(u32, ChildStdin)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Before GTK starts (Linux): GDK probes OpenGL when it opens the display, which loads the GL
/// driver (with Mesa's software renderer, LLVM: ~50 MB resident) into a process that draws nothing
/// but a tray icon. `GDK_GL=disable` skips that. A user's own `GDK_GL` wins.
///
/// The status windows this tray starts inherit it: WebKit then shows its frames without GDK's GL.
/// Measured under Xvfb (Mesa llvmpipe), that takes the window's first paint from a median 669 ms
/// to 511 ms (its two first frames from ~150 ms to ~35 ms) and the open window's processes from
/// 450 MB to 387 MB; a small page needs no GL to draw.
pub fn quiet_gdk() {
    if cfg!(target_os = "linux") && std::env::var_os("GDK_GL").is_none() {
        // Called first thing in `main`, before any other thread exists.
        std::env::set_var("GDK_GL", "disable");
        std::env::set_var(GL_OFF_BY_US_ENV, "1");
    }
}

/// Starts a status window process (a running one raises its window instead).
pub fn open(policy: Option<&Path>) -> std::io::Result<()> {
    let exe = launch::status_exe().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not installed beside the tray", launch::STATUS_EXE),
        )
    })?;
    let mut command = Command::new(exe);
    command
        .env(ASKED_AT_ENV, launch::unix_ms().to_string())
        .env(TIED_ENV, "1")
        .stdin(Stdio::piped());
    if let Some(policy) = policy {
        command.arg("--policy").arg(policy);
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

/// At exit: lets every window process this tray started end.
pub fn close_opened() {
    lock(&OPENED).clear();
}
