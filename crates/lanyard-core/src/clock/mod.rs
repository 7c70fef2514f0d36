//! Time as a port: the core never reads `SystemTime::now()` itself.
//!
//! [`Clock::now`] is wall-clock time (what token expiry is measured in). Production uses
//! [`SystemClock`]; tests use [`ManualClock`], which only moves when told, so that expiry, refresh
//! ahead of expiry, an 8-hour sleep or a backwards clock jump can be staged exactly. Timers that wait
//! are the engine's business; it re-reads this clock after every wake-up, and hears from
//! [`Clock::notices`] when the clock moved unlike its timers (a real one: the OS's notices; a
//! manual one: each move it is told to make).
//!
//! This module is the port: the [`Clock`] trait, the notice stream ([`Notice`], [`WakeNotices`],
//! [`Jumps`]) and the test clock. The operating system's clock and its listeners implement it in
//! the `wake` module, which depends on this module and never the other way round.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;

    /// Notices that this clock moved unlike the monotonic timers (set, or resumed from sleep):
    /// the operating system's for `wake::SystemClock`, each move for a [`ManualClock`].
    fn notices(&self) -> WakeNotices;

    /// Seconds since the Unix epoch (0 for times before it).
    fn unix_now(&self) -> u64 {
        unix_seconds(self.now())
    }
}

/// Seconds since the Unix epoch of `t` (0 for times before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

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

/// A clock that stands still until a test moves it.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
    jumps: Jumps,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
            jumps: Jumps::default(),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
        drop(now);
        self.jumps.signal(Notice::ClockChanged);
    }

    /// Moves the clock backwards (a user or NTP correcting the time).
    pub fn rewind(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now -= by;
        drop(now);
        self.jumps.signal(Notice::ClockChanged);
    }

    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
        self.jumps.signal(Notice::ClockChanged);
    }

    /// The machine slept for `by` and resumed: the clock moves forward and the notice says
    /// [`Notice::Resumed`], as the operating system's does.
    pub fn resume_after(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
        drop(now);
        self.jumps.signal(Notice::Resumed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every move of this clock (`advance`, `rewind`, `set`), as a clock change.
    fn notices(&self) -> WakeNotices {
        self.jumps.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = ManualClock::new(start);
        assert_eq!(clock.unix_now(), 1_000);
        clock.advance(Duration::from_secs(8 * 3600));
        assert_eq!(clock.unix_now(), 1_000 + 8 * 3600);
        clock.rewind(Duration::from_secs(3600));
        assert_eq!(clock.unix_now(), 1_000 + 7 * 3600);
    }

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
