//! The fake corporate IdP: OpenID Connect discovery and JWKS, authorization code + PKCE with a
//! scripted-browser-friendly login page, refresh with rotation, RFC 8693 token exchange issuing
//! ID-JAGs under an allow/deny and step-up policy, RFC 8628 device flow and RFC 7009 revocation.
//! It owns its users, codes, refresh tokens and policy; it knows the testbed's authorization
//! servers only as audiences (issuer → client id) and never calls them.
//!
//! On Linux it is also a SAML 2.0 IdP ([`saml`]): an SSO endpoint whose login answers with a
//! signed assertion posted to the app's loopback, and the token exchange of that assertion for a
//! refresh token that can then be the subject of an ID-JAG exchange.

mod login;
#[cfg(target_os = "linux")]
pub mod saml;
mod token;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::Bytes as Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::client_auth::ClientVerifier;
use crate::clock::TestClock;
use crate::config::IdpConfig;
use crate::faults::{Endpoint, Faults};
use crate::keys::SigningKey;
use crate::oauth::{
    parse_form, OAuthError, GRANT_DEVICE_CODE, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ID_JAG,
};

/// An authorization request waiting for the user to pick an account.
#[derive(Clone, Debug)]
pub(crate) struct PendingAuthorization {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scope: String,
    code_challenge: String,
}

/// An issued, not yet redeemed authorization code.
#[derive(Clone, Debug)]
pub(crate) struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    scope: String,
    code_challenge: String,
    sub: String,
    auth_time: u64,
    expires_at: u64,
}

/// The grant behind a refresh token.
#[derive(Clone, Debug)]
pub(crate) struct RefreshGrant {
    client_id: String,
    sub: String,
    scope: String,
    auth_time: u64,
    /// The end of the IdP session this token belongs to (SAML sign-ins); rotation keeps it.
    expires_at: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    Pending,
    Approved { sub: String, auth_time: u64 },
    Denied,
}

#[derive(Clone, Debug)]
pub(crate) struct DeviceRequest {
    client_id: String,
    scope: String,
    user_code: String,
    expires_at: u64,
    interval: u64,
    last_poll: Option<SystemTime>,
    status: DeviceStatus,
}

#[derive(Default, Debug)]
pub(crate) struct IdpData {
    pending: HashMap<String, PendingAuthorization>,
    codes: HashMap<String, IssuedCode>,
    refresh: HashMap<String, RefreshGrant>,
    devices: HashMap<String, DeviceRequest>,
    /// Per user sub: ID tokens issued before this time no longer count (sessions revoked).
    sessions_valid_after: HashMap<String, u64>,
    /// SAML authentication requests, by request id: kept after the login so the assertion's
    /// `InResponseTo` can be checked at the token exchange.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    saml_requests: HashMap<String, SamlRequest>,
    /// Assertion ids already exchanged: an assertion is good for one exchange.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    saml_used_assertions: HashSet<String>,
}

/// One SAML `AuthnRequest` the IdP accepted.
#[derive(Clone, Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct SamlRequest {
    sp_entity_id: String,
    acs_url: String,
    relay_state: Option<String>,
    /// Set once a user signed in for it (its assertion was issued).
    answered: bool,
}

/// Allow/deny and step-up rules for token exchange.
#[derive(Default, Debug)]
pub(crate) struct IdpPolicy {
    /// (user sub or email, audience) pairs that are denied.
    denied: HashSet<(String, String)>,
    /// audience → maximum age of the user's authentication.
    step_up: HashMap<String, Duration>,
}

/// One RFC 7009 revocation request the IdP or an AS received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationRecord {
    /// The authenticated client.
    pub client_id: String,
    /// The `token_type_hint` sent, if any.
    pub token_type_hint: Option<String>,
    /// What the token turned out to be (`refresh_token`, or `unknown`).
    pub revoked: String,
}

#[derive(Default, Debug)]
pub(crate) struct IdpCounters {
    authorize_requests: AtomicU64,
    logins: AtomicU64,
    code_grants: AtomicU64,
    refresh_grants: AtomicU64,
    rejected_refreshes: AtomicU64,
    token_exchanges: AtomicU64,
    /// ID-JAGs bound to a DPoP key (`cnf.jkt`).
    pub(crate) bound_id_jags: AtomicU64,
    rejected_token_exchanges: AtomicU64,
    device_authorizations: AtomicU64,
    device_grants: AtomicU64,
    jwks_fetches: AtomicU64,
    saml_requests: AtomicU64,
    saml_logins: AtomicU64,
    saml_exchanges: AtomicU64,
    rejected_saml_exchanges: AtomicU64,
    revocations: Mutex<Vec<RevocationRecord>>,
    wire_secrets: Mutex<WireSecrets>,
}

/// Every secret that crossed the IdP's token endpoint, in order: what a leak test looks for in
/// the client's logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireSecrets {
    /// Authorization codes presented (`code`).
    pub codes: Vec<String>,
    /// PKCE verifiers presented (`code_verifier`).
    pub code_verifiers: Vec<String>,
    /// Refresh tokens presented or issued.
    pub refresh_tokens: Vec<String>,
    /// ID tokens issued (and presented as subject tokens).
    pub id_tokens: Vec<String>,
    /// Access tokens issued: the IdP's own and ID-JAGs.
    pub access_tokens: Vec<String>,
}

impl WireSecrets {
    /// All of them.
    pub fn all(&self) -> Vec<String> {
        [
            &self.codes,
            &self.code_verifiers,
            &self.refresh_tokens,
            &self.id_tokens,
            &self.access_tokens,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    fn push(list: &mut Vec<String>, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            if !list.iter().any(|x| x == v) {
                list.push(v.to_string());
            }
        }
    }

    pub(crate) fn record(&mut self, form: &HashMap<String, String>, issued: Option<&Value>) {
        let f = |k: &str| form.get(k).map(String::as_str);
        Self::push(&mut self.codes, f("code"));
        Self::push(&mut self.code_verifiers, f("code_verifier"));
        Self::push(&mut self.refresh_tokens, f("refresh_token"));
        Self::push(&mut self.id_tokens, f("subject_token"));
        if let Some(body) = issued {
            let b = |k: &str| body.get(k).and_then(Value::as_str);
            Self::push(&mut self.refresh_tokens, b("refresh_token"));
            Self::push(&mut self.id_tokens, b("id_token"));
            Self::push(&mut self.access_tokens, b("access_token"));
        }
    }
}

/// A snapshot of the IdP's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdpStats {
    /// `GET /authorize` requests.
    pub authorize_requests: u64,
    /// Completed logins (login form posts that redirected with a code).
    pub logins: u64,
    /// Authorization codes redeemed.
    pub code_grants: u64,
    /// Successful refresh grants.
    pub refresh_grants: u64,
    /// Refresh grants rejected (reuse after rotation, revoked, unknown).
    pub rejected_refreshes: u64,
    /// ID-JAGs issued by token exchange.
    pub token_exchanges: u64,
    /// ID-JAGs bound to the requester's DPoP key.
    pub bound_id_jags: u64,
    /// Token exchanges refused (policy, step-up, bad subject token…).
    pub rejected_token_exchanges: u64,
    /// Device authorization requests.
    pub device_authorizations: u64,
    /// Device-code grants that issued tokens.
    pub device_grants: u64,
    /// Revocation requests received.
    pub revocations: Vec<RevocationRecord>,
    /// `GET /jwks` requests.
    pub jwks_fetches: u64,
    /// SAML `AuthnRequest`s accepted at the SSO endpoint.
    pub saml_requests: u64,
    /// SAML logins answered with a signed assertion.
    pub saml_logins: u64,
    /// SAML assertions exchanged for a refresh token.
    pub saml_exchanges: u64,
    /// SAML exchanges refused (signature, audience, expiry, replay…).
    pub rejected_saml_exchanges: u64,
}

/// A wrong `SubjectConfirmationData` the SAML IdP can be told to put in the assertions it signs,
/// for tests of what a service provider checks ([`IdpHandle::set_saml_confirmation_fault`]). The
/// `Response`'s own `InResponseTo` and `Destination` stay right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamlConfirmationFault {
    /// `Recipient` names another consumer URL than the request's.
    WrongRecipient,
    /// `InResponseTo` names another request than the one answered.
    WrongInResponseTo,
    /// `NotOnOrAfter` passed an hour before the assertion was issued.
    Expired,
    /// No `SubjectConfirmation` at all.
    Missing,
}

pub(crate) struct IdpState {
    pub config: IdpConfig,
    /// What to get wrong in the next SAML assertions' confirmation, if anything.
    pub saml_confirmation_fault: Mutex<Option<SamlConfirmationFault>>,
    pub issuer: String,
    /// Origin + issuer path, no trailing slash: endpoint URLs hang off it.
    pub base_url: String,
    pub base_path: String,
    /// The key that signs now; the JWKS publishes it alone.
    key: Mutex<Arc<SigningKey>>,
    /// Keys rotated out: tokens they signed are still accepted as subject tokens.
    retired_keys: Mutex<Vec<Arc<SigningKey>>>,
    pub clock: TestClock,
    /// Known audiences: AS issuer → client id for the ID-JAG `client_id` claim.
    pub audiences: HashMap<String, String>,
    pub data: Mutex<IdpData>,
    pub policy: Mutex<IdpPolicy>,
    pub counters: IdpCounters,
    pub client_jtis: Mutex<HashSet<String>>,
    /// Acceptable `aud` values of client assertions: issuer and token endpoint.
    pub assertion_audiences: Vec<String>,
    /// The token endpoint has moved to `{base}/v2/token`; the old path answers 404.
    pub token_moved: std::sync::atomic::AtomicBool,
    /// Checks the DPoP proofs that come with token exchanges.
    pub proofs: crate::dpop::ProofChecker,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another handler panicked mid-update; the fake keeps serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl IdpState {
    pub(crate) fn new(
        config: IdpConfig,
        origin: &str,
        key: Arc<SigningKey>,
        clock: TestClock,
        audiences: HashMap<String, String>,
    ) -> Self {
        let issuer = config.issuer_path.issuer(origin);
        let base_path = config.issuer_path.path.clone();
        let issuer_for_aud = issuer.clone();
        let base_path_for_aud = base_path.clone();
        let policy = IdpPolicy {
            denied: config.denied.iter().cloned().collect(),
            step_up: config.require_auth_within.clone(),
        };
        Self {
            issuer,
            base_url: format!("{origin}{base_path}"),
            base_path,
            key: Mutex::new(key),
            retired_keys: Mutex::new(Vec::new()),
            clock,
            audiences,
            data: Mutex::new(IdpData::default()),
            policy: Mutex::new(policy),
            counters: IdpCounters::default(),
            client_jtis: Mutex::new(HashSet::new()),
            token_moved: std::sync::atomic::AtomicBool::new(false),
            proofs: crate::dpop::ProofChecker::new(config.dpop_require_nonce),
            saml_confirmation_fault: Mutex::new(None),
            assertion_audiences: vec![
                issuer_for_aud.clone(),
                format!("{origin}{base_path_for_aud}/token"),
            ],
            config,
        }
    }

    /// The key that signs ID tokens and ID-JAGs now.
    pub(crate) fn signing_key(&self) -> Arc<SigningKey> {
        Arc::clone(&lock(&self.key))
    }

    /// The current key followed by the retired ones.
    pub(crate) fn verification_keys(&self) -> Vec<Arc<SigningKey>> {
        let mut keys = vec![self.signing_key()];
        keys.extend(lock(&self.retired_keys).iter().cloned());
        keys
    }

    fn data(&self) -> MutexGuard<'_, IdpData> {
        lock(&self.data)
    }

    pub(crate) fn token_endpoint_url(&self) -> String {
        self.token_endpoint()
    }

    fn token_endpoint(&self) -> String {
        if self.token_moved.load(Ordering::SeqCst) {
            format!("{}/v2/token", self.base_url)
        } else {
            format!("{}/token", self.base_url)
        }
    }

    fn verifier(&self) -> ClientVerifier<'_> {
        ClientVerifier {
            clients: &self.config.clients,
            audiences: &self.assertion_audiences,
            clock: &self.clock,
            seen_jtis: &self.client_jtis,
        }
    }

    fn user(&self, who: &str) -> Option<&crate::config::TestUser> {
        self.config.users.iter().find(|u| u.matches(who))
    }

    fn metadata(&self) -> Value {
        let b = &self.base_url;
        let mut auth_methods: Vec<&str> = self
            .config
            .clients
            .iter()
            .map(|c| c.auth.method_name())
            .collect();
        auth_methods.sort_unstable();
        auth_methods.dedup();
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": format!("{b}/authorize"),
            "token_endpoint": self.token_endpoint(),
            "jwks_uri": format!("{b}/jwks"),
            "revocation_endpoint": format!("{b}/revoke"),
            "device_authorization_endpoint": format!("{b}/device_authorization"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "offline_access", "email", "profile"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "email", "name"],
            "grant_types_supported": [
                "authorization_code", "refresh_token", GRANT_TOKEN_EXCHANGE, GRANT_DEVICE_CODE
            ],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": auth_methods,
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "identity_chaining_requested_token_types_supported": [TOKEN_TYPE_ID_JAG],
            "dpop_signing_alg_values_supported": ["ES256", "RS256"],
            "authorization_response_iss_parameter_supported": self.config.advertise_iss_parameter,
        })
    }
}

/// The IdP's routes and the endpoint each path belongs to.
pub(crate) fn router(state: Arc<IdpState>) -> (Router, HashMap<String, Endpoint>) {
    let bp = state.base_path.clone();
    let mut routes = HashMap::new();
    let mut router = Router::new();
    let mut metadata_paths = vec![
        format!("{bp}/.well-known/openid-configuration"),
        format!("/.well-known/openid-configuration{bp}"),
        format!("/.well-known/oauth-authorization-server{bp}"),
    ];
    if state.config.issuer_path.trailing_slash && !bp.is_empty() {
        metadata_paths.push(format!("/.well-known/openid-configuration{bp}/"));
        metadata_paths.push(format!("/.well-known/oauth-authorization-server{bp}/"));
    }
    metadata_paths.sort();
    metadata_paths.dedup();
    for path in metadata_paths {
        router = router.route(&path, get(metadata));
        routes.insert(path, Endpoint::Metadata);
    }
    let endpoints: [(&str, Endpoint); 7] = [
        ("/jwks", Endpoint::Jwks),
        ("/authorize", Endpoint::Authorize),
        ("/login", Endpoint::Login),
        ("/token", Endpoint::Token),
        ("/revoke", Endpoint::Revoke),
        ("/device_authorization", Endpoint::DeviceAuthorization),
        ("/device", Endpoint::Device),
    ];
    for (suffix, endpoint) in endpoints {
        routes.insert(format!("{bp}{suffix}"), endpoint);
    }
    routes.insert(format!("{bp}/v2/token"), Endpoint::Token);
    #[cfg(target_os = "linux")]
    let router = {
        routes.insert(format!("{bp}/saml/sso"), Endpoint::Authorize);
        routes.insert(format!("{bp}/saml/login"), Endpoint::Login);
        router
            .route(&format!("{bp}/saml/sso"), get(saml::sso))
            .route(&format!("{bp}/saml/login"), post(saml::login))
    };
    let router = router
        .route(&format!("{bp}/jwks"), get(jwks))
        .route(&format!("{bp}/authorize"), get(login::authorize))
        .route(&format!("{bp}/login"), post(login::login))
        .route(&format!("{bp}/token"), post(old_token))
        .route(&format!("{bp}/v2/token"), post(moved_token))
        .route(&format!("{bp}/revoke"), post(revoke))
        .route(
            &format!("{bp}/device_authorization"),
            post(login::device_authorization),
        )
        .route(
            &format!("{bp}/device"),
            get(login::device_page).post(login::device_submit),
        )
        .with_state(state);
    (router, routes)
}

async fn metadata(State(state): State<Arc<IdpState>>) -> Json<Value> {
    Json(state.metadata())
}

async fn jwks(State(state): State<Arc<IdpState>>) -> Json<Value> {
    state.counters.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    Json(state.signing_key().jwks())
}

async fn revoke(State(state): State<Arc<IdpState>>, headers: HeaderMap, body: Body) -> Response {
    let form = parse_form(&body);
    let client = match state.verifier().authenticate(&headers, &form) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(token) = form.get("token") else {
        return OAuthError::invalid_request("token is required").into_response();
    };
    let revoked = {
        let mut data = state.data();
        match data.refresh.get(token) {
            Some(grant) if grant.client_id == client.client_id => {
                data.refresh.remove(token);
                "refresh_token"
            }
            _ => "unknown",
        }
    };
    lock(&state.counters.revocations).push(RevocationRecord {
        client_id: client.client_id,
        token_type_hint: form.get("token_type_hint").cloned(),
        revoked: revoked.to_string(),
    });
    axum::http::StatusCode::OK.into_response()
}

/// The token endpoint at its first path: 404 once it has moved.
async fn old_token(state: State<Arc<IdpState>>, headers: HeaderMap, body: Body) -> Response {
    if state.token_moved.load(Ordering::SeqCst) {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    token::token(state, headers, body).await
}

/// The token endpoint at its new path: 404 until it has moved.
async fn moved_token(state: State<Arc<IdpState>>, headers: HeaderMap, body: Body) -> Response {
    if !state.token_moved.load(Ordering::SeqCst) {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    token::token(state, headers, body).await
}

/// Runtime control of the IdP: URLs, policy, sessions, faults and counters. Cheap to clone.
#[derive(Clone)]
pub struct IdpHandle {
    pub(crate) state: Arc<IdpState>,
    pub(crate) faults: Faults,
}

impl std::fmt::Debug for IdpHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpHandle")
            .field("issuer", &self.state.issuer)
            .finish()
    }
}

impl IdpHandle {
    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The OpenID configuration URL (`{issuer}/.well-known/openid-configuration`).
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.state.base_url)
    }

    /// The authorization endpoint.
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/authorize", self.state.base_url)
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> String {
        self.state.token_endpoint()
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.state.base_url)
    }

    /// The revocation endpoint.
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/revoke", self.state.base_url)
    }

    /// The SAML 2.0 single sign-on URL (HTTP-Redirect binding; Linux only).
    pub fn saml_sso_url(&self) -> String {
        format!("{}/saml/sso", self.state.base_url)
    }

    /// Makes the SAML assertions signed from now on carry a wrong `SubjectConfirmationData`
    /// (`None`: right again). The IdP itself still checks what is presented at its token endpoint.
    pub fn set_saml_confirmation_fault(&self, fault: Option<SamlConfirmationFault>) {
        *lock(&self.state.saml_confirmation_fault) = fault;
    }

    /// The device authorization endpoint.
    pub fn device_authorization_endpoint(&self) -> String {
        format!("{}/device_authorization", self.state.base_url)
    }

    /// The fault switchboard of the IdP.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Denies `user` (sub or email) access to `audience` (an AS issuer).
    pub fn deny(&self, user: &str, audience: &str) {
        lock(&self.state.policy)
            .denied
            .insert((user.to_string(), audience.to_string()));
    }

    /// Lifts a denial made by [`IdpHandle::deny`] or the configuration.
    pub fn allow(&self, user: &str, audience: &str) {
        lock(&self.state.policy)
            .denied
            .remove(&(user.to_string(), audience.to_string()));
    }

    /// Requires that users authenticated within `max_age` to get an ID-JAG for `audience`
    /// (`None` removes the rule).
    pub fn require_auth_within(&self, audience: &str, max_age: Option<Duration>) {
        let mut policy = lock(&self.state.policy);
        match max_age {
            Some(age) => {
                policy.step_up.insert(audience.to_string(), age);
            }
            None => {
                policy.step_up.remove(audience);
            }
        }
    }

    /// Invalidates every refresh token and every ID token issued so far.
    pub fn revoke_all_sessions(&self) {
        let now = self.state.clock.unix();
        let mut data = self.state.data();
        data.refresh.clear();
        let subs: Vec<String> = self
            .state
            .config
            .users
            .iter()
            .map(|u| u.sub.clone())
            .collect();
        for sub in subs {
            data.sessions_valid_after.insert(sub, now + 1);
        }
    }

    /// Invalidates the refresh tokens and ID tokens of one user (sub or email).
    pub fn revoke_user_sessions(&self, user: &str) {
        let Some(sub) = self.state.user(user).map(|u| u.sub.clone()) else {
            return;
        };
        let now = self.state.clock.unix();
        let mut data = self.state.data();
        data.refresh.retain(|_, grant| grant.sub != sub);
        data.sessions_valid_after.insert(sub, now + 1);
    }

    /// Number of live refresh tokens.
    pub fn live_refresh_tokens(&self) -> usize {
        self.state.data().refresh.len()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> IdpStats {
        let c = &self.state.counters;
        let n = |a: &AtomicU64| a.load(Ordering::SeqCst);
        IdpStats {
            authorize_requests: n(&c.authorize_requests),
            logins: n(&c.logins),
            code_grants: n(&c.code_grants),
            refresh_grants: n(&c.refresh_grants),
            rejected_refreshes: n(&c.rejected_refreshes),
            token_exchanges: n(&c.token_exchanges),
            bound_id_jags: n(&c.bound_id_jags),
            rejected_token_exchanges: n(&c.rejected_token_exchanges),
            device_authorizations: n(&c.device_authorizations),
            device_grants: n(&c.device_grants),
            revocations: lock(&c.revocations).clone(),
            jwks_fetches: n(&c.jwks_fetches),
            saml_requests: n(&c.saml_requests),
            saml_logins: n(&c.saml_logins),
            saml_exchanges: n(&c.saml_exchanges),
            rejected_saml_exchanges: n(&c.rejected_saml_exchanges),
        }
    }

    /// Rotates the signing key: a new key (new `kid`) signs from now on and the JWKS publishes only
    /// it; tokens signed by the old one stay acceptable as subject tokens.
    pub async fn rotate_signing_key(&self) -> anyhow::Result<()> {
        let new = tokio::task::spawn_blocking(SigningKey::generate).await??;
        let old = std::mem::replace(&mut *lock(&self.state.key), Arc::new(new));
        lock(&self.state.retired_keys).push(old);
        Ok(())
    }

    /// Moves the token endpoint to `{base}/v2/token`: the metadata names the new URL and the old
    /// path answers 404.
    pub fn move_token_endpoint(&self) {
        self.state.token_moved.store(true, Ordering::SeqCst);
    }

    /// Sets how far the IdP's clock is off (negative = behind); its tokens and `Date` follow it.
    pub fn set_clock_skew(&self, skew_secs: i64) {
        self.state.clock.set_skew_secs(skew_secs);
    }

    /// Every code, PKCE verifier and token that crossed the token endpoint so far.
    pub fn wire_secrets(&self) -> WireSecrets {
        lock(&self.state.counters.wire_secrets).clone()
    }
}
