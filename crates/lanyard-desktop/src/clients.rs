//! "Connect AI clients ▸": which AI clients the tray offers, and connecting one by running
//! `lanyard clients install <client>` (client wiring lives in the CLI crate, not a library).
//!
//! The submenu appears only when a `lanyard` executable that knows `clients` is found, beside this
//! executable or on `PATH`. Nothing here reads or writes a client's config itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Serialize;

use crate::actions::CommandError;

/// An AI client the tray can connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AiClient {
    /// The name `lanyard clients install` takes.
    pub id: String,
    pub name: String,
}

/// The clients `lanyard clients install` knows.
const KNOWN: [(&str, &str); 6] = [
    ("claude-code", "Claude Code"),
    ("claude-desktop", "Claude Desktop"),
    ("vscode", "VS Code"),
    ("cursor", "Cursor"),
    ("gemini", "Gemini CLI"),
    ("codex", "Codex CLI"),
];

/// The `lanyard` CLI (see [`crate::link::find_cli`]).
pub fn find_cli() -> Option<PathBuf> {
    crate::link::find_cli()
}

/// The clients to offer: all of them when `cli` answers `clients --help`, none otherwise.
pub fn offered(cli: Option<&Path>) -> Vec<AiClient> {
    let Some(cli) = cli else { return Vec::new() };
    let knows_clients = std::process::Command::new(cli)
        .args(["clients", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !knows_clients {
        return Vec::new();
    }
    KNOWN
        .iter()
        .map(|(id, name)| AiClient {
            id: (*id).into(),
            name: (*name).into(),
        })
        .collect()
}

/// Runs `lanyard [--policy <policy>] clients install <client>`; its own message is the error.
pub async fn connect(
    cli: Option<&Path>,
    policy: Option<&Path>,
    client: &str,
) -> Result<(), CommandError> {
    if !KNOWN.iter().any(|(id, _)| *id == client) {
        return Err(CommandError::new(
            "unknown_client",
            format!("Lanyard does not know the AI client {client:?}"),
        ));
    }
    let cli = cli.ok_or_else(|| {
        CommandError::new(
            "cli_missing",
            "The lanyard command is not installed next to the tray app",
        )
    })?;
    let mut command = tokio::process::Command::new(cli);
    if let Some(policy) = policy {
        command.arg("--policy").arg(policy);
    }
    let output = command
        .args(["clients", "install", client])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| CommandError::new("cli_failed", format!("Cannot run lanyard: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        let said = String::from_utf8_lossy(&output.stderr);
        Err(CommandError::new(
            "cli_failed",
            said.lines()
                .last()
                .unwrap_or("lanyard clients install failed")
                .to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cli_or_a_cli_without_clients_offers_nothing() {
        assert!(offered(None).is_empty());
        // `false` exits 1 to everything, like a lanyard that predates `clients`.
        assert!(offered(Some(Path::new("/bin/false"))).is_empty());
        assert_eq!(offered(Some(Path::new("/bin/true"))).len(), KNOWN.len());
    }

    #[tokio::test]
    async fn unknown_clients_and_a_missing_cli_are_named_errors() {
        let e = connect(Some(Path::new("/bin/true")), Some(Path::new("p")), "emacs")
            .await
            .expect_err("unknown");
        assert_eq!(e.code, "unknown_client");
        let e = connect(None, Some(Path::new("p")), "cursor")
            .await
            .expect_err("no cli");
        assert_eq!(e.code, "cli_missing");
        let e = connect(
            Some(Path::new("/bin/false")),
            Some(Path::new("p")),
            "cursor",
        )
        .await
        .expect_err("fails");
        assert_eq!(e.code, "cli_failed");
    }
}
