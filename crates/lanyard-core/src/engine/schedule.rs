//! When to refresh and when to retry: pure arithmetic on wall-clock seconds.
//!
//! A token is refreshed once `refresh_at_fraction` of its lifetime has passed, never later than
//! `min_lead` seconds before expiry, and a little earlier by a random jitter so that many servers
//! granted together do not refresh in lockstep. Failures back off exponentially from 1 s to 5 min.

use std::time::Duration;

/// Refresh policy numbers (from the policy's settings).
#[derive(Debug, Clone, Copy)]
pub struct RefreshRule {
    pub fraction: f64,
    pub min_lead_secs: u64,
}

impl Default for RefreshRule {
    fn default() -> Self {
        Self {
            fraction: 0.75,
            min_lead_secs: 60,
        }
    }
}

impl RefreshRule {
    /// The wall-clock second at which a token issued at `issued_at`, expiring at `expires_at`, is
    /// refreshed. `jitter` in `[0, 1)` moves it earlier by up to 5 % of the lifetime.
    pub fn refresh_at(&self, issued_at: u64, expires_at: u64, jitter: f64) -> u64 {
        let lifetime = expires_at.saturating_sub(issued_at);
        let by_fraction = issued_at + (lifetime as f64 * self.fraction) as u64;
        let latest = expires_at.saturating_sub(self.min_lead_secs);
        let earliest = issued_at + lifetime / 2;
        let due = by_fraction.min(latest).max(earliest);
        let jitter_secs = (lifetime as f64 * 0.05 * jitter.clamp(0.0, 1.0)) as u64;
        due.saturating_sub(jitter_secs).max(issued_at)
    }
}

/// Exponential backoff: attempt 1 waits `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (1-based); `jitter` in `[0, 1)` takes off up to 20 %.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        base.mul_f64(1.0 - 0.2 * jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_at_three_quarters_but_never_later_than_the_lead() {
        let rule = RefreshRule::default();
        assert_eq!(rule.refresh_at(1000, 1000 + 3600, 0.0), 1000 + 2700);
        // 300 s token: 75 % = 225 s, lead says 240 s: the fraction wins.
        assert_eq!(rule.refresh_at(0, 300, 0.0), 225);
        // 200 s token: 75 % = 150, lead 60 s → 140.
        assert_eq!(rule.refresh_at(0, 200, 0.0), 140);
        // 60 s token: lead would be 0, but never before half-life.
        assert_eq!(rule.refresh_at(0, 60, 0.0), 30);
        // Jitter only moves earlier, by at most 5 %.
        let j = rule.refresh_at(0, 3600, 0.999);
        assert!((2700 - 180..2700).contains(&j), "{j}");
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(5, 0.0), Duration::from_secs(16));
        assert_eq!(b.delay(30, 0.0), Duration::from_secs(300));
        assert!(b.delay(30, 0.99) >= Duration::from_secs(240));
    }
}
