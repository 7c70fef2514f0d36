//! The tray process's event loop (tao): creates the tray icon, follows the agent through the link
//! (every change comes back to the loop as [`Wake::Present`]), runs menu actions off the UI thread
//! and quits on "Quit Lanyard". It never creates a window or a webview.
//!
//! Actions are broker requests to the agent (sign in, sign out, refresh) or local work (open the
//! status window, run `lanyard clients` / `lanyard diagnose`); none asks for a token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use lanyard_core::ipc::Request;
use lanyard_desktop::actions::{ask_agent, CommandError, MenuAction};
use lanyard_desktop::autostart::{self, LoginItem};
use lanyard_desktop::host::{self, Host, HostOptions};
use lanyard_desktop::launch;
use lanyard_desktop::link::{self, LinkOptions};
use lanyard_desktop::{clients, diagnostics};
use muda::MenuEvent;
use tao::event::{Event, StartCause};
use tao::event_loop::{ControlFlow, EventLoopBuilder, EventLoopProxy};
use tracing::{info, warn};
use tray_icon::TrayIcon;

use crate::instance::{self, Claim};
use crate::{menu, notify, window};

/// What wakes the UI thread.
#[derive(Debug)]
pub enum Wake {
    /// The host's state changed: show it.
    Present,
    /// A menu item was chosen.
    Menu(String),
    /// Open the status window (a second launch, or `--show`).
    OpenWindow,
    Quit,
}

/// How the tray starts.
pub struct RunOptions {
    /// Open the status window at start (the demo).
    pub show_window: bool,
    /// Passed to an agent the tray starts.
    pub no_keychain: bool,
    /// Started by a login item: when a tray already runs, leave quietly (the machine's Run entry
    /// and the user's own login item may both start one; neither opens the status window).
    pub at_login: bool,
}

/// What the actions need, shared with the threads that run them.
struct Context {
    host: Arc<Host>,
    proxy: EventLoopProxy<Wake>,
    runtime: tokio::runtime::Handle,
}

/// Runs the tray until Quit. Returns early only on a start-up failure or when another tray runs
/// (which is then asked to open its window).
pub fn run(options: RunOptions, host_options: HostOptions) -> Result<(), String> {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("lanyard-rt")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let event_loop = EventLoopBuilder::<Wake>::with_user_event().build();
    let proxy = event_loop.create_proxy();

    let second = proxy.clone();
    let claim = instance::claim(
        &host_options.endpoint,
        runtime.handle(),
        !options.at_login,
        move || {
            let _ = second.send_event(Wake::OpenWindow);
        },
    )
    .map_err(|e| format!("cannot check for a running tray: {e}"))?;
    if claim == Claim::Second {
        if options.at_login {
            info!("a tray already runs (started at login): nothing to do");
        } else {
            info!("a tray already runs: it opens the status window");
        }
        return Ok(());
    }

    let link_options = LinkOptions {
        endpoint: host_options.endpoint.clone(),
        // `LANYARD_TRAY_START_AGENT=0`: only wait for an agent (tests start their own).
        cli: host_options
            .cli
            .clone()
            .filter(|_| std::env::var("LANYARD_TRAY_START_AGENT").as_deref() != Ok("0")),
        policy_path: host_options.policy_path.clone(),
        no_keychain: options.no_keychain,
    };
    let host = Arc::new(Host::new(host_options));
    autostart::init(LoginItem::new(&launch::tray_exe()).as_ref(), &host, true);
    let context = Arc::new(Context {
        host: host.clone(),
        proxy: proxy.clone(),
        runtime: runtime.handle().clone(),
    });

    let menu_proxy = proxy.clone();
    MenuEvent::set_event_handler(Some(move |event: MenuEvent| {
        let _ = menu_proxy.send_event(Wake::Menu(event.id.0));
    }));

    let mut tray: Option<TrayIcon> = None;
    let mut link: Option<link::Link> = None;
    let show_window = options.show_window;
    event_loop.run(move |event, _, control_flow| {
        *control_flow = ControlFlow::Wait;
        match event {
            Event::NewEvents(StartCause::Init) => {
                // The icon is created inside the running loop (macOS requires it; GTK is ready).
                let look = host.look_for(&host.snapshot());
                match menu::create(&look) {
                    Ok(icon) => tray = Some(icon),
                    Err(e) => {
                        warn!("cannot create the tray icon: {e}");
                        *control_flow = ControlFlow::ExitWithCode(1);
                        return;
                    }
                }
                let (events, shown) = (proxy.clone(), host.clone());
                match link::start(link_options.clone(), move |event| {
                    if shown.observe(event) {
                        let _ = events.send_event(Wake::Present);
                    }
                }) {
                    Ok(started) => link = Some(started),
                    Err(e) => warn!("cannot start the agent link: {e}"),
                }
                info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "tray ready"
                );
                if show_window {
                    open_window(&host);
                }
                // Looking for `lanyard clients` runs a process: keep it off the start-up path.
                let (found, proxy) = (host.clone(), proxy.clone());
                std::thread::spawn(move || {
                    found.set_clients(clients::offered(found.cli()));
                    let _ = proxy.send_event(Wake::Present);
                });
            }
            Event::UserEvent(Wake::Present) => {
                if let Some(tray) = &tray {
                    present(tray, &host);
                }
            }
            Event::UserEvent(Wake::Menu(id)) => {
                if let Some(action) = MenuAction::from_id(&id) {
                    spawn(&context, action);
                }
            }
            Event::UserEvent(Wake::OpenWindow) => open_window(&host),
            Event::UserEvent(Wake::Quit) => {
                // Quitting the tray leaves the agent running: it serves the command-line tools.
                if let Some(link) = &link {
                    link.stop();
                }
                window::close_opened();
                tray.take();
                *control_flow = ControlFlow::Exit;
            }
            _ => {}
        }
    })
}

/// Shows the host's state: the tray icon and menu when they changed, and the notifications due.
fn present(tray: &TrayIcon, host: &Host) {
    let snapshot = host.snapshot();
    let look = host.look_for(&snapshot);
    let mut changed = false;
    if host.tray_look().as_ref() != Some(&look) {
        if let Err(e) = menu::apply(tray, &look) {
            warn!("the tray icon could not be updated: {e}");
        }
        host.set_tray_look(look);
        changed = true;
    }
    for notice in host.take_notices(&snapshot) {
        notify::show(&notice.title, &notice.body);
        changed = true;
    }
    if changed {
        host::report(host);
    }
}

fn open_window(host: &Host) {
    if let Err(e) = window::open(host.policy_path()) {
        warn!("cannot open the status window: {e}");
    }
}

/// Runs `action` in the background (menu clicks must not block the UI thread); failures are
/// logged and, for sign-in, shown by the agent's status.
fn spawn(context: &Arc<Context>, action: MenuAction) {
    let context = context.clone();
    let runtime = context.runtime.clone();
    runtime.spawn(async move {
        let id = action.id();
        if let Err(e) = perform(&context, action).await {
            warn!(action = %id, code = e.code, "menu action failed: {}", e.message);
        }
    });
}

/// Runs `action` to completion.
async fn perform(context: &Context, action: MenuAction) -> Result<(), CommandError> {
    let host = &context.host;
    let endpoint = host.endpoint().to_path_buf();
    match action {
        MenuAction::SignIn => ask_agent(endpoint, Request::SignIn { device: false }).await,
        MenuAction::SignOut => ask_agent(endpoint, Request::SignOut).await,
        MenuAction::RefreshAll => ask_agent(endpoint, Request::RefreshAll).await,
        MenuAction::OpenStatus => window::open(host.policy_path()).map_err(|e| {
            CommandError::new("window", format!("Cannot open the status window: {e}"))
        }),
        MenuAction::ConnectClient(client) => {
            clients::connect(host.cli(), host.policy_path(), &client).await
        }
        MenuAction::ConnectServer(server) => ask_agent(endpoint, Request::Connect { server }).await,
        MenuAction::CopyDiagnostics => copy_diagnostics(host).await,
        MenuAction::Quit => {
            let _ = context.proxy.send_event(Wake::Quit);
            Ok(())
        }
    }
}

/// The folder a diagnostics archive goes to: Downloads, else Desktop, else home.
fn diagnostics_folder() -> Option<PathBuf> {
    dirs::download_dir()
        .or_else(dirs::desktop_dir)
        .or_else(dirs::home_dir)
}

/// Writes the diagnostics archive, shows its folder in the file manager and names it in a
/// notification.
async fn copy_diagnostics(host: &Host) -> Result<(), CommandError> {
    let folder = diagnostics_folder()
        .ok_or_else(|| CommandError::new("no_folder", "No folder to save into"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let archive = diagnostics::archive_path(&folder, now);
    let archive = diagnostics::save(host.cli(), host.policy_path(), &archive).await?;
    if let Err(e) = open::that_detached(&folder) {
        warn!("cannot show {} in the file manager: {e}", folder.display());
    }
    notify::show(
        "Diagnostics saved",
        &format!(
            "{} — send it to your helpdesk (no secrets in it).",
            archive.display()
        ),
    );
    Ok(())
}
