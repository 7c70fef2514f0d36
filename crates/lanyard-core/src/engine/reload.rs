//! Applying a changed policy to the running engine, without a restart or a new sign-in.
//!
//! The difference is applied server by server: a new server is granted (if the user is signed
//! in, or at once for client credentials), a removed server's token is revoked at its
//! authorization server (RFC 7009, best effort, when it advertises a revocation endpoint) and
//! wiped (a removed `oauth` server's connection too: out of the keychain, its refresh token
//! revoked), a changed server's old token is revoked and a new one granted. Settings that apply live
//! (refresh timing, concurrency) take effect at once. A different identity provider ends the
//! session: its refresh token is revoked and the user is asked to sign in again. A policy that
//! could not be read leaves the last good one in force and is reported in the status. This module
//! owns no state of its own; it edits the actor's.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::{
    schedule, Actor, AfterDiscovery, EngineError, IdpPhase, PolicyStatus, RefreshRule, ServerSlot,
};
use crate::oauth::token;
use crate::oauth::{AssertionInputs, HttpExecutor};
use crate::policy::{Policy, ServerMode, ServerPolicy};
use crate::signin::random_id;

impl Actor {
    /// A new proxy or CA list: a new HTTP client from now on (grants in flight finish on the old
    /// one), and every server is retried at once with it. A CA file that cannot be read keeps the
    /// old client and says why in the policy status.
    fn rebuild_http(&mut self, old: &Policy) {
        let built = super::credentials::http_config_for(
            &self.config.policy.settings,
            self.config.http.clone(),
        )
        .and_then(|c| HttpExecutor::new(&c).map_err(|e| e.to_string()));
        match built {
            Ok(http) => {
                info!("the proxy or CA settings changed; using a new HTTP client");
                super::keep_idp_connections(&http, &self.config.policy, self.idp.client.as_deref());
                self.http = http;
                for slot in self.servers.values_mut() {
                    slot.target = None;
                    if matches!(slot.state, super::ServerState::Failing { .. }) {
                        slot.attempts = 0;
                        slot.due_at = Some(0);
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "the new proxy or CA settings are unusable; keeping the old ones");
                self.config.policy.settings.proxy = old.settings.proxy.clone();
                self.config.policy.settings.extra_ca_files = old.settings.extra_ca_files.clone();
                self.policy_status = PolicyStatus::ChangeRejected {
                    errors: vec![format!("settings.extra_ca_files / settings.proxy: {e}")],
                };
            }
        }
    }

    pub(super) fn apply_policy(&mut self, policy: Policy) {
        let was_misconfigured = matches!(self.policy_status, PolicyStatus::Misconfigured { .. });
        self.policy_status = PolicyStatus::Applied;
        let old = std::mem::replace(&mut self.config.policy, policy);
        info!(
            servers = self.config.policy.servers.len(),
            "applying a new policy"
        );

        let settings = &self.config.policy.settings;
        self.rule = RefreshRule {
            fraction: settings.refresh_at_fraction,
            min_lead_secs: settings.min_refresh_lead_secs,
            jitter: settings.refresh_jitter,
        };
        if settings.max_concurrency != old.settings.max_concurrency {
            // Grants already holding a permit of the old semaphore finish under it.
            self.semaphore = Arc::new(Semaphore::new(settings.max_concurrency.max(1)));
            self.own_host_slots = Arc::new(Semaphore::new(settings.max_concurrency.max(1)));
        }

        if settings.proxy != old.settings.proxy
            || settings.extra_ca_files != old.settings.extra_ca_files
        {
            self.rebuild_http(&old);
        }

        if old.idp != self.config.policy.idp {
            self.switch_identity_provider(old.idp.is_some(), was_misconfigured);
        }

        let wanted: BTreeMap<String, ServerPolicy> = self
            .config
            .policy
            .servers
            .iter()
            .map(|s| (s.id.clone(), s.clone()))
            .collect();
        let current: Vec<String> = self.servers.keys().cloned().collect();
        for id in current {
            match wanted.get(&id) {
                None => {
                    if let Some(mut slot) = self.servers.remove(&id) {
                        info!(server = %id, "server removed by policy");
                        slot.answer_waiters(Err(EngineError::UnknownServer(id.clone())));
                        self.revoke_server_token(&id, &slot);
                        if slot.policy.mode == ServerMode::Oauth {
                            // Its connection goes with it: wiped from the keychain, then its
                            // refresh token revoked where the server offers it, as at sign-out.
                            self.connection_writes.sign_out(
                                vec![id.clone()],
                                self.http.clone(),
                                self.config.clock.clone(),
                            );
                        }
                    }
                }
                Some(new) if self.servers.get(&id).is_some_and(|s| s.policy != *new) => {
                    if let Some(mut old_slot) = self.servers.remove(&id) {
                        info!(server = %id, "server changed by policy; granting again");
                        self.revoke_server_token(&id, &old_slot);
                        let mut slot = ServerSlot::new(new.clone());
                        slot.generation = fresh_generation();
                        slot.waiters = std::mem::take(&mut old_slot.waiters);
                        self.servers.insert(id.clone(), slot);
                        self.grant_if_possible(&id);
                    }
                }
                Some(_) => {}
            }
        }
        for (id, new) in wanted {
            if !self.servers.contains_key(&id) {
                info!(server = %id, "server added by policy");
                let mut slot = ServerSlot::new(new);
                slot.generation = fresh_generation();
                self.servers.insert(id.clone(), slot);
                self.grant_if_possible(&id);
            }
        }
    }

    /// A policy that could not be used: keep the last good one and say why.
    pub(super) fn reject_policy(&mut self, errors: Vec<String>) {
        warn!(
            errors = errors.len(),
            "the changed policy is invalid; keeping the last good one"
        );
        self.policy_status = match self.policy_status {
            PolicyStatus::Misconfigured { .. } => PolicyStatus::Misconfigured { errors },
            _ => PolicyStatus::ChangeRejected { errors },
        };
    }

    fn switch_identity_provider(&mut self, had_idp: bool, was_misconfigured: bool) {
        let had_session = matches!(
            self.idp.phase,
            IdpPhase::SignedIn | IdpPhase::Restoring | IdpPhase::SigningIn { .. }
        ) || self.idp.refresh_token.is_some();
        if had_idp && had_session {
            info!("the identity provider changed; ending the session");
            self.sign_out();
            self.idp.phase = IdpPhase::NeedsSignIn(
                "your organization changed the identity provider; sign in again".into(),
            );
        }
        self.idp.client = None;
        self.idp.discovering = false;
        self.idp.after_discovery.clear();
        if self.config.policy.idp.is_none() {
            self.idp.phase = IdpPhase::SignedOut;
        } else if (!had_idp || was_misconfigured) && self.config.restore_session {
            // The first usable identity provider: resume a saved session, as at start-up.
            self.idp.phase = IdpPhase::Restoring;
            self.with_idp_client(AfterDiscovery::Restore);
        }
    }

    fn grant_if_possible(&mut self, id: &str) {
        let Some(slot) = self.servers.get_mut(id) else {
            return;
        };
        if schedule::on_demand(&self.config.policy.settings.on_demand_servers, id)
            && slot.waiters.is_empty()
        {
            return; // minted when a client first asks
        }
        match slot.policy.mode {
            ServerMode::ClientCredentials | ServerMode::WorkloadIdentity | ServerMode::Oauth => {
                self.start_grant(id)
            }
            ServerMode::EnterpriseManaged => match self.idp.phase {
                IdpPhase::SignedIn => self.start_grant(id),
                IdpPhase::Restoring | IdpPhase::SigningIn { .. } => {}
                _ => slot.answer_waiters(Err(EngineError::NotSignedIn)),
            },
        }
    }

    /// Revokes `slot`'s access token at its authorization server (best effort, in the background).
    fn revoke_server_token(&self, id: &str, slot: &ServerSlot) {
        let (Some(current), Some(target), Some(client)) = (
            slot.token.as_ref(),
            slot.target.clone(),
            slot.client.clone(),
        ) else {
            return;
        };
        let Some(endpoint) = target.authorization_server.revocation_endpoint.clone() else {
            info!(server = %id, "the authorization server cannot revoke tokens; dropping it");
            return;
        };
        let token_value = current.access_token.clone();
        let http = self.http.clone();
        let clock = self.config.clock.clone();
        let server = id.to_owned();
        tokio::spawn(async move {
            let issuer = target.authorization_server.issuer.clone();
            let inputs = AssertionInputs {
                audience: issuer.clone(),
                now: clock.unix_now(),
                jti: random_id(),
            };
            let result = match token::revoke(
                &endpoint,
                &issuer,
                &client,
                &inputs,
                &token_value,
                "access_token",
            ) {
                Ok(request) => match http.execute(&request).await {
                    Ok(response) => token::parse_revocation_response(&response),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => info!(server = %server, "token revoked"),
                Err(e) => {
                    warn!(server = %server, error = %e, "revoking the token failed (dropped locally anyway)")
                }
            }
        });
    }
}

/// A generation no event of an earlier slot with the same id can carry.
fn fresh_generation() -> u64 {
    rand::random::<u64>() >> 1
}
