//! The actor's events: what spawned work reports back (discovery, sign-in, renewal, a grant, a
//! resolved client, a keychain write), dispatched to the room that owns it.

use super::*;

impl Actor {
    pub(super) fn on_event(&mut self, event: Event) {
        match event {
            Event::IdpDiscovered(result) => {
                self.idp.discovering = false;
                let pending: Vec<AfterDiscovery> = self.idp.after_discovery.drain(..).collect();
                match result {
                    Ok(client) => {
                        keep_idp_connections(&self.http, &self.config.policy, Some(&client));
                        self.adopt_held_dpop_key(&client);
                        self.idp.client = Some(client);
                        for then in pending {
                            self.after_idp_discovery(then);
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "the identity provider could not be reached");
                        if pending.contains(&AfterDiscovery::Restore)
                            && !pending.iter().any(|p| *p != AfterDiscovery::Restore)
                        {
                            // A saved session may still exist: keep it for the next sign-in attempt.
                            self.idp.phase = IdpPhase::NeedsSignIn(format!(
                                "the identity provider is unreachable: {e}"
                            ));
                        } else {
                            self.idp.phase = IdpPhase::NeedsSignIn(e.to_string());
                        }
                        for waiter in self.idp.sign_in_waiters.drain(..) {
                            let _ = waiter.send(Err(EngineError::SignIn(e.to_string())));
                        }
                        self.fail_parked_token_requests();
                    }
                }
            }
            Event::DeviceCode {
                user_code,
                verification_uri,
            } => {
                if matches!(self.idp.phase, IdpPhase::SigningIn { .. }) {
                    self.idp.phase = IdpPhase::SigningIn {
                        user_code: Some(user_code),
                        verification_uri: Some(verification_uri),
                    };
                }
            }
            Event::SignInDone {
                result,
                restored,
                keychain,
            } => {
                self.note_keychain(keychain);
                self.on_sign_in_done(result, restored);
            }
            Event::IdpRefreshDone {
                generation,
                result,
                keychain,
                rediscovered,
            } => {
                self.note_keychain(keychain);
                if generation != self.idp.generation {
                    // Signed out (or in anew) while this refresh was under way: the IdP may have
                    // rotated the refresh token, and the task may have saved the new one.
                    if let Ok(tokens) = result {
                        self.forget_stale_refresh_token(tokens.refresh_token);
                    }
                    return;
                }
                let moved = rediscovered.is_some();
                if let Some(client) = rediscovered {
                    self.idp.client = Some(client);
                }
                self.idp.refresh_in_flight = false;
                let now = self.now();
                match result {
                    Ok(tokens) => {
                        if let Some(new) = tokens.refresh_token.clone() {
                            self.idp.refresh_token = Some(new);
                        }
                        self.idp.refresh_due_at =
                            self.rule
                                .refresh_at(now, tokens.info.expires_at, Self::jitter());
                        self.pace.note_issued(tokens.info.issued_at, now);
                        self.idp.tokens = Some(tokens);
                        self.idp.subject_generation += 1;
                        self.idp.refresh_attempts = 0;
                        self.idp.refresh_error = None;
                        self.failing_since = None;
                        // After a move, servers that failed on the old endpoint go again now.
                        let waiting: Vec<String> = self
                            .servers
                            .values()
                            .filter(|s| {
                                s.awaiting_idp
                                    || (moved
                                        && !s.in_flight
                                        && matches!(s.state, ServerState::Failing { .. }))
                            })
                            .map(|s| s.policy.id.clone())
                            .collect();
                        for id in waiting {
                            self.start_grant(&id);
                        }
                    }
                    Err(e) if e.is_transient() => {
                        self.idp.refresh_attempts += 1;
                        let since = *self.failing_since.get_or_insert(now);
                        let retry = self.retry_rule();
                        self.idp.refresh_retry_at =
                            retry.retry_at(now, self.idp.refresh_attempts, since, Self::jitter());
                        self.idp.refresh_error = Some(e.to_string());
                        warn!(error = %e, attempts = self.idp.refresh_attempts, "renewing the session failed; will retry");
                        for slot in self.servers.values_mut() {
                            if slot.awaiting_idp {
                                slot.awaiting_idp = false;
                                slot.in_flight = false;
                                slot.attempts += 1;
                                slot.failed_at = Some(now);
                                // Each server on its own retry time (not the session's): when
                                // the network is back, one agent's servers do not go at once.
                                let next = retry.after_failure(
                                    now,
                                    slot.attempts,
                                    since,
                                    slot.standing(now),
                                    Self::jitter(),
                                    Self::jitter(),
                                );
                                slot.fail_until(now, format!("identity provider: {e}"), next);
                            }
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "the session ended; sign in again");
                        self.idp.phase = IdpPhase::NeedsSignIn(format!(
                            "your session has ended ({e}); sign in again"
                        ));
                        self.idp.refresh_token = None;
                        self.idp.tokens = None;
                        if let Some(client) = &self.idp.client {
                            let key = refresh_token_key(client.issuer(), &client.client.client_id);
                            let store = self.config.store.clone();
                            tokio::spawn(async move {
                                let _ =
                                    tokio::task::spawn_blocking(move || store.delete(&key)).await;
                            });
                        }
                        self.fail_awaiting_idp(EngineError::NotSignedIn);
                    }
                }
            }
            Event::KeychainResult(result) => self.note_keychain(Some(result)),
            Event::KeychainRetryDone {
                generation,
                written,
                result,
            } => {
                if generation == self.idp.generation {
                    self.note_keychain(Some(result));
                } else {
                    self.forget_stale_refresh_token(Some(written));
                }
            }
            Event::ClientResolved {
                server,
                generation,
                result,
            } => {
                let now = self.now();
                let retry = self.retry_rule();
                // A local failure (the secret is unreadable): plain backoff, or the outage's.
                let since = self.failing_since.unwrap_or(now);
                let Some(slot) = self.servers.get_mut(&server) else {
                    return;
                };
                slot.resolving_client = false;
                if slot.generation != generation {
                    return;
                }
                match result {
                    Ok(client) => {
                        slot.client = Some(client);
                        slot.in_flight = false;
                        self.start_grant(&server);
                    }
                    Err(error) => {
                        slot.in_flight = false;
                        slot.attempts += 1;
                        let retry_at = retry.retry_at(now, slot.attempts, since, Self::jitter());
                        let next = schedule::NextAttempt {
                            retry_at,
                            due_at: retry_at,
                        };
                        slot.fail_until(now, format!("client credentials: {error}"), next);
                    }
                }
            }
            Event::Located {
                server,
                generation,
                target,
            } => {
                if let Some(slot) = self.servers.get_mut(&server) {
                    if slot.generation == generation && slot.target.is_none() {
                        slot.target = Some(target);
                    }
                }
            }
            Event::ConnectDone {
                server,
                generation,
                result,
                reply,
            } => {
                let current = self.servers.get_mut(&server).filter(|slot| {
                    slot.generation == generation && slot.policy.mode == ServerMode::Oauth
                });
                let answer = match (result, current) {
                    (Ok(mut minted), Some(slot)) => {
                        slot.connect_began_after = None;
                        slot.in_flight = true;
                        slot.attempts = 0;
                        slot.consent_scopes.retain(|s| !minted.scopes.contains(s));
                        // Answered once the connection is in the keychain.
                        let (done, written) = tokio::sync::oneshot::channel();
                        match minted.connection.take() {
                            Some(update) => {
                                slot.connected_issuer = Some(update.issuer.clone());
                                self.connection_writes.keep_then(&server, &update, done);
                            }
                            None => {
                                let _ = done.send(Ok(()));
                            }
                        }
                        tokio::spawn(async move {
                            let answer = match written.await {
                                Ok(Ok(())) => Ok(()),
                                Ok(Err(e)) => Err(EngineError::ConnectFailed(e)),
                                Err(_) => Err(EngineError::ConnectFailed(
                                    "the keychain writer stopped".into(),
                                )),
                            };
                            let _ = reply.send(answer);
                        });
                        self.on_grant_done(server, generation, None, Ok(minted));
                        return;
                    }
                    (Ok(minted), None) => {
                        // Signed out, or the server changed or left the policy, while the
                        // browser was open: nothing is kept, and the refresh token is revoked.
                        warn!(server = %server, "connected after a sign-out or a policy change: nothing was kept");
                        if let Some(update) = minted.connection {
                            tokio::spawn(super::connection::revoke_unkept(
                                self.http.clone(),
                                self.config.clock.clone(),
                                server,
                                update,
                            ));
                        }
                        Err(EngineError::ConnectFailed(
                            "signed out, or the server changed in the policy, while connecting: \
                             nothing was kept"
                                .into(),
                        ))
                    }
                    (Err(e), slot) => {
                        if let Some(slot) = slot {
                            slot.connect_began_after = None;
                        }
                        Err(EngineError::ConnectFailed(e))
                    }
                };
                let _ = reply.send(answer);
            }
            Event::GrantDone {
                server,
                generation,
                target,
                result,
                hosts,
                spent,
            } => {
                self.host_load.finish(&hosts);
                self.count_spent(&server, spent);
                self.on_grant_done(server, generation, target, result);
                self.release_held_back();
            }
        }
    }

    /// When the identity provider's client key is one the OS holds, it becomes the device's DPoP
    /// key too: tokens are then bound to a key nobody can copy off the laptop. Tokens bound to the
    /// in-memory key made at start are dropped (they would be refused), and minted again.
    fn adopt_held_dpop_key(&mut self, client: &IdpClient) {
        let crate::oauth::ClientAuth::PrivateKeyJwt(signing) = &client.client.auth else {
            return;
        };
        let Some(held) = signing.dpop_key() else {
            return;
        };
        if held.thumbprint() == current_dpop_key(&self.dpop).thumbprint() {
            return;
        }
        info!(jkt = %held.thumbprint(), "DPoP proofs are signed by the client key the operating system holds");
        *self
            .dpop
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(held);
        for slot in self.servers.values_mut() {
            if slot.token.as_ref().is_some_and(|t| t.dpop_jkt.is_some()) {
                slot.token = None;
            }
            if slot
                .scoped_token
                .as_ref()
                .is_some_and(|t| t.dpop_jkt.is_some())
            {
                slot.scoped_token = None;
            }
        }
    }
}
