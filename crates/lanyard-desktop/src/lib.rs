//! What Lanyard's two desktop processes share, with no GUI toolkit in it: the tray process
//! (`lanyard-tray`: tray icon, menu, notifications) and the status window process
//! (`lanyard-status`: the webview). Both are clients of `lanyard agent`: [`link`] keeps a status
//! subscription open (starting the agent when none runs), [`host`] keeps what the agent last said
//! and turns it into a [`snapshot::Snapshot`] (the window) and a [`look::TrayLook`] (the tray);
//! [`notices`] decides what deserves a notification; [`actions`] sends the user's requests to the
//! agent; [`autostart`], [`clients`] and [`diagnostics`] wrap the login item and the `lanyard` CLI;
//! [`launch`] is how the tray starts the window process.
//!
//! Tokens never pass through this crate: the agent keeps them, and no request here asks for one.
//! It must not depend on tauri, wry or WebKit: the tray executable links it.

pub mod actions;
pub mod autostart;
pub mod clients;
pub mod diagnostics;
pub mod host;
pub mod launch;
pub mod link;
pub mod look;
pub mod notices;
pub mod snapshot;
