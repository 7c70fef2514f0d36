//! "Copy diagnostics…": runs `lanyard diagnose --output <folder>/lanyard-diagnostics-<time>.zip`
//! with the `lanyard` command beside the tray app (or on `PATH`), then shows the archive in the
//! file manager and says where it is in a notification.
//!
//! The tray collects nothing itself and reads no token: the CLI gathers and redacts (its
//! `diagnose` module). Picking the folder (Downloads, else Desktop, else home) is the caller's.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::actions::CommandError;

/// `folder/lanyard-diagnostics-<unix seconds>.zip`: sorts by time, never overwrites an earlier one.
pub fn archive_path(folder: &Path, unix_secs: u64) -> PathBuf {
    folder.join(format!("lanyard-diagnostics-{unix_secs}.zip"))
}

/// Runs `lanyard [--policy <policy>] diagnose --output <archive>`; returns the archive, or the
/// CLI's own last line as the error.
pub async fn save(
    cli: Option<&Path>,
    policy: Option<&Path>,
    archive: &Path,
) -> Result<PathBuf, CommandError> {
    let cli = cli.ok_or_else(|| {
        CommandError::new(
            "cli_missing",
            "The lanyard command is not installed next to the tray app",
        )
    })?;
    if let Some(folder) = archive.parent() {
        std::fs::create_dir_all(folder).map_err(|e| {
            CommandError::new(
                "diagnose_failed",
                format!("Cannot create {}: {e}", folder.display()),
            )
        })?;
    }
    let mut command = tokio::process::Command::new(cli);
    if let Some(policy) = policy {
        command.arg("--policy").arg(policy);
    }
    let output = command
        .arg("diagnose")
        .arg("--output")
        .arg(archive)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| CommandError::new("cli_failed", format!("Cannot run lanyard: {e}")))?;
    if output.status.success() && archive.exists() {
        Ok(archive.to_path_buf())
    } else {
        let said = String::from_utf8_lossy(&output.stderr);
        Err(CommandError::new(
            "diagnose_failed",
            said.lines()
                .last()
                .unwrap_or("lanyard diagnose failed")
                .to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_named_by_time_in_the_folder() {
        assert_eq!(
            archive_path(Path::new("/home/a/Downloads"), 1_700_000_000),
            PathBuf::from("/home/a/Downloads/lanyard-diagnostics-1700000000.zip")
        );
    }

    #[tokio::test]
    async fn a_missing_or_failing_cli_is_a_named_error() {
        let archive =
            std::env::temp_dir().join(format!("lanyard-tray-diag-{}/x.zip", std::process::id()));
        let e = save(None, None, &archive).await.expect_err("no cli");
        assert_eq!(e.code, "cli_missing");
        // `true` exits 0 but writes nothing: not taken for success.
        let e = save(Some(Path::new("/bin/true")), None, &archive)
            .await
            .expect_err("nothing written");
        assert_eq!(e.code, "diagnose_failed");
        let _ = std::fs::remove_dir_all(archive.parent().expect("dir"));
    }
}
