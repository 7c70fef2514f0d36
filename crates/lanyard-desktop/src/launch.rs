//! How the tray process starts the status window process, and what it tells it: the executables'
//! names and where to find them, and the environment that ties a window to its tray. Starting a
//! process is the tray's; showing the window is `lanyard-status`'s.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Set by the tray for a window process it starts: when the window was asked for (Unix ms).
pub const ASKED_AT_ENV: &str = "LANYARD_WINDOW_ASKED_AT";
/// Set by the tray for a window process it starts: end with the tray (stdin is its pipe).
pub const TIED_ENV: &str = "LANYARD_WINDOW_TIED";
/// Set by the tray process when it turned GDK's OpenGL off (for itself and the windows it starts).
pub const GL_OFF_BY_US_ENV: &str = "LANYARD_TRAY_GL_OFF";
/// Names the status window executable (tests and the demo may point it elsewhere).
pub const STATUS_EXE_ENV: &str = "LANYARD_STATUS_EXE";

/// The tray executable's file name on this OS.
pub const TRAY_EXE: &str = if cfg!(windows) {
    "lanyard-tray.exe"
} else {
    "lanyard-tray"
};
/// The status window executable's file name on this OS.
pub const STATUS_EXE: &str = if cfg!(windows) {
    "lanyard-status.exe"
} else {
    "lanyard-status"
};

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// `name` in the directory of the running executable, if it is there.
pub fn beside_this_exe(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.parent()
        .map(|dir| dir.join(name))
        .filter(|p| p.is_file())
}

/// `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The status window executable: `$LANYARD_STATUS_EXE`, else beside this executable, else on
/// `PATH`.
pub fn status_exe() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(STATUS_EXE_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    beside_this_exe(STATUS_EXE).or_else(|| on_path(STATUS_EXE))
}

/// The tray executable the login item starts: this one when it is the tray, else the one beside
/// it, else on `PATH`, else (not installed) the name beside this executable.
pub fn tray_exe() -> PathBuf {
    let this = std::env::current_exe().ok();
    if let Some(this) = this
        .as_deref()
        .filter(|p| p.file_name() == Some(Path::new(TRAY_EXE).as_os_str()))
    {
        return this.to_path_buf();
    }
    beside_this_exe(TRAY_EXE)
        .or_else(|| on_path(TRAY_EXE))
        .unwrap_or_else(|| {
            this.and_then(|p| p.parent().map(|d| d.join(TRAY_EXE)))
                .unwrap_or_else(|| PathBuf::from(TRAY_EXE))
        })
}
