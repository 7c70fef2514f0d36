//! Grants in the actor: starting one (after a fresh ID token and the client's credentials),
//! holding scheduled ones back while their hosts are busy, and taking each result in (token,
//! denial, step-up, retry with backoff). The grant itself runs in [`super::grant`] as a task.

use super::*;

impl Actor {
    pub(super) fn start_grant(&mut self, id: &str) {
        let now = self.now();
        let id_fresh = self.id_token_fresh(now);
        let signed_in = matches!(self.idp.phase, IdpPhase::SignedIn);
        let subject_generation = self.idp.subject_generation;
        // The subject of the ID-JAG exchange: the ID token, or after a SAML sign-in the IdP
        // refresh token (the ID-JAG draft's SAML interoperability section).
        let idp = match (&self.idp.client, &self.idp.tokens) {
            (Some(c), Some(t)) => {
                let subject = if c.saml.is_some() {
                    self.idp.refresh_token.clone()
                } else {
                    t.id_token.clone()
                };
                subject.map(|s| (c.clone(), s))
            }
            _ => None,
        };
        let Some(slot) = self.servers.get_mut(id) else {
            return;
        };
        if slot.in_flight && !slot.awaiting_idp {
            return;
        }
        let mode = slot.policy.mode;
        if mode == ServerMode::EnterpriseManaged {
            if !signed_in {
                slot.state = ServerState::NotSignedIn;
                slot.answer_waiters(Err(EngineError::NotSignedIn));
                return;
            }
            if !id_fresh {
                slot.awaiting_idp = true;
                slot.in_flight = true;
                slot.state = ServerState::Granting;
                self.start_idp_refresh();
                return;
            }
        }
        slot.awaiting_idp = false;
        slot.in_flight = true;
        if slot.token.is_none() {
            slot.state = ServerState::Granting;
        }
        let Some(client) = slot.client.clone() else {
            if !slot.resolving_client {
                slot.resolving_client = true;
                let store = self.config.store.clone();
                let policy = slot.policy.clone();
                let events = self.events_tx.clone();
                let generation = slot.generation;
                let server = id.to_owned();
                tokio::spawn(async move {
                    let result = tokio::task::spawn_blocking(move || {
                        credentials::resolve_client(
                            &policy.client_id,
                            &policy.client_auth,
                            store.as_ref(),
                        )
                    })
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                    let _ = events.send(Event::ClientResolved {
                        server,
                        generation,
                        result,
                    });
                });
            }
            return;
        };
        let inputs = GrantInputs {
            http: self.http.clone(),
            clock: self.config.clock.clone(),
            server: slot.policy.clone(),
            client,
            target: slot.target.clone(),
            idp: if mode == ServerMode::EnterpriseManaged {
                idp
            } else {
                None
            },
            extra_scopes: slot.extra_scopes.clone(),
            slots: grant::GrantSlots {
                shared: self.semaphore.clone(),
                own_host: self.own_host_slots.clone(),
            },
            rules: grant::DiscoveryRules {
                urls: DiscoveredUrls::for_dev_mode(self.config.policy.dev_mode),
                pins: self.config.store.clone(),
            },
            tally: Arc::default(),
            refresh_token: slot
                .as_refresh
                .as_ref()
                .filter(|(_, started)| {
                    slot.policy.use_refresh_token
                        && slot.extra_scopes.is_empty()
                        && schedule::may_use_refresh_token(*started, now)
                })
                .map(|(token, _)| token.clone()),
            dpop: current_dpop_key(&self.dpop),
            nonces: self.nonces.clone(),
            recheck_authorization_server: std::mem::take(&mut slot.recheck_authorization_server),
        };
        slot.granting_extra = !slot.extra_scopes.is_empty();
        slot.regrant = false;
        slot.subject_generation = subject_generation;
        let generation = slot.generation;
        let held = slot.scheduled && slot.waiters.is_empty();
        let Some(slot) = self.servers.get(id) else {
            return;
        };
        let hosts = self.grant_hosts(slot);
        let cap = self.config.policy.settings.max_concurrency_per_host;
        if held && !self.host_load.may_start(&hosts, cap) {
            debug!(server = %id, "refresh held back: its hosts are busy");
            self.held_back.push_back(HeldBack {
                server: id.to_owned(),
                generation,
                inputs,
                hosts,
            });
            return;
        }
        self.spawn_grant(id.to_owned(), generation, inputs, hosts);
    }

    /// Runs a grant in a task, counted against its hosts; the grant takes a slot of the global
    /// concurrency cap for each step that waits on a shared host (see [`GrantInputs::slots`]).
    pub(super) fn spawn_grant(
        &mut self,
        server: String,
        generation: u64,
        inputs: GrantInputs,
        hosts: Vec<String>,
    ) {
        self.host_load.start(&hosts);
        if let Some(slot) = self.servers.get_mut(&server) {
            slot.grant_started = Some(tokio::time::Instant::now());
        }
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let tally = inputs.tally.clone();
            let (target, result) = grant::run(inputs).await;
            let _ = events.send(Event::GrantDone {
                server,
                generation,
                target,
                result,
                hosts,
                spent: tally.spent(),
            });
        });
    }

    /// Starts the held-back grants whose hosts have room now (or that someone waits for); drops
    /// those whose server was signed out or replaced meanwhile.
    pub(super) fn release_held_back(&mut self) {
        let cap = self.config.policy.settings.max_concurrency_per_host;
        let mut keep = VecDeque::new();
        while let Some(held) = self.held_back.pop_front() {
            let Some(slot) = self.servers.get(&held.server) else {
                continue;
            };
            if slot.generation != held.generation || !slot.in_flight || slot.awaiting_idp {
                continue;
            }
            if slot.waiters.is_empty() && !self.host_load.may_start(&held.hosts, cap) {
                keep.push_back(held);
                continue;
            }
            self.spawn_grant(held.server, held.generation, held.inputs, held.hosts);
        }
        self.held_back = keep;
    }

    pub(super) fn on_grant_done(
        &mut self,
        id: String,
        generation: u64,
        target: Option<Arc<Target>>,
        result: Result<Minted, GrantFailure>,
    ) {
        let now = self.now();
        let retry = self.retry_rule();
        let renewal = self.renewal();
        match &result {
            Ok(_) => self.failing_since = None,
            Err(
                GrantFailure::Retry(_)
                | GrantFailure::EndpointGone(_)
                | GrantFailure::IdpEndpointGone { .. },
            ) => {
                self.failing_since.get_or_insert(now);
            }
            Err(_) => {}
        }
        let failing_since = self.failing_since.unwrap_or(now);
        let mut refresh_idp = false;
        let subject_generation = self.idp.subject_generation;
        let Some(slot) = self.servers.get_mut(&id) else {
            // Removed by the policy meanwhile: its connection was wiped and revoked, and so is
            // the refresh token this renewal brought (a rotating server's new one).
            if let Ok(Minted {
                connection: Some(update),
                ..
            }) = result
            {
                tokio::spawn(super::connection::revoke_unkept(
                    self.http.clone(),
                    self.config.clock.clone(),
                    id,
                    update,
                ));
            }
            return;
        };
        let mut result = result;
        if slot.generation != generation {
            // Signed out, or changed in the policy, or a connect began meanwhile.
            if let Ok(Minted {
                connection: Some(update),
                ..
            }) = result
            {
                if slot.wiped_after == Some(generation) {
                    // Sign-out wiped the connection (and revoked what it held): the refresh
                    // token this renewal rotated to goes the same way.
                    tokio::spawn(super::connection::revoke_unkept(
                        self.http.clone(),
                        self.config.clock.clone(),
                        id,
                        update,
                    ));
                } else if slot.connect_began_after == Some(generation) {
                    // A connect began after it: its own connection, written later, replaces
                    // this one.
                    self.connection_writes.keep(&id, &update);
                }
                // Otherwise the policy changed the server meanwhile and its new slot already
                // renews from the keychain: this answer is dropped (a rotating server then asks
                // for a connect; with one that does not rotate, the kept token still works).
            }
            return;
        }
        match &mut result {
            Ok(minted) => {
                if let Some(update) = minted.connection.take() {
                    self.connection_writes.keep(&id, &update);
                    slot.connected_issuer = Some(update.issuer);
                }
            }
            Err(GrantFailure::NeedsConnect) => {
                slot.connected_issuer = None;
                self.connection_writes.forget(&id);
            }
            Err(_) => {}
        }
        let took = slot.grant_started.take().map(|at| at.elapsed());
        let succeeded = result.is_ok();
        slot.in_flight = false;
        slot.scheduled = false;
        if target.is_some() {
            slot.target = target;
        }
        if result.is_err() && slot.granting_extra {
            // The extra scopes may be what failed: the next grant asks for the configured ones.
            slot.extra_scopes.clear();
        }
        let mut regrant = false;
        // The IdP's token endpoint moved: renewing the session reads its metadata again; when
        // that already happened since this grant started, the grant goes again at once.
        let idp_gone = match &result {
            Err(GrantFailure::IdpEndpointGone { endpoint, .. }) => Some(
                self.idp
                    .client
                    .as_ref()
                    .is_some_and(|c| c.metadata.token_endpoint != *endpoint),
            ),
            _ => None,
        };
        match result {
            Ok(minted) if slot.granting_extra && slot.usable_token(now, 0).is_some() => {
                // Minted with extra scopes while the server's own token is still good: the new
                // one goes to the callers waiting now and stays apart; the schedule keeps
                // renewing the server's own token with the configured scopes.
                let expires_in = clamp_lifetime(minted.expires_in);
                info!(server = %id, expires_in, "token with extra scopes granted for the callers who asked");
                slot.scoped_token = Some(CurrentToken {
                    access_token: minted.access_token,
                    issued_at: now,
                    expires_at: now.saturating_add(expires_in),
                    scopes: minted.scopes,
                    dpop_jkt: minted.dpop_jkt,
                });
                slot.last_refresh = Some(now);
                if std::mem::take(&mut slot.regrant) {
                    regrant = true;
                } else {
                    slot.extra_scopes.clear();
                    let token = slot
                        .scoped_token
                        .as_ref()
                        .and_then(|t| ServerSlot::usable(t, now, 0));
                    slot.answer_waiters(token.ok_or(EngineError::Unavailable {
                        error: "token already expired".into(),
                        retry_at: now,
                    }));
                }
            }
            Ok(minted) => {
                slot.as_refresh = match (slot.policy.use_refresh_token, minted.refresh_token) {
                    (false, _) | (true, None) => None,
                    // Renewed by the refresh token: its chain keeps the ID-JAG's start.
                    (true, Some(next)) if minted.by_refresh_token => {
                        slot.as_refresh.take().map(|(_, started)| (next, started))
                    }
                    (true, Some(next)) => Some((next, now)),
                };
                let expires_in = clamp_lifetime(minted.expires_in);
                let expires_at = now.saturating_add(expires_in);
                let refresh_at = renewal.at(now, expires_at, Self::jitter());
                info!(server = %id, expires_in, "token granted");
                slot.token = Some(CurrentToken {
                    access_token: minted.access_token,
                    issued_at: now,
                    expires_at,
                    scopes: minted.scopes.clone(),
                    dpop_jkt: minted.dpop_jkt.clone(),
                });
                slot.state = ServerState::Granted {
                    expires_at,
                    scopes: minted.scopes,
                    refresh_at,
                };
                slot.due_at = Some(refresh_at);
                slot.refresh_at = Some(refresh_at);
                slot.attempts = 0;
                slot.failed_at = None;
                slot.retried_after_refresh = false;
                slot.last_refresh = Some(now);
                if std::mem::take(&mut slot.regrant) {
                    // A caller asked for more scopes meanwhile: everyone gets the next token.
                    regrant = true;
                } else {
                    // Extra scopes are per request: the next renewal asks for the configured ones.
                    slot.extra_scopes.clear();
                    let token = slot.usable_token(now, 0);
                    slot.answer_waiters(token.ok_or(EngineError::Unavailable {
                        error: "token already expired".into(),
                        retry_at: now,
                    }));
                }
            }
            Err(GrantFailure::Denied { code, description }) => {
                warn!(server = %id, code = %code, "access denied by policy");
                slot.token = None;
                slot.as_refresh = None;
                slot.scoped_token = None;
                slot.due_at = None;
                slot.state = ServerState::Denied {
                    code: code.clone(),
                    description: description.clone(),
                };
                slot.answer_waiters(Err(EngineError::Denied { code, description }));
            }
            Err(GrantFailure::NeedsConnect) => {
                info!(server = %id, "not connected: waiting for the user to connect");
                slot.token = None;
                slot.scoped_token = None;
                slot.due_at = None;
                slot.attempts = 0;
                slot.state = ServerState::NeedsConnect;
                slot.answer_waiters(Err(EngineError::NotConnected { server: id.clone() }));
            }
            Err(GrantFailure::StepUp { max_age }) => {
                info!(server = %id, "the identity provider asks for a fresh sign-in");
                slot.due_at = None;
                slot.state = ServerState::StepUpRequired { max_age };
                slot.answer_waiters(Err(EngineError::StepUpRequired));
            }
            Err(GrantFailure::SubjectRejected { .. })
                if slot.subject_generation != subject_generation =>
            {
                // The session's subject token was replaced while this grant was under way (a
                // renewal rotated the refresh token a SAML session presents): try the new one.
                debug!(server = %id, "subject token replaced meanwhile; granting again");
                regrant = true;
            }
            Err(GrantFailure::SubjectRejected { description }) if !slot.retried_after_refresh => {
                debug!(server = %id, "subject token rejected; renewing the session once");
                slot.retried_after_refresh = true;
                slot.awaiting_idp = true;
                slot.in_flight = true;
                slot.state = ServerState::Granting;
                let _ = description;
                refresh_idp = true;
            }
            Err(GrantFailure::SubjectRejected { description }) => {
                warn!(server = %id, "access denied by the identity provider");
                slot.token = None;
                slot.as_refresh = None;
                slot.due_at = None;
                let code = "invalid_grant".to_owned();
                slot.state = ServerState::Denied {
                    code: code.clone(),
                    description: description.clone(),
                };
                slot.answer_waiters(Err(EngineError::Denied { code, description }));
            }
            Err(
                GrantFailure::Retry(error)
                | GrantFailure::EndpointGone(error)
                | GrantFailure::IdpEndpointGone { error, .. },
            ) => {
                slot.attempts += 1;
                slot.failed_at = Some(now);
                let next = retry.after_failure(
                    now,
                    slot.attempts,
                    failing_since,
                    slot.standing(now),
                    Self::jitter(),
                    Self::jitter(),
                );
                warn!(server = %id, attempts = slot.attempts, retry_in_secs = next.due_at - now, error = %error, "grant failed");
                // Discovery may be stale after a failure: look again next time.
                slot.target = None;
                slot.fail_until(now, error, next);
            }
        }
        if let (Some(took), true) = (took, succeeded) {
            self.pace.note_grant(took);
        }
        if regrant {
            self.start_grant(&id);
        }
        match idp_gone {
            Some(true) => self.start_grant(&id),
            Some(false) => self.start_idp_refresh(),
            None => {}
        }
        if refresh_idp {
            // Force a refresh even though the ID token looked fresh.
            if let Some(tokens) = self.idp.tokens.as_mut() {
                tokens.info.expires_at = now;
            }
            self.start_idp_refresh();
        }
    }
}
