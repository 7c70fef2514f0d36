//! Desktop notifications (notify-rust: the freedesktop D-Bus service on Linux, toasts on Windows,
//! the notification centre on macOS). Sent from a short-lived thread so a slow or missing
//! notification daemon never blocks the tray; a failure is logged, not fatal. Notices name servers
//! and states, never tokens.

use tracing::debug;

/// Shows a notification with `title` and `body`.
pub fn show(title: &str, body: &str) {
    let (title, body) = (title.to_owned(), body.to_owned());
    let sent = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            let shown = notify_rust::Notification::new()
                .appname("Lanyard")
                .summary(&title)
                .body(&body)
                .show();
            if let Err(e) = shown {
                debug!("notification not shown: {e}");
            }
        });
    if let Err(e) = sent {
        debug!("notification not shown: {e}");
    }
}
