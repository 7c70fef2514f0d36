//! One server's grant, start to finish: find its authorization server, then either exchange the ID
//! token for a fresh ID-JAG and redeem it (Enterprise-Managed Authorization) or ask for client
//! credentials. Runs as a task spawned by the engine; owns no state and decides no schedule.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::oauth::discovery::{self, AuthorizationServerMetadata, DiscoveredUrls};
use crate::oauth::dpop::{self, DpopKey, DpopKeyHome, Nonces, ProofInputs};
use crate::oauth::token::{self, IdJagExchange, TokenEndpoint};
use crate::oauth::{AssertionInputs, Client, HttpExecutor, HttpRequest, HttpResponse, WireError};
use crate::policy::{SecretSource, ServerMode, ServerPolicy};
use crate::secret::Secret;
use crate::signin::{random_id, IdpClient};
use crate::store::SecretStore;

/// Where a server's tokens come from.
#[derive(Debug, Clone)]
pub struct Target {
    pub resource: String,
    pub authorization_server: AuthorizationServerMetadata,
    pub scopes: Vec<String>,
}

/// A fresh access token.
#[derive(Debug, Clone)]
pub struct Minted {
    pub access_token: Secret,
    pub expires_in: u64,
    pub scopes: Vec<String>,
    /// The authorization server's refresh token, when it sent one.
    pub refresh_token: Option<Secret>,
    /// Renewed with [`GrantInputs::refresh_token`], without an ID-JAG.
    pub by_refresh_token: bool,
    /// Bound to the device's DPoP key (its thumbprint): presented with `Authorization: DPoP` and
    /// a proof per request, never as a bearer token.
    pub dpop_jkt: Option<String>,
    /// An `oauth` server's connection as this grant found or made it (see
    /// [`super::connection::ConnectionUpdate`]); `None` for every other mode.
    pub connection: Option<super::connection::ConnectionUpdate>,
}

/// How a grant failed, sorted by what the engine does next.
#[derive(Debug, Clone)]
pub enum GrantFailure {
    /// IdP policy said no: show it, never retry alone.
    Denied {
        code: String,
        description: Option<String>,
    },
    /// The IdP wants a newer sign-in.
    StepUp { max_age: Option<u64> },
    /// The IdP rejected the subject token: refresh the session, then try once more.
    SubjectRejected { description: Option<String> },
    /// Try again later with backoff.
    Retry(String),
    /// The authorization server's token endpoint is not where its (cached) metadata said: look
    /// again before anything else.
    EndpointGone(String),
    /// The IdP's token endpoint (`endpoint`) is not where its metadata said: renew the session
    /// (which reads the IdP's metadata again), then retry.
    IdpEndpointGone { error: String, endpoint: url::Url },
    /// An `oauth` server without a usable connection: the user must connect (never retried, never
    /// a browser by itself).
    NeedsConnect,
}

/// What one grant minted: ID-JAGs issued by the identity provider and tokens issued by the
/// authorization server for them, each counted as soon as its answer is read (a grant whose second
/// leg fails has still spent its ID-JAG).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    pub id_jags: u64,
    pub jwt_bearer_grants: u64,
}

/// Where a running grant records what it spent (read by the engine once it ends).
#[derive(Debug, Default)]
pub struct SpendTally {
    id_jags: std::sync::atomic::AtomicU64,
    jwt_bearer_grants: std::sync::atomic::AtomicU64,
}

impl SpendTally {
    pub fn spent(&self) -> Spent {
        use std::sync::atomic::Ordering::Relaxed;
        Spent {
            id_jags: self.id_jags.load(Relaxed),
            jwt_bearer_grants: self.jwt_bearer_grants.load(Relaxed),
        }
    }
}

/// The lifetime assumed when a server omits `expires_in`.
pub const DEFAULT_EXPIRES_IN: u64 = 300;

pub struct GrantInputs {
    pub http: HttpExecutor,
    pub clock: Arc<dyn Clock>,
    pub server: ServerPolicy,
    pub client: Client,
    pub target: Option<Arc<Target>>,
    /// For enterprise-managed servers: the IdP and the session's subject token (a valid ID token,
    /// or after a SAML sign-in the IdP refresh token).
    pub idp: Option<(Arc<IdpClient>, Secret)>,
    /// Scopes asked for on top of the target's (a caller met `insufficient_scope`), already held
    /// to the policy's ceiling.
    pub extra_scopes: Vec<String>,
    /// Slots of the global cap, `settings.max_concurrency`.
    pub slots: GrantSlots,
    /// What discovery may follow and which issuer it saw first.
    pub rules: DiscoveryRules,
    /// What this grant minted.
    pub tally: Arc<SpendTally>,
    /// The authorization server's refresh token, to try before a new ID-JAG
    /// (`servers[].use_refresh_token`, within its bounded age); refused, the grant goes on with
    /// an ID-JAG.
    pub refresh_token: Option<Secret>,
    /// The device's DPoP key and the nonces servers handed out (`servers[].dpop` decides
    /// whether this grant uses them).
    pub dpop: Arc<DpopKey>,
    pub nonces: Arc<Nonces>,
    /// An `oauth` server refused its token (a client's forced refresh after a 401): look again
    /// which authorization server it names before renewing at the connection's.
    pub recheck_authorization_server: bool,
}

/// What discovery may follow, and where the first issuer seen for each server is pinned.
#[derive(Clone)]
pub struct DiscoveryRules {
    pub urls: DiscoveredUrls,
    /// The keychain: per user, survives restarts. A pin is not secret; it lives there because
    /// that is the one per-user store the agent already trusts.
    pub pins: Arc<dyn SecretStore>,
}

impl std::fmt::Debug for DiscoveryRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryRules")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

/// The keychain entry holding the issuer first discovered for server `id`.
pub fn issuer_pin_key(id: &str) -> String {
    format!("issuer-pin:{id}")
}

/// A pin's value: the server URL it was made for, a newline, the issuer. A server whose URL the
/// administrator changed is pinned afresh.
fn pin_value(server_url: &str, issuer: &str) -> String {
    format!("{server_url}\n{issuer}")
}

/// Holds a discovered issuer to the policy: one of `allowed_authorization_servers` when that list
/// is set, else the issuer pinned at the first discovery (pinned now when there is none).
async fn check_discovered_issuer(
    rules: &DiscoveryRules,
    server: &ServerPolicy,
    issuer: &str,
) -> Result<(), WireError> {
    if !server.allowed_authorization_servers.is_empty() {
        if server
            .allowed_authorization_servers
            .iter()
            .any(|a| a == issuer)
        {
            return Ok(());
        }
        return Err(WireError::Discovery(format!(
            "the server names the authorization server {issuer}, which is not in its \
             allowed_authorization_servers: refused; an administrator must add it to the policy"
        )));
    }
    let store = rules.pins.clone();
    let key = issuer_pin_key(&server.id);
    let wanted = pin_value(&server.url, issuer);
    let pinned = {
        let key = key.clone();
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.get(&key))
            .await
            .map_err(|e| WireError::Discovery(format!("reading the issuer pin failed: {e}")))?
    };
    match pinned {
        Ok(Some(pinned)) => {
            let pinned = pinned.expose().to_owned();
            match pinned.split_once('\n') {
                Some((url, before)) if url == server.url && before != issuer => {
                    return Err(WireError::Discovery(format!(
                        "the server's authorization server changed from {before} to {issuer}: \
                         refused; an administrator must accept the new one (servers[].\
                         authorization_server or allowed_authorization_servers in the policy)"
                    )));
                }
                Some((url, _)) if url == server.url => return Ok(()),
                _ => {}
            }
        }
        Ok(None) => {}
        Err(e) => {
            // A locked keychain must not stop the grant; the pin is written once it opens.
            tracing::warn!(server = %server.id, error = %e, "the issuer pin could not be read");
            return Ok(());
        }
    }
    let written = tokio::task::spawn_blocking(move || store.set(&key, &Secret::new(wanted))).await;
    if let Ok(Err(e)) = written {
        tracing::warn!(server = %server.id, error = %e, "the issuer pin could not be saved");
    } else {
        tracing::info!(server = %server.id, issuer, "authorization server pinned at its first discovery");
    }
    Ok(())
}

/// The global cap (`settings.max_concurrency`), per step rather than per grant. A `shared` slot is
/// held for each step that waits on a host many grants share: the token exchange at the identity
/// provider, a discovery, a client-credentials grant. The jwt-bearer leg at a server's own
/// authorization server takes an `own_host` slot instead, so a sign-in to N servers is a pipeline
/// of ⌈N / cap⌉ rounds at the IdP, each followed at once by its authorization-server requests, not
/// ⌈N / cap⌉ rounds of whole grants; and at most 2 × cap requests are ever in flight (each open
/// connection costs heap, see [`HttpExecutor`]).
#[derive(Clone, Debug)]
pub struct GrantSlots {
    pub shared: Arc<Semaphore>,
    pub own_host: Arc<Semaphore>,
}

/// Finds the server's authorization server and resource (policy first, discovery otherwise). A
/// discovered issuer must be allowed or pinned ([`DiscoveryRules`]); every URL followed must
/// meet `rules.urls`.
pub async fn locate(
    http: &HttpExecutor,
    server: &ServerPolicy,
    rules: &DiscoveryRules,
) -> Result<Target, WireError> {
    let url = url::Url::parse(&server.url)
        .map_err(|e| WireError::Discovery(format!("bad server URL: {e}")))?;
    let (resource, metadata, challenge_scopes) = match &server.authorization_server {
        Some(issuer) => {
            let metadata =
                discovery::fetch_authorization_server_metadata_with(http, issuer, rules.urls)
                    .await?;
            (
                server
                    .resource
                    .clone()
                    .unwrap_or_else(|| server.url.clone()),
                metadata,
                Vec::new(),
            )
        }
        None => {
            let found = discovery::discover_server_with(http, &url, rules.urls).await?;
            check_discovered_issuer(rules, server, &found.authorization_server.issuer).await?;
            (
                server.resource.clone().unwrap_or(found.resource),
                found.authorization_server,
                found.challenge_scopes,
            )
        }
    };
    let scopes = if server.scopes.is_empty() {
        challenge_scopes
    } else {
        server.scopes.clone()
    };
    Ok(Target {
        resource,
        authorization_server: metadata,
        scopes,
    })
}

/// Runs one grant. Returns the target too, so the engine can cache discovery.
///
/// A cached target whose token endpoint has gone (404, 405, 410, refused, unresolvable) is
/// discovered again at once and, when the metadata changed, the grant runs once more against it:
/// an authorization server that reorganised between two grants costs one extra round, not a
/// failure shown to the user.
pub async fn run(inputs: GrantInputs) -> (Option<Arc<Target>>, Result<Minted, GrantFailure>) {
    if inputs.server.mode == ServerMode::Oauth {
        // Its connection knows where it goes; discovery ran when the user connected.
        return (None, super::connection::renew(&inputs).await);
    }
    let target = match &inputs.target {
        Some(t) => t.clone(),
        None => match located(&inputs).await {
            Ok(t) => Arc::new(t),
            Err(e) => return (None, Err(GrantFailure::Retry(e.to_string()))),
        },
    };
    match mint(&inputs, &target).await {
        Err(GrantFailure::EndpointGone(error)) if inputs.target.is_some() => {
            let fresh = match located(&inputs).await {
                Ok(t) => Arc::new(t),
                // Unreachable for discovery too: the token endpoint's failure says it best.
                Err(_) => return (None, Err(GrantFailure::Retry(error))),
            };
            let (old, new) = (&target.authorization_server, &fresh.authorization_server);
            let moved = old.token_endpoint != new.token_endpoint || old.issuer != new.issuer;
            if !moved {
                return (None, Err(GrantFailure::Retry(error)));
            }
            tracing::info!(server = %inputs.server.id, "the authorization server's metadata changed; granting against the new one");
            let result = match mint(&inputs, &fresh).await {
                Err(GrantFailure::EndpointGone(e)) => Err(GrantFailure::Retry(e)),
                other => other,
            };
            (Some(fresh), result)
        }
        Err(GrantFailure::EndpointGone(error)) => (None, Err(GrantFailure::Retry(error))),
        result => (Some(target), result),
    }
}

/// [`locate`] under a slot of the global cap.
async fn located(inputs: &GrantInputs) -> Result<Target, WireError> {
    let _slot = inputs.slots.shared.acquire().await;
    locate(&inputs.http, &inputs.server, &inputs.rules).await
}

async fn mint(inputs: &GrantInputs, target: &Target) -> Result<Minted, GrantFailure> {
    let as_meta = &target.authorization_server;
    let mut scopes = target.scopes.clone();
    for extra in &inputs.extra_scopes {
        if !scopes.contains(extra) {
            scopes.push(extra.clone());
        }
    }
    let as_endpoint = TokenEndpoint {
        url: as_meta.token_endpoint.clone(),
        issuer: as_meta.issuer.clone(),
    };
    let as_inputs = || AssertionInputs {
        audience: as_meta.issuer.clone(),
        now: inputs.clock.unix_now(),
        jti: random_id(),
    };
    let bind = inputs
        .server
        .dpop
        .applies(
            &as_meta.dpop_signing_alg_values_supported,
            inputs.dpop.algorithm(),
        )
        .map_err(GrantFailure::Retry)?;
    let as_proof = bind.then_some(inputs.dpop.as_ref());
    if let (ServerMode::EnterpriseManaged, Some(refresh_token)) =
        (inputs.server.mode, &inputs.refresh_token)
    {
        let request = || {
            token::refresh(
                &as_endpoint,
                &inputs.client,
                &as_inputs(),
                refresh_token,
                &scopes,
            )
        };
        let answer = {
            let _slot = inputs.slots.own_host.acquire().await;
            send_token_request(inputs, request, as_proof).await
        };
        match answer.and_then(|r| token::parse_token_response(&r)) {
            Ok(response) => {
                let dpop_jkt = check_binding(&inputs.server, bind, &response)?
                    .then(|| inputs.dpop.thumbprint().to_owned());
                return Ok(Minted {
                    dpop_jkt,
                    connection: None,
                    scopes: response
                        .scope
                        .as_deref()
                        .map(token::split_scopes)
                        .unwrap_or(scopes),
                    access_token: response.access_token,
                    expires_in: response.expires_in.unwrap_or(DEFAULT_EXPIRES_IN),
                    refresh_token: response.refresh_token,
                    by_refresh_token: true,
                });
            }
            // Refused (expired, revoked, rotated away): a new ID-JAG, as without one.
            Err(WireError::OAuth(body)) => {
                tracing::info!(server = %inputs.server.id, error = %body.error, "the refresh token was refused; asking the identity provider for a new ID-JAG");
            }
            Err(e) => return Err(classify_as_error(e)),
        }
    }
    let mut idp_clock: Option<i64> = None;
    let mut id_jag_lifetime: Option<u64> = None;
    let assertion = match inputs.server.mode {
        ServerMode::ClientCredentials => None,
        ServerMode::Oauth => return Err(GrantFailure::NeedsConnect),
        // Read at every grant: the platform rotates the token in place.
        ServerMode::WorkloadIdentity => Some(
            read_workload_token(inputs.server.workload_token.as_ref())
                .map_err(GrantFailure::Retry)?,
        ),
        ServerMode::EnterpriseManaged => {
            let Some((idp, id_token)) = &inputs.idp else {
                return Err(GrantFailure::Retry("not signed in".into()));
            };
            let exchange = || {
                token::token_exchange_for_id_jag(
                    &idp.token_endpoint(),
                    &idp.client,
                    &idp.assertion_inputs(inputs.clock.as_ref()),
                    &IdJagExchange {
                        subject_token: id_token,
                        subject_token_type: idp.subject_token_type(),
                        audience: &as_meta.issuer,
                        resource: &target.resource,
                        scopes: &scopes,
                    },
                )
            };
            // A proof at the IdP too, where it takes one, so the ID-JAG names the key
            // (`cnf.jkt`) and only this device can redeem it.
            let idp_proof = (bind
                && idp
                    .metadata
                    .dpop_signing_alg_values_supported
                    .iter()
                    .any(|a| a == dpop::alg_name(inputs.dpop.algorithm())))
            .then_some(inputs.dpop.as_ref());
            let answer = {
                let _slot = inputs.slots.shared.acquire().await;
                send_token_request(inputs, exchange, idp_proof).await
            };
            idp_clock = answer
                .as_ref()
                .ok()
                .and_then(|r| r.clock_offset(inputs.clock.unix_now()));
            match answer.and_then(|r| token::parse_id_jag_response(&r)) {
                Ok(r) => {
                    inputs
                        .tally
                        .id_jags
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    id_jag_lifetime = r.expires_in;
                    Some(r.access_token)
                }
                Err(e) => return Err(classify_idp_error(e, &idp.metadata.token_endpoint)),
            }
        }
    };
    let request = || match &assertion {
        None => token::client_credentials(
            &as_endpoint,
            &inputs.client,
            &as_inputs(),
            &target.resource,
            &scopes,
        ),
        Some(assertion) => token::jwt_bearer(
            &as_endpoint,
            &inputs.client,
            &as_inputs(),
            assertion,
            &target.resource,
            &scopes,
        ),
    };
    let answer = {
        // Client credentials: the whole grant is this one request, at a host it may share.
        let slots = match inputs.server.mode {
            ServerMode::ClientCredentials | ServerMode::WorkloadIdentity => &inputs.slots.shared,
            ServerMode::EnterpriseManaged | ServerMode::Oauth => &inputs.slots.own_host,
        };
        let _slot = slots.acquire().await;
        send_token_request(inputs, request, as_proof).await
    };
    let as_clock = answer
        .as_ref()
        .ok()
        .and_then(|r| r.clock_offset(inputs.clock.unix_now()));
    let response = answer
        .and_then(|r| token::parse_token_response(&r))
        .map_err(|e| match (&e, idp_clock, as_clock) {
            (WireError::OAuth(body), Some(idp), Some(at_as)) if body.error == "invalid_grant" => {
                match clock_skew(idp, at_as, id_jag_lifetime) {
                    Some(skew) => {
                        GrantFailure::Retry(format!("{skew} (authorization server: {e})"))
                    }
                    None => classify_as_error(e),
                }
            }
            // A workload's refusals are standing facts until its token or the server's trust
            // changes: named, and not tried again by itself (SEP-1933).
            (WireError::OAuth(body), _, _)
                if inputs.server.mode == ServerMode::WorkloadIdentity
                    && WORKLOAD_REFUSALS.contains(&body.error.as_str()) =>
            {
                GrantFailure::Denied {
                    code: body.error.clone(),
                    description: Some(format!(
                        "the authorization server refused the workload token: {}",
                        body.description.as_deref().unwrap_or(&body.error)
                    )),
                }
            }
            _ => classify_as_error(e),
        })?;
    if inputs.server.mode == ServerMode::EnterpriseManaged {
        inputs
            .tally
            .jwt_bearer_grants
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let dpop_jkt = check_binding(&inputs.server, bind, &response)?
        .then(|| inputs.dpop.thumbprint().to_owned());
    let scopes = match response.scope.as_deref() {
        Some(s) => token::split_scopes(s),
        None => scopes,
    };
    Ok(Minted {
        dpop_jkt,
        connection: None,
        access_token: response.access_token,
        expires_in: response.expires_in.unwrap_or(DEFAULT_EXPIRES_IN),
        scopes,
        refresh_token: response.refresh_token,
        by_refresh_token: false,
    })
}

/// What sending a token request takes besides the request: the client, the clock its proofs are
/// dated by, and the nonces servers handed out.
#[derive(Clone, Copy)]
pub(super) struct TokenSender<'a> {
    pub http: &'a HttpExecutor,
    pub clock: &'a dyn Clock,
    pub nonces: &'a Nonces,
}

impl<'a> TokenSender<'a> {
    pub(super) fn of(inputs: &'a GrantInputs) -> Self {
        TokenSender {
            http: &inputs.http,
            clock: inputs.clock.as_ref(),
            nonces: &inputs.nonces,
        }
    }
}

/// [`send_token_request_with`] for a grant.
async fn send_token_request(
    inputs: &GrantInputs,
    build: impl Fn() -> Result<HttpRequest, WireError>,
    key: Option<&DpopKey>,
) -> Result<HttpResponse, WireError> {
    send_token_request_with(TokenSender::of(inputs), build, key).await
}

/// Sends a token request built by `build`, with a DPoP proof of `key` when one is given. The
/// proof carries the nonce the server handed out last; a `use_dpop_nonce` refusal is answered
/// once, with a request built afresh (a new client assertion `jti`) and the new nonce.
pub(super) async fn send_token_request_with(
    sender: TokenSender<'_>,
    build: impl Fn() -> Result<HttpRequest, WireError>,
    key: Option<&DpopKey>,
) -> Result<HttpResponse, WireError> {
    let Some(key) = key else {
        return sender.http.execute(&build()?).await;
    };
    let mut nonce_retried = false;
    loop {
        let mut request = build()?;
        let nonce = sender.nonces.for_url(&request.url);
        let proof = sign_proof(
            key,
            "POST",
            &request.url,
            sender.clock.unix_now(),
            None,
            nonce,
        )
        .await?;
        request.header(dpop::DPOP_HEADER, proof.expose());
        let response = sender.http.execute(&request).await?;
        sender.nonces.learn(&response);
        let refused_for_nonce = response.status == 400
            && dpop::asks_for_nonce(&token::parse_error(&response))
            && dpop::nonce_of(&response).is_some();
        if refused_for_nonce && !nonce_retried {
            nonce_retried = true;
            tracing::debug!(url = %crate::oauth::http::redacted_url(&request.url), "the server wants a DPoP nonce: sending the proof again with it");
            continue;
        }
        return Ok(response);
    }
}

/// A proof of `key` for one request; a key the OS holds signs off the async threads.
pub async fn sign_proof(
    key: &DpopKey,
    method: &str,
    url: &url::Url,
    now: u64,
    access_token: Option<Secret>,
    nonce: Option<String>,
) -> Result<Secret, WireError> {
    let make = {
        let (key, url, method) = (key.clone(), url.clone(), method.to_owned());
        move || {
            key.proof(&ProofInputs {
                method: &method,
                url: &url,
                now,
                jti: random_id(),
                access_token: access_token.as_ref(),
                nonce: nonce.as_deref(),
            })
        }
    };
    match key.home() {
        DpopKeyHome::Memory => make(),
        DpopKeyHome::OsKeyStore => tokio::task::spawn_blocking(make)
            .await
            .map_err(|e| WireError::ClientAuth(format!("the DPoP signer stopped: {e}")))?,
    }
}

/// Whether the token the server issued is bound, held to `servers[].dpop`: a bearer token where
/// DPoP is required is refused (it would work for anyone who copies it).
pub(super) fn check_binding(
    server: &ServerPolicy,
    asked: bool,
    response: &token::TokenResponse,
) -> Result<bool, GrantFailure> {
    let bound = asked && dpop::is_dpop_token_type(response.token_type.as_deref());
    if asked && !bound && server.dpop == crate::oauth::DpopUse::Required {
        return Err(GrantFailure::Retry(format!(
            "the authorization server answered a DPoP proof with a {} token, but the policy \
             requires DPoP for this server",
            response.token_type.as_deref().unwrap_or("bearer")
        )));
    }
    Ok(bound)
}

/// What an authorization server answers when it will not take a workload's token; none is
/// retried by itself.
const WORKLOAD_REFUSALS: [&str; 3] = ["invalid_grant", "invalid_scope", "unauthorized_client"];

/// The workload's platform JWT from where the policy says (a file, read now; or the
/// environment). Its text is never part of an error.
fn read_workload_token(source: Option<&SecretSource>) -> Result<Secret, String> {
    let source = source.ok_or("the policy names no workload token (file or env)")?;
    super::credentials::read_secret_outside_keychain(source)
        .map_err(|e| format!("the workload token: {e}"))
}

/// Errors of the token exchange at the IdP.
fn classify_idp_error(e: WireError, endpoint: &url::Url) -> GrantFailure {
    match &e {
        WireError::OAuth(body) => match body.error.as_str() {
            "access_denied" | "invalid_target" | "unauthorized_client" => GrantFailure::Denied {
                code: body.error.clone(),
                description: body.description.clone(),
            },
            "insufficient_user_authentication" => GrantFailure::StepUp {
                max_age: body.max_age,
            },
            "invalid_grant" | "invalid_token" => GrantFailure::SubjectRejected {
                description: body.description.clone(),
            },
            _ => GrantFailure::Retry(format!("identity provider: {e}")),
        },
        _ if e.is_endpoint_gone() => GrantFailure::IdpEndpointGone {
            error: format!("identity provider: {e}"),
            endpoint: endpoint.clone(),
        },
        _ => GrantFailure::Retry(format!("identity provider: {e}")),
    }
}

/// Errors of the jwt-bearer or client-credentials request at the authorization server.
fn classify_as_error(e: WireError) -> GrantFailure {
    match &e {
        WireError::OAuth(body) if body.error == "access_denied" => GrantFailure::Denied {
            code: body.error.clone(),
            description: body.description.clone(),
        },
        _ if e.is_endpoint_gone() => {
            GrantFailure::EndpointGone(format!("authorization server: {e}"))
        }
        _ => GrantFailure::Retry(format!("authorization server: {e}")),
    }
}

/// Clocks further apart than this make an ID-JAG look expired or not yet valid.
pub const CLOCK_SKEW_TOLERANCE_SECS: i64 = 60;

/// When the authorization server refused an ID-JAG and the two servers' clocks (each measured
/// against ours from its `Date` header) are further apart than [`CLOCK_SKEW_TOLERANCE_SECS`],
/// the likely cause, said so the helpdesk knows whom to call. No client can fix it: the ID-JAG's
/// `iat` and `exp` are the IdP's, signed.
pub fn clock_skew(idp_offset: i64, as_offset: i64, id_jag_lifetime: Option<u64>) -> Option<String> {
    let gap = idp_offset - as_offset;
    if gap.abs() <= CLOCK_SKEW_TOLERANCE_SECS {
        return None;
    }
    let lifetime = id_jag_lifetime
        .map(|l| format!(" (valid {l} s)"))
        .unwrap_or_default();
    Some(format!(
        "clock skew: the identity provider's clock is {} the authorization server's, so the \
         ID-JAG it issued{lifetime} was refused as expired or not yet valid; ask IT to \
         synchronize both servers' clocks (this computer: identity provider {}, authorization \
         server {})",
        describe_offset(gap, "ahead of", "behind"),
        describe_offset(idp_offset, "ahead", "behind"),
        describe_offset(as_offset, "ahead", "behind"),
    ))
}

/// `600` → "10 min ahead of", `-90` → "90 s behind". `Date` has a one-second resolution and the
/// two answers come at different moments, so beyond two minutes the amount is rounded to minutes.
fn describe_offset(secs: i64, ahead: &str, behind: &str) -> String {
    let abs = secs.abs();
    let amount = if abs < 120 {
        format!("{abs} s")
    } else {
        format!("{} min", (abs + 30) / 60)
    };
    format!("{amount} {}", if secs >= 0 { ahead } else { behind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_skew_is_named_only_beyond_the_tolerance() {
        assert_eq!(clock_skew(30, -20, Some(300)), None);
        let text = clock_skew(600, 0, Some(300)).expect("skew");
        assert!(
            text.starts_with("clock skew: the identity provider's clock is 10 min ahead of"),
            "{text}"
        );
        assert!(text.contains("(valid 300 s)"), "{text}");
        let text = clock_skew(0, 601, None).expect("skew");
        assert!(text.contains("10 min behind the authorization"), "{text}");
        assert!(text.contains("authorization server 10 min ahead"), "{text}");
        let text = clock_skew(-90, 0, None).expect("skew");
        assert!(text.contains("is 90 s behind the authorization"), "{text}");
    }
}
