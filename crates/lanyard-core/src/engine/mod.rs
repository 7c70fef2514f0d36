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
//!
//! The actor lives in rooms, each an `impl Actor` block over the same state, all run on the one
//! actor task, so the single-writer rule holds whichever file a method is in:
//!
//! | room | owns |
//! |---|---|
//! | this module | the public API ([`EngineHandle`], [`Command`], [`EngineError`]), the events, the loop |
//! | `slots` | the state: the IdP slot and one slot per server |
//! | `requests` | hosts' commands and clients' token requests with their waiters |
//! | `session` | the IdP session: discovery, sign-in, renewal, sign-out, the keychain |
//! | `granting` | starting grants, holding scheduled ones back, taking their results in |
//! | `events` | what spawned work reports back, dispatched to the room that owns it |
//! | `timing` | the clock after a wake-up (a resume forgets an old failure streak), what is due, the next deadline, when a token is renewed (late while in use, from the measured pace) |
//! | `spending` | what each server mints and serves (counted into [`usage`]), the state file's writes, whether a due refresh goes or the server idles (ready on first use) |
//! | `status` | the [`Status`] types and building and publishing them |
//! | `reload` | applying a new policy live |
//!
//! [`grant`] runs one grant as a task (it owns no state); [`schedule`] holds the pure rules of when;
//! [`usage`] is the per-server 30-day counts and the state file they live in.

pub mod connection;
pub mod credentials;
mod events;
pub mod grant;
mod granting;
mod reload;
mod requests;
pub mod schedule;
mod session;
mod slots;
mod spending;
pub mod status;
mod timing;
pub mod usage;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::{debug, info, warn};

pub use schedule::{Backoff, HostLoad, RefreshRule, RetryRule};
pub use status::{
    Health, IdleReason, IdpStatus, KeychainStatus, OrganizationSettings, PolicyStatus, Requester,
    ServerState, ServerStatus, Status, TokenUse,
};
pub use usage::UsageCounts;

use crate::clock::Clock;
use crate::oauth::discovery::DiscoveredUrls;
use crate::oauth::token::clamp_lifetime;
use crate::oauth::{HttpConfig, HttpExecutor, WireError};
use crate::policy::{Policy, ServerMode, ServerPolicy};
use crate::secret::Secret;
use crate::signin::{self, Browser, IdpClient, IdpTokens, SignInError, StepUp};
use crate::store::{SecretStore, StoreError};
use grant::{GrantFailure, GrantInputs, Minted, Target};
pub use session::refresh_token_key;
use slots::{AfterDiscovery, CurrentToken, HeldBack, IdpPhase, IdpSlot, ServerSlot};

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
    /// The agent's non-secret state file (per-server usage counts over 30 days, when a client
    /// last asked for each server); `None` keeps them in memory only.
    pub state_file: Option<std::path::PathBuf>,
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
            state_file: None,
        }
    }
}

/// A token handed to a caller.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub access_token: Secret,
    pub expires_at: u64,
    pub scopes: Vec<String>,
    /// For a DPoP-bound token, the thumbprint of the device key it is bound to: it works only
    /// with a proof of that key for each request ([`EngineHandle::dpop_key`]).
    pub dpop_jkt: Option<String>,
    /// The proof for the one request a broker client named (`None` from the engine itself).
    pub dpop_proof: Option<Secret>,
}

/// The device's DPoP key, shared by the actor (which may replace it once, with the key the OS
/// holds, when the identity provider's client is resolved) and the hosts that sign proofs.
pub type DpopCell = Arc<std::sync::RwLock<Arc<crate::oauth::DpopKey>>>;

/// The current key in `cell`.
pub fn current_dpop_key(cell: &DpopCell) -> Arc<crate::oauth::DpopKey> {
    // A poisoned lock still holds a whole key: the writer only ever swaps one Arc for another.
    cell.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// The schedule renews one server at most this often (a caller's own request still goes).
pub const MIN_GRANT_INTERVAL_SECS: u64 = 10;

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
    /// Scopes wanted on top of the server's (the server answered 403 `insufficient_scope`). Each
    /// must be within the policy's ceiling (`scopes` and `allowed_extra_scopes`), or the request
    /// is refused with [`EngineError::ScopeNotAllowed`]. When the current token lacks one, a
    /// token is minted with the union for the callers waiting then; it is kept apart from the
    /// server's own token, and the server's next token asks for the configured scopes again.
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
    /// An `oauth` server the user has not connected (or whose connection the server ended).
    #[error("{server} is not connected yet: run `lanyard connect {server}` (or click Connect in Lanyard)")]
    NotConnected { server: String },
    /// `lanyard connect` asked of a server that is not in `oauth` mode.
    #[error("{server} is not an `oauth` server: it is not connected in the browser")]
    NotConnectable { server: String },
    #[error("connecting failed: {0}")]
    ConnectFailed(String),
    /// An `oauth` server's caller needs scopes its connection was not granted: a new consent.
    #[error("{server} needs your consent for {}: run `lanyard connect {server}`", scopes.join(" "))]
    ConsentNeeded { server: String, scopes: Vec<String> },
    #[error("temporarily unavailable: {error} (retrying)")]
    Unavailable { error: String, retry_at: u64 },
    /// A caller asked for scopes beyond the policy's ceiling for the server.
    #[error("the scope(s) {} go beyond what your organization allows for this server (servers[].scopes and allowed_extra_scopes): ask IT", scopes.join(" "))]
    ScopeNotAllowed { scopes: Vec<String> },
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
    /// Connect an `oauth` server: the browser opens once; answered when the connection is kept.
    Connect {
        server: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Shutdown,
}

/// The hosts' side of the engine.
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
    dpop: DpopCell,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("dpop", &current_dpop_key(&self.dpop))
            .finish_non_exhaustive()
    }
}

impl EngineHandle {
    /// The device's DPoP key: what signs the proof that goes with each use of a bound token.
    pub fn dpop_key(&self) -> Arc<crate::oauth::DpopKey> {
        current_dpop_key(&self.dpop)
    }

    /// The engine's clock (Unix seconds): what proofs' `iat` are read from.
    pub fn unix_now(&self) -> u64 {
        self.clock.unix_now()
    }

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

    /// Connects the `oauth` server `server` in the browser (the only path that opens one for it).
    pub async fn connect(&self, server: &str) -> Result<(), EngineError> {
        self.ask(|reply| Command::Connect {
            server: server.to_owned(),
            reply,
        })
        .await?
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

    /// Stops the engine and waits until it has (its state file written).
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
        self.commands.closed().await;
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
    let clock = config.clock.clone();
    let key = crate::oauth::DpopKey::generate().ok_or_else(|| {
        WireError::ClientAuth("the operating system gave no randomness for the DPoP key".into())
    })?;
    let dpop: DpopCell = Arc::new(std::sync::RwLock::new(Arc::new(key)));
    let mut actor = Actor {
        dpop: dpop.clone(),
        nonces: Arc::default(),
        connection_writes: connection::ConnectionWrites::start(config.store.clone()),
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
        pace: timing::Pace::default(),
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
        usage: config
            .state_file
            .as_deref()
            .map(usage::load)
            .unwrap_or_default(),
        state_writer: config.state_file.clone().map(usage::StateWriter::new),
        usage_sequence: 0,
        usage_flush_at: None,
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
        dpop,
        clock,
    })
}

fn placeholder_status() -> Status {
    Status {
        idp: IdpStatus::SignedOut,
        servers: Vec::new(),
        keychain: KeychainStatus::Available,
        policy: PolicyStatus::Applied,
        organization: OrganizationSettings::default(),
        idp_client_key: None,
        dpop_key: None,
        updated_at: 0,
    }
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
        /// What the grant minted on the way (counted even when it failed later).
        spent: grant::Spent,
    },
    ClientResolved {
        server: String,
        generation: u64,
        result: Result<crate::oauth::Client, String>,
    },
    /// A `lanyard connect` finished (the connection is in the keychain when `result` is `Ok`).
    ConnectDone {
        server: String,
        generation: u64,
        result: Result<Minted, String>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
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
    /// How long grants take and how far the IdP's clock is: they size a renewal's lead.
    pace: timing::Pace,
    idp: IdpSlot,
    servers: BTreeMap<String, ServerSlot>,
    keychain: KeychainStatus,
    status_tx: watch::Sender<Status>,
    events_tx: mpsc::UnboundedSender<Event>,
    policy_status: PolicyStatus,
    /// Per-server counts over 30 days and when a client last asked (see [`usage`]).
    usage: usage::UsageRecord,
    /// Writes `usage` to the state file, when there is one.
    state_writer: Option<usage::StateWriter>,
    /// Numbers the writes of `usage`, so a late one never replaces a newer one.
    usage_sequence: u64,
    /// When `usage` changed without a mint (client requests): written by then, at the latest.
    usage_flush_at: Option<u64>,
    /// The device's DPoP key (see [`DpopCell`]) and the nonces servers handed out.
    dpop: DpopCell,
    nonces: Arc<crate::oauth::dpop::Nonces>,
    /// Every keychain write of an `oauth` connection, in the order decided here.
    connection_writes: connection::ConnectionWrites,
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
                    self.on_wake(notice);
                }
                () = deadline => {}
            }
            self.on_tick();
            self.collect_usage();
            self.publish();
        }
        self.write_usage_now();
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
        // An `oauth` server's first grant reads its connection from the keychain (none: Connect).
        for mode in [
            ServerMode::ClientCredentials,
            ServerMode::WorkloadIdentity,
            ServerMode::Oauth,
        ] {
            for id in self.server_ids(mode) {
                if !self.on_demand(&id) {
                    self.start_grant(&id);
                }
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
        let rules = self.discovery_rules();
        tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            match grant::locate(&http, &policy, &rules).await {
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

    /// What discovery may follow (loopback HTTP only in `dev_mode`) and where issuers are pinned.
    fn discovery_rules(&self) -> grant::DiscoveryRules {
        grant::DiscoveryRules {
            urls: DiscoveredUrls::for_dev_mode(self.config.policy.dev_mode),
            pins: self.config.store.clone(),
        }
    }

    fn server_ids(&self, mode: ServerMode) -> Vec<String> {
        self.servers
            .values()
            .filter(|s| s.policy.mode == mode)
            .map(|s| s.policy.id.clone())
            .collect()
    }
}
