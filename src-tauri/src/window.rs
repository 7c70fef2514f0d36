//! The status window in its own process: creating it ([`show_status`]), sending it each new status
//! ([`status_changed`]) and timing its first paint ([`painted`]). The process ends when the window
//! closes, so its webview and WebKit processes exist only while the window is open; a window the
//! tray started also ends when the tray does (its stdin, a pipe from the tray, reaches end of
//! file).

use std::io::Read;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use lanyard_desktop::host::Host;
use lanyard_desktop::launch::{unix_ms, ASKED_AT_ENV, TIED_ENV};
use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder, Wry};
use tracing::info;

/// The window's label (the capability file grants it the event permission).
pub const STATUS_WINDOW: &str = "status";

/// When the open window was asked for, in Unix ms (until its first paint is reported).
static ASKED_AT: Mutex<Option<u128>> = Mutex::new(None);
/// The running app, once it exists (the agent link may report before it does).
static APP: OnceLock<AppHandle<Wry>> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Remembers the running app, so statuses from the agent link reach the window.
pub fn set_app(app: &AppHandle<Wry>) {
    let _ = APP.set(app.clone());
}

/// The agent link saw a change: sends the new snapshot to the window, once the app exists (before
/// that, the page fetches the snapshot itself when it loads).
pub fn status_changed(host: &Host) {
    if let Some(app) = APP.get() {
        crate::present(app, host);
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

/// Shows the status window, creating it if it is not there, and brings it to the front.
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
        "status window built"
    );
    Ok(())
}
