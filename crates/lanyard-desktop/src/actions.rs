//! What the tray menu's items and the window's buttons mean ([`MenuAction`]), how a failure reads
//! ([`CommandError`]) and the one way both processes ask the agent for something ([`ask_agent`]).
//!
//! Every action answers `Result<(), CommandError>`: a `{code, message}` the window shows in words.
//! Actions are broker requests to the agent (sign in, sign out, refresh, connect an `oauth`
//! server); none asks for a token,
//! so no secret can pass through here. Running an action that needs a toolkit (open a window,
//! quit, show a notification) is the tray's or the window's own code, not this module's.

use serde::Serialize;

use lanyard_core::engine::EngineError;
use lanyard_core::ipc::{BlockingClient, ClientError, ErrorCode, Request};

/// A menu item's meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "target", rename_all = "snake_case")]
pub enum MenuAction {
    SignIn,
    SignOut,
    OpenStatus,
    RefreshAll,
    /// Connect an AI client (by its `lanyard clients` id) to Lanyard.
    ConnectClient(String),
    /// Connect the `oauth` server with this policy id: the agent opens the browser once for the
    /// server's own sign-in (`lanyard connect <id>`).
    ConnectServer(String),
    /// Write a redacted diagnostics archive (`lanyard diagnose`) to Downloads and show it.
    CopyDiagnostics,
    Quit,
}

const CLIENT_PREFIX: &str = "connect:";
const SERVER_PREFIX: &str = "connect-server:";

impl MenuAction {
    /// The menu item id.
    pub fn id(&self) -> String {
        match self {
            MenuAction::SignIn => "sign-in".into(),
            MenuAction::SignOut => "sign-out".into(),
            MenuAction::OpenStatus => "open-status".into(),
            MenuAction::RefreshAll => "refresh-all".into(),
            MenuAction::ConnectClient(client) => format!("{CLIENT_PREFIX}{client}"),
            MenuAction::ConnectServer(server) => format!("{SERVER_PREFIX}{server}"),
            MenuAction::CopyDiagnostics => "copy-diagnostics".into(),
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
            "copy-diagnostics" => MenuAction::CopyDiagnostics,
            "quit" => MenuAction::Quit,
            other => match other.strip_prefix(SERVER_PREFIX) {
                Some(server) => MenuAction::ConnectServer(server.to_owned()),
                None => MenuAction::ConnectClient(other.strip_prefix(CLIENT_PREFIX)?.to_owned()),
            },
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
            EngineError::Denied { .. } | EngineError::ScopeNotAllowed { .. } => "denied",
            EngineError::StepUpRequired => "step_up_required",
            EngineError::Unavailable { .. } => "unavailable",
            EngineError::SignIn(_) => "sign_in_failed",
            EngineError::Misconfigured(_) => "misconfigured",
            EngineError::Stopped => "stopped",
            EngineError::NotConnected { .. } | EngineError::ConsentNeeded { .. } => "not_connected",
            EngineError::NotConnectable { .. } => "not_connectable",
            EngineError::ConnectFailed(_) => "connect_failed",
        };
        CommandError::new(code, capitalized(&e.to_string()))
    }
}

impl From<ClientError> for CommandError {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::NotRunning { .. } | ClientError::Io(_) => "agent_unreachable",
            ClientError::VersionMismatch { .. } => "agent_version",
            ClientError::ForeignAgent { .. } | ClientError::UntrustedEndpoint { .. } => {
                "agent_untrusted"
            }
            ClientError::Protocol(_) => "agent_protocol",
            ClientError::Agent(reply) => match reply.code {
                ErrorCode::NotSignedIn => "not_signed_in",
                ErrorCode::Denied => "denied",
                ErrorCode::UnknownServer => "unknown_server",
                ErrorCode::NotConnectable => "not_connectable",
                ErrorCode::ConnectFailed => "connect_failed",
                _ => "agent_error",
            },
        };
        CommandError::new(code, capitalized(&e.to_string()))
    }
}

/// How long a broker request may take: sign-in and connecting wait for the user in the browser.
const SIGN_IN_WAIT: std::time::Duration = std::time::Duration::from_secs(660);
const REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Sends one request to the agent on its own connection (off the async workers) and expects
/// `Done`. The only requests the tray sends: sign in, sign out, refresh, connect (never a token).
pub async fn ask_agent(endpoint: std::path::PathBuf, request: Request) -> Result<(), CommandError> {
    debug_assert!(!matches!(request, Request::Token { .. }));
    let wait = match request {
        Request::SignIn { .. } | Request::Connect { .. } => SIGN_IN_WAIT,
        _ => REQUEST_WAIT,
    };
    let answer = tokio::task::spawn_blocking(move || {
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
            MenuAction::ConnectServer("wiki".into()),
            MenuAction::CopyDiagnostics,
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
