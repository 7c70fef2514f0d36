//! The testbed's notion of "now": real wall-clock time plus a settable offset.
//!
//! Every `iat`, `exp`, `auth_time` and expiry check in the testbed reads this clock, so a test can
//! jump the whole fake world forward (sleep/wake, skew, token expiry) together with the client's own
//! clock. It never sleeps and never touches tokio timers.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time plus an offset that tests can move. Cheap to clone; clones share the offset.
///
/// [`TestClock::with_own_skew`] gives one component (the IdP, an authorization server) a clock
/// that follows every move of the shared one plus a skew of its own: a server whose clock is wrong.
#[derive(Clone, Debug, Default)]
pub struct TestClock {
    offset_ms: Arc<AtomicI64>,
    skew_ms: Arc<AtomicI64>,
}

impl TestClock {
    /// A clock that reads real time (offset zero).
    pub fn new() -> Self {
        Self::default()
    }

    /// The current (shifted) time.
    pub fn now(&self) -> SystemTime {
        let offset = self.offset_ms.load(Ordering::SeqCst) + self.skew_ms.load(Ordering::SeqCst);
        let real = SystemTime::now();
        if offset >= 0 {
            real + Duration::from_millis(offset.unsigned_abs())
        } else {
            real - Duration::from_millis(offset.unsigned_abs())
        }
    }

    /// The current (shifted) time in whole seconds since the Unix epoch.
    pub fn unix(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the offset from real time in milliseconds (negative = in the past).
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::SeqCst);
    }

    /// Sets a forward offset from real time.
    pub fn set_offset(&self, offset: Duration) {
        self.set_offset_ms(i64::try_from(offset.as_millis()).unwrap_or(i64::MAX));
    }

    /// A clock sharing this one's offset (every `advance` and `set_offset`) plus a skew of its own,
    /// zero until [`TestClock::set_skew_secs`].
    pub fn with_own_skew(&self) -> Self {
        Self {
            offset_ms: Arc::clone(&self.offset_ms),
            skew_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Sets this clock's own skew in seconds (negative = behind the shared clock).
    pub fn set_skew_secs(&self, skew_secs: i64) {
        self.skew_ms.store(skew_secs * 1000, Ordering::SeqCst);
    }

    /// The current offset from real time in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_unix_time_and_clones_share_it() {
        let clock = TestClock::new();
        let twin = clock.clone();
        let before = twin.unix();
        clock.advance(Duration::from_secs(3600));
        assert!(twin.unix() >= before + 3600);
        clock.set_offset_ms(-10_000);
        assert!(twin.unix() < before);
    }

    #[test]
    fn an_own_skew_follows_the_shared_clock_and_adds_to_it() {
        let shared = TestClock::new();
        let skewed = shared.with_own_skew();
        skewed.set_skew_secs(-600);
        let gap = shared.unix() as i64 - skewed.unix() as i64;
        assert!((599..=601).contains(&gap), "{gap}");
        shared.advance(Duration::from_secs(3600));
        let gap = shared.unix() as i64 - skewed.unix() as i64;
        assert!((599..=601).contains(&gap), "{gap}");
    }
}
