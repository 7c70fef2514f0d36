//! The operating system's clock and its wake notices: the implementations of the
//! [`crate::clock`] port (which owns [`Notice`] and [`WakeNotices`]). [`SystemClock`] is the wall
//! clock, its notices the OS telling the engine that wall-clock time moved differently from the
//! monotonic clock its timers run on (the clock was set, or the machine resumed from sleep).
//! This module depends on `clock`, never the other way round.
//!
//! The engine sleeps until its earliest deadline and nothing else; it never polls. Its timers run on
//! the monotonic clock, which on Linux and macOS stops while the machine sleeps, so a deadline can be
//! missed after a resume or a clock change. A [`WakeNotices`] is the cure: each notice makes the
//! engine re-read the wall clock and re-arm. This module owns the OS choice; the per-OS listeners
//! live one module per OS (`linux`, `coarse` for everything else) and must not touch engine state.
//! Test clocks hand out their own notices ([`crate::clock::Jumps`]) so that a staged clock jump goes
//! through the same path as a real one.

#[cfg(not(target_os = "linux"))]
mod coarse;
mod drift;
#[cfg(target_os = "linux")]
mod linux;

use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::clock::Clock;
pub use crate::clock::{Notice, WakeNotices};
pub use drift::watch_drift;

/// The operating system's clock, with the operating system's wake notices.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// Needs a tokio runtime: the listener is spawned on it.
    fn notices(&self) -> WakeNotices {
        os_notices()
    }
}

/// How often the fallback (on systems without a notice source here) compares the wall clock with
/// the monotonic clock. This is a known gap: on macOS and Windows a resume or clock change is
/// noticed up to this late. Native sources (IOKit power notices / `WM_POWERBROADCAST`,
/// `WM_TIMECHANGE`) are the fix.
pub const COARSE_CHECK: Duration = Duration::from_secs(300);

/// The operating system's notices, from a listener spawned on the current tokio runtime. The
/// listener stops when the returned stream is dropped.
pub fn os_notices() -> WakeNotices {
    let (tx, rx) = watch::channel(Notice::Quiet);
    #[cfg(target_os = "linux")]
    linux::spawn(tx);
    #[cfg(not(target_os = "linux"))]
    coarse::spawn(tx);
    WakeNotices::from_watch(rx)
}
