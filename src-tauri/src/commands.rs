//! The status window's commands: one line each, over `actions` and the [`Host`]. Errors reach the
//! window as `{code, message}`. Generic over [`Runtime`] so `tauri::test::mock_builder()` runs them
//! without a display.

use std::sync::Arc;

use tauri::{AppHandle, Runtime, State};

use lanyard_desktop::actions::{self, CommandError, MenuAction};
use lanyard_desktop::host::Host;
use lanyard_desktop::snapshot::Snapshot;

use crate::Autostart;

type HostState<'a> = State<'a, Arc<Host>>;

/// Everything the window shows.
#[tauri::command]
pub fn snapshot(host: HostState<'_>) -> Snapshot {
    host.snapshot()
}

/// Signs in in the system browser; returns when the sign-in finished (or failed).
#[tauri::command]
pub async fn sign_in<R: Runtime>(app: AppHandle<R>) -> Result<(), CommandError> {
    crate::perform(&app, MenuAction::SignIn).await
}

#[tauri::command]
pub async fn sign_out<R: Runtime>(app: AppHandle<R>) -> Result<(), CommandError> {
    crate::perform(&app, MenuAction::SignOut).await
}

#[tauri::command]
pub async fn refresh_all<R: Runtime>(app: AppHandle<R>) -> Result<(), CommandError> {
    crate::perform(&app, MenuAction::RefreshAll).await
}

/// Retries one server now.
#[tauri::command]
pub async fn refresh_server(host: HostState<'_>, server: String) -> Result<(), CommandError> {
    let endpoint = host.endpoint().to_path_buf();
    actions::ask_agent(endpoint, lanyard_core::ipc::Request::Refresh { server }).await
}

/// Connects one `oauth` server: the agent opens the browser once for the server's own sign-in;
/// returns when the connection is kept (or refused).
#[tauri::command]
pub async fn connect_server<R: Runtime>(
    app: AppHandle<R>,
    server: String,
) -> Result<(), CommandError> {
    crate::perform(&app, MenuAction::ConnectServer(server)).await
}

/// Opens the organization's support page (the policy's `support_url`) in the browser.
#[tauri::command]
pub fn open_support<R: Runtime>(
    app: AppHandle<R>,
    host: HostState<'_>,
) -> Result<(), CommandError> {
    let url = host.support_url().ok_or_else(|| {
        CommandError::new(
            "no_support_url",
            "Your organization has not set a support page",
        )
    })?;
    crate::open_url(&app, &url)
}

/// Turns start-at-login on or off (unless the organization locked it).
#[tauri::command]
pub fn set_autostart<R: Runtime>(
    app: AppHandle<R>,
    host: HostState<'_>,
    login_item: State<'_, Autostart>,
    enabled: bool,
) -> Result<(), CommandError> {
    lanyard_desktop::autostart::set(login_item.item(), &host, enabled)?;
    crate::present(&app, &host);
    Ok(())
}

/// Connects an AI client (`lanyard clients install <client>`), as the tray's submenu does.
#[tauri::command]
pub async fn connect_client<R: Runtime>(
    app: AppHandle<R>,
    client: String,
) -> Result<(), CommandError> {
    crate::perform(&app, MenuAction::ConnectClient(client)).await
}

/// The window's first paint with live data (logged with the time since it was opened).
#[tauri::command]
pub fn window_painted(navigation_start: Option<f64>, status_at: Option<f64>) -> Option<u64> {
    crate::window::painted(crate::window::PageMarks {
        navigation_start,
        status_at,
    })
}
