//! Lanyard's scheduling decisions: when to refresh, when to retry and whether a host may take one
//! more request, as pure functions of numbers.
//!
//! Everything here is I/O-free and deterministic: wall-clock seconds and random draws in `[0, 1)`
//! come in as arguments, so the engine (`lanyard_core::engine`) feeds real time and real
//! randomness while the fleet simulation (`crates/lanyard-fleet`) feeds a virtual clock and a
//! seeded generator into the very same functions. This crate must not read a clock, draw a random
//! number, or know about tasks, HTTP or policy sources; it has no dependencies.
//!
//! * The IdP session, and every server when servers are kept warm all day (`idle_after_secs` 0),
//!   is refreshed once `refresh_at_fraction` of its lifetime has passed, never later than
//!   `min_lead` seconds before expiry, and earlier by a random part of up to `jitter` of its
//!   lifetime, so that many tokens granted together (a sign-in, a fleet at 9:00) drift apart.
//! * A server kept warm because clients use it (use-driven refresh, the default) is renewed late
//!   in its token's life, because every renewal costs an ID-JAG: [`RefreshRule::in_use_lead`]
//!   sizes a lead from what clients need (their `min_ttl`), clock skew and time for a few quick
//!   retries at the measured speed of a grant, and [`RefreshRule::renew_in_use_at`] picks a
//!   random point in the window of one lead before that. People's use already spreads these
//!   renewals; the window spreads what use does not (servers granted together and used
//!   together).
//! * Failures back off exponentially from 1 s to 5 min (minus up to 20 %). Once the agent has been
//!   failing for a while (an outage), a retry waits about as long as the outage has lasted so far
//!   (90–100 % of it, at random), up to `recovery_jitter_secs`: a server that starts failing late
//!   in an outage does not retry every second, and when the network comes back for everyone at
//!   once, the backlog reaches the IdP spread over about the outage's length instead of in the
//!   first few seconds. The agent's own retry of a server whose token lapsed is in no hurry
//!   (clients that want a token ask for it themselves, from the plain backoff on):
//!   [`RetryRule::after_failure`] spreads it over ten minutes more, so the servers that lapsed in
//!   an outage do not all come back in its first seconds.
//! * [`HostLoad`] counts scheduled grants in flight per host (the IdP, each authorization server)
//!   and says whether one more may start.
//! * [`defaults`] holds the policy's default numbers for all of the above.

use std::collections::BTreeMap;
use std::time::Duration;

/// The policy's defaults for the scheduling settings (`settings.*` in the policy).
pub mod defaults {
    pub const REFRESH_AT_FRACTION: f64 = 0.75;
    pub const MIN_REFRESH_LEAD_SECS: u64 = 60;
    pub const MAX_CONCURRENCY: usize = 32;
    pub const MAX_CONCURRENCY_PER_HOST: usize = 4;
    pub const REFRESH_JITTER: f64 = 0.3;
    pub const RECOVERY_JITTER_SECS: u64 = 1200;
    /// A server no client asked for in this long is not refreshed in the background: 15 minutes.
    /// A client that asks at least this often never waits: whenever its server's renewal falls
    /// due, the client asked within this long, so the renewal goes. (After a longer break the
    /// token may still be good, and a request then is answered at once and renews it; once it
    /// has expired the first request waits for one mint, two round trips.) Longer keeps rarer
    /// clients warm at about one ID-JAG per hour of not being used; see the performance chapter
    /// (`make bench-fleet`) for what each choice costs a month.
    pub const IDLE_AFTER_SECS: u64 = 900;
}

/// How long after the ID-JAG that began it an authorization server's refresh token may renew a
/// server's access token (`servers[].use_refresh_token`): 8 hours, a working day. After that the
/// next renewal asks the identity provider for a new ID-JAG, so the IdP's policy (a disabled user,
/// a revoked assignment) takes effect within 8 hours plus one access token's life.
pub const AS_REFRESH_TOKEN_MAX_AGE_SECS: u64 = 8 * 3600;

/// Whether a refresh token whose chain began (with an ID-JAG) at `chain_started_at` may still
/// renew at `now`.
pub fn may_use_refresh_token(chain_started_at: u64, now: u64) -> bool {
    now.saturating_sub(chain_started_at) < AS_REFRESH_TOKEN_MAX_AGE_SECS
}

/// The window over which ID-JAGs, jwt-bearer grants and client requests are counted: 30 days.
pub const USAGE_WINDOW_SECS: u64 = 30 * 86_400;

/// Whether a server last asked for by a client at `last_requested` is still in use at `now`:
/// asked for within `idle_after_secs` (0: every server counts as in use, always kept warm).
pub fn in_use(last_requested: Option<u64>, now: u64, idle_after_secs: u64) -> bool {
    idle_after_secs == 0
        || last_requested.is_some_and(|at| now.saturating_sub(at) < idle_after_secs)
}

/// Whether a server that minted `minted` ID-JAGs in the last 30 days is near its monthly
/// `budget`: at 90 % of it background refreshes stop, and the rest is left for clients' requests
/// (which are never refused because of the budget).
pub fn near_budget(minted: u64, budget: Option<u64>) -> bool {
    budget.is_some_and(|b| minted.saturating_mul(10) >= b.saturating_mul(9))
}

/// Refresh policy numbers (from the policy's settings).
#[derive(Debug, Clone, Copy)]
pub struct RefreshRule {
    pub fraction: f64,
    pub min_lead_secs: u64,
    /// The largest share of a token's lifetime by which a refresh moves earlier at random.
    pub jitter: f64,
}

impl Default for RefreshRule {
    fn default() -> Self {
        Self {
            fraction: defaults::REFRESH_AT_FRACTION,
            min_lead_secs: defaults::MIN_REFRESH_LEAD_SECS,
            jitter: defaults::REFRESH_JITTER,
        }
    }
}

impl RefreshRule {
    /// The wall-clock second at which a token issued at `issued_at`, expiring at `expires_at`, is
    /// refreshed. `draw` in `[0, 1)` moves it earlier by up to `jitter` of the lifetime.
    pub fn refresh_at(&self, issued_at: u64, expires_at: u64, draw: f64) -> u64 {
        let lifetime = expires_at.saturating_sub(issued_at);
        let by_fraction = issued_at + (lifetime as f64 * self.fraction) as u64;
        let latest = expires_at.saturating_sub(self.min_lead_secs);
        let earliest = issued_at + lifetime / 2;
        let due = by_fraction.min(latest).max(earliest);
        let jitter_secs = (lifetime as f64 * self.jitter.clamp(0.0, 1.0) * unit(draw)) as u64;
        due.saturating_sub(jitter_secs).max(issued_at)
    }

    /// Whether an ID token expiring at `expires_at` may still be the subject of an exchange at
    /// `now` (otherwise the session is renewed first).
    pub fn still_fresh(&self, now: u64, expires_at: u64) -> bool {
        expires_at > now + self.min_lead_secs
    }

    /// How long before its token expires a server in use must start its renewal (the *lead*):
    /// clients ask for a token good for [`CLIENT_MIN_TTL_SECS`] more; a resource server's clock
    /// may run ahead of its authorization server's (`skew_secs` as measured, at least
    /// [`SKEW_ALLOWANCE_SECS`], at most [`MAX_SKEW_SECS`]); and the renewal gets
    /// [`QUICK_RETRIES`] retries on `backoff` after a first failure, each attempt taking
    /// `grant_secs` (the measured time of a grant), before a client would notice. Never less than
    /// `min_lead_secs` (`settings.min_refresh_lead_secs`: an administrator who wants in-use
    /// clients to ride out longer outages raises it, at the price of more ID-JAGs).
    ///
    /// With the defaults, a 1 s backoff and grants of a fraction of a second this is about two
    /// minutes.
    pub fn in_use_lead(&self, backoff: &Backoff, grant_secs: f64, skew_secs: u64) -> u64 {
        let retries: u64 = (1..=QUICK_RETRIES)
            .map(|attempt| backoff.delay(attempt, 0.0).as_secs())
            .sum();
        let grant_secs = if grant_secs.is_finite() {
            grant_secs.clamp(0.0, 60.0)
        } else {
            0.0
        };
        let attempts = (grant_secs * f64::from(QUICK_RETRIES + 1)).ceil() as u64;
        let skew = skew_secs.clamp(SKEW_ALLOWANCE_SECS, MAX_SKEW_SECS);
        (CLIENT_MIN_TTL_SECS + skew + retries + attempts).max(self.min_lead_secs)
    }

    /// When the token of a server in use, issued at `issued_at` and expiring at `expires_at`, is
    /// renewed: in the window `[expires_at − 2 × lead, expires_at − lead]`, at the point `draw` in
    /// `[0, 1)` picks (0: the latest). A token too short for that (the lead is more than half its
    /// life) follows [`RefreshRule::refresh_at`] instead, and the renewal is never later than
    /// that would say for such a token.
    pub fn renew_in_use_at(&self, issued_at: u64, expires_at: u64, lead: u64, draw: f64) -> u64 {
        let lifetime = expires_at.saturating_sub(issued_at);
        let half = issued_at + lifetime / 2;
        let latest = expires_at.saturating_sub(lead);
        if latest < half {
            return self.refresh_at(issued_at, expires_at, draw);
        }
        let spread = (lead as f64 * unit(draw)) as u64;
        latest.saturating_sub(spread).max(half)
    }
}

/// What a client asks of a token's remaining life (`lanyard token`'s default `--min-ttl`, the
/// proxy's and the IPC client's): a renewal must be done before a token gets this close to its
/// end, or an active client would wait for it.
pub const CLIENT_MIN_TTL_SECS: u64 = 60;

/// The least clock skew a lead allows for between a resource server and the authorization server
/// that set the token's expiry.
pub const SKEW_ALLOWANCE_SECS: u64 = 30;

/// The most clock skew a lead allows for (a clock further off is a problem to fix, not to pay for
/// in ID-JAGs).
pub const MAX_SKEW_SECS: u64 = 300;

/// Retries a renewal of a server in use gets, on the backoff, before a client would notice
/// (with the default backoff: 1 + 2 + 4 + 8 + 16 = 31 s of waiting, ridden out unseen).
pub const QUICK_RETRIES: u32 = 5;

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
        base.mul_f64(1.0 - 0.2 * unit(jitter))
    }
}

/// When failed work goes again: the backoff, widened after a long failure (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct RetryRule {
    pub backoff: Backoff,
    /// The widest recovery window, in seconds (0: plain backoff).
    pub recovery_jitter_secs: u64,
}

impl RetryRule {
    /// The wall-clock second of the next attempt after failure number `attempt` (1-based) at
    /// `now`. `failing_since` is when the agent's current failure streak began (requests failing
    /// with no success in between, whichever server or the session): during a long outage even a
    /// newly failing server waits as long as the others. Never earlier than `now + 1`.
    ///
    /// The delay is the backoff's; when the streak's length so far exceeds that, `[0.9, 1] ×` that
    /// length (capped by `recovery_jitter_secs`) takes its place, so the fleet's retries after an
    /// outage of length L arrive spread over about L.
    pub fn retry_at(&self, now: u64, attempt: u32, failing_since: u64, draw: f64) -> u64 {
        let backoff = self.backoff.delay(attempt, draw).as_secs();
        let spread = now
            .saturating_sub(failing_since)
            .min(self.recovery_jitter_secs);
        let widened = (spread as f64 * (1.0 - 0.1 * unit(draw))) as u64;
        now + backoff.max(widened).max(1)
    }
}

/// What a failed grant leaves behind, for [`RetryRule::after_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The server never had a token (a first grant, at sign-in): retried on the plain rule, so
    /// its state settles as soon as it can.
    FirstGrant,
    /// A renewal failed while the current token still serves clients until `until` (its expiry
    /// less [`CLIENT_MIN_TTL_SECS`]): retried on the plain rule, so it renews before clients
    /// notice and the status settles as soon as the IdP is back.
    Serving { until: u64 },
    /// The server had a token, and it no longer serves: clients that want one ask for it
    /// themselves (see [`RetryRule::client_may_retry`]).
    Lapsed,
}

/// When a failed grant goes again (see [`RetryRule::after_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextAttempt {
    /// From this second on a client's request may try again at once ([`RetryRule::retry_at`]);
    /// the server's status says it is retrying.
    pub retry_at: u64,
    /// When the agent tries again by itself if no client did first: never before `retry_at`.
    pub due_at: u64,
}

/// The widest spread of the agent's own retry of a server whose token lapsed: 10 minutes. Its
/// clients ask for themselves from [`NextAttempt::retry_at`] on (and wait the two round trips of a
/// mint, as they would for the agent's); the agent's own attempt only warms the server for the
/// next one, and a server whose clients stopped asking goes idle after `idle_after_secs` anyway.
pub const LAPSED_RETRY_SPREAD_SECS: u64 = 600;

impl RetryRule {
    /// The next attempts after failure number `attempt` at `now`, for a server in `standing`.
    /// A client's request may go from [`RetryRule::retry_at`] on, as always, and so does the
    /// agent's own retry of a first grant or of a renewal whose token still serves (it renews as
    /// soon as the IdP is back, and the status with it). The agent's own retry of a server whose
    /// token lapsed is in no hurry: a client that wants a token asks for it itself, and the
    /// agent's attempt only warms the server for the next one. It goes at a random point
    /// (`spread` in `[0, 1)`) up to [`LAPSED_RETRY_SPREAD_SECS`] after `retry_at`. At the end of
    /// an outage, the servers that lapsed in it would otherwise come back bunched in its first
    /// seconds: those that failed in its last minutes (their backoff still short) and those the
    /// recovery rule spread over its length alike.
    pub fn after_failure(
        &self,
        now: u64,
        attempt: u32,
        failing_since: u64,
        standing: Standing,
        draw: f64,
        spread: f64,
    ) -> NextAttempt {
        let retry_at = self.retry_at(now, attempt, failing_since, draw);
        let due_at = match standing {
            Standing::FirstGrant | Standing::Serving { .. } => retry_at,
            Standing::Lapsed => retry_at + (LAPSED_RETRY_SPREAD_SECS as f64 * unit(spread)) as u64,
        };
        NextAttempt { retry_at, due_at }
    }
}

/// How long after a failed attempt a client's own request may try a failing server again, ahead
/// of its scheduled retry (which after a long outage can be many minutes away).
pub const CLIENT_RETRY_SECS: u64 = 30;

impl RetryRule {
    /// Whether a client asking at `now` for a server whose last attempt failed at `failed_at` (and
    /// that has no usable token) may try it now instead of hearing "unavailable until the retry":
    /// at most once per [`CLIENT_RETRY_SECS`] per server, so a user at work is not kept waiting
    /// by the recovery spread, and a server that is down is not hammered by its clients.
    pub fn client_may_retry(&self, now: u64, failed_at: u64) -> bool {
        now >= failed_at + CLIENT_RETRY_SECS
    }
}

/// A draw in `[0, 1)`; anything else (NaN, out of range) is clamped in.
fn unit(draw: f64) -> f64 {
    if draw.is_nan() {
        0.0
    } else {
        draw.clamp(0.0, 1.0)
    }
}

/// Scheduled grants in flight per host, against a cap. The engine counts its background grants
/// here; the simulation counts the grants of each simulated agent.
#[derive(Debug, Clone, Default)]
pub struct HostLoad {
    in_flight: BTreeMap<String, usize>,
}

impl HostLoad {
    /// Whether one more grant touching every host in `hosts` keeps each of them at or below `cap`.
    pub fn may_start<S: AsRef<str>>(&self, hosts: &[S], cap: usize) -> bool {
        hosts
            .iter()
            .all(|h| self.in_flight(h.as_ref()) < cap.max(1))
    }

    /// Counts a grant touching `hosts` as started.
    pub fn start<S: AsRef<str>>(&mut self, hosts: &[S]) {
        for h in hosts {
            *self.in_flight.entry(h.as_ref().to_owned()).or_default() += 1;
        }
    }

    /// Counts a grant touching `hosts` as done.
    pub fn finish<S: AsRef<str>>(&mut self, hosts: &[S]) {
        for h in hosts {
            if let Some(n) = self.in_flight.get_mut(h.as_ref()) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.in_flight.remove(h.as_ref());
                }
            }
        }
    }

    /// Grants in flight against `host`.
    pub fn in_flight(&self, host: &str) -> usize {
        self.in_flight.get(host).copied().unwrap_or(0)
    }

    /// Forgets every count (after a policy change replaced the hosts).
    pub fn clear(&mut self) {
        self.in_flight.clear();
    }
}

/// Whether server `id` is minted only when a client first asks (`on_demand_servers` lists it, or
/// lists `*`).
pub fn on_demand(on_demand_servers: &[String], id: &str) -> bool {
    on_demand_servers.iter().any(|s| s == "*" || s == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_at_three_quarters_but_never_later_than_the_lead() {
        let rule = RefreshRule {
            jitter: 0.05,
            ..RefreshRule::default()
        };
        assert_eq!(rule.refresh_at(1000, 1000 + 3600, 0.0), 1000 + 2700);
        // 300 s token: 75 % = 225 s, lead says 240 s: the fraction wins.
        assert_eq!(rule.refresh_at(0, 300, 0.0), 225);
        // 200 s token: 75 % = 150, lead 60 s → 140.
        assert_eq!(rule.refresh_at(0, 200, 0.0), 140);
        // 60 s token: lead would be 0, but never before half-life.
        assert_eq!(rule.refresh_at(0, 60, 0.0), 30);
        // Jitter only moves earlier, by at most its share.
        let j = rule.refresh_at(0, 3600, 0.999);
        assert!((2700 - 180..2700).contains(&j), "{j}");
    }

    #[test]
    fn the_default_jitter_spreads_a_refresh_over_three_tenths_of_the_lifetime() {
        let rule = RefreshRule::default();
        assert_eq!(rule.refresh_at(0, 3600, 0.0), 2700);
        assert_eq!(rule.refresh_at(0, 3600, 0.5), 2700 - 540);
        let early = rule.refresh_at(0, 3600, 0.9999);
        assert!((1620..1625).contains(&early), "{early}");
        assert_eq!(rule.refresh_at(0, 3600, f64::NAN), 2700);
    }

    #[test]
    fn the_lead_for_a_server_in_use_is_what_clients_skew_and_quick_retries_need() {
        let rule = RefreshRule::default();
        let backoff = Backoff::default();
        // 60 s for clients, 30 s of skew, 1 + 2 + 4 + 8 + 16 s of backoff, six 0.1 s attempts.
        assert_eq!(rule.in_use_lead(&backoff, 0.1, 0), 60 + 30 + 31 + 1);
        // Slow grants and a measured skew widen it; the skew counted is capped.
        assert_eq!(rule.in_use_lead(&backoff, 2.0, 100), 60 + 100 + 31 + 12);
        assert_eq!(rule.in_use_lead(&backoff, 0.0, 10_000), 60 + 300 + 31);
        assert_eq!(rule.in_use_lead(&backoff, f64::NAN, 0), 60 + 30 + 31);
        // An administrator's longer lead wins.
        let patient = RefreshRule {
            min_lead_secs: 900,
            ..rule
        };
        assert_eq!(patient.in_use_lead(&backoff, 0.1, 0), 900);
    }

    #[test]
    fn a_server_in_use_is_renewed_within_one_lead_before_its_lead() {
        let rule = RefreshRule::default();
        assert_eq!(
            rule.renew_in_use_at(1000, 1000 + 3600, 122, 0.0),
            1000 + 3478
        );
        assert_eq!(rule.renew_in_use_at(0, 3600, 122, 0.5), 3478 - 61);
        let early = rule.renew_in_use_at(0, 3600, 122, 0.9999);
        assert!((3356..=3357).contains(&early), "{early}");
        // Far later than the lifetime rule's 45–75 %.
        assert!(early > rule.refresh_at(0, 3600, 0.0));
        // Never before half-life: a 300 s token with a 122 s lead is renewed from 150 s on.
        assert_eq!(rule.renew_in_use_at(0, 300, 122, 0.0), 178);
        assert_eq!(rule.renew_in_use_at(0, 300, 122, 0.9), 150);
        // A token shorter than two leads follows the lifetime rule.
        assert_eq!(
            rule.renew_in_use_at(0, 200, 122, 0.3),
            rule.refresh_at(0, 200, 0.3)
        );
    }

    #[test]
    fn a_lapsed_server_is_retried_by_the_agent_at_a_spread_time_and_by_clients_at_once() {
        let r = RetryRule {
            backoff: Backoff::default(),
            recovery_jitter_secs: 1200,
        };
        let at = |standing, spread| r.after_failure(1000, 1, 1000, standing, 0.0, spread);
        // A first grant and a renewal whose token serves: plain backoff for both.
        for standing in [Standing::FirstGrant, Standing::Serving { until: 1120 }] {
            let next = at(standing, 0.9);
            assert_eq!((next.retry_at, next.due_at), (1001, 1001), "{standing:?}");
        }
        // Lapsed: the agent up to ten minutes after the backoff, a client from the backoff on.
        assert_eq!(at(Standing::Lapsed, 0.0).due_at, 1001);
        assert_eq!(at(Standing::Lapsed, 0.5).due_at, 1001 + 300);
        assert_eq!(at(Standing::Lapsed, 0.5).retry_at, 1001);
        let last = at(Standing::Lapsed, 0.9999).due_at;
        assert!((1600..=1601).contains(&last), "{last}");
        // Ten minutes into an outage: the recovery rule's wait, and the spread on top.
        let lapsed = r.after_failure(1600, 9, 1000, Standing::Lapsed, 0.0, 0.5);
        assert_eq!((lapsed.retry_at, lapsed.due_at), (2200, 2500));
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

    #[test]
    fn retries_after_a_short_failure_follow_the_backoff() {
        let r = RetryRule {
            backoff: Backoff::default(),
            recovery_jitter_secs: 900,
        };
        assert_eq!(r.retry_at(100, 1, 100, 0.0), 101);
        assert_eq!(r.retry_at(103, 3, 100, 0.0), 107);
        // Failing for 4 min: no wider than the capped backoff.
        assert_eq!(r.retry_at(340, 20, 100, 0.0), 640);
    }

    #[test]
    fn retries_after_a_long_outage_wait_about_its_length_up_to_the_cap() {
        let r = RetryRule {
            backoff: Backoff::default(),
            recovery_jitter_secs: 900,
        };
        // Failing for 10 min: 600 s, less up to 10 %.
        assert_eq!(r.retry_at(600, 12, 0, 0.0), 1200);
        let soon = r.retry_at(600, 12, 0, 0.999);
        assert!((600 + 540..600 + 542).contains(&soon), "{soon}");
        // Even a server failing for the first time waits as long: the agent's streak counts.
        assert_eq!(r.retry_at(600, 1, 0, 0.0), 1200);
        // Failing for 2 h: capped at 900 s.
        assert_eq!(r.retry_at(7200, 30, 0, 0.0), 8100);
        // Off: plain backoff.
        let off = RetryRule {
            recovery_jitter_secs: 0,
            ..r
        };
        assert_eq!(off.retry_at(7200, 30, 0, 0.0), 7500);
    }

    #[test]
    fn a_client_may_retry_a_failing_server_every_half_minute() {
        let r = RetryRule {
            backoff: Backoff::default(),
            recovery_jitter_secs: 1200,
        };
        assert!(!r.client_may_retry(1000, 1000));
        assert!(!r.client_may_retry(1029, 1000));
        assert!(r.client_may_retry(1030, 1000));
    }

    #[test]
    fn a_host_takes_grants_up_to_its_cap() {
        let mut load = HostLoad::default();
        let both = ["idp.example", "as.example"];
        for _ in 0..2 {
            assert!(load.may_start(&both, 2));
            load.start(&both);
        }
        assert!(!load.may_start(&both, 2));
        assert!(!load.may_start(&["idp.example"], 2), "the IdP is full");
        assert!(load.may_start(&["other-as.example"], 2));
        load.finish(&["as.example"]);
        assert!(load.may_start(&["as.example"], 2));
        assert!(!load.may_start(&both, 2), "still full at the IdP");
        load.finish(&["idp.example"]);
        assert!(load.may_start(&both, 2));
        assert_eq!(load.in_flight("idp.example"), 1);
        load.clear();
        assert_eq!(load.in_flight("idp.example"), 0);
    }

    #[test]
    fn a_server_is_in_use_while_asked_for_within_the_idle_window() {
        assert!(in_use(Some(1000), 1000 + 1799, 1800));
        assert!(!in_use(Some(1000), 1000 + 1800, 1800));
        assert!(!in_use(None, 1000, 1800));
        // 0: always warm, as before idle servers existed.
        assert!(in_use(None, 1000, 0));
    }

    #[test]
    fn near_budget_at_nine_tenths() {
        assert!(!near_budget(224, Some(250)));
        assert!(near_budget(225, Some(250)));
        assert!(!near_budget(10_000, None));
    }

    #[test]
    fn on_demand_lists_ids_or_a_star() {
        assert!(on_demand(&["docs".into()], "docs"));
        assert!(!on_demand(&["docs".into()], "tickets"));
        assert!(on_demand(&["*".into()], "tickets"));
        assert!(!on_demand(&[], "docs"));
    }
}
