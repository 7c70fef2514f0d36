//! The `oauth` mode's connection to one server: connecting once in the browser
//! (`lanyard connect <id>`), then renewing silently with the refresh token, rotated as the
//! authorization server rotates it. The decisions are [`crate::oauth::code_flow`]'s; this module
//! runs them with the agent's loopback listener and browser port, and keeps what a connection is
//! in one keychain entry per server (its client registration, token endpoint, resource and
//! refresh token). It never opens a browser except for an explicit connect, and an
//! `enterprise-managed` server never comes here.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::grant::{GrantFailure, GrantInputs, Minted, DEFAULT_EXPIRES_IN};
use crate::clock::Clock;
use crate::oauth::code_flow::{self, ClientIdentityPolicy, PrepareInputs};
use crate::oauth::discovery::DiscoveredUrls;
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
}

impl Connection {
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
    match serde_json::from_str::<Connection>(found.expose()) {
        Ok(c) if c.server_url == server.url => Ok(Some(c)),
        // Another URL, or an unreadable entry: as if never connected.
        _ => Ok(None),
    }
}

async fn save(
    store: &Arc<dyn SecretStore>,
    id: &str,
    connection: &Connection,
) -> Result<(), String> {
    let key = connection_key(id);
    let value = connection.to_secret();
    let store = store.clone();
    blocking(move || store.set(&key, &value))
        .await?
        .map_err(|e| format!("the keychain could not be written: {e}"))
}

/// Forgets server `id`'s connection (sign-out, a refresh token the server revoked).
pub async fn forget(store: &Arc<dyn SecretStore>, id: &str) {
    let key = connection_key(id);
    let store = store.clone();
    if let Ok(Err(e)) = blocking(move || store.delete(&key)).await {
        tracing::warn!(server = %id, error = %e, "the connection could not be wiped from the keychain");
    }
}

fn minted(response: token::TokenResponse, asked: &[String]) -> Minted {
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
        dpop_jkt: None,
    }
}

/// A renewal of an `oauth` server: its refresh token at its token endpoint. No connection, or a
/// refresh token the server no longer takes (revoked, expired, rotated away): the user must
/// connect again, which nothing does by itself.
pub async fn renew(inputs: &GrantInputs) -> Result<Minted, GrantFailure> {
    let store = &inputs.rules.pins;
    let server = &inputs.server;
    let Some(mut connection) = load(store, server).await.map_err(GrantFailure::Retry)? else {
        return Err(GrantFailure::NeedsConnect);
    };
    if inputs.recheck_authorization_server {
        if let Some(moved_to) = moved(inputs, &connection).await {
            tracing::info!(server = %server.id, from = %connection.issuer, to = %moved_to, "the server names another authorization server now: connect again");
            forget(store, &server.id).await;
            return Err(GrantFailure::NeedsConnect);
        }
    }
    let Some(refresh_token) = connection.refresh_token.clone() else {
        // The authorization server gave no refresh token: each access token takes a connect.
        forget(store, &server.id).await;
        return Err(GrantFailure::NeedsConnect);
    };
    let endpoint = TokenEndpoint {
        url: connection.token_endpoint.clone(),
        issuer: connection.issuer.clone(),
    };
    let answer = {
        let _slot = inputs.slots.own_host.acquire().await;
        code_flow::refresh(
            &inputs.http,
            &endpoint,
            &connection.client(),
            &refresh_token,
            &connection.resource,
            AssertionInputs {
                audience: connection.issuer.clone(),
                now: inputs.clock.unix_now(),
                jti: random_id(),
            },
        )
        .await
    };
    match answer {
        Ok(response) => {
            if let Some(rotated) = response.refresh_token.clone() {
                connection.refresh_token = Some(rotated);
                if let Err(e) = save(store, &server.id, &connection).await {
                    // The old one is already spent at a rotating server: the next renewal
                    // will ask for a connect. Say so now.
                    tracing::warn!(server = %server.id, error = %e, "the rotated refresh token could not be kept");
                }
            }
            Ok(minted(response, &connection.scopes))
        }
        Err(WireError::OAuth(body))
            if matches!(
                body.error.as_str(),
                "invalid_grant" | "invalid_client" | "unauthorized_client"
            ) =>
        {
            tracing::info!(server = %server.id, error = %body.error, "the server no longer takes this connection: connect again");
            forget(store, &server.id).await;
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
}

/// Connects server `inputs.server` once: discovery, the client identity, the authorization
/// request in the browser, the redirect to the loopback listener (state and RFC 9207 `iss`
/// checked), the code exchange. Only then is the connection stored; any refusal stores nothing.
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
    // The policy's issuers, when it names any: the MCP server does not choose where the client
    // secret (or the user's consent) goes. Validation requires them for a confidential client.
    let accepted: Vec<&String> = server
        .authorization_server
        .iter()
        .chain(&server.allowed_authorization_servers)
        .collect();
    if !accepted.is_empty() && !accepted.iter().any(|a| a.as_str() == prepared.issuer()) {
        return Err(format!(
            "the server names the authorization server {}, which the policy does not name \
             (authorization_server or allowed_authorization_servers): refused",
            prepared.issuer()
        ));
    }
    let state = random_id();
    let verifier = Secret::new(random_id() + &random_id());
    let authorization = prepared
        .authorization_url(&state, &verifier)
        .map_err(|e| e.to_string())?;
    let metadata = &prepared.discovered.authorization_server;
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
    let response = code_flow::redeem(
        &inputs.http,
        &prepared,
        &code,
        &verifier,
        AssertionInputs {
            audience: prepared.issuer().to_owned(),
            now: inputs.clock.unix_now(),
            jti: random_id(),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
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
    };
    save(&inputs.store, &server.id, &connection).await?;
    tracing::info!(server = %server.id, refresh_token = connection.refresh_token.is_some(), "connected");
    Ok(minted(response, &prepared.scopes))
}
