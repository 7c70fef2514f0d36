//! Lanyard's tray app: a small window onto `lanyard agent`, in two processes of one executable.
//! The tray process ([`Role::Tray`]) subscribes to the agent's status (starting the agent when none
//! runs, reconnecting when it restarts), shows overall health as a tray icon with a menu of every
//! action and sends the notifications; it never creates a webview. "Open status…" starts the same
//! executable as the status window process ([`Role::Window`], `--window`), which subscribes on its
//! own, shows `ui/` and exits when its window closes, taking its WebKit processes with it. So an
//! idle tray costs no webview, no WebKit process and none of their wake-ups.
//!
//! Everything the window can do is a `#[tauri::command]` in [`commands`], generic over
//! [`tauri::Runtime`] so `tauri::test::mock_builder()` tests it without a display. Tokens never
//! pass through this crate: the agent keeps them, and the tray never asks for one.

pub mod actions;
pub mod autostart;
pub mod clients;
pub mod commands;
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

/// Which of the two processes this one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The tray icon, its menu and the notifications; no webview.
    Tray,
    /// The status window only; the process ends when the window closes.
    Window,
}

/// How the app starts.
pub struct RunOptions {
    pub role: Role,
    /// The tray opens the status window at start (the demo).
    pub show_window: bool,
    /// Passed to an agent the tray starts.
    pub no_keychain: bool,
}

/// The window process's app identifier: its own, so the single-instance guard of each process
/// only meets its own kind (a second "Open status…" raises the open window).
const WINDOW_IDENTIFIER_SUFFIX: &str = ".status";

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
    let role = options.role;
    let show_window = options.show_window;
    let no_keychain = options.no_keychain;
    let mut context = tauri::generate_context!();
    if role == Role::Window {
        let identifier = format!("{}{WINDOW_IDENTIFIER_SUFFIX}", context.config().identifier);
        context.config_mut().identifier = identifier;
    }
    let builder = tauri::Builder::default()
        // First: a second launch hands over to the first and exits here. A second tray opens the
        // window; a second window raises the open one.
        .plugin(tauri_plugin_single_instance::init(
            move |app, _argv, _cwd| {
                let shown = match role {
                    Role::Tray => window::open(app).map_err(|e| e.to_string()),
                    Role::Window => window::show_status(app).map_err(|e| e.to_string()),
                };
                if let Err(e) = shown {
                    warn!("a second launch could not open the status window: {e}");
                }
            },
        ))
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
        .plugin(tauri_plugin_opener::init());
    let builder = match role {
        Role::Tray => builder.plugin(tauri_plugin_notification::init()),
        Role::Window => builder,
    };
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
            let host = Arc::new(Host::new(host_options, role));
            app.manage(host.clone());
            autostart::init(handle, &host);
            if role == Role::Tray {
                tray::create(handle, &host.look_for(&host.snapshot()))?;
            }
            let (events, shown) = (handle.clone(), host.clone());
            let link = link::start(link_options, move |event| {
                if shown.observe(event) {
                    host::present(&events, &shown);
                }
            })?;
            app.manage(link);
            match role {
                Role::Tray => {
                    info!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "tray ready"
                    );
                    if show_window {
                        window::open(handle)?;
                    }
                }
                Role::Window => window::show_status(handle)?,
            }
            // Looking for `lanyard clients` runs a process: keep it off the start-up path.
            let handle = handle.clone();
            std::thread::spawn(move || {
                host.set_clients(clients::offered(host.cli()));
                host::present(&handle, &host);
            });
            Ok(())
        })
        .build(context)
        .map_err(|e| format!("cannot start the tray app: {e}"))?;
    drop(inside);
    app.run(move |app, event| match event {
        // Closing the window must not quit the tray: Lanyard lives there. Quit passes a code. The
        // window process ends with its window.
        RunEvent::ExitRequested {
            code: None, api, ..
        } if role == Role::Tray => api.prevent_exit(),
        RunEvent::Exit => {
            if let Some(link) = app.try_state::<link::Link>() {
                link.stop();
            }
            if role == Role::Tray {
                window::close_opened();
            }
        }
        _ => {}
    });
    drop(runtime);
    Ok(())
}
