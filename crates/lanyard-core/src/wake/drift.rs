//! A portable notice source: compare how far the wall clock moved with how far the monotonic clock
//! moved, every `period`, and report a difference as a clock change. It must not be the only source
//! where the OS offers real notices (each check is a wake-up); it serves as the coarse fallback on
//! systems without a native source here, and as the source for test clocks that move without telling.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{Notice, WakeNotices};
use crate::clock::Clock;

/// Differences below this are scheduling noise, not a jump.
const TOLERANCE: Duration = Duration::from_secs(2);

/// Starts a drift check on the current runtime; it stops when the stream is dropped.
pub fn watch_drift(clock: Arc<dyn Clock>, period: Duration) -> WakeNotices {
    let (tx, rx) = watch::channel(Notice::Quiet);
    spawn(tx, clock, period);
    WakeNotices::from_watch(rx)
}

pub(super) fn spawn(tx: watch::Sender<Notice>, clock: Arc<dyn Clock>, period: Duration) {
    tokio::spawn(async move {
        let mut last = (clock.now(), Instant::now());
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = tx.closed() => return,
            }
            let now = (clock.now(), Instant::now());
            let mono = now.1.duration_since(last.1);
            let wall = now.0.duration_since(last.0).unwrap_or(Duration::ZERO);
            let went_back = now.0 < last.0;
            if went_back || wall.abs_diff(mono) > TOLERANCE {
                tx.send_replace(Notice::ClockChanged);
            }
            last = now;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::UNIX_EPOCH;

    #[tokio::test]
    async fn a_jump_is_reported_and_steady_time_is_not() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000_000));
        let mut notices = watch_drift(Arc::new(clock.clone()), Duration::from_millis(20));
        // The manual clock stands still while 20 ms pass: within tolerance, no notice.
        let quiet = tokio::time::timeout(Duration::from_millis(100), notices.next()).await;
        assert!(quiet.is_err(), "{quiet:?}");
        clock.advance(Duration::from_secs(3600));
        let heard = tokio::time::timeout(Duration::from_secs(2), notices.next()).await;
        assert_eq!(heard.ok(), Some(Notice::ClockChanged));
    }
}
