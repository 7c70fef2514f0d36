//! The actor's state, one slot per concern: the IdP session ([`IdpSlot`]) and each server
//! ([`ServerSlot`]: its token, the token minted with extra scopes, the grant in flight and its
//! waiters). Plain data with the small queries on it; only the actor writes it.

use super::*;

#[derive(Default)]
pub(super) struct IdpSlot {
    pub(super) phase: IdpPhase,
    pub(super) client: Option<Arc<IdpClient>>,
    pub(super) discovering: bool,
    pub(super) tokens: Option<IdpTokens>,
    pub(super) refresh_token: Option<Secret>,
    pub(super) refresh_in_flight: bool,
    pub(super) refresh_attempts: u32,
    pub(super) refresh_retry_at: u64,
    pub(super) refresh_due_at: u64,
    pub(super) refresh_error: Option<String>,
    /// When to write the refresh token in memory to the keychain again, after the keychain
    /// refused it (locked, unavailable): the session then survives a restart once it is back.
    pub(super) keychain_retry_at: Option<u64>,
    /// Keychain writes refused in a row.
    pub(super) keychain_failures: u32,
    pub(super) generation: u64,
    /// Counts changes of the session's subject token (a new ID token, a rotated refresh token):
    /// a grant refused with a subject that has since been replaced simply goes again.
    pub(super) subject_generation: u64,
    pub(super) sign_in_waiters: Vec<oneshot::Sender<Result<(), EngineError>>>,
    /// Who signed in last in this agent's life (kept when the session ends, forgotten on sign-out).
    pub(super) last_subject: Option<String>,
    /// Set when the latest sign-in was by another account than [`IdpSlot::last_subject`] was: a
    /// sign-in someone else slipped in shows here (`IdpStatus::SignedIn::previous_subject`).
    pub(super) previous_subject: Option<String>,
    /// What to do once the IdP client is discovered.
    pub(super) after_discovery: Vec<AfterDiscovery>,
}

#[derive(Default, Clone, PartialEq, Eq)]
pub(super) enum IdpPhase {
    #[default]
    SignedOut,
    Restoring,
    SigningIn {
        user_code: Option<String>,
        verification_uri: Option<String>,
    },
    SignedIn,
    NeedsSignIn(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterDiscovery {
    BrowserSignIn,
    DeviceSignIn,
    Restore,
}

pub(super) struct CurrentToken {
    pub(super) access_token: Secret,
    pub(super) issued_at: u64,
    pub(super) expires_at: u64,
    pub(super) scopes: Vec<String>,
    /// The thumbprint of the DPoP key it is bound to, if it is bound.
    pub(super) dpop_jkt: Option<String>,
}

pub(super) struct ServerSlot {
    pub(super) policy: ServerPolicy,
    pub(super) state: ServerState,
    pub(super) token: Option<CurrentToken>,
    /// A token minted with extra scopes for the callers who asked for them; never handed to a
    /// caller who did not, never refreshed by the schedule.
    pub(super) scoped_token: Option<CurrentToken>,
    pub(super) due_at: Option<u64>,
    pub(super) in_flight: bool,
    /// Waiting for a fresh ID token before granting.
    pub(super) awaiting_idp: bool,
    /// The one retry after an IdP refresh that `SubjectRejected` allows.
    pub(super) retried_after_refresh: bool,
    /// The IdP's `subject_generation` when the grant in flight started.
    pub(super) subject_generation: u64,
    pub(super) generation: u64,
    pub(super) attempts: u32,
    /// The grant under way was started by the schedule (a refresh or a retry), not by someone
    /// waiting: it is held to `max_concurrency_per_host`.
    pub(super) scheduled: bool,
    /// When the last attempt failed (a client may try again sooner than the schedule; see
    /// [`RetryRule::client_may_retry`]).
    pub(super) failed_at: Option<u64>,
    /// After a failure, from when a client's request may try again at once (the agent's own
    /// retry, `due_at`, may come later: see [`schedule::RetryRule::after_failure`]).
    pub(super) client_retry_at: u64,
    /// When the grant in flight was started (its time, on the monotonic clock, is measured).
    pub(super) grant_started: Option<tokio::time::Instant>,
    pub(super) waiters: Vec<oneshot::Sender<Result<AccessToken, EngineError>>>,
    pub(super) target: Option<Arc<Target>>,
    pub(super) client: Option<crate::oauth::Client>,
    pub(super) resolving_client: bool,
    pub(super) last_refresh: Option<u64>,
    /// Scopes callers asked for on top of the target's (see [`TokenRequest::extra_scopes`]).
    pub(super) extra_scopes: Vec<String>,
    /// An `oauth` server's scopes a caller needs and its connection lacks: asked for at the next
    /// `lanyard connect` (a new consent; a refresh token cannot widen a grant).
    pub(super) consent_scopes: Vec<String>,
    /// The next grant of an `oauth` server looks again where its authorization server is.
    pub(super) recheck_authorization_server: bool,
    /// The authorization server an `oauth` server's connection is held at (the status shows it).
    pub(super) connected_issuer: Option<String>,
    /// While a `lanyard connect` runs: the generation before it began. A renewal of that
    /// generation (begun before the connect) still keeps its rotated refresh token.
    pub(super) connect_began_after: Option<u64>,
    /// Sign-out wiped the connection: the generation it ended. A renewal of that generation
    /// that lands later brings a refresh token nobody keeps, so it is revoked.
    pub(super) wiped_after: Option<u64>,
    /// The grant in flight asked for `extra_scopes`.
    pub(super) granting_extra: bool,
    /// Scopes were added while a grant was in flight: mint again before answering.
    pub(super) regrant: bool,
    pub(super) last_used: Option<TokenUse>,
    /// Client requests answered with a token since the actor last added them to the usage
    /// counts (see [`super::usage`]).
    pub(super) served: u64,
    /// The token's refresh time while the server is kept warm; kept while it idles, so a request
    /// that finds the old token still good renews it in the background from then on.
    pub(super) refresh_at: Option<u64>,
    /// The authorization server's refresh token and when the ID-JAG that began its chain was
    /// minted (`servers[].use_refresh_token`). In memory only: a restart asks for a new ID-JAG.
    pub(super) as_refresh: Option<(Secret, u64)>,
}

impl ServerSlot {
    pub(super) fn new(policy: ServerPolicy) -> Self {
        Self {
            policy,
            state: ServerState::NotSignedIn,
            token: None,
            scoped_token: None,
            due_at: None,
            in_flight: false,
            awaiting_idp: false,
            retried_after_refresh: false,
            subject_generation: 0,
            generation: 0,
            attempts: 0,
            scheduled: false,
            failed_at: None,
            client_retry_at: 0,
            grant_started: None,
            waiters: Vec::new(),
            target: None,
            client: None,
            resolving_client: false,
            last_refresh: None,
            extra_scopes: Vec::new(),
            consent_scopes: Vec::new(),
            recheck_authorization_server: false,
            connected_issuer: None,
            connect_began_after: None,
            wiped_after: None,
            granting_extra: false,
            regrant: false,
            last_used: None,
            served: 0,
            refresh_at: None,
            as_refresh: None,
        }
    }

    /// Forgets everything the server held and any work under way for it (a new generation), and
    /// puts it in `state`: what sign-out does to each server.
    pub(super) fn wipe(&mut self, state: ServerState) {
        self.generation += 1;
        self.token = None;
        self.as_refresh = None;
        self.scoped_token = None;
        self.in_flight = false;
        self.awaiting_idp = false;
        self.due_at = None;
        self.extra_scopes.clear();
        self.regrant = false;
        self.state = state;
    }

    pub(super) fn usable_token(&self, now: u64, min_ttl: u64) -> Option<AccessToken> {
        Self::usable(self.token.as_ref()?, now, min_ttl)
    }

    /// The token (the server's own, else the one minted with extra scopes) that holds every scope
    /// of `wanted` and stays valid `min_ttl`.
    pub(super) fn usable_token_with(
        &self,
        wanted: &[String],
        now: u64,
        min_ttl: u64,
    ) -> Option<AccessToken> {
        [self.token.as_ref(), self.scoped_token.as_ref()]
            .into_iter()
            .flatten()
            .filter(|t| wanted.iter().all(|s| t.scopes.contains(s)))
            .find_map(|t| Self::usable(t, now, min_ttl))
    }

    /// Scopes of `wanted` beyond the policy's ceiling: its `scopes`, its `allowed_extra_scopes`,
    /// and what discovery or the authorization server settled on for the server's own token.
    pub(super) fn beyond_ceiling(&self, wanted: &[String]) -> Vec<String> {
        // An `oauth` server without configured scopes takes what it asks for: the user consents
        // to them at the server when connecting.
        if self.policy.mode == crate::policy::ServerMode::Oauth && self.policy.scopes.is_empty() {
            return Vec::new();
        }
        let within = |s: &String| {
            self.policy.scopes.contains(s)
                || self.policy.allowed_extra_scopes.contains(s)
                || self.target.as_ref().is_some_and(|t| t.scopes.contains(s))
                || self.token.as_ref().is_some_and(|t| t.scopes.contains(s))
        };
        wanted.iter().filter(|s| !within(s)).cloned().collect()
    }

    pub(super) fn usable(t: &CurrentToken, now: u64, min_ttl: u64) -> Option<AccessToken> {
        // A caller cannot get more than the server issues: asking for (nearly) a fresh token's
        // whole life would otherwise mint anew on every call. Capped at 90 % of it, a fresh token
        // serves such callers for a tenth of its lifetime.
        let lifetime = t.expires_at.saturating_sub(t.issued_at);
        let min_ttl = min_ttl.min(lifetime - lifetime / 10);
        (t.expires_at > now.saturating_add(min_ttl)).then(|| AccessToken {
            access_token: t.access_token.clone(),
            expires_at: t.expires_at,
            scopes: t.scopes.clone(),
            dpop_jkt: t.dpop_jkt.clone(),
            dpop_proof: None,
        })
    }

    /// Where this server stands after a failed attempt at `now`: it never had a token, its
    /// token still serves clients (until its last [`schedule::CLIENT_MIN_TTL_SECS`]), or it
    /// lapsed.
    pub(super) fn standing(&self, now: u64) -> schedule::Standing {
        match &self.token {
            None => schedule::Standing::FirstGrant,
            Some(t) if t.expires_at > now + schedule::CLIENT_MIN_TTL_SECS => {
                schedule::Standing::Serving {
                    until: t.expires_at - schedule::CLIENT_MIN_TTL_SECS,
                }
            }
            Some(_) => schedule::Standing::Lapsed,
        }
    }

    /// A failed attempt that will be tried again: by the agent at `next.due_at` (the slot says it
    /// is failing and when it tries next), by a client's request from `next.retry_at` on. Its
    /// waiters get the token still valid if there is one (the state says it is failing to
    /// renew), else the error.
    pub(super) fn fail_until(&mut self, now: u64, error: String, next: schedule::NextAttempt) {
        self.due_at = Some(next.due_at);
        self.client_retry_at = next.retry_at;
        self.state = ServerState::Failing {
            error: error.clone(),
            retry_at: next.due_at,
            attempts: self.attempts,
        };
        match self.usable_token(now, 0) {
            Some(token) => self.answer_waiters(Ok(token)),
            None => self.answer_waiters(Err(EngineError::Unavailable {
                error,
                retry_at: next.retry_at,
            })),
        }
    }

    pub(super) fn answer_waiters(&mut self, answer: Result<AccessToken, EngineError>) {
        if answer.is_ok() {
            self.served += self.waiters.len() as u64;
        }
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(answer.clone());
        }
    }
}

/// A scheduled grant waiting for its hosts to have room (see [`HostLoad`]).
pub(super) struct HeldBack {
    pub(super) server: String,
    pub(super) generation: u64,
    pub(super) inputs: GrantInputs,
    pub(super) hosts: Vec<String>,
}
