//! One tray per user: the first tray listens on a small local channel; a second launch finds it,
//! asks it to open the status window (unless it was started at login: `--at-login`), and exits. One module per OS: a Unix socket beside the
//! agent's socket (`unix`), a named pipe (`windows`). The channel carries one word, never a secret.

#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
pub use unix::claim;
#[cfg(windows)]
pub use windows::claim;

/// What [`claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This is the only tray; a later launch calls the callback.
    First,
    /// Another tray runs (and was asked to open the status window, unless started at login).
    Second,
}

/// The one request a second launch sends.
const OPEN: &[u8] = b"open\n";
