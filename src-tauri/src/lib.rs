//! Lanyard's tray app: a small window onto `lanyard agent`. It subscribes to the agent's status
//! (starting the agent when none runs, reconnecting when it restarts), shows overall health as a
//! tray icon with a menu of every action, and opens a status window (`ui/`) on demand. Closing the
//! window destroys the webview; the app keeps running in the tray.
//!
//! Everything the window can do is a `#[tauri::command]` in [`commands`], generic over
//! [`tauri::Runtime`] so `tauri::test::mock_builder()` tests it without a display. Tokens never
//! pass through this crate: the agent keeps them, and the tray never asks for one.

pub mod actions;
pub mod autostart;
pub mod clients;
pub mod commands;
pub mod diagnostics;
pub mod host;
pub mod link;
pub mod notices;
pub mod snapshot;
pub mod tray;
pub mod window;

use std::sync::Arc;
use std::time::Instant;

use tauri::{AppHandle, Manager, RunEvent, Runtime};
use tracing::{info, warn};

use actions::CommandError;
use host::{Host, HostOptions};
use link::LinkOptions;

/// Registers every command on a builder (the real one or `mock_builder()`).
pub fn with_commands<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder.invoke_handler(tauri::generate_handler![
        commands::snapshot,
        commands::sign_in,
        commands::sign_out,
        commands::refresh_all,
        commands::refresh_server,
        commands::open_support,
        commands::set_autostart,
        commands::connect_client,
        commands::tray_look,
        commands::notices_sent,
        commands::window_painted,
    ])
}

/// Registers the commands and a ready host (what the mock-runtime tests use).
pub fn configure<R: Runtime>(builder: tauri::Builder<R>, host: Arc<Host>) -> tauri::Builder<R> {
    with_commands(builder).manage(host)
}

/// Opens a web page in the user's browser (through the opener plugin when it is there).
pub fn open_url<R: Runtime>(app: &AppHandle<R>, url: &str) -> Result<(), CommandError> {
    use tauri_plugin_opener::OpenerExt;
    if app.try_state::<tauri_plugin_opener::Opener<R>>().is_none() {
        return Err(CommandError::new(
            "unsupported",
            "Cannot open a browser here",
        ));
    }
    app.opener()
        .open_url(url, None::<&str>)
        .map_err(|e| CommandError::new("open_failed", format!("Cannot open {url}: {e}")))
}

/// How the app starts.
pub struct RunOptions {
    /// Open the status window at start (the demo, the end-to-end tests).
    pub show_window: bool,
    /// Passed to an agent the tray starts.
    pub no_keychain: bool,
}

/// Runs the tray app until Quit. Returns only on a start-up failure.
pub fn run(options: RunOptions, host_options: HostOptions) -> Result<(), String> {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lanyard-rt")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    tauri::async_runtime::set(runtime.handle().clone());
    let show_window = options.show_window;
    let no_keychain = options.no_keychain;
    let builder = tauri::Builder::default()
        // First: a second launch hands over to the first (which opens its window) and exits here.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            if let Err(e) = window::show_status(app) {
                warn!("a second launch could not open the status window: {e}");
            }
        }))
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_opener::init());
    // Inside the runtime while plugins start, so their D-Bus connections (zbus) run on it.
    let inside = runtime.enter();
    let app = with_commands(builder)
        .setup(move |app| {
            let handle = app.handle();
            let link_options = LinkOptions {
                endpoint: host_options.endpoint.clone(),
                // `LANYARD_TRAY_START_AGENT=0`: only wait for an agent (tests start their own).
                cli: host_options
                    .cli
                    .clone()
                    .filter(|_| std::env::var("LANYARD_TRAY_START_AGENT").as_deref() != Ok("0")),
                policy_path: host_options.policy_path.clone(),
                no_keychain,
            };
            let host = Arc::new(Host::new(host_options));
            app.manage(host.clone());
            autostart::init(handle, &host);
            tray::create(handle, &host.look_for(&host.snapshot()))?;
            let (events, shown) = (handle.clone(), host.clone());
            let link = link::start(link_options, move |event| {
                if shown.observe(event) {
                    host::present(&events, &shown);
                }
            })?;
            app.manage(link);
            info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "tray ready"
            );
            if show_window {
                window::show_status(handle)?;
            }
            // Looking for `lanyard clients` runs a process: keep it off the start-up path.
            let handle = handle.clone();
            std::thread::spawn(move || {
                host.set_clients(clients::offered(host.cli()));
                host::present(&handle, &host);
            });
            Ok(())
        })
        .build(tauri::generate_context!())
        .map_err(|e| format!("cannot start the tray app: {e}"))?;
    drop(inside);
    app.run(|app, event| match event {
        // Closing the last window must not quit: Lanyard lives in the tray. Quit passes a code.
        RunEvent::ExitRequested {
            code: None, api, ..
        } => api.prevent_exit(),
        RunEvent::Exit => {
            if let Some(link) = app.try_state::<link::Link>() {
                link.stop();
            }
        }
        _ => {}
    });
    drop(runtime);
    Ok(())
}
