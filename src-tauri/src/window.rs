//! The status window: opened on demand, closed for real. Closing it destroys the webview (the app
//! lives on in the tray), so a closed window costs no memory and no wake-ups.

use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder};

/// The status window's label (the capability file grants it the event permission).
pub const STATUS_WINDOW: &str = "status";

/// Shows the status window, creating it if it is closed, and brings it to the front.
pub fn show_status<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    if let Some(window) = app.get_webview_window(STATUS_WINDOW) {
        window.unminimize()?;
        window.show()?;
        return window.set_focus();
    }
    WebviewWindowBuilder::new(app, STATUS_WINDOW, WebviewUrl::App("index.html".into()))
        .title("Lanyard")
        .inner_size(460.0, 680.0)
        .min_inner_size(380.0, 420.0)
        .center()
        .build()?;
    Ok(())
}
