//! Time in the actor: re-reading the clock after every wake-up, starting what is due, and the
//! next deadline the actor sleeps until (refresh, retry, keychain retry, sign-in timeout).

use super::*;

impl Actor {
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
