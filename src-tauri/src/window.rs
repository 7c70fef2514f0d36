//! The status window: opened on demand, closed for real. Closing it destroys the webview (the app
//! lives on in the tray), so a closed window costs no memory and no wake-ups.

use std::sync::Mutex;
use std::time::Instant;

use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder};
use tracing::info;

/// When the open window was asked for (until its first paint is reported).
static OPENED_AT: Mutex<Option<Instant>> = Mutex::new(None);

/// The window reports its first paint with live data: logs the time since it was asked for
/// (`make tray-bench` reads this line). Returns the milliseconds, if a window was being opened.
pub fn painted() -> Option<u64> {
    let opened = OPENED_AT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()?;
    let elapsed_ms = opened.elapsed().as_millis() as u64;
    info!(elapsed_ms, "status window painted");
    Some(elapsed_ms)
}

/// The status window's label (the capability file grants it the event permission).
pub const STATUS_WINDOW: &str = "status";

/// Shows the status window, creating it if it is closed, and brings it to the front.
pub fn show_status<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    if let Some(window) = app.get_webview_window(STATUS_WINDOW) {
        window.unminimize()?;
        window.show()?;
        return window.set_focus();
    }
    *OPENED_AT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
    WebviewWindowBuilder::new(app, STATUS_WINDOW, WebviewUrl::App("index.html".into()))
        .title("Lanyard")
        .inner_size(460.0, 680.0)
        .min_inner_size(380.0, 420.0)
        .center()
        .build()?;
    Ok(())
}
