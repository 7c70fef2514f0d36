//! The `oauth` mode's connection to one server: connecting once in the browser
//! (`lanyard connect <id>`), then renewing silently with the refresh token, rotated as the
//! authorization server rotates it. The decisions are [`crate::oauth::code_flow`]'s; this module
//! runs them with the agent's loopback listener and browser port, and keeps what a connection is
//! in one keychain entry per server (its client registration, token endpoint, resource and
//! refresh token). It never opens a browser except for an explicit connect, and an
//! `enterprise-managed` server never comes here.
//!
//! Connecting and renewing write nothing themselves: they hand the engine a
//! [`ConnectionUpdate`], and the engine keeps it only while the server is still the one the work
//! began for (no sign-out, no policy change meanwhile). Every keychain write of a connection then
//! goes through one [`ConnectionWrites`] queue, in the order the engine decided them, so a wipe is
//! never overtaken by a save that began before it. At sign-out each wiped connection's refresh
//! token is also revoked at its authorization server (RFC 7009) when that server offers it: after
//! the wipe, in the background, bounded by [`REVOKE_WITHIN`].

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;

use super::grant::{
    check_binding, send_token_request_with, GrantFailure, GrantInputs, Minted, TokenSender,
    DEFAULT_EXPIRES_IN,
};
use crate::clock::Clock;
use crate::oauth::code_flow::{self, ClientIdentityPolicy, PrepareInputs};
use crate::oauth::discovery::DiscoveredUrls;
use crate::oauth::dpop::{DpopKey, DpopKeyHome, Nonces};
use crate::oauth::token::{self, TokenEndpoint};
use crate::oauth::{AssertionInputs, Client, ClientAuth, HttpExecutor, WireError};
use crate::policy::ServerPolicy;
use crate::secret::Secret;
use crate::signin::{random_id, Browser, ExpectedRedirect, LoopbackListener};
use crate::store::SecretStore;

/// The keychain entry of server `id`'s connection.
pub fn connection_key(id: &str) -> String {
    format!("oauth-connection:{id}")
}

/// What a connection keeps between renewals (all of it in the keychain: the refresh token and a
/// registered client's secret are secrets, the rest is kept beside them).
#[derive(Deserialize)]
struct Connection {
    /// The server URL it was made for: a policy pointing the id elsewhere needs a new connect.
    server_url: String,
    issuer: String,
    token_endpoint: url::Url,
    resource: String,
    client_id: String,
    #[serde(default)]
    client_secret: Option<Secret>,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    auth_method: String,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    scopes: Vec<String>,
    /// The authorization server's RFC 7009 endpoint, when its metadata named one.
    #[serde(default)]
    revocation_endpoint: Option<url::Url>,
    /// Its `dpop_signing_alg_values_supported` (whether a connection made unbound is renewed
    /// with a proof follows from these and `servers[].dpop`).
    #[serde(default)]
    dpop_algs: Vec<String>,
    /// The thumbprint of the DPoP key the connection (its refresh token) is bound to.
    #[serde(default)]
    dpop_jkt: Option<String>,
    /// That key is one the OS holds (it outlives the agent), not the agent's in-memory key.
    #[serde(default)]
    dpop_key_held: bool,
}

impl Connection {
    fn parse(value: &Secret) -> Option<Connection> {
        serde_json::from_str(value.expose()).ok()
    }

    fn to_secret(&self) -> Secret {
        Secret::new(
            serde_json::json!({
                "server_url": self.server_url,
                "issuer": self.issuer,
                "token_endpoint": self.token_endpoint,
                "resource": self.resource,
                "client_id": self.client_id,
                "client_secret": self.client_secret.as_ref().map(Secret::expose),
                "auth_method": self.auth_method,
                "refresh_token": self.refresh_token.as_ref().map(Secret::expose),
                "scopes": self.scopes,
                "revocation_endpoint": self.revocation_endpoint,
                "dpop_algs": self.dpop_algs,
                "dpop_jkt": self.dpop_jkt,
                "dpop_key_held": self.dpop_key_held,
            })
            .to_string(),
        )
    }

    fn client(&self) -> Client {
        let auth = match (self.auth_method.as_str(), &self.client_secret) {
            ("client_secret_post", Some(s)) => ClientAuth::SecretPost(s.clone()),
            ("client_secret_basic", Some(s)) => ClientAuth::SecretBasic(s.clone()),
            _ => ClientAuth::None,
        };
        Client {
            client_id: self.client_id.clone(),
            auth,
        }
    }
}

fn secret_of(client: &Client) -> Option<Secret> {
    match &client.auth {
        ClientAuth::SecretBasic(s) | ClientAuth::SecretPost(s) => Some(s.clone()),
        _ => None,
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("keychain task failed: {e}"))
}

async fn load(
    store: &Arc<dyn SecretStore>,
    server: &ServerPolicy,
) -> Result<Option<Connection>, String> {
    let key = connection_key(&server.id);
    let store = store.clone();
    let found = blocking(move || store.get(&key))
        .await?
        .map_err(|e| format!("the keychain could not be read: {e}"))?;
    let Some(found) = found else {
        return Ok(None);
    };
    match Connection::parse(&found) {
        Some(c) if c.server_url == server.url => Ok(Some(c)),
        // Another URL, or an unreadable entry: as if never connected.
        _ => Ok(None),
    }
}

/// What a connect or a renewal tells the engine about the server's connection.
#[derive(Debug, Clone)]
pub struct ConnectionUpdate {
    /// The authorization server it is held at (shown in the status).
    pub issuer: String,
    /// The connection to write to the keychain (just connected, or its refresh token rotated):
    /// written only while the server is still the one the work began for. `None`: unchanged.
    pub keep: Option<Secret>,
}

/// One change to the keychain's connections.
enum Write {
    Keep {
        server: String,
        value: Secret,
        /// Told once it is written (or why not).
        done: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    },
    Forget {
        server: String,
    },
    /// Sign-out: wipe each, then revoke each one's refresh token where its server offers that.
    SignOut {
        servers: Vec<String>,
        http: HttpExecutor,
        clock: Arc<dyn Clock>,
    },
}

/// The queue of connection writes: applied one at a time, in the order sent, by one task.
#[derive(Clone)]
pub struct ConnectionWrites(mpsc::UnboundedSender<Write>);

impl ConnectionWrites {
    /// Starts the task applying the writes to `store` (it ends with the last sender).
    pub fn start(store: Arc<dyn SecretStore>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Write>();
        tokio::spawn(async move {
            while let Some(write) = rx.recv().await {
                match write {
                    Write::Keep {
                        server,
                        value,
                        done,
                    } => {
                        let key = connection_key(&server);
                        let store = store.clone();
                        let written =
                            blocking(move || store.set(&key, &value))
                                .await
                                .and_then(|r| {
                                    r.map_err(|e| format!("the keychain could not be written: {e}"))
                                });
                        if let Err(e) = &written {
                            // A rotated refresh token lost: the next renewal asks for a connect.
                            tracing::warn!(server = %server, error = %e, "the connection could not be kept in the keychain");
                        }
                        if let Some(done) = done {
                            let _ = done.send(written);
                        }
                    }
                    Write::Forget { server } => forget(&store, &server).await,
                    Write::SignOut {
                        servers,
                        http,
                        clock,
                    } => {
                        let mut wiped = Vec::new();
                        for server in servers {
                            let key = connection_key(&server);
                            let reader = store.clone();
                            let found = blocking(move || reader.get(&key)).await;
                            forget(&store, &server).await;
                            if let Ok(Ok(Some(value))) = found {
                                if let Some(connection) = Connection::parse(&value) {
                                    wiped.push((server, connection));
                                }
                            }
                        }
                        // After the wipe and off the queue: a dead network delays nothing.
                        if !wiped.is_empty() {
                            tokio::spawn(revoke_all(http, clock, wiped));
                        }
                    }
                }
            }
        });
        ConnectionWrites(tx)
    }

    /// Keeps `update`'s connection of `server`, if it carries one.
    pub fn keep(&self, server: &str, update: &ConnectionUpdate) {
        if let Some(value) = &update.keep {
            let _ = self.0.send(Write::Keep {
                server: server.to_owned(),
                value: value.clone(),
                done: None,
            });
        }
    }

    /// Keeps a new connection of `server`; `done` hears once it is in the keychain.
    pub fn keep_then(
        &self,
        server: &str,
        update: &ConnectionUpdate,
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    ) {
        match &update.keep {
            Some(value) => {
                let _ = self.0.send(Write::Keep {
                    server: server.to_owned(),
                    value: value.clone(),
                    done: Some(done),
                });
            }
            None => {
                let _ = done.send(Ok(()));
            }
        }
    }

    /// Forgets `server`'s connection (the server no longer takes it, or it moved).
    pub fn forget(&self, server: &str) {
        let _ = self.0.send(Write::Forget {
            server: server.to_owned(),
        });
    }

    /// Sign-out: wipes the connections of `servers`, then revokes their refresh tokens.
    pub fn sign_out(&self, servers: Vec<String>, http: HttpExecutor, clock: Arc<dyn Clock>) {
        let _ = self.0.send(Write::SignOut {
            servers,
            http,
            clock,
        });
    }
}

/// How long the revocations at sign-out may take together before they are given up.
pub const REVOKE_WITHIN: Duration = Duration::from_secs(5);

async fn revoke_all(http: HttpExecutor, clock: Arc<dyn Clock>, wiped: Vec<(String, Connection)>) {
    let each = wiped.into_iter().map(|(server, connection)| {
        let (http, clock) = (http.clone(), clock.clone());
        async move {
            let bounded = tokio::time::timeout(
                REVOKE_WITHIN,
                revoke(&http, clock.as_ref(), &server, &connection),
            );
            if bounded.await.is_err() {
                tracing::warn!(server = %server, within_secs = REVOKE_WITHIN.as_secs(), "revoking the connection's refresh token took too long; given up (it is wiped locally anyway)");
            }
        }
    });
    futures::future::join_all(each).await;
}

/// Revokes the refresh token of `connection` (wiped already) at its authorization server, with
/// the client authentication its token endpoint takes. Best effort: a failure is logged.
async fn revoke(http: &HttpExecutor, clock: &dyn Clock, server: &str, connection: &Connection) {
    let Some(refresh_token) = &connection.refresh_token else {
        return;
    };
    let Some(endpoint) = &connection.revocation_endpoint else {
        tracing::info!(server = %server, "the authorization server offers no revocation; the connection is wiped locally only");
        return;
    };
    let inputs = AssertionInputs {
        audience: connection.issuer.clone(),
        now: clock.unix_now(),
        jti: random_id(),
    };
    let result = match token::revoke(
        endpoint,
        &connection.issuer,
        &connection.client(),
        &inputs,
        refresh_token,
        "refresh_token",
    ) {
        Ok(request) => match http.execute(&request).await {
            Ok(response) => token::parse_revocation_response(&response),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            tracing::info!(server = %server, "the connection's refresh token was revoked at its authorization server")
        }
        Err(e) => {
            tracing::warn!(server = %server, error = %e, "revoking the connection's refresh token failed (it is wiped locally anyway)")
        }
    }
}

/// Revokes the refresh token of a connection the engine did not keep (it was made while its
/// server was signed out or changed): nothing of it stays anywhere.
pub async fn revoke_unkept(
    http: HttpExecutor,
    clock: Arc<dyn Clock>,
    server: String,
    update: ConnectionUpdate,
) {
    let Some(connection) = update.keep.as_ref().and_then(Connection::parse) else {
        return;
    };
    let _ = tokio::time::timeout(
        REVOKE_WITHIN,
        revoke(&http, clock.as_ref(), &server, &connection),
    )
    .await;
}

/// Forgets server `id`'s connection now (only ever from the [`ConnectionWrites`] task).
async fn forget(store: &Arc<dyn SecretStore>, id: &str) {
    let key = connection_key(id);
    let store = store.clone();
    if let Ok(Err(e)) = blocking(move || store.delete(&key)).await {
        tracing::warn!(server = %id, error = %e, "the connection could not be wiped from the keychain");
    }
}

fn minted(
    response: token::TokenResponse,
    asked: &[String],
    dpop_jkt: Option<String>,
    connection: ConnectionUpdate,
) -> Minted {
    Minted {
        scopes: response
            .scope
            .as_deref()
            .map(token::split_scopes)
            .unwrap_or_else(|| asked.to_vec()),
        access_token: response.access_token,
        expires_in: response.expires_in.unwrap_or(DEFAULT_EXPIRES_IN),
        refresh_token: None,
        by_refresh_token: true,
        dpop_jkt,
        connection: Some(connection),
    }
}

/// Whether an `oauth` connection to an authorization server offering `algs` is bound to `key`:
/// as `servers[].dpop` says, except that `if_supported` binds only to a key the OS holds. A
/// refresh token bound to the agent's in-memory key dies with the agent, and the user would have
/// to connect again after every restart ("connect once"); `required` binds to it all the same.
fn binds(server: &ServerPolicy, algs: &[String], key: &DpopKey) -> Result<bool, String> {
    let offered = server.dpop.applies(algs, key.algorithm())?;
    Ok(offered
        && (server.dpop == crate::oauth::DpopUse::Required
            || key.home() == DpopKeyHome::OsKeyStore))
}

/// A renewal of an `oauth` server: its refresh token at its token endpoint. No connection, or a
/// refresh token the server no longer takes (revoked, expired, rotated away): the user must
/// connect again, which nothing does by itself.
/// The engine wipes the connection on [`GrantFailure::NeedsConnect`].
pub async fn renew(inputs: &GrantInputs) -> Result<Minted, GrantFailure> {
    let store = &inputs.rules.pins;
    let server = &inputs.server;
    let Some(mut connection) = load(store, server).await.map_err(GrantFailure::Retry)? else {
        return Err(GrantFailure::NeedsConnect);
    };
    if inputs.recheck_authorization_server {
        if let Some(moved_to) = moved(inputs, &connection).await {
            tracing::info!(server = %server.id, from = %connection.issuer, to = %moved_to, "the server names another authorization server now: connect again");
            return Err(GrantFailure::NeedsConnect);
        }
    }
    let Some(refresh_token) = connection.refresh_token.clone() else {
        // The authorization server gave no refresh token: each access token takes a connect.
        return Err(GrantFailure::NeedsConnect);
    };
    let endpoint = TokenEndpoint {
        url: connection.token_endpoint.clone(),
        issuer: connection.issuer.clone(),
    };
    // A refresh token bound to a key needs a proof of that key (RFC 9449).
    let bind = match &connection.dpop_jkt {
        Some(jkt) if jkt == inputs.dpop.thumbprint() => true,
        Some(_) if connection.dpop_key_held => {
            // The OS-held key is taken into use once the identity provider's client is known.
            return Err(GrantFailure::Retry(
                "the connection is bound to the DPoP key the operating system holds, which the \
                 agent does not use yet"
                    .into(),
            ));
        }
        Some(_) => {
            tracing::info!(server = %server.id, "the connection is bound to an in-memory DPoP key this agent no longer holds (it restarted, or signs with the key the OS holds now): connect again");
            return Err(GrantFailure::NeedsConnect);
        }
        None => binds(server, &connection.dpop_algs, &inputs.dpop).map_err(GrantFailure::Retry)?,
    };
    let client = connection.client();
    let request = || {
        let mut request = token::refresh(
            &endpoint,
            &client,
            &AssertionInputs {
                audience: connection.issuer.clone(),
                now: inputs.clock.unix_now(),
                jti: random_id(),
            },
            &refresh_token,
            &[],
        )?;
        request.field("resource", connection.resource.clone());
        Ok(request)
    };
    let answer = {
        let _slot = inputs.slots.own_host.acquire().await;
        send_token_request_with(
            TokenSender::of(inputs),
            request,
            bind.then_some(inputs.dpop.as_ref()),
        )
        .await
    };
    match answer.and_then(|r| token::parse_token_response(&r)) {
        Ok(response) => {
            let dpop_jkt = check_binding(server, bind, &response)?
                .then(|| inputs.dpop.thumbprint().to_owned());
            let keep = response.refresh_token.clone().map(|rotated| {
                connection.refresh_token = Some(rotated);
                connection.to_secret()
            });
            let update = ConnectionUpdate {
                issuer: connection.issuer.clone(),
                keep,
            };
            Ok(minted(response, &connection.scopes, dpop_jkt, update))
        }
        Err(WireError::OAuth(body))
            if matches!(
                body.error.as_str(),
                "invalid_grant" | "invalid_client" | "unauthorized_client"
            ) =>
        {
            tracing::info!(server = %server.id, error = %body.error, "the server no longer takes this connection: connect again");
            Err(GrantFailure::NeedsConnect)
        }
        Err(e) if e.is_endpoint_gone() => Err(GrantFailure::Retry(format!(
            "{e} (the authorization server may have moved: connect again if this lasts)"
        ))),
        Err(e) => Err(GrantFailure::Retry(e.to_string())),
    }
}

/// The issuer the server names now, when it is not the connection's (SEP-2352: a client does not
/// take its registration or tokens to another authorization server). A failed look is no answer:
/// the renewal goes on.
async fn moved(inputs: &GrantInputs, connection: &Connection) -> Option<String> {
    let url = url::Url::parse(&inputs.server.url).ok()?;
    let _slot = inputs.slots.shared.acquire().await;
    let prm_issuer =
        crate::oauth::discovery::discover_server_with(&inputs.http, &url, inputs.rules.urls)
            .await
            .ok()?
            .authorization_server
            .issuer;
    (prm_issuer != connection.issuer).then_some(prm_issuer)
}

/// What connecting needs from the engine.
pub struct ConnectInputs {
    pub http: HttpExecutor,
    pub store: Arc<dyn SecretStore>,
    pub browser: Arc<dyn Browser>,
    pub clock: Arc<dyn Clock>,
    pub server: ServerPolicy,
    pub dev_mode: bool,
    pub timeout: Duration,
    /// Scopes callers needed beyond the connection's (a 403 `insufficient_scope`), within the
    /// policy's ceiling: asked for on top.
    pub extra_scopes: Vec<String>,
    /// The device's DPoP key and the nonces servers handed out (`servers[].dpop` decides).
    pub dpop: Arc<DpopKey>,
    pub nonces: Arc<Nonces>,
}

/// Connects server `inputs.server` once: discovery, the client identity, the authorization
/// request in the browser, the redirect to the loopback listener (state and RFC 9207 `iss`
/// checked), the code exchange (with a DPoP proof where `servers[].dpop` and the authorization
/// server agree, the issued token's binding checked). The connection to keep comes back in
/// [`Minted::connection`]: nothing is stored here, and any refusal leaves nothing behind.
pub async fn connect(inputs: ConnectInputs) -> Result<Minted, String> {
    let server = &inputs.server;
    let url = url::Url::parse(&server.url).map_err(|e| format!("bad server URL: {e}"))?;
    let client_secret = match &server.client_auth {
        crate::policy::ClientAuthPolicy::ClientSecretBasic { secret }
        | crate::policy::ClientAuthPolicy::ClientSecretPost { secret } => Some(
            super::credentials::read_secret(secret, inputs.store.as_ref())?,
        ),
        _ => None,
    };
    let identity = ClientIdentityPolicy {
        client_id: Some(server.client_id.clone()).filter(|id| !id.trim().is_empty()),
        client_secret,
        metadata_document_url: server.client_id_metadata_url.clone(),
        allow_dynamic_registration: server.allow_dynamic_registration,
    };
    // The policy's issuers, when it names any: checked in `prepare` before a registration or
    // the client's secret goes anywhere. Validation requires them for a confidential client.
    let accepted: Vec<String> = server
        .authorization_server
        .iter()
        .chain(&server.allowed_authorization_servers)
        .cloned()
        .collect();
    let mut listener = LoopbackListener::bind().await.map_err(|e| e.to_string())?;
    let redirect_uri = listener.redirect_uri().to_owned();
    let prepared = code_flow::prepare(
        &inputs.http,
        &PrepareInputs {
            server_url: &url,
            urls: DiscoveredUrls::for_dev_mode(inputs.dev_mode),
            identity: &identity,
            redirect_uri: &redirect_uri,
            policy_scopes: &server.scopes,
            extra_scopes: &inputs.extra_scopes,
            registered: None,
            accepted_issuers: &accepted,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    if let Some(resource) = &server.resource {
        if !crate::oauth::discovery::same_resource(resource, &prepared.discovered.resource) {
            return Err(format!(
                "the server names resource {:?}, not the policy's {resource:?}",
                prepared.discovered.resource
            ));
        }
    }
    // Settled before the browser opens: `required` against a server without DPoP goes no further.
    let metadata = &prepared.discovered.authorization_server;
    let bind = binds(
        server,
        &metadata.dpop_signing_alg_values_supported,
        &inputs.dpop,
    )
    .map_err(|e| format!("{e}: refused before the browser opened"))?;
    let state = random_id();
    let verifier = Secret::new(random_id() + &random_id());
    let authorization = prepared
        .authorization_url(&state, &verifier)
        .map_err(|e| e.to_string())?;
    let expected = ExpectedRedirect {
        state: state.clone(),
        issuer: metadata
            .authorization_response_iss_parameter_supported
            .then(|| metadata.issuer.clone()),
        known_issuer: Some(metadata.issuer.clone()),
    };
    let opened = if inputs.browser.open_via_loopback() {
        listener
            .start_page(&authorization)
            .map_err(|e| e.to_string())?
    } else {
        authorization
    };
    tracing::info!(server = %server.id, issuer = %metadata.issuer, client_id = %prepared.client.client_id, "connecting: opening the browser");
    inputs.browser.open(&opened)?;
    let code = listener
        .wait_for_code(&expected, inputs.timeout)
        .await
        .map_err(|e| e.to_string())?;
    let exchange = || {
        code_flow::code_exchange(
            &prepared,
            &code,
            &verifier,
            &AssertionInputs {
                audience: prepared.issuer().to_owned(),
                now: inputs.clock.unix_now(),
                jti: random_id(),
            },
        )
    };
    let sender = TokenSender {
        http: &inputs.http,
        clock: inputs.clock.as_ref(),
        nonces: &inputs.nonces,
    };
    let response = send_token_request_with(sender, exchange, bind.then_some(inputs.dpop.as_ref()))
        .await
        .and_then(|r| token::parse_token_response(&r))
        .map_err(|e| e.to_string())?;
    let dpop_jkt = match check_binding(server, bind, &response) {
        Ok(bound) => bound.then(|| inputs.dpop.thumbprint().to_owned()),
        Err(GrantFailure::Retry(e)) => return Err(e),
        Err(other) => return Err(format!("{other:?}")),
    };
    let connection = Connection {
        server_url: server.url.clone(),
        issuer: prepared.issuer().to_owned(),
        token_endpoint: metadata.token_endpoint.clone(),
        resource: prepared.discovered.resource.clone(),
        client_id: prepared.client.client_id.clone(),
        client_secret: secret_of(&prepared.client),
        auth_method: prepared.client.auth.method_name().to_owned(),
        refresh_token: response.refresh_token.clone(),
        scopes: prepared.scopes.clone(),
        revocation_endpoint: metadata.revocation_endpoint.clone(),
        dpop_algs: metadata.dpop_signing_alg_values_supported.clone(),
        dpop_jkt: dpop_jkt.clone(),
        dpop_key_held: inputs.dpop.home() == DpopKeyHome::OsKeyStore,
    };
    tracing::info!(server = %server.id, refresh_token = connection.refresh_token.is_some(), dpop_bound = dpop_jkt.is_some(), "connected");
    let update = ConnectionUpdate {
        issuer: connection.issuer.clone(),
        keep: Some(connection.to_secret()),
    };
    Ok(minted(response, &prepared.scopes, dpop_jkt, update))
}
