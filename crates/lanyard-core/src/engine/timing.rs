//! Time in the actor: re-reading the clock after every wake-up, starting what is due, the next
//! deadline the actor sleeps until (refresh, retry, keychain retry, sign-in timeout), what a wake
//! from sleep changes, and when a token is renewed, from what the actor measured of round trips
//! and clocks ([`Pace`]).

use std::collections::VecDeque;

use super::*;

/// How a server's token is renewed (see [`Actor::renewal`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Renewal {
    Lifetime(RefreshRule),
    /// The rule and the lead, in seconds.
    InUse(RefreshRule, u64),
}

impl Renewal {
    /// When a token minted at `now`, expiring at `expires_at`, is renewed: never sooner than
    /// [`MIN_GRANT_INTERVAL_SECS`], however short its life.
    pub(super) fn at(self, now: u64, expires_at: u64, draw: f64) -> u64 {
        let at = match self {
            Renewal::Lifetime(rule) => rule.refresh_at(now, expires_at, draw),
            Renewal::InUse(rule, lead) => rule.renew_in_use_at(now, expires_at, lead, draw),
        };
        at.max(now.saturating_add(MIN_GRANT_INTERVAL_SECS))
    }
}

/// How many recent grants' times [`Pace`] remembers.
const GRANTS_REMEMBERED: usize = 16;

/// What the actor measured of the world's pace: how long recent grants took (on the monotonic
/// clock: a measurement, not a decision of time) and how far the IdP's clock is from this one (an
/// ID token's `iat` against the arrival). They size the lead of a renewal in use
/// ([`RefreshRule::in_use_lead`]).
#[derive(Debug, Default)]
pub(super) struct Pace {
    grant_secs: VecDeque<f64>,
    skew_secs: u64,
}

impl Pace {
    /// A grant took `took`.
    pub(super) fn note_grant(&mut self, took: Duration) {
        if self.grant_secs.len() == GRANTS_REMEMBERED {
            self.grant_secs.pop_front();
        }
        self.grant_secs.push_back(took.as_secs_f64());
    }

    /// An ID token issued at `issued_at` by the IdP's clock arrived at `now` by this one.
    pub(super) fn note_issued(&mut self, issued_at: u64, now: u64) {
        self.skew_secs = issued_at.abs_diff(now);
    }

    /// The slowest of the recent grants, in seconds.
    pub(super) fn grant_secs(&self) -> f64 {
        self.grant_secs.iter().copied().fold(0.0, f64::max)
    }
}

impl Actor {
    /// How servers' tokens are renewed now: servers kept warm all day (`idle_after_secs` 0)
    /// follow the lifetime rule, widely spread ([`Renewal::Lifetime`]); a server kept warm because
    /// it is used is renewed late in its token's life, since each renewal costs an ID-JAG
    /// ([`Renewal::InUse`], with the lead sized from [`Pace`]; see `lanyard_schedule`).
    pub(super) fn renewal(&self) -> Renewal {
        if self.config.policy.settings.idle_after_secs == 0 {
            return Renewal::Lifetime(self.rule);
        }
        let lead = self.rule.in_use_lead(
            &self.config.backoff,
            self.pace.grant_secs(),
            self.pace.skew_secs,
        );
        Renewal::InUse(self.rule, lead)
    }

    /// The wall clock moved unlike the timers (`notice`). Every due renewal goes in
    /// [`Actor::on_tick`], the session's first, so that a request after waking needs the two
    /// round trips of a mint, not three. After a resume from sleep, besides: a failure streak from
    /// before is not an outage that lasted the night (the network is dropped for a sleep, and a
    /// renewal failing then starts one), so retries start from the plain backoff again, and the
    /// session's renewal goes now rather than after a backoff set before the sleep. (A clock that
    /// was merely set changes neither: time passed, or did not, while the agent was awake. Where
    /// only the coarse drift check notices a resume, on macOS and Windows for now, it arrives as
    /// a clock change and a streak from before the sleep is kept: a stated gap.)
    pub(super) fn on_wake(&mut self, notice: crate::clock::Notice) {
        if notice != crate::clock::Notice::Resumed {
            return;
        }
        if self.failing_since.is_some() {
            debug!("a failure streak from before the wake-up is forgotten");
        }
        self.failing_since = None;
        if !self.idp.refresh_in_flight {
            self.idp.refresh_attempts = 0;
            self.idp.refresh_retry_at = 0;
        }
    }

    /// Re-reads the wall clock and starts whatever is due.
    pub(super) fn on_tick(&mut self) {
        let now = self.now();

        if matches!(self.idp.phase, IdpPhase::SignedIn)
            && !self.idp.refresh_in_flight
            && now >= self.idp.refresh_due_at
            && now >= self.idp.refresh_retry_at
        {
            self.start_idp_refresh();
        }
        if let Some(at) = self.idp.keychain_retry_at {
            if !matches!(self.idp.phase, IdpPhase::SignedIn) {
                self.idp.keychain_retry_at = None;
            } else if now >= at {
                self.retry_keychain_write(now);
            }
        }
        let due: Vec<String> = self
            .servers
            .values()
            .filter(|s| !s.in_flight && s.due_at.is_some_and(|d| d <= now))
            .filter(|s| {
                matches!(
                    s.state,
                    ServerState::Granted { .. } | ServerState::Failing { .. }
                )
            })
            .map(|s| s.policy.id.clone())
            .collect();
        for id in due {
            // A refresh, or the retry of a failed refresh (the server had a token: an outage
            // while nobody used it), goes only for a server in use and within its budget. A
            // first grant that failed is retried, so its error stays in view.
            let refreshing = self.servers.get(&id).is_some_and(|s| {
                matches!(s.state, ServerState::Granted { .. }) || s.token.is_some()
            });
            let idle = if refreshing {
                self.idle_reason(&id, now)
            } else {
                None
            };
            let Some(slot) = self.servers.get_mut(&id) else {
                continue;
            };
            if let Some(reason) = idle {
                info!(server = %id, ?reason, "not refreshed in the background: ready on first use");
                slot.due_at = None;
                slot.state = ServerState::ReadyOnFirstUse { reason };
                continue;
            }
            slot.scheduled = true;
            self.start_grant(&id);
        }
        if self.usage_flush_at.is_some_and(|at| now >= at) {
            self.write_usage_soon();
        }
    }

    /// How long to sleep: until the earliest deadline (a due refresh or retry), capped by the
    /// backstop tick if one is set; `None` is "until something happens".
    pub(super) fn next_wake(&self) -> Option<Duration> {
        let now = self.now();
        let mut next = self.config.tick;
        let mut consider = |at: u64| {
            let d = Duration::from_secs(at.saturating_sub(now));
            if next.is_none_or(|n| d < n) {
                next = Some(d);
            }
        };
        for slot in self.servers.values() {
            if let (Some(due), false) = (slot.due_at, slot.in_flight) {
                consider(due);
            }
        }
        if let Some(at) = self.usage_flush_at {
            consider(at);
        }
        if matches!(self.idp.phase, IdpPhase::SignedIn) && !self.idp.refresh_in_flight {
            consider(self.idp.refresh_due_at.max(self.idp.refresh_retry_at));
            if let Some(at) = self.idp.keychain_retry_at {
                consider(at);
            }
        }
        next.map(|n| n.max(Duration::from_millis(10)))
    }
}
