//! The IdP session in the actor: discovering the IdP, signing in (browser or restored from the
//! keychain), renewing the session, signing out, and keeping the refresh token in the keychain
//! (retried while the keychain is locked). Part of the one actor, like its sibling rooms.

use super::*;

/// The SAML settings of the policy's IdP section, when it signs in with SAML.
pub(super) fn saml_settings(
    idp: &crate::policy::IdpPolicy,
) -> Result<Option<signin::SamlSettings>, SignInError> {
    if idp.sign_in != crate::policy::SignInProtocol::Saml {
        return Ok(None);
    }
    let url = idp.saml_sso_url.as_deref().ok_or(SignInError::Unsupported(
        "SAML sign-in without idp.saml_sso_url",
    ))?;
    let sso_url = url::Url::parse(url)
        .map_err(|e| WireError::Discovery(format!("idp.saml_sso_url is not a URL: {e}")))?;
    Ok(Some(signin::SamlSettings {
        sso_url,
        sp_entity_id: idp.sp_entity_id().to_owned(),
    }))
}

/// The keychain entry of the IdP refresh token (after a SAML sign-in too).
pub fn refresh_token_key(issuer: &str, client_id: &str) -> String {
    format!("refresh-token:{issuer}:{client_id}")
}

/// Writes a newly issued refresh token to the keychain (skipped when unchanged). Returns the
/// keychain's answer, or `None` when nothing was written.
pub(super) async fn persist_refresh_token(
    store: Arc<dyn SecretStore>,
    client: &IdpClient,
    result: &Result<IdpTokens, SignInError>,
    previous: Option<&Secret>,
) -> Option<Result<(), StoreError>> {
    let new = result.as_ref().ok()?.refresh_token.clone()?;
    if previous == Some(&new) {
        return None;
    }
    let key = refresh_token_key(client.issuer(), &client.client.client_id);
    Some(
        tokio::task::spawn_blocking(move || store.set(&key, &new))
            .await
            .unwrap_or_else(|e| Err(StoreError::Failed(e.to_string()))),
    )
}

/// Ends an interactive sign-in: the refresh token goes to the keychain, then the actor hears of it.
pub(super) async fn report_sign_in(
    store: Arc<dyn SecretStore>,
    client: &IdpClient,
    result: Result<IdpTokens, SignInError>,
    events: &mpsc::UnboundedSender<Event>,
) {
    let keychain = persist_refresh_token(store, client, &result, None).await;
    let _ = events.send(Event::SignInDone {
        result,
        restored: false,
        keychain,
    });
}

impl Actor {
    pub(super) fn with_idp_client(&mut self, then: AfterDiscovery) {
        if self.idp.client.is_some() {
            self.after_idp_discovery(then);
            return;
        }
        self.idp.after_discovery.push(then);
        if self.idp.discovering {
            return;
        }
        let Some(idp_policy) = self.config.policy.idp.clone() else {
            return;
        };
        self.idp.discovering = true;
        let http = self.http.clone();
        let store = self.config.store.clone();
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let client = tokio::task::spawn_blocking(move || {
                credentials::resolve_client(
                    &idp_policy.client_id,
                    &idp_policy.client_auth,
                    store.as_ref(),
                )
                .map(|c| (c, idp_policy))
            })
            .await;
            let result = match client {
                Ok(Ok((client, idp_policy))) => match saml_settings(&idp_policy) {
                    Ok(saml) => IdpClient::discover(
                        &http,
                        &idp_policy.issuer,
                        client,
                        idp_policy.scopes.clone(),
                        idp_policy.extra_authorize_params.clone(),
                    )
                    .await
                    .map(|c| Arc::new(c.with_saml(saml))),
                    Err(e) => Err(e),
                },
                Ok(Err(e)) => Err(SignInError::Wire(WireError::ClientAuth(e))),
                Err(e) => Err(SignInError::Wire(WireError::ClientAuth(e.to_string()))),
            };
            let _ = events.send(Event::IdpDiscovered(result));
        });
    }

    pub(super) fn after_idp_discovery(&mut self, then: AfterDiscovery) {
        let Some(client) = self.idp.client.clone() else {
            return;
        };
        let http = self.http.clone();
        let clock = self.config.clock.clone();
        let events = self.events_tx.clone();
        match then {
            AfterDiscovery::BrowserSignIn => {
                let browser = self.config.browser.clone();
                let timeout = self.config.sign_in_timeout;
                let store = self.config.store.clone();
                let step_up = self.step_up_needed();
                info!(
                    step_up = step_up.is_some(),
                    "opening the browser to sign in"
                );
                tokio::spawn(async move {
                    let result = signin::InteractiveSignIn {
                        idp: &client,
                        http: &http,
                        clock: clock.as_ref(),
                        browser: browser.as_ref(),
                        step_up,
                        timeout,
                    }
                    .run()
                    .await;
                    report_sign_in(store, &client, result, &events).await;
                });
            }
            AfterDiscovery::DeviceSignIn => {
                let store = self.config.store.clone();
                tokio::spawn(async move {
                    let result = match client.start_device_sign_in(&http, clock.as_ref()).await {
                        Ok(device) => {
                            let _ = events.send(Event::DeviceCode {
                                user_code: device.user_code.clone(),
                                verification_uri: device
                                    .verification_uri_complete
                                    .clone()
                                    .unwrap_or_else(|| device.verification_uri.clone()),
                            });
                            client
                                .poll_device_sign_in(&http, clock.as_ref(), &device)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    report_sign_in(store, &client, result, &events).await;
                });
            }
            AfterDiscovery::Restore => {
                let store = self.config.store.clone();
                let key = refresh_token_key(client.issuer(), &client.client.client_id);
                tokio::spawn(async move {
                    let reader = store.clone();
                    let saved = tokio::task::spawn_blocking(move || reader.get(&key)).await;
                    let mut previous: Option<Secret> = None;
                    let result = match saved {
                        Ok(Ok(Some(refresh_token))) => {
                            let result =
                                client.refresh(&http, clock.as_ref(), &refresh_token).await;
                            previous = Some(refresh_token);
                            result
                        }
                        Ok(Ok(None)) => Err(SignInError::Unsupported("a saved session")),
                        Ok(Err(e)) => {
                            let _ = events.send(Event::KeychainResult(Err(e)));
                            Err(SignInError::Unsupported("a saved session"))
                        }
                        Err(e) => Err(SignInError::Loopback(e.to_string())),
                    };
                    let keychain =
                        persist_refresh_token(store, &client, &result, previous.as_ref()).await;
                    let result = result.map(|mut tokens| {
                        // Keep the saved refresh token when the IdP did not rotate it.
                        if let Some(previous) = previous {
                            tokens.refresh_token.get_or_insert(previous);
                        }
                        tokens
                    });
                    let _ = events.send(Event::SignInDone {
                        result,
                        restored: true,
                        keychain,
                    });
                });
            }
        }
    }

    pub(super) fn step_up_needed(&self) -> Option<StepUp> {
        let mut needed: Option<StepUp> = None;
        for slot in self.servers.values() {
            if let ServerState::StepUpRequired { max_age } = slot.state {
                let current = needed.get_or_insert(StepUp { max_age });
                current.max_age = match (current.max_age, max_age) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        needed
    }

    pub(super) fn on_signed_in(&mut self, tokens: IdpTokens) {
        let now = self.now();
        info!(subject = %tokens.info.subject, "signed in");
        let subject = tokens.info.subject.clone();
        self.idp.previous_subject = match self.idp.last_subject.replace(subject.clone()) {
            Some(previous) if previous != subject => {
                warn!(%previous, %subject, "signed in as another account than before; if you did not mean to, sign out and sign in again");
                Some(previous)
            }
            _ => None,
        };
        if let Some(refresh_token) = tokens.refresh_token.clone() {
            self.idp.refresh_token = Some(refresh_token);
        }
        self.idp.refresh_due_at = self.rule.refresh_at(
            now.min(tokens.info.issued_at),
            tokens.info.expires_at,
            Self::jitter(),
        );
        self.pace.note_issued(tokens.info.issued_at, now);
        self.idp.tokens = Some(tokens);
        self.idp.subject_generation += 1;
        self.idp.phase = IdpPhase::SignedIn;
        self.idp.refresh_attempts = 0;
        self.idp.refresh_error = None;
        self.idp.generation += 1;
        self.failing_since = None;
        for waiter in self.idp.sign_in_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
        for id in self.server_ids(ServerMode::EnterpriseManaged) {
            let on_demand = self.on_demand(&id);
            let Some(slot) = self.servers.get_mut(&id) else {
                continue;
            };
            slot.attempts = 0;
            slot.retried_after_refresh = false;
            slot.scheduled = false;
            if on_demand && slot.token.is_none() && slot.waiters.is_empty() {
                // Minted when a client first asks (`settings.on_demand_servers`).
                slot.state = ServerState::ReadyOnFirstUse {
                    reason: IdleReason::Unused,
                };
                continue;
            }
            self.start_grant(&id);
        }
    }

    pub(super) fn sign_out(&mut self) {
        info!("signing out");
        let refresh_token = self.idp.refresh_token.take();
        if let Some(client) = self.idp.client.clone() {
            let key = refresh_token_key(client.issuer(), &client.client.client_id);
            let store = self.config.store.clone();
            let http = self.http.clone();
            let clock = self.config.clock.clone();
            tokio::spawn(async move {
                if let Some(token) = refresh_token {
                    if let Err(e) = client.revoke(&http, clock.as_ref(), &token).await {
                        warn!(error = %e, "revoking the refresh token failed (it is wiped locally anyway)");
                    }
                }
                let _ = tokio::task::spawn_blocking(move || store.delete(&key)).await;
            });
        }
        self.idp.tokens = None;
        self.idp.last_subject = None;
        self.idp.previous_subject = None;
        self.idp.phase = IdpPhase::SignedOut;
        self.idp.generation += 1;
        self.idp.refresh_in_flight = false;
        for slot in self.servers.values_mut() {
            if slot.policy.mode == ServerMode::EnterpriseManaged {
                slot.wipe(ServerState::NotSignedIn);
                slot.answer_waiters(Err(EngineError::NotSignedIn));
            }
        }
        self.disconnect_all();
    }

    /// Sign-out wipes every `oauth` connection too, then revokes each one's refresh token at its
    /// authorization server where that server offers revocation (best effort, bounded, in the
    /// background: a dead network loses nothing and holds nothing up). A connect or a renewal
    /// under way keeps nothing when it ends (its generation is gone).
    pub(super) fn disconnect_all(&mut self) {
        let ids = self.server_ids(ServerMode::Oauth);
        for id in &ids {
            if let Some(slot) = self.servers.get_mut(id) {
                slot.wiped_after = Some(slot.generation);
                slot.wipe(ServerState::NeedsConnect);
                slot.connected_issuer = None;
                slot.connect_began_after = None;
                slot.answer_waiters(Err(EngineError::NotConnected { server: id.clone() }));
            }
        }
        self.connection_writes
            .sign_out(ids, self.http.clone(), self.config.clock.clone());
    }

    pub(super) fn id_token_fresh(&self, now: u64) -> bool {
        self.idp
            .tokens
            .as_ref()
            .is_some_and(|t| self.rule.still_fresh(now, t.info.expires_at))
    }

    pub(super) fn start_idp_refresh(&mut self) {
        if self.idp.refresh_in_flight || !matches!(self.idp.phase, IdpPhase::SignedIn) {
            return;
        }
        let (Some(client), Some(refresh_token)) =
            (self.idp.client.clone(), self.idp.refresh_token.clone())
        else {
            self.idp.phase =
                IdpPhase::NeedsSignIn("the session cannot be renewed without signing in".into());
            self.fail_awaiting_idp(EngineError::NotSignedIn);
            return;
        };
        self.idp.refresh_in_flight = true;
        let http = self.http.clone();
        let clock = self.config.clock.clone();
        let events = self.events_tx.clone();
        let generation = self.idp.generation;
        let store = self.config.store.clone();
        debug!("refreshing the identity provider session");
        tokio::spawn(async move {
            let (rediscovered, result) = client
                .refresh_rediscovering(&http, clock.as_ref(), &refresh_token)
                .await;
            let client = rediscovered.clone().unwrap_or(client);
            // Rotation: the new refresh token is in the keychain before anything can use it.
            let keychain =
                persist_refresh_token(store, &client, &result, Some(&refresh_token)).await;
            let result = result.map(|mut tokens| {
                tokens.refresh_token.get_or_insert(refresh_token);
                tokens
            });
            let _ = events.send(Event::IdpRefreshDone {
                generation,
                result,
                keychain,
                rediscovered,
            });
        });
    }

    pub(super) fn fail_awaiting_idp(&mut self, error: EngineError) {
        for slot in self.servers.values_mut() {
            if slot.awaiting_idp {
                slot.awaiting_idp = false;
                slot.in_flight = false;
                slot.state = ServerState::NotSignedIn;
                slot.answer_waiters(Err(error.clone()));
            }
        }
    }

    pub(super) fn on_sign_in_done(
        &mut self,
        result: Result<IdpTokens, SignInError>,
        restored: bool,
    ) {
        match result {
            Ok(tokens) => self.on_signed_in(tokens),
            Err(e) if restored => {
                // No saved session (or it is no longer valid): a normal signed-out start.
                if !matches!(self.idp.phase, IdpPhase::Restoring) {
                    return;
                }
                self.idp.phase = match &e {
                    SignInError::Unsupported(_) => IdpPhase::SignedOut,
                    e if e.is_transient() => {
                        IdpPhase::NeedsSignIn(format!("the session could not be resumed: {e}"))
                    }
                    _ => IdpPhase::NeedsSignIn("your session has ended; sign in again".into()),
                };
                self.fail_parked_token_requests();
            }
            Err(e) => {
                warn!(error = %e, "sign-in failed");
                self.idp.phase = if self.idp.tokens.is_some() {
                    IdpPhase::SignedIn
                } else {
                    IdpPhase::NeedsSignIn(e.to_string())
                };
                for waiter in self.idp.sign_in_waiters.drain(..) {
                    let _ = waiter.send(Err(EngineError::SignIn(e.to_string())));
                }
            }
        }
    }

    /// Token requests parked while the session was being resumed, when it was not.
    pub(super) fn fail_parked_token_requests(&mut self) {
        for slot in self.servers.values_mut() {
            if slot.policy.mode == ServerMode::EnterpriseManaged && !slot.in_flight {
                slot.answer_waiters(Err(EngineError::NotSignedIn));
            }
        }
    }

    pub(super) fn note_keychain(&mut self, result: Option<Result<(), StoreError>>) {
        let Some(result) = result else { return };
        if result.is_ok() {
            self.idp.keychain_failures = 0;
            self.idp.keychain_retry_at = None;
        } else {
            let doublings = self.idp.keychain_failures.min(10);
            self.idp.keychain_failures = self.idp.keychain_failures.saturating_add(1);
            let wait = (KEYCHAIN_RETRY_SECS << doublings).min(KEYCHAIN_RETRY_MAX_SECS);
            self.idp.keychain_retry_at = Some(self.now() + wait);
        }
        self.keychain = match result {
            Ok(()) => KeychainStatus::Available,
            Err(StoreError::Locked(reason)) => KeychainStatus::Locked { reason },
            Err(StoreError::Unavailable(reason)) | Err(StoreError::Failed(reason)) => {
                KeychainStatus::Unavailable { reason }
            }
        };
    }

    /// A refresh token this session no longer uses (a refresh that finished after sign-out, or a
    /// retried keychain write that raced one): revoked at the IdP, and taken out of the keychain
    /// when the keychain still holds it (the session's current token, if any, goes back).
    pub(super) fn forget_stale_refresh_token(&mut self, stale: Option<Secret>) {
        let Some(stale) = stale else { return };
        if self.idp.refresh_token.as_ref() == Some(&stale) {
            return;
        }
        let Some(client) = self.idp.client.clone() else {
            return;
        };
        let current = self.idp.refresh_token.clone();
        let key = refresh_token_key(client.issuer(), &client.client.client_id);
        let store = self.config.store.clone();
        let http = self.http.clone();
        let clock = self.config.clock.clone();
        info!("a refresh token outlived its session; revoking it");
        tokio::spawn(async move {
            if let Err(e) = client.revoke(&http, clock.as_ref(), &stale).await {
                warn!(error = %e, "revoking a stale refresh token failed");
            }
            let _ = tokio::task::spawn_blocking(move || {
                if store.get(&key)?.as_ref() != Some(&stale) {
                    return Ok(());
                }
                match current {
                    Some(current) => store.set(&key, &current),
                    None => store.delete(&key),
                }
            })
            .await;
        });
    }

    /// Writes the session's refresh token to the keychain again (it refused the last write).
    pub(super) fn retry_keychain_write(&mut self, now: u64) {
        let (Some(client), Some(token)) = (self.idp.client.clone(), self.idp.refresh_token.clone())
        else {
            self.idp.keychain_retry_at = None;
            return;
        };
        // Not again before this write answers (its answer sets the next time).
        self.idp.keychain_retry_at = Some(now + KEYCHAIN_RETRY_MAX_SECS);
        let key = refresh_token_key(client.issuer(), &client.client.client_id);
        let store = self.config.store.clone();
        let events = self.events_tx.clone();
        let generation = self.idp.generation;
        debug!("writing the session to the keychain again");
        tokio::spawn(async move {
            let written = token.clone();
            let result = tokio::task::spawn_blocking(move || store.set(&key, &token))
                .await
                .unwrap_or_else(|e| Err(StoreError::Failed(e.to_string())));
            let _ = events.send(Event::KeychainRetryDone {
                generation,
                written,
                result,
            });
        });
    }
}
