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
/// Shows the static floor page instead of the app (the first-paint benchmark's floor).
const FLOOR_ENV: &str = "LANYARD_STATUS_FLOOR";

/// When the open window was asked for, in Unix ms (until its first paint is reported).
static ASKED_AT: Mutex<Option<u128>> = Mutex::new(None);
/// When this process's `main` started and when the webview was built, in Unix ms (the breakdown).
static PROCESS_STARTED: OnceLock<u128> = OnceLock::new();
static WEBVIEW_BUILT: OnceLock<u128> = OnceLock::new();
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

/// Called first thing in `main`: the process start, for the first-paint breakdown.
pub fn note_process_start() {
    let _ = PROCESS_STARTED.set(unix_ms());
}

/// What the page says about its first paint: when it started loading and when the first status
/// was in it (Unix ms, from the page's clock, which is the same clock).
#[derive(Debug, Default, Clone, Copy)]
pub struct PageMarks {
    pub navigation_start: Option<f64>,
    pub status_at: Option<f64>,
}

/// The window reports its first paint with live data: logs the time since it was asked for, and
/// where it went (`make tray-bench` reads this line): process start, webview built, page load
/// start, status in the page. Returns the milliseconds, if a window was being opened.
pub fn painted(marks: PageMarks) -> Option<u64> {
    let asked = lock(&ASKED_AT).take()?;
    let since = |at: Option<u128>| at.map_or(-1, |t| t as i64 - asked as i64);
    let since_f = |at: Option<f64>| at.map_or(-1, |t| t as i64 - asked as i64);
    let elapsed_ms = unix_ms().saturating_sub(asked) as u64;
    info!(
        elapsed_ms,
        process_ms = since(PROCESS_STARTED.get().copied()),
        webview_ms = since(WEBVIEW_BUILT.get().copied()),
        page_ms = since_f(marks.navigation_start),
        status_ms = since_f(marks.status_at),
        "status window painted"
    );
    Some(elapsed_ms)
}

/// The script that hands the page `host`'s snapshot, when the agent has answered.
pub fn injected_snapshot(host: &Host) -> Option<String> {
    let snapshot = host.snapshot();
    snapshot.status.as_ref()?;
    let json = serde_json::to_string(&snapshot).ok()?;
    Some(format!("window.__LANYARD_SNAPSHOT__ = {json};"))
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
    // `LANYARD_STATUS_FLOOR=1` (make tray-bench): a static page that reports its first paint, to
    // measure what any webview costs here before the app and its data.
    let floor = std::env::var_os(FLOOR_ENV).is_some_and(|v| v == "1");
    let page = if floor { "floor.html" } else { "index.html" };
    let mut builder = WebviewWindowBuilder::new(app, STATUS_WINDOW, WebviewUrl::App(page.into()))
        .title("Lanyard")
        .inner_size(460.0, 680.0)
        .min_inner_size(380.0, 420.0)
        .center();
    // The agent's status is usually here already (the link started before GTK): the page gets it
    // with its first script and paints it without a round trip. A snapshot holds no secret.
    if let Some(script) = app
        .try_state::<std::sync::Arc<Host>>()
        .filter(|_| !floor)
        .and_then(|host| injected_snapshot(&host))
    {
        builder = builder.initialization_script(&script);
    }
    builder.build()?;
    let _ = WEBVIEW_BUILT.set(unix_ms());
    info!(
        build_ms = started.elapsed().as_millis() as u64,
        "status window built"
    );
    Ok(())
}
