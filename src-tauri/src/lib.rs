//! Lanyard's status window, `lanyard-status`: a Tauri process of its own. The tray
//! (`lanyard-tray`, which links no webview) starts it on "Open status…"; it subscribes to the
//! agent's status on its own ([`lanyard_desktop::link`]), shows `ui/` and exits when its window
//! closes, taking its WebKit processes with it. A second start raises the open window.
//!
//! Everything the window can do is a `#[tauri::command]` in [`commands`], generic over
//! [`tauri::Runtime`] so `tauri::test::mock_builder()` tests it without a display. Tokens never
//! pass through this crate: the agent keeps them, and the window never asks for one.

pub mod commands;
pub mod window;

use std::sync::Arc;

use lanyard_core::ipc::Request;
use lanyard_desktop::actions::{ask_agent, CommandError, MenuAction};
use lanyard_desktop::autostart::{self, LoginItem};
use lanyard_desktop::host::{Host, HostOptions};
use lanyard_desktop::link::{self, LinkOptions};
use lanyard_desktop::{clients, launch};
use tauri::{AppHandle, Emitter, Manager, RunEvent, Runtime};
use tracing::debug;

/// The window event that carries a new [`lanyard_desktop::snapshot::Snapshot`].
pub const STATUS_EVENT: &str = "lanyard://status";

/// The login item, as the window's switch changes it (empty until it was looked up; `None`: not
/// available here).
#[derive(Default)]
pub struct Autostart(pub std::sync::OnceLock<Option<LoginItem>>);

impl Autostart {
    /// The login item, if it was looked up and exists.
    pub fn item(&self) -> Option<&LoginItem> {
        self.0.get().and_then(Option::as_ref)
    }
}

/// Registers every command on a builder (the real one or `mock_builder()`).
pub fn with_commands<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder.invoke_handler(tauri::generate_handler![
        commands::snapshot,
        commands::sign_in,
        commands::sign_out,
        commands::refresh_all,
        commands::refresh_server,
        commands::connect_server,
        commands::open_support,
        commands::set_autostart,
        commands::connect_client,
        commands::window_painted,
    ])
}

/// Registers the commands and a ready host (what the mock-runtime tests use).
pub fn configure<R: Runtime>(builder: tauri::Builder<R>, host: Arc<Host>) -> tauri::Builder<R> {
    with_commands(builder)
        .manage(host)
        .manage(Autostart::default())
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

/// Sends the host's current state to the window.
pub fn present<R: Runtime>(app: &AppHandle<R>, host: &Host) {
    if let Err(e) = app.emit(STATUS_EVENT, host.snapshot()) {
        debug!("no window took the status: {e}");
    }
}

fn host<R: Runtime>(app: &AppHandle<R>) -> Arc<Host> {
    app.state::<Arc<Host>>().inner().clone()
}

/// Runs one of the window's actions to completion: broker requests to the agent, or `lanyard
/// clients install`. "Open status" raises this window; the tray's own items (diagnostics, quit)
/// are not the window's.
pub async fn perform<R: Runtime>(
    app: &AppHandle<R>,
    action: MenuAction,
) -> Result<(), CommandError> {
    let host = host(app);
    let endpoint = host.endpoint().to_path_buf();
    match action {
        MenuAction::SignIn => ask_agent(endpoint, Request::SignIn { device: false }).await,
        MenuAction::SignOut => ask_agent(endpoint, Request::SignOut).await,
        MenuAction::RefreshAll => ask_agent(endpoint, Request::RefreshAll).await,
        MenuAction::OpenStatus => window::show_status(app).map_err(|e| {
            CommandError::new("window", format!("Cannot show the status window: {e}"))
        }),
        MenuAction::ConnectClient(client) => {
            clients::connect(host.cli(), host.policy_path(), &client).await
        }
        MenuAction::ConnectServer(server) => ask_agent(endpoint, Request::Connect { server }).await,
        MenuAction::CopyDiagnostics | MenuAction::Quit => Err(CommandError::new(
            "unsupported",
            "That is done from the tray menu",
        )),
    }
}

/// How the window starts.
pub struct RunOptions {
    /// Passed to an agent this process starts (when no agent and no tray runs).
    pub no_keychain: bool,
}

/// Runs the status window until it closes. Returns only on a start-up failure.
pub fn run(options: RunOptions, host_options: HostOptions) -> Result<(), String> {
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lanyard-rt")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    tauri::async_runtime::set(runtime.handle().clone());
    let no_keychain = options.no_keychain;
    let link_options = LinkOptions {
        endpoint: host_options.endpoint.clone(),
        cli: host_options
            .cli
            .clone()
            .filter(|_| std::env::var("LANYARD_TRAY_START_AGENT").as_deref() != Ok("0")),
        policy_path: host_options.policy_path.clone(),
        no_keychain,
    };
    let host = Arc::new(Host::new(host_options));
    // The agent's status comes in while GTK and the webview start: the first paint needs it.
    let shown = host.clone();
    let link = link::start(link_options, move |event| {
        shown.observe(event);
        window::status_changed(&shown);
    })
    .map_err(|e| format!("cannot start the agent link: {e}"))?;
    let context = tauri::generate_context!();
    let builder = tauri::Builder::default()
        // First: a second start hands over to the first (which raises its window) and exits here.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            if let Err(e) = window::show_status(app) {
                tracing::warn!("a second start could not raise the status window: {e}");
            }
        }))
        .plugin(tauri_plugin_opener::init());
    // Inside the runtime while plugins start, so their D-Bus connections (zbus) run on it.
    let inside = runtime.enter();
    let app = with_commands(builder)
        .setup(move |app| {
            let handle = app.handle();
            app.manage(host.clone());
            app.manage(Autostart::default());
            window::set_app(handle);
            window::show_status(handle)?;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "status window created"
            );
            // The login item and `lanyard clients` touch the disk and run a process: after the
            // window exists, off the start-up path.
            let handle = handle.clone();
            std::thread::spawn(move || {
                let item = LoginItem::new(&launch::tray_exe());
                autostart::init(item.as_ref(), &host, false);
                let _ = handle.state::<Autostart>().0.set(item);
                host.set_clients(clients::offered(host.cli()));
                present(&handle, &host);
            });
            Ok(())
        })
        .build(context)
        .map_err(|e| format!("cannot start the status window: {e}"))?;
    drop(inside);
    app.run(move |_app, event| {
        if let RunEvent::Exit = event {
            link.stop();
        }
    });
    drop(runtime);
    Ok(())
}
