//! What the tray menu's items and the window's buttons do, in one place, so the menu is tested
//! through the very functions it calls.
//!
//! Every action answers `Result<(), CommandError>`: a `{code, message}` the window shows in words.
//! Actions are broker requests to the agent (sign in, sign out, refresh); none asks for a token,
//! so no secret can pass through here.

use std::sync::Arc;

use serde::Serialize;
use tauri::{AppHandle, Manager, Runtime};
use tracing::warn;

use crate::host::Host;
use lanyard_core::engine::EngineError;
use lanyard_core::ipc::{BlockingClient, ClientError, ErrorCode, Request};

/// A menu item's meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "client", rename_all = "snake_case")]
pub enum MenuAction {
    SignIn,
    SignOut,
    OpenStatus,
    RefreshAll,
    /// Connect an AI client (by its `lanyard clients` id) to Lanyard.
    ConnectClient(String),
    Quit,
}

const CLIENT_PREFIX: &str = "connect:";

impl MenuAction {
    /// The menu item id.
    pub fn id(&self) -> String {
        match self {
            MenuAction::SignIn => "sign-in".into(),
            MenuAction::SignOut => "sign-out".into(),
            MenuAction::OpenStatus => "open-status".into(),
            MenuAction::RefreshAll => "refresh-all".into(),
            MenuAction::ConnectClient(client) => format!("{CLIENT_PREFIX}{client}"),
            MenuAction::Quit => "quit".into(),
        }
    }

    /// The action of a menu item id (`None` for information lines).
    pub fn from_id(id: &str) -> Option<Self> {
        Some(match id {
            "sign-in" => MenuAction::SignIn,
            "sign-out" => MenuAction::SignOut,
            "open-status" => MenuAction::OpenStatus,
            "refresh-all" => MenuAction::RefreshAll,
            "quit" => MenuAction::Quit,
            other => MenuAction::ConnectClient(other.strip_prefix(CLIENT_PREFIX)?.to_owned()),
        })
    }
}

/// A failed action, as the window receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// Stable, machine-readable: `not_signed_in`, `denied`, `policy_invalid`, …
    pub code: &'static str,
    /// One sentence for a person, with the remedy.
    pub message: String,
}

impl CommandError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<EngineError> for CommandError {
    fn from(e: EngineError) -> Self {
        let code = match &e {
            EngineError::UnknownServer(_) => "unknown_server",
            EngineError::NotSignedIn => "not_signed_in",
            EngineError::Denied { .. } => "denied",
            EngineError::StepUpRequired => "step_up_required",
            EngineError::Unavailable { .. } => "unavailable",
            EngineError::SignIn(_) => "sign_in_failed",
            EngineError::Misconfigured(_) => "misconfigured",
            EngineError::Stopped => "stopped",
        };
        CommandError::new(code, capitalized(&e.to_string()))
    }
}

impl From<ClientError> for CommandError {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::NotRunning { .. } | ClientError::Io(_) => "agent_unreachable",
            ClientError::VersionMismatch { .. } => "agent_version",
            ClientError::Protocol(_) => "agent_protocol",
            ClientError::Agent(reply) => match reply.code {
                ErrorCode::NotSignedIn => "not_signed_in",
                ErrorCode::Denied => "denied",
                ErrorCode::UnknownServer => "unknown_server",
                _ => "agent_error",
            },
        };
        CommandError::new(code, capitalized(&e.to_string()))
    }
}

/// How long a broker request may take: sign-in waits for the user in the browser.
const SIGN_IN_WAIT: std::time::Duration = std::time::Duration::from_secs(660);
const REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Sends one request to the agent on its own connection (off the async workers) and expects
/// `Done`. The only requests the tray sends: sign in, sign out, refresh (never a token).
pub async fn ask_agent(endpoint: std::path::PathBuf, request: Request) -> Result<(), CommandError> {
    debug_assert!(!matches!(request, Request::Token { .. }));
    let wait = match request {
        Request::SignIn { .. } => SIGN_IN_WAIT,
        _ => REQUEST_WAIT,
    };
    let answer = tauri::async_runtime::spawn_blocking(move || {
        let mut client = BlockingClient::connect(&endpoint)?;
        client.call(&request, wait)
    })
    .await
    .map_err(|e| CommandError::new("internal", format!("The request did not finish: {e}")))?;
    match answer? {
        lanyard_core::ipc::Response::Done => Ok(()),
        _ => Err(CommandError::new(
            "agent_protocol",
            "The Lanyard agent answered something unexpected",
        )),
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn host<R: Runtime>(app: &AppHandle<R>) -> Arc<Host> {
    app.state::<Arc<Host>>().inner().clone()
}

/// Runs `action` to completion.
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
        MenuAction::OpenStatus => crate::window::open(app).map_err(|e| {
            CommandError::new("window", format!("Cannot open the status window: {e}"))
        }),
        MenuAction::ConnectClient(client) => {
            crate::clients::connect(host.cli(), host.policy_path(), &client).await
        }
        // Quitting the tray leaves the agent running: it serves the command-line tools.
        MenuAction::Quit => {
            app.exit(0);
            Ok(())
        }
    }
}

/// Runs `action` in the background (menu clicks must not block the UI thread); failures are
/// logged and, for sign-in, shown by the engine's status.
pub fn spawn<R: Runtime>(app: AppHandle<R>, action: MenuAction) {
    tauri::async_runtime::spawn(async move {
        let id = action.id();
        if let Err(e) = perform(&app, action).await {
            warn!(action = %id, code = e.code, "menu action failed: {}", e.message);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_ids_round_trip() {
        for action in [
            MenuAction::SignIn,
            MenuAction::SignOut,
            MenuAction::OpenStatus,
            MenuAction::RefreshAll,
            MenuAction::ConnectClient("claude-code".into()),
            MenuAction::Quit,
        ] {
            assert_eq!(MenuAction::from_id(&action.id()), Some(action));
        }
        assert_eq!(MenuAction::from_id("info-0"), None);
    }

    #[test]
    fn engine_errors_become_codes_and_sentences() {
        let e = CommandError::from(EngineError::NotSignedIn);
        assert_eq!(e.code, "not_signed_in");
        assert_eq!(e.message, "Not signed in: sign in to Lanyard first");
        let e = CommandError::from(EngineError::Denied {
            code: "access_denied".into(),
            description: None,
        });
        assert_eq!(e.code, "denied");
        assert!(e.message.starts_with("Blocked by your organization"));
        let json = serde_json::to_value(&e).expect("serializes");
        assert_eq!(json["code"], "denied");
    }
}
