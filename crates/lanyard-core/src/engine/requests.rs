//! The actor's commands from its hosts: sign-in and sign-out, "refresh now", policy changes,
//! and the token requests of clients with their waiters (answered at once from a usable token,
//! parked behind the grant in flight, or refused with what to do). Part of the one actor: every
//! method here runs on the actor's task and is a writer of its state like the rest.

use super::*;

impl Actor {
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::SignIn { reply } => self.begin_sign_in(reply, AfterDiscovery::BrowserSignIn),
            Command::SignInWithDeviceCode { reply } => {
                self.begin_sign_in(reply, AfterDiscovery::DeviceSignIn)
            }
            Command::SignOut { reply } => {
                self.sign_out();
                let _ = reply.send(());
            }
            Command::RefreshAll { reply } => {
                let ids: Vec<String> = self.servers.keys().cloned().collect();
                for id in ids {
                    self.manual_refresh(&id);
                }
                let _ = reply.send(());
            }
            Command::Refresh { server, reply } => {
                if !self.servers.contains_key(&server) {
                    let _ = reply.send(Err(EngineError::UnknownServer(server)));
                    return;
                }
                self.manual_refresh(&server);
                let _ = reply.send(Ok(()));
            }
            Command::Token {
                server,
                request,
                reply,
            } => self.on_token_request(server, request, reply),
            Command::RecordUse { server, requester } => {
                let at = self.now();
                if let Some(slot) = self.servers.get_mut(&server) {
                    slot.last_used = Some(TokenUse { at, requester });
                }
            }
            Command::ApplyPolicy { policy, reply } => {
                self.apply_policy(*policy);
                self.release_held_back();
                let _ = reply.send(());
            }
            Command::RejectPolicy { errors, reply } => {
                self.reject_policy(errors);
                let _ = reply.send(());
            }
            Command::Connect { server, reply } => self.on_connect(server, reply),
            Command::Shutdown => {}
        }
    }

    pub(super) fn begin_sign_in(
        &mut self,
        reply: oneshot::Sender<Result<(), EngineError>>,
        how: AfterDiscovery,
    ) {
        if let PolicyStatus::Misconfigured { errors } = &self.policy_status {
            let _ = reply.send(Err(EngineError::Misconfigured(errors.join("; "))));
            return;
        }
        if self.config.policy.idp.is_none() {
            let _ = reply.send(Err(EngineError::Misconfigured(
                "the policy names no identity provider".into(),
            )));
            return;
        }
        self.idp.sign_in_waiters.push(reply);
        if matches!(self.idp.phase, IdpPhase::SigningIn { .. }) {
            return; // single-flight: the browser is already open once
        }
        self.idp.phase = IdpPhase::SigningIn {
            user_code: None,
            verification_uri: None,
        };
        self.with_idp_client(how);
    }

    /// `lanyard connect <id>`: the one path that opens a browser for an `oauth` server. An
    /// `enterprise-managed` (or machine) server is refused: it never falls back to this flow.
    fn on_connect(&mut self, id: String, reply: oneshot::Sender<Result<(), EngineError>>) {
        let Some(slot) = self.servers.get_mut(&id) else {
            let _ = reply.send(Err(EngineError::UnknownServer(id)));
            return;
        };
        if slot.policy.mode != ServerMode::Oauth {
            let _ = reply.send(Err(EngineError::NotConnectable { server: id }));
            return;
        }
        slot.connect_began_after = Some(slot.generation);
        slot.generation += 1;
        slot.in_flight = false;
        let inputs = super::connection::ConnectInputs {
            http: self.http.clone(),
            store: self.config.store.clone(),
            browser: self.config.browser.clone(),
            clock: self.config.clock.clone(),
            server: slot.policy.clone(),
            dev_mode: self.config.policy.dev_mode,
            timeout: self.config.sign_in_timeout,
            extra_scopes: slot.consent_scopes.clone(),
            dpop: current_dpop_key(&self.dpop),
            nonces: self.nonces.clone(),
        };
        let generation = slot.generation;
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let result = super::connection::connect(inputs).await;
            if let Err(e) = &result {
                warn!(server = %id, error = %e, "connecting failed; nothing was kept");
            }
            let _ = events.send(Event::ConnectDone {
                server: id,
                generation,
                result,
                reply,
            });
        });
    }

    pub(super) fn manual_refresh(&mut self, id: &str) {
        let Some(slot) = self.servers.get_mut(id) else {
            return;
        };
        if slot.policy.mode == ServerMode::EnterpriseManaged
            && !matches!(self.idp.phase, IdpPhase::SignedIn)
        {
            return;
        }
        if matches!(slot.state, ServerState::StepUpRequired { .. }) {
            return; // needs a sign-in, not a retry
        }
        slot.attempts = 0;
        slot.retried_after_refresh = false;
        slot.scheduled = false;
        self.start_grant(id);
    }

    pub(super) fn on_token_request(
        &mut self,
        id: String,
        request: TokenRequest,
        reply: oneshot::Sender<Result<AccessToken, EngineError>>,
    ) {
        let now = self.now();
        let signed_in = matches!(self.idp.phase, IdpPhase::SignedIn);
        let restoring = matches!(self.idp.phase, IdpPhase::Restoring);
        let retry = self.retry_rule();
        if !self.servers.contains_key(&id) {
            let _ = reply.send(Err(EngineError::UnknownServer(id)));
            return;
        }
        self.note_request(&id, now);
        let near_budget = self.idle_reason(&id, now) == Some(IdleReason::NearBudget);
        let Some(slot) = self.servers.get_mut(&id) else {
            return;
        };
        if let (ServerState::ReadyOnFirstUse { .. }, Some(current)) = (&slot.state, &slot.token) {
            if current.expires_at > now && !near_budget {
                // In use again while its last token is still good: kept warm from now on (its
                // refresh, already due, goes in the background; this request is answered below).
                let refresh_at = slot.refresh_at.unwrap_or(now).max(now);
                slot.state = ServerState::Granted {
                    expires_at: current.expires_at,
                    scopes: current.scopes.clone(),
                    refresh_at,
                };
                slot.due_at = Some(refresh_at);
            }
        }
        let beyond = slot.beyond_ceiling(&request.extra_scopes);
        if !beyond.is_empty() {
            warn!(server = %id, scopes = %beyond.join(" "), "a client asked for scopes beyond the policy's ceiling: refused");
            let _ = reply.send(Err(EngineError::ScopeNotAllowed { scopes: beyond }));
            return;
        }
        let lacks_scope = request
            .extra_scopes
            .iter()
            .any(|s| !slot.token.as_ref().is_some_and(|t| t.scopes.contains(s)));
        if lacks_scope && !request.force_refresh {
            if let Some(token) =
                slot.usable_token_with(&request.extra_scopes, now, request.min_ttl.as_secs())
            {
                slot.served += 1;
                let _ = reply.send(Ok(token));
                return;
            }
        }
        if slot.policy.mode == ServerMode::Oauth && lacks_scope {
            // A refresh token cannot widen the grant, and a client's request opens no browser:
            // the next connect asks for these too.
            for scope in &request.extra_scopes {
                if !slot.consent_scopes.contains(scope) {
                    slot.consent_scopes.push(scope.clone());
                }
            }
            let _ = reply.send(Err(EngineError::ConsentNeeded {
                server: id.clone(),
                scopes: slot.consent_scopes.clone(),
            }));
            return;
        }
        if slot.policy.mode == ServerMode::Oauth && request.force_refresh {
            slot.recheck_authorization_server = true;
        }
        let mut scopes_added = false;
        for scope in &request.extra_scopes {
            if !slot.extra_scopes.contains(scope) {
                slot.extra_scopes.push(scope.clone());
                scopes_added = true;
            }
        }
        let minted_recently = slot
            .last_refresh
            .is_some_and(|at| now.saturating_sub(at) < FORCE_REFRESH_REUSE_SECS);
        let may_reuse = !lacks_scope && (!request.force_refresh || minted_recently);
        if may_reuse {
            if let Some(token) = slot.usable_token(now, request.min_ttl.as_secs()) {
                slot.served += 1;
                let _ = reply.send(Ok(token));
                return;
            }
        }
        match &slot.state {
            ServerState::Denied { code, description } => {
                let _ = reply.send(Err(EngineError::Denied {
                    code: code.clone(),
                    description: description.clone(),
                }));
                return;
            }
            ServerState::StepUpRequired { .. } => {
                let _ = reply.send(Err(EngineError::StepUpRequired));
                return;
            }
            // Never a browser for a client's request: the user connects.
            ServerState::NeedsConnect => {
                let _ = reply.send(Err(EngineError::NotConnected { server: id.clone() }));
                return;
            }
            ServerState::Failing { error, .. }
                if slot.client_retry_at > now
                    && !slot.in_flight
                    && !slot
                        .failed_at
                        .is_some_and(|at| retry.client_may_retry(now, at)) =>
            {
                let _ = reply.send(Err(EngineError::Unavailable {
                    error: error.clone(),
                    retry_at: slot.client_retry_at,
                }));
                return;
            }
            _ => {}
        }
        if slot.policy.mode == ServerMode::EnterpriseManaged && restoring {
            // Answered once the saved session is resumed (or found missing).
            slot.waiters.push(reply);
            return;
        }
        if slot.policy.mode == ServerMode::EnterpriseManaged && !signed_in {
            let _ = reply.send(Err(EngineError::NotSignedIn));
            return;
        }
        slot.waiters.push(reply);
        if !slot.in_flight {
            slot.scheduled = false;
            self.start_grant(&id);
        } else if scopes_added && !slot.awaiting_idp {
            // The grant in flight asks for fewer scopes than this caller needs.
            slot.regrant = true;
        }
        // A held-back refresh someone now waits for goes at once.
        self.release_held_back();
    }
}
