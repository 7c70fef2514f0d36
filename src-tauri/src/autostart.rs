//! Start at login (tauri-plugin-autostart): the organization's `settings.autostart` (on by
//! default) the first time Lanyard runs for a user, then whatever the user chose — unless the
//! organization made it mandatory, which locks it and is re-applied at every start. The plugin
//! writes the login item (an XDG autostart entry on Linux); this module only decides and records.

use tauri::{AppHandle, Manager, Runtime};
use tracing::warn;

use crate::actions::CommandError;
use crate::host::Host;
use crate::snapshot::AutostartView;

/// The marker that says the first-run default was applied (so a user's "off" sticks).
const DEFAULT_APPLIED: &str = "autostart-default-applied";

/// Applies the first-run default and records the current state in the host. Without the plugin
/// (the mock runtime) autostart shows as off.
pub fn init<R: Runtime>(app: &AppHandle<R>, host: &Host) {
    use tauri_plugin_autostart::ManagerExt;
    if app
        .try_state::<tauri_plugin_autostart::AutoLaunchManager>()
        .is_none()
    {
        return;
    }
    let launcher = app.autolaunch();
    let policy = host.autostart_policy();
    let apply = |enabled: bool| {
        let result = if enabled {
            launcher.enable()
        } else {
            launcher.disable()
        };
        if let Err(e) = result {
            warn!("start at login could not be set: {e}");
        }
    };
    if host.role() == crate::Role::Window {
        // The tray process applies the defaults; the window only shows the state.
    } else if policy.locked {
        apply(policy.enabled);
    } else if let Ok(dir) = app.path().app_config_dir() {
        let marker = dir.join(DEFAULT_APPLIED);
        if !marker.exists() {
            apply(policy.enabled);
            let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&marker, b""));
            if let Err(e) = written {
                warn!("cannot remember the autostart default: {e}");
            }
        }
    }
    host.set_autostart(AutostartView {
        enabled: launcher.is_enabled().unwrap_or(false),
        locked: policy.locked,
    });
}

/// Turns start at login on or off.
pub fn set<R: Runtime>(app: &AppHandle<R>, host: &Host, enabled: bool) -> Result<(), CommandError> {
    use tauri_plugin_autostart::ManagerExt;
    if host.autostart().locked {
        return Err(CommandError::new(
            "locked",
            "Start at login is set by your organization",
        ));
    }
    if app
        .try_state::<tauri_plugin_autostart::AutoLaunchManager>()
        .is_none()
    {
        return Err(CommandError::new(
            "unsupported",
            "Start at login is not available here",
        ));
    }
    let launcher = app.autolaunch();
    let result = if enabled {
        launcher.enable()
    } else {
        launcher.disable()
    };
    result.map_err(|e| {
        CommandError::new(
            "autostart_failed",
            format!("Start at login could not be changed: {e}"),
        )
    })?;
    host.set_autostart(AutostartView {
        enabled: launcher.is_enabled().unwrap_or(enabled),
        locked: host.autostart_policy().locked,
    });
    Ok(())
}
