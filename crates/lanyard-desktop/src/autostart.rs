//! Start at login: the organization's `settings.autostart` (on by default) the first time Lanyard
//! runs for a user, then whatever the user chose — unless the organization made it mandatory,
//! which locks it and is re-applied at every start. The login item (an XDG autostart entry on
//! Linux, a Run value on Windows, a LaunchAgent on macOS) is written by the `auto-launch` crate and
//! always starts the tray executable, whichever process (tray or status window) changes it.
//!
//! This module decides and records; it shows nothing.

use std::path::{Path, PathBuf};

use auto_launch::{AutoLaunch, AutoLaunchBuilder};
use tracing::warn;

use crate::actions::CommandError;
use crate::host::Host;
use crate::snapshot::AutostartView;

/// The login item's name (the product name, as the earlier Tauri plugin wrote it).
const APP_NAME: &str = "Lanyard";
/// The folder (under the user's config folder) for the marker below.
const CONFIG_FOLDER: &str = "dev.lanyard.tray";
/// The marker that says the first-run default was applied (so a user's "off" sticks).
const DEFAULT_APPLIED: &str = "autostart-default-applied";

/// The login item for the tray executable `tray`.
pub struct LoginItem {
    launcher: AutoLaunch,
}

impl LoginItem {
    /// The login item that starts `tray`; `None` (logged) when this OS has no place for one.
    pub fn new(tray: &Path) -> Option<LoginItem> {
        let mut builder = AutoLaunchBuilder::new();
        builder
            .set_app_name(APP_NAME)
            .set_app_path(&tray.display().to_string())
            // A second tray started at login leaves quietly instead of opening the status window.
            .set_args(&["--at-login"]);
        #[cfg(target_os = "macos")]
        builder.set_macos_launch_mode(auto_launch::MacOSLaunchMode::LaunchAgent);
        // The user's own Run value (HKCU) only: by default auto-launch writes HKLM when it may (an
        // elevated tray, or Wine, where everyone is an administrator), which would turn one user's
        // choice into every user's; the machine-wide start is the installer's ("Lanyard Tray").
        #[cfg(windows)]
        builder.set_windows_enable_mode(auto_launch::WindowsEnableMode::CurrentUser);
        match builder.build() {
            Ok(launcher) => Some(LoginItem { launcher }),
            Err(e) => {
                warn!("start at login is not available: {e}");
                None
            }
        }
    }

    fn apply(&self, enabled: bool) -> Result<(), auto_launch::Error> {
        if enabled {
            self.launcher.enable()
        } else {
            self.launcher.disable()
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.launcher.is_enabled().unwrap_or(false)
    }
}

/// Where the first-run marker lives: `<config>/dev.lanyard.tray/autostart-default-applied`.
fn marker() -> Option<PathBuf> {
    Some(
        dirs::config_dir()?
            .join(CONFIG_FOLDER)
            .join(DEFAULT_APPLIED),
    )
}

/// Records the current state in the host; with `apply_defaults` (the tray process) first applies
/// the first-run default, or the organization's locked value. Without a login item autostart
/// shows as off.
pub fn init(item: Option<&LoginItem>, host: &Host, apply_defaults: bool) {
    let Some(item) = item else { return };
    let policy = host.autostart_policy();
    if !apply_defaults {
        // The status window only shows the state; the tray applies the defaults.
    } else if policy.locked {
        if let Err(e) = item.apply(policy.enabled) {
            warn!("start at login could not be set: {e}");
        }
    } else if let Some(marker) = marker() {
        if !marker.exists() {
            if let Err(e) = item.apply(policy.enabled) {
                warn!("start at login could not be set: {e}");
            }
            let written = marker
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&marker, b""));
            if let Err(e) = written {
                warn!("cannot remember the autostart default: {e}");
            }
        }
    }
    host.set_autostart(AutostartView {
        enabled: item.is_enabled(),
        locked: policy.locked,
    });
}

/// Turns start at login on or off.
pub fn set(item: Option<&LoginItem>, host: &Host, enabled: bool) -> Result<(), CommandError> {
    if host.autostart().locked {
        return Err(CommandError::new(
            "locked",
            "Start at login is set by your organization",
        ));
    }
    let item = item
        .ok_or_else(|| CommandError::new("unsupported", "Start at login is not available here"))?;
    item.apply(enabled).map_err(|e| {
        CommandError::new(
            "autostart_failed",
            format!("Start at login could not be changed: {e}"),
        )
    })?;
    host.set_autostart(AutostartView {
        enabled: item.is_enabled(),
        locked: host.autostart_policy().locked,
    });
    Ok(())
}
