//! Wake notices as a port: the operating system telling the engine that wall-clock time moved
//! differently from the monotonic clock its timers run on (the clock was set, or the machine
//! resumed from sleep).
//!
//! The engine sleeps until its earliest deadline and nothing else; it never polls. Its timers run on
//! the monotonic clock, which on Linux and macOS stops while the machine sleeps, so a deadline can be
//! missed after a resume or a clock change. A [`WakeNotices`] is the cure: each notice makes the
//! engine re-read the wall clock and re-arm. This module owns the notice type and the OS choice; the
//! per-OS listeners live one module per OS (`linux`, `coarse` for everything else) and must not touch
//! engine state. Test clocks hand out their own notices ([`Jumps`]) so that a staged clock jump goes
//! through the same path as a real one.

#[cfg(not(target_os = "linux"))]
mod coarse;
mod drift;
#[cfg(target_os = "linux")]
mod linux;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use drift::watch_drift;

/// Why the wall clock must be re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Nothing yet (the value a fresh stream starts with; never delivered).
    Quiet,
    /// The wall clock was set (by a user, NTP or a test).
    ClockChanged,
    /// The machine resumed from sleep.
    Resumed,
}

/// A stream of [`Notice`]s. Notices that arrive faster than they are read coalesce into the latest
/// one (all the reader does is re-read the clock, so one is as good as many).
#[derive(Debug)]
pub struct WakeNotices {
    rx: watch::Receiver<Notice>,
}

impl WakeNotices {
    /// A stream fed by whoever holds `tx`; it ends when every sender is gone.
    pub fn from_watch(rx: watch::Receiver<Notice>) -> Self {
        Self { rx }
    }

    /// A stream that never delivers anything.
    pub fn none() -> Self {
        // With its sender gone the stream has ended, and `next` waits forever: "no notices".
        Self {
            rx: watch::channel(Notice::Quiet).1,
        }
    }

    /// Waits for the next notice. A stream whose senders are all gone never resolves again.
    pub async fn next(&mut self) -> Notice {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        *self.rx.borrow_and_update()
    }
}

/// The sending side for clocks that move by command (tests): every [`Jumps::signal`] reaches each
/// stream handed out by [`Jumps::subscribe`]. Cheap to clone; clones share the streams.
#[derive(Debug, Clone)]
pub struct Jumps {
    tx: Arc<watch::Sender<Notice>>,
}

impl Default for Jumps {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::channel(Notice::Quiet).0),
        }
    }
}

impl Jumps {
    pub fn subscribe(&self) -> WakeNotices {
        WakeNotices::from_watch(self.tx.subscribe())
    }

    pub fn signal(&self, notice: Notice) {
        self.tx.send_replace(notice);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jumps_reach_every_subscriber_and_coalesce() {
        let jumps = Jumps::default();
        let mut a = jumps.subscribe();
        let mut b = jumps.clone().subscribe();
        jumps.signal(Notice::ClockChanged);
        jumps.signal(Notice::Resumed);
        assert_eq!(a.next().await, Notice::Resumed);
        assert_eq!(b.next().await, Notice::Resumed);
        let pending = tokio::time::timeout(Duration::from_millis(50), a.next()).await;
        assert!(pending.is_err(), "no second notice after a coalesced pair");
    }

    #[tokio::test]
    async fn an_ended_stream_waits_forever() {
        let mut none = WakeNotices::none();
        let waited = tokio::time::timeout(Duration::from_millis(50), none.next()).await;
        assert!(waited.is_err());
    }
}
