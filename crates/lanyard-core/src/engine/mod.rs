//! The engine: one actor that owns the policy, the IdP session and every server's grant.
//!
//! Hosts (the CLI agent, the tray app) talk to it through an [`EngineHandle`]: [`Command`]s over an
//! mpsc channel with a oneshot reply, and a [`Status`] published on a `watch` channel. Network work
//! runs in spawned tasks that report back as events, so the actor never waits on the network and
//! stays the single writer of state. Single-flight is a property of that state: a server has at most
//! one grant in flight, the IdP at most one refresh or sign-in, and every caller asking meanwhile
//! waits for that one. The actor does not poll: it sleeps until the earliest refresh or retry is
//! due, or until a command, an event or a wake notice (the clock was set, the machine resumed; see
//! [`crate::wake`]) arrives. Time is read from the [`Clock`] port after every wake-up, so a laptop
//! that slept for eight hours, or a clock that jumped, is caught up at once.

pub mod credentials;
pub mod grant;
mod reload;
pub mod schedule;
pub mod status;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::{debug, info, warn};

pub use schedule::{Backoff, HostLoad, RefreshRule, RetryRule};
pub use status::{
    Health, IdpStatus, KeychainStatus, OrganizationSettings, PolicyStatus, Requester, ServerState,
    ServerStatus, Status, TokenUse,
};

use crate::clock::Clock;
use crate::oauth::{HttpConfig, HttpExecutor, WireError};
use crate::policy::{Policy, ServerMode, ServerPolicy};
use crate::secret::Secret;
use crate::signin::{self, Browser, IdpClient, IdpTokens, SignInError, StepUp};
use crate::store::{SecretStore, StoreError};
use grant::{GrantFailure, GrantInputs, Minted, Target};

/// How the engine is built.
pub struct EngineConfig {
    pub policy: Policy,
    pub store: Arc<dyn SecretStore>,
    pub clock: Arc<dyn Clock>,
    pub browser: Arc<dyn Browser>,
    pub http: HttpConfig,
    /// A backstop: the longest the engine sleeps without re-reading the wall clock. `None` (the
    /// default) relies on deadlines and the clock's wake notices alone; each tick is a wake-up.
    pub tick: Option<Duration>,
    pub backoff: Backoff,
    /// How long a browser sign-in may take.
    pub sign_in_timeout: Duration,
    /// Resume a saved session (refresh token in the keychain) at start.
    pub restore_session: bool,
    /// Why no usable policy could be loaded: the engine starts `Misconfigured` (with `policy` then
    /// empty) until a good one is applied.
    pub policy_errors: Vec<String>,
}

impl EngineConfig {
    pub fn new(
        policy: Policy,
        store: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
        browser: Arc<dyn Browser>,
    ) -> Self {
        Self {
            policy,
            store,
            clock,
            browser,
            http: HttpConfig::default(),
            tick: None,
            backoff: Backoff::default(),
            sign_in_timeout: Duration::from_secs(300),
            restore_session: true,
            policy_errors: Vec::new(),
        }
    }
}

/// A token handed to a caller.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub access_token: Secret,
    pub expires_at: u64,
    pub scopes: Vec<String>,
}

/// A token minted this recently counts as new for a `force_refresh` request, so a burst of callers
/// that all saw the same 401 causes one mint, not one each.
pub const FORCE_REFRESH_REUSE_SECS: u64 = 2;

/// After the keychain refused the session's refresh token (locked, unavailable), the write is
/// tried again after this long, then twice as long each time it fails again (a locked keychain
/// may show its unlock prompt on every write), up to [`KEYCHAIN_RETRY_MAX_SECS`].
pub const KEYCHAIN_RETRY_SECS: u64 = 30;

/// The longest wait between two writes of the session to a keychain that refuses them.
pub const KEYCHAIN_RETRY_MAX_SECS: u64 = 600;

/// What a caller wants from [`EngineHandle::token_with`].
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// The token must stay valid at least this long.
    pub min_ttl: Duration,
    /// Mint anew even though the current token looks valid (the server rejected it with a 401).
    /// A token minted within [`FORCE_REFRESH_REUSE_SECS`] counts as new.
    pub force_refresh: bool,
    /// Scopes wanted on top of the server's (the server answered 403 `insufficient_scope`). When
    /// the current token lacks one, a token is minted with the union; the extra scopes then stick
    /// to the server until sign-out or a failed grant.
    pub extra_scopes: Vec<String>,
    /// Who asks, as the host's OS vouches for it: recorded as the server's `last_used`.
    pub requester: Option<Requester>,
}

/// Why a request to the engine failed, each with what the user can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("no server {0:?} is configured")]
    UnknownServer(String),
    #[error("not signed in: sign in to Lanyard first")]
    NotSignedIn,
    #[error("blocked by your organization ({code}){}: ask IT for access", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Denied {
        code: String,
        description: Option<String>,
    },
    #[error("this server needs a fresh sign-in: sign in to Lanyard again")]
    StepUpRequired,
    #[error("temporarily unavailable: {error} (retrying)")]
    Unavailable { error: String, retry_at: u64 },
    #[error("sign-in failed: {0}")]
    SignIn(String),
    /// The managed policy is missing or unusable: nothing to sign in to until IT fixes it.
    #[error("the managed policy is not usable ({0}); ask IT to fix it")]
    Misconfigured(String),
    #[error("the engine has stopped")]
    Stopped,
}

/// Requests to the engine.
#[derive(Debug)]
pub enum Command {
    /// Interactive sign-in in the browser (with step-up when a server asked for it).
    SignIn {
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// Device-code sign-in for machines without a display; the code appears in the status.
    SignInWithDeviceCode {
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    SignOut {
        reply: oneshot::Sender<()>,
    },
    RefreshAll {
        reply: oneshot::Sender<()>,
    },
    Refresh {
        server: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// A token valid for at least `request.min_ttl` (or as fresh as the server issues).
    Token {
        server: String,
        request: TokenRequest,
        reply: oneshot::Sender<Result<AccessToken, EngineError>>,
    },
    /// Audit: a host handed `server`'s token to a local process (now, by the engine's clock).
    RecordUse {
        server: String,
        requester: Requester,
    },
    /// Replace the policy; the difference is applied live.
    ApplyPolicy {
        policy: Box<Policy>,
        reply: oneshot::Sender<()>,
    },
    /// A changed policy could not be used: keep the last good one and report `errors`.
    RejectPolicy {
        errors: Vec<String>,
        reply: oneshot::Sender<()>,
    },
    Shutdown,
}

/// The hosts' side of the engine.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
}

impl EngineHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    pub async fn sign_in(&self) -> Result<(), EngineError> {
        self.ask(|reply| Command::SignIn { reply }).await?
    }

    pub async fn sign_in_with_device_code(&self) -> Result<(), EngineError> {
        self.ask(|reply| Command::SignInWithDeviceCode { reply })
            .await?
    }

    pub async fn sign_out(&self) -> Result<(), EngineError> {
        self.ask(|reply| Command::SignOut { reply }).await
    }

    pub async fn refresh_all(&self) -> Result<(), EngineError> {
        self.ask(|reply| Command::RefreshAll { reply }).await
    }

    pub async fn refresh(&self, server: &str) -> Result<(), EngineError> {
        self.ask(|reply| Command::Refresh {
            server: server.to_owned(),
            reply,
        })
        .await?
    }

    pub async fn token(&self, server: &str, min_ttl: Duration) -> Result<AccessToken, EngineError> {
        self.token_with(
            server,
            TokenRequest {
                min_ttl,
                ..TokenRequest::default()
            },
        )
        .await
    }

    /// A token as `request` says; a successful hand-out to a known requester is recorded as the
    /// server's `last_used`.
    pub async fn token_with(
        &self,
        server: &str,
        request: TokenRequest,
    ) -> Result<AccessToken, EngineError> {
        let requester = request.requester.clone();
        let token = self
            .ask(|reply| Command::Token {
                server: server.to_owned(),
                request,
                reply,
            })
            .await??;
        if let Some(requester) = requester {
            let _ = self
                .commands
                .send(Command::RecordUse {
                    server: server.to_owned(),
                    requester,
                })
                .await;
        }
        Ok(token)
    }

    /// Applies a new policy live (servers granted, revoked or re-granted; settings updated).
    pub async fn apply_policy(&self, policy: Policy) -> Result<(), EngineError> {
        self.ask(|reply| Command::ApplyPolicy {
            policy: Box::new(policy),
            reply,
        })
        .await
    }

    /// Reports a policy that could not be used; the last good one stays in force.
    pub async fn reject_policy(&self, errors: Vec<String>) -> Result<(), EngineError> {
        self.ask(|reply| Command::RejectPolicy { errors, reply })
            .await
    }

    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }

    /// The latest status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that sees every new status.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Waits until `pred` holds for the status (or the engine stops).
    pub async fn wait_for(
        &self,
        mut pred: impl FnMut(&Status) -> bool,
    ) -> Result<Status, EngineError> {
        let mut rx = self.status.clone();
        let status = rx
            .wait_for(|s| pred(s))
            .await
            .map_err(|_| EngineError::Stopped)?;
        Ok(status.clone())
    }
}

/// Connections to the identity provider stay open between requests (it sees one token exchange per
/// server in a burst); to anyone else they close after each answer (see [`HttpExecutor`]).
fn keep_idp_connections(http: &HttpExecutor, policy: &Policy, client: Option<&IdpClient>) {
    if let Some(issuer) = policy
        .idp
        .as_ref()
        .and_then(|idp| url::Url::parse(&idp.issuer).ok())
    {
        http.keep_alive_for(&issuer);
    }
    if let Some(client) = client {
        http.keep_alive_for(&client.metadata.token_endpoint);
    }
}

/// Starts the engine on the current tokio runtime.
pub fn start(config: EngineConfig) -> Result<EngineHandle, WireError> {
    let http_config = credentials::http_config_for(&config.policy.settings, config.http.clone())
        .map_err(WireError::Discovery)?;
    let http = HttpExecutor::new(&http_config)?;
    keep_idp_connections(&http, &config.policy, None);
    let (commands_tx, commands_rx) = mpsc::channel(256);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let servers = config
        .policy
        .servers
        .iter()
        .map(|s| (s.id.clone(), ServerSlot::new(s.clone())))
        .collect();
    let mut actor = Actor {
        semaphore: Arc::new(Semaphore::new(
            config.policy.settings.max_concurrency.max(1),
        )),
        own_host_slots: Arc::new(Semaphore::new(
            config.policy.settings.max_concurrency.max(1),
        )),
        rule: RefreshRule {
            fraction: config.policy.settings.refresh_at_fraction,
            min_lead_secs: config.policy.settings.min_refresh_lead_secs,
            jitter: config.policy.settings.refresh_jitter,
        },
        host_load: HostLoad::default(),
        held_back: VecDeque::new(),
        failing_since: None,
        http,
        idp: IdpSlot::default(),
        servers,
        keychain: KeychainStatus::Available,
        status_tx: watch::channel(placeholder_status()).0,
        events_tx,
        policy_status: if config.policy_errors.is_empty() {
            PolicyStatus::Applied
        } else {
            PolicyStatus::Misconfigured {
                errors: config.policy_errors.clone(),
            }
        },
        config,
    };
    if actor.config.restore_session && actor.config.policy.idp.is_some() {
        // Published from the first status on, so nobody mistakes "resuming" for "signed out".
        actor.idp.phase = IdpPhase::Restoring;
    }
    let (status_tx, status_rx) = watch::channel(actor.build_status());
    actor.status_tx = status_tx;
    tokio::spawn(actor.run(commands_rx, events_rx));
    Ok(EngineHandle {
        commands: commands_tx,
        status: status_rx,
    })
}

fn placeholder_status() -> Status {
    Status {
        idp: IdpStatus::SignedOut,
        servers: Vec::new(),
        keychain: KeychainStatus::Available,
        policy: PolicyStatus::Applied,
        organization: OrganizationSettings::default(),
        updated_at: 0,
    }
}

/// The SAML settings of the policy's IdP section, when it signs in with SAML.
fn saml_settings(
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
async fn persist_refresh_token(
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
async fn report_sign_in(
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

/// Results of spawned work, back to the actor.
enum Event {
    IdpDiscovered(Result<Arc<IdpClient>, SignInError>),
    SignInDone {
        result: Result<IdpTokens, SignInError>,
        restored: bool,
        keychain: Option<Result<(), StoreError>>,
    },
    DeviceCode {
        user_code: String,
        verification_uri: String,
    },
    IdpRefreshDone {
        generation: u64,
        result: Result<IdpTokens, SignInError>,
        keychain: Option<Result<(), StoreError>>,
        /// The IdP's metadata, read again because its token endpoint had moved.
        rediscovered: Option<Arc<IdpClient>>,
    },
    KeychainResult(Result<(), StoreError>),
    /// A retried write of the session's refresh token (see [`KEYCHAIN_RETRY_SECS`]).
    KeychainRetryDone {
        generation: u64,
        written: Secret,
        result: Result<(), StoreError>,
    },
    /// Discovery done ahead of the first grant (while the user is still signing in).
    Located {
        server: String,
        generation: u64,
        target: Arc<Target>,
    },
    GrantDone {
        server: String,
        generation: u64,
        target: Option<Arc<Target>>,
        result: Result<Minted, GrantFailure>,
        /// The hosts this grant was counted against in [`HostLoad`].
        hosts: Vec<String>,
    },
    ClientResolved {
        server: String,
        generation: u64,
        result: Result<crate::oauth::Client, String>,
    },
}

#[derive(Default)]
struct IdpSlot {
    phase: IdpPhase,
    client: Option<Arc<IdpClient>>,
    discovering: bool,
    tokens: Option<IdpTokens>,
    refresh_token: Option<Secret>,
    refresh_in_flight: bool,
    refresh_attempts: u32,
    refresh_retry_at: u64,
    refresh_due_at: u64,
    refresh_error: Option<String>,
    /// When to write the refresh token in memory to the keychain again, after the keychain
    /// refused it (locked, unavailable): the session then survives a restart once it is back.
    keychain_retry_at: Option<u64>,
    /// Keychain writes refused in a row.
    keychain_failures: u32,
    generation: u64,
    /// Counts changes of the session's subject token (a new ID token, a rotated refresh token):
    /// a grant refused with a subject that has since been replaced simply goes again.
    subject_generation: u64,
    sign_in_waiters: Vec<oneshot::Sender<Result<(), EngineError>>>,
    /// Who signed in last in this agent's life (kept when the session ends, forgotten on sign-out).
    last_subject: Option<String>,
    /// Set when the latest sign-in was by another account than [`IdpSlot::last_subject`] was: a
    /// sign-in someone else slipped in shows here (`IdpStatus::SignedIn::previous_subject`).
    previous_subject: Option<String>,
    /// What to do once the IdP client is discovered.
    after_discovery: Vec<AfterDiscovery>,
}

#[derive(Default, Clone, PartialEq, Eq)]
enum IdpPhase {
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
enum AfterDiscovery {
    BrowserSignIn,
    DeviceSignIn,
    Restore,
}

struct CurrentToken {
    access_token: Secret,
    issued_at: u64,
    expires_at: u64,
    scopes: Vec<String>,
}

struct ServerSlot {
    policy: ServerPolicy,
    state: ServerState,
    token: Option<CurrentToken>,
    due_at: Option<u64>,
    in_flight: bool,
    /// Waiting for a fresh ID token before granting.
    awaiting_idp: bool,
    /// The one retry after an IdP refresh that `SubjectRejected` allows.
    retried_after_refresh: bool,
    /// The IdP's `subject_generation` when the grant in flight started.
    subject_generation: u64,
    generation: u64,
    attempts: u32,
    /// The grant under way was started by the schedule (a refresh or a retry), not by someone
    /// waiting: it is held to `max_concurrency_per_host`.
    scheduled: bool,
    /// When the last attempt failed (a client may try again sooner than the schedule; see
    /// [`RetryRule::client_may_retry`]).
    failed_at: Option<u64>,
    waiters: Vec<oneshot::Sender<Result<AccessToken, EngineError>>>,
    target: Option<Arc<Target>>,
    client: Option<crate::oauth::Client>,
    resolving_client: bool,
    last_refresh: Option<u64>,
    /// Scopes callers asked for on top of the target's (see [`TokenRequest::extra_scopes`]).
    extra_scopes: Vec<String>,
    /// The grant in flight asked for `extra_scopes`.
    granting_extra: bool,
    /// Scopes were added while a grant was in flight: mint again before answering.
    regrant: bool,
    last_used: Option<TokenUse>,
}

impl ServerSlot {
    fn new(policy: ServerPolicy) -> Self {
        Self {
            policy,
            state: ServerState::NotSignedIn,
            token: None,
            due_at: None,
            in_flight: false,
            awaiting_idp: false,
            retried_after_refresh: false,
            subject_generation: 0,
            generation: 0,
            attempts: 0,
            scheduled: false,
            failed_at: None,
            waiters: Vec::new(),
            target: None,
            client: None,
            resolving_client: false,
            last_refresh: None,
            extra_scopes: Vec::new(),
            granting_extra: false,
            regrant: false,
            last_used: None,
        }
    }

    fn usable_token(&self, now: u64, min_ttl: u64) -> Option<AccessToken> {
        let t = self.token.as_ref()?;
        // A caller cannot get more than the server issues: asking for (nearly) a fresh token's
        // whole life would otherwise mint anew on every call. Capped at 90 % of it, a fresh token
        // serves such callers for a tenth of its lifetime.
        let lifetime = t.expires_at.saturating_sub(t.issued_at);
        let min_ttl = min_ttl.min(lifetime - lifetime / 10);
        (t.expires_at > now + min_ttl).then(|| AccessToken {
            access_token: t.access_token.clone(),
            expires_at: t.expires_at,
            scopes: t.scopes.clone(),
        })
    }

    fn answer_waiters(&mut self, answer: Result<AccessToken, EngineError>) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(answer.clone());
        }
    }
}

/// A scheduled grant waiting for its hosts to have room (see [`HostLoad`]).
struct HeldBack {
    server: String,
    generation: u64,
    inputs: GrantInputs,
    hosts: Vec<String>,
}

struct Actor {
    config: EngineConfig,
    http: HttpExecutor,
    semaphore: Arc<Semaphore>,
    /// The same cap for grants' last leg, at each server's own authorization server.
    own_host_slots: Arc<Semaphore>,
    rule: RefreshRule,
    /// Scheduled grants in flight per host.
    host_load: HostLoad,
    /// Scheduled grants waiting for room at their hosts, oldest first.
    held_back: VecDeque<HeldBack>,
    /// Since when requests have been failing with no success in between (an outage, as this
    /// agent sees it): retries spread more widely the longer it lasts (see [`RetryRule`]).
    failing_since: Option<u64>,
    idp: IdpSlot,
    servers: BTreeMap<String, ServerSlot>,
    keychain: KeychainStatus,
    status_tx: watch::Sender<Status>,
    events_tx: mpsc::UnboundedSender<Event>,
    policy_status: PolicyStatus,
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) {
        let mut notices = self.config.clock.notices();
        self.start_up();
        loop {
            let wait = self.next_wake();
            let deadline = async move {
                match wait {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                Some(event) = events.recv() => self.on_event(event),
                notice = notices.next() => {
                    info!(?notice, "the wall clock moved unlike the timers; checking every token");
                }
                () = deadline => {}
            }
            self.on_tick();
            self.publish();
        }
        debug!("engine stopped");
    }

    fn now(&self) -> u64 {
        self.config.clock.unix_now()
    }

    /// A random draw in `[0, 1)` for the scheduling rules (the simulation seeds its own).
    fn jitter() -> f64 {
        rand::random::<f64>()
    }

    fn retry_rule(&self) -> RetryRule {
        RetryRule {
            backoff: self.config.backoff,
            recovery_jitter_secs: self.config.policy.settings.recovery_jitter_secs,
        }
    }

    fn on_demand(&self, id: &str) -> bool {
        schedule::on_demand(&self.config.policy.settings.on_demand_servers, id)
    }

    /// The hosts a grant for `slot` talks to: the IdP (enterprise-managed) and the authorization
    /// server (its token endpoint once known, the MCP server before discovery).
    fn grant_hosts(&self, slot: &ServerSlot) -> Vec<String> {
        let authority = |url: &str| {
            url::Url::parse(url)
                .ok()
                .and_then(|u| {
                    let host = u.host_str()?.to_owned();
                    Some(match u.port_or_known_default() {
                        Some(port) => format!("{host}:{port}"),
                        None => host,
                    })
                })
                .unwrap_or_else(|| url.to_owned())
        };
        let mut hosts = Vec::with_capacity(2);
        if slot.policy.mode == ServerMode::EnterpriseManaged {
            if let Some(idp) = &self.config.policy.idp {
                hosts.push(authority(&idp.issuer));
            }
        }
        let as_host = match &slot.target {
            Some(t) => authority(t.authorization_server.token_endpoint.as_str()),
            None => authority(&slot.policy.url),
        };
        if !hosts.contains(&as_host) {
            hosts.push(as_host);
        }
        hosts
    }

    fn start_up(&mut self) {
        for id in self.server_ids(ServerMode::EnterpriseManaged) {
            self.prefetch_target(&id);
        }
        for id in self.server_ids(ServerMode::ClientCredentials) {
            if !self.on_demand(&id) {
                self.start_grant(&id);
            }
        }
        if self.config.restore_session && self.config.policy.idp.is_some() {
            self.idp.phase = IdpPhase::Restoring;
            self.with_idp_client(AfterDiscovery::Restore);
        }
        self.publish();
    }

    /// Finds a server's authorization server before it is needed, so that a sign-in is followed by
    /// two round trips per server (exchange, jwt-bearer) instead of five. A failure here is
    /// silent: the grant discovers again and reports.
    fn prefetch_target(&mut self, id: &str) {
        let Some(slot) = self.servers.get(id) else {
            return;
        };
        if slot.target.is_some() {
            return;
        }
        let http = self.http.clone();
        let policy = slot.policy.clone();
        let generation = slot.generation;
        let semaphore = self.semaphore.clone();
        let events = self.events_tx.clone();
        let server = id.to_owned();
        tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            match grant::locate(&http, &policy).await {
                Ok(target) => {
                    let _ = events.send(Event::Located {
                        server,
                        generation,
                        target: Arc::new(target),
                    });
                }
                Err(e) => {
                    debug!(server = %server, error = %e, "early discovery failed; the grant will retry")
                }
            }
        });
    }

    fn server_ids(&self, mode: ServerMode) -> Vec<String> {
        self.servers
            .values()
            .filter(|s| s.policy.mode == mode)
            .map(|s| s.policy.id.clone())
            .collect()
    }

    // ---- commands -------------------------------------------------------------------------

    fn on_command(&mut self, command: Command) {
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
            Command::Shutdown => {}
        }
    }

    fn begin_sign_in(
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

    fn manual_refresh(&mut self, id: &str) {
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

    fn on_token_request(
        &mut self,
        id: String,
        request: TokenRequest,
        reply: oneshot::Sender<Result<AccessToken, EngineError>>,
    ) {
        let now = self.now();
        let signed_in = matches!(self.idp.phase, IdpPhase::SignedIn);
        let restoring = matches!(self.idp.phase, IdpPhase::Restoring);
        let retry = self.retry_rule();
        let Some(slot) = self.servers.get_mut(&id) else {
            let _ = reply.send(Err(EngineError::UnknownServer(id)));
            return;
        };
        let lacks_scope = request
            .extra_scopes
            .iter()
            .any(|s| !slot.token.as_ref().is_some_and(|t| t.scopes.contains(s)));
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
            ServerState::Failing {
                error, retry_at, ..
            } if *retry_at > now
                && !slot.in_flight
                && !slot
                    .failed_at
                    .is_some_and(|at| retry.client_may_retry(now, at)) =>
            {
                let _ = reply.send(Err(EngineError::Unavailable {
                    error: error.clone(),
                    retry_at: *retry_at,
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

    // ---- IdP -------------------------------------------------------------------------------

    fn with_idp_client(&mut self, then: AfterDiscovery) {
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

    fn after_idp_discovery(&mut self, then: AfterDiscovery) {
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
                    let result = if client.saml.is_some() {
                        signin::sign_in_with_saml(
                            &client,
                            &http,
                            clock.as_ref(),
                            browser.as_ref(),
                            step_up,
                            timeout,
                        )
                        .await
                    } else {
                        signin::sign_in_with_browser(
                            &client,
                            &http,
                            clock.as_ref(),
                            browser.as_ref(),
                            step_up,
                            timeout,
                        )
                        .await
                    };
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

    fn step_up_needed(&self) -> Option<StepUp> {
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

    fn on_signed_in(&mut self, tokens: IdpTokens) {
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
                continue;
            }
            self.start_grant(&id);
        }
    }

    fn sign_out(&mut self) {
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
                slot.generation += 1;
                slot.token = None;
                slot.in_flight = false;
                slot.awaiting_idp = false;
                slot.due_at = None;
                slot.extra_scopes.clear();
                slot.regrant = false;
                slot.state = ServerState::NotSignedIn;
                slot.answer_waiters(Err(EngineError::NotSignedIn));
            }
        }
    }

    fn id_token_fresh(&self, now: u64) -> bool {
        self.idp
            .tokens
            .as_ref()
            .is_some_and(|t| self.rule.still_fresh(now, t.info.expires_at))
    }

    fn start_idp_refresh(&mut self) {
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

    fn fail_awaiting_idp(&mut self, error: EngineError) {
        for slot in self.servers.values_mut() {
            if slot.awaiting_idp {
                slot.awaiting_idp = false;
                slot.in_flight = false;
                slot.state = ServerState::NotSignedIn;
                slot.answer_waiters(Err(error.clone()));
            }
        }
    }

    // ---- grants ----------------------------------------------------------------------------

    fn start_grant(&mut self, id: &str) {
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
    fn spawn_grant(
        &mut self,
        server: String,
        generation: u64,
        inputs: GrantInputs,
        hosts: Vec<String>,
    ) {
        self.host_load.start(&hosts);
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let (target, result) = grant::run(inputs).await;
            let _ = events.send(Event::GrantDone {
                server,
                generation,
                target,
                result,
                hosts,
            });
        });
    }

    /// Starts the held-back grants whose hosts have room now (or that someone waits for); drops
    /// those whose server was signed out or replaced meanwhile.
    fn release_held_back(&mut self) {
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

    fn on_grant_done(
        &mut self,
        id: String,
        generation: u64,
        target: Option<Arc<Target>>,
        result: Result<Minted, GrantFailure>,
    ) {
        let now = self.now();
        let retry = self.retry_rule();
        let rule = self.rule;
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
            return;
        };
        if slot.generation != generation {
            return; // signed out meanwhile
        }
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
            Ok(minted) => {
                let expires_at = now + minted.expires_in;
                let refresh_at = rule.refresh_at(now, expires_at, Self::jitter());
                info!(server = %id, expires_in = minted.expires_in, "token granted");
                slot.token = Some(CurrentToken {
                    access_token: minted.access_token,
                    issued_at: now,
                    expires_at,
                    scopes: minted.scopes.clone(),
                });
                slot.state = ServerState::Granted {
                    expires_at,
                    scopes: minted.scopes,
                    refresh_at,
                };
                slot.due_at = Some(refresh_at);
                slot.attempts = 0;
                slot.failed_at = None;
                slot.retried_after_refresh = false;
                slot.last_refresh = Some(now);
                if std::mem::take(&mut slot.regrant) {
                    // A caller asked for more scopes meanwhile: everyone gets the next token.
                    regrant = true;
                } else {
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
                slot.due_at = None;
                slot.state = ServerState::Denied {
                    code: code.clone(),
                    description: description.clone(),
                };
                slot.answer_waiters(Err(EngineError::Denied { code, description }));
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
                let retry_at = retry.retry_at(now, slot.attempts, failing_since, Self::jitter());
                warn!(server = %id, attempts = slot.attempts, retry_in_secs = retry_at - now, error = %error, "grant failed");
                // Discovery may be stale after a failure: look again next time.
                slot.target = None;
                slot.due_at = Some(retry_at);
                slot.state = ServerState::Failing {
                    error: error.clone(),
                    retry_at,
                    attempts: slot.attempts,
                };
                match slot.usable_token(now, 0) {
                    // Waiters get the still-valid token; the state says it is failing to renew.
                    Some(token) => slot.answer_waiters(Ok(token)),
                    None => slot.answer_waiters(Err(EngineError::Unavailable { error, retry_at })),
                }
            }
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

    // ---- events ----------------------------------------------------------------------------

    fn on_event(&mut self, event: Event) {
        match event {
            Event::IdpDiscovered(result) => {
                self.idp.discovering = false;
                let pending: Vec<AfterDiscovery> = self.idp.after_discovery.drain(..).collect();
                match result {
                    Ok(client) => {
                        keep_idp_connections(&self.http, &self.config.policy, Some(&client));
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
                                let retry_at =
                                    retry.retry_at(now, slot.attempts, since, Self::jitter());
                                slot.due_at = Some(retry_at);
                                let error = format!("identity provider: {e}");
                                slot.state = ServerState::Failing {
                                    error: error.clone(),
                                    retry_at,
                                    attempts: slot.attempts,
                                };
                                match slot.usable_token(now, 0) {
                                    Some(token) => slot.answer_waiters(Ok(token)),
                                    None => slot.answer_waiters(Err(EngineError::Unavailable {
                                        error,
                                        retry_at,
                                    })),
                                }
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
                        slot.due_at = Some(retry_at);
                        let error = format!("client credentials: {error}");
                        slot.state = ServerState::Failing {
                            error: error.clone(),
                            retry_at,
                            attempts: slot.attempts,
                        };
                        slot.answer_waiters(Err(EngineError::Unavailable { error, retry_at }));
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
            Event::GrantDone {
                server,
                generation,
                target,
                result,
                hosts,
            } => {
                self.host_load.finish(&hosts);
                self.on_grant_done(server, generation, target, result);
                self.release_held_back();
            }
        }
    }

    fn on_sign_in_done(&mut self, result: Result<IdpTokens, SignInError>, restored: bool) {
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
    fn fail_parked_token_requests(&mut self) {
        for slot in self.servers.values_mut() {
            if slot.policy.mode == ServerMode::EnterpriseManaged && !slot.in_flight {
                slot.answer_waiters(Err(EngineError::NotSignedIn));
            }
        }
    }

    fn note_keychain(&mut self, result: Option<Result<(), StoreError>>) {
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
    fn forget_stale_refresh_token(&mut self, stale: Option<Secret>) {
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
    fn retry_keychain_write(&mut self, now: u64) {
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

    // ---- time ------------------------------------------------------------------------------

    /// Re-reads the wall clock and starts whatever is due.
    fn on_tick(&mut self) {
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
            if let Some(slot) = self.servers.get_mut(&id) {
                slot.scheduled = true;
            }
            self.start_grant(&id);
        }
    }

    /// How long to sleep: until the earliest deadline (a due refresh or retry), capped by the
    /// backstop tick if one is set; `None` is "until something happens".
    fn next_wake(&self) -> Option<Duration> {
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
        if matches!(self.idp.phase, IdpPhase::SignedIn) && !self.idp.refresh_in_flight {
            consider(self.idp.refresh_due_at.max(self.idp.refresh_retry_at));
            if let Some(at) = self.idp.keychain_retry_at {
                consider(at);
            }
        }
        next.map(|n| n.max(Duration::from_millis(10)))
    }

    // ---- status ----------------------------------------------------------------------------

    fn build_status(&self) -> Status {
        let idp = match &self.idp.phase {
            IdpPhase::SignedOut => IdpStatus::SignedOut,
            IdpPhase::Restoring => IdpStatus::Restoring,
            IdpPhase::SigningIn {
                user_code,
                verification_uri,
            } => IdpStatus::SigningIn {
                user_code: user_code.clone(),
                verification_uri: verification_uri.clone(),
            },
            IdpPhase::SignedIn => match &self.idp.tokens {
                Some(t) => IdpStatus::SignedIn {
                    subject: t.info.subject.clone(),
                    email: t.info.email.clone(),
                    id_token_expires_at: t.info.expires_at,
                    refresh_error: self.idp.refresh_error.clone(),
                    previous_subject: self.idp.previous_subject.clone(),
                },
                None => IdpStatus::NeedsSignIn {
                    reason: "the session is being renewed".into(),
                },
            },
            IdpPhase::NeedsSignIn(reason) => IdpStatus::NeedsSignIn {
                reason: reason.clone(),
            },
        };
        let servers = self
            .servers
            .values()
            .map(|slot| ServerStatus {
                id: slot.policy.id.clone(),
                display_name: slot.policy.display_name.clone(),
                url: slot.policy.url.clone(),
                mode: slot.policy.mode,
                state: slot.state.clone(),
                last_refresh: slot.last_refresh,
                authorization_server: slot
                    .target
                    .as_ref()
                    .map(|t| t.authorization_server.issuer.clone()),
                last_used: slot.last_used.clone(),
            })
            .collect();
        Status {
            idp,
            servers,
            keychain: self.keychain.clone(),
            policy: self.policy_status.clone(),
            organization: OrganizationSettings::from(&self.config.policy.settings),
            updated_at: self.now(),
        }
    }

    fn publish(&mut self) {
        let status = self.build_status();
        self.status_tx.send_if_modified(|current| {
            let changed = current.idp != status.idp
                || current.servers != status.servers
                || current.keychain != status.keychain
                || current.policy != status.policy
                || current.organization != status.organization;
            if changed {
                *current = status;
            }
            changed
        });
    }
}
