//! Spending in the actor: counting what each server mints and serves (into [`super::usage`]),
//! writing the counts to the state file, and deciding whether a server whose refresh is due is
//! kept warm or left ready on first use (not asked for within `settings.idle_after_secs`, or near
//! `settings.id_jag_monthly_budget`). A room of the one actor: it writes the actor's state like
//! the others and does no I/O itself (the file is written on a blocking thread).

use super::usage::{self, UsageCounts};
use super::*;

/// Counts that changed without a mint (client requests) reach the state file within this long.
const USAGE_FLUSH_SECS: u64 = 60;

impl Actor {
    /// A client asked for `id` now: the server is in use.
    pub(super) fn note_request(&mut self, id: &str, now: u64) {
        self.usage
            .servers
            .entry(id.to_owned())
            .or_default()
            .last_requested = Some(now);
        self.usage_changed(now, false);
    }

    /// Adds the client requests answered since the last call to the counts.
    pub(super) fn collect_usage(&mut self) {
        let now = self.now();
        let mut changed = false;
        for (id, slot) in &mut self.servers {
            let served = std::mem::take(&mut slot.served);
            if served > 0 {
                self.usage
                    .servers
                    .entry(id.clone())
                    .or_default()
                    .add(now, |d| d.client_requests += served);
                changed = true;
            }
        }
        if changed {
            self.usage_changed(now, false);
        }
    }

    /// Adds what a grant minted; written at once (what is minted is what a budget counts).
    pub(super) fn count_spent(&mut self, id: &str, spent: grant::Spent) {
        if spent == grant::Spent::default() {
            return;
        }
        let now = self.now();
        self.usage
            .servers
            .entry(id.to_owned())
            .or_default()
            .add(now, |d| {
                d.id_jags += spent.id_jags;
                d.jwt_bearer_grants += spent.jwt_bearer_grants;
            });
        self.usage_changed(now, true);
    }

    fn usage_changed(&mut self, now: u64, at_once: bool) {
        if at_once {
            self.write_usage_soon();
        } else if self.state_writer.is_some() && self.usage_flush_at.is_none() {
            self.usage_flush_at = Some(now.saturating_add(USAGE_FLUSH_SECS));
        }
    }

    /// Writes the counts in the background.
    pub(super) fn write_usage_soon(&mut self) {
        self.usage_flush_at = None;
        let Some(writer) = &self.state_writer else {
            return;
        };
        self.usage_sequence += 1;
        self.usage.version = usage::VERSION;
        writer.write_soon(self.usage_sequence, self.usage.clone());
    }

    /// Writes the counts on the actor's thread (at shutdown, when nothing else is left to do).
    pub(super) fn write_usage_now(&mut self) {
        self.collect_usage();
        let Some(writer) = &self.state_writer else {
            return;
        };
        self.usage_sequence += 1;
        self.usage.version = usage::VERSION;
        writer.write_now(self.usage_sequence, &self.usage);
    }

    /// Server `id`'s totals over the last 30 days.
    pub(super) fn usage_totals(&self, id: &str, now: u64) -> UsageCounts {
        self.usage
            .servers
            .get(id)
            .map(|u| u.totals(now))
            .unwrap_or(UsageCounts {
                window_days: schedule::USAGE_WINDOW_SECS / 86_400,
                ..UsageCounts::default()
            })
    }

    /// Why server `id`, whose refresh is due, is not refreshed in the background (it idles,
    /// ready on first use), or `None` to refresh it.
    pub(super) fn idle_reason(&self, id: &str, now: u64) -> Option<IdleReason> {
        let settings = &self.config.policy.settings;
        let record = self.usage.servers.get(id);
        let last_requested = record.and_then(|u| u.last_requested);
        if !schedule::in_use(last_requested, now, settings.idle_after_secs) {
            return Some(IdleReason::Unused);
        }
        let minted = record.map(|u| u.totals(now).id_jags).unwrap_or(0);
        if schedule::near_budget(minted, settings.id_jag_monthly_budget) {
            return Some(IdleReason::NearBudget);
        }
        None
    }
}
