//! The IdP session: OpenID Connect sign-in from a native app, ID-token validation, refresh with
//! rotation, step-up and device-code sign-in.
//!
//! Interactive sign-in is authorization code + PKCE (S256) through the system browser and a
//! loopback redirect ([`loopback`]); the ID token is validated with `openidconnect` against the
//! IdP's JWKS, with time taken from the caller's [`Clock`]. This module does not store anything and
//! does not decide *when* to refresh: the engine does.
//!
//! Where the corporate SSO speaks SAML 2.0 ([`saml`]), the browser step ends with a signed
//! assertion posted to the same loopback listener; [`InteractiveSignIn`] exchanges it at the IdP's
//! token endpoint for an IdP refresh token, which is then the subject of every ID-JAG exchange
//! (the ID-JAG draft's SAML interoperability section).

pub mod browser;
pub mod loopback;
pub mod saml;

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::{Arc, RwLock};

use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
use openidconnect::{
    ClaimsVerificationError, ClientId, IssuerUrl, Nonce, PkceCodeChallenge,
    SignatureVerificationError,
};
use url::Url;

pub use browser::{Browser, SystemBrowser};
pub use loopback::{ExpectedRedirect, LoopbackListener};
pub use saml::{SamlError, SamlSettings};

use crate::clock::Clock;
use crate::oauth::discovery::{fetch_authorization_server_metadata, AuthorizationServerMetadata};
use crate::oauth::error::capped_message;
use crate::oauth::token::{self, TokenEndpoint, TokenResponse};
use crate::oauth::{AssertionInputs, Client, HttpExecutor, HttpRequest, HttpResponse, WireError};
use crate::secret::Secret;

/// Why a sign-in or an IdP refresh did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignInError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the browser could not be opened: {0}")]
    Browser(String),
    #[error("the sign-in listener failed: {0}")]
    Loopback(String),
    #[error("sign-in was not completed in time")]
    TimedOut,
    #[error("the identity provider refused the sign-in: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    AuthorizationDenied {
        error: String,
        description: Option<String>,
    },
    #[error("the sign-in answer names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch {
        expected: String,
        found: Option<String>,
    },
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
    /// Signed by a key the IdP's key set lacks even after fetching it again (or too soon to).
    #[error(
        "the ID token is signed by a key the identity provider does not publish (yet); retrying"
    )]
    UnknownSigningKey,
    #[error("the identity provider sent no ID token")]
    NoIdToken,
    #[error("the identity provider does not offer {0}")]
    Unsupported(&'static str),
    #[error(transparent)]
    Saml(#[from] SamlError),
}

impl SignInError {
    /// Worth retrying by itself later (network, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            // A moved endpoint is the server's doing, not the session's end.
            SignInError::Wire(w) => w.is_transient() || w.is_endpoint_gone(),
            // A key rotation still spreading through the IdP's caches: worth a later try.
            SignInError::UnknownSigningKey => true,
            _ => false,
        }
    }
}

/// The IdP as Lanyard talks to it: metadata, keys and our registration there.
///
/// Its signing keys are fetched at discovery and fetched again when an ID token names a key id
/// the set lacks (the IdP rotated its key), at most once per [`JWKS_REFETCH_MIN_SECS`].
#[derive(Debug, Clone)]
pub struct IdpClient {
    pub metadata: AuthorizationServerMetadata,
    pub client: Client,
    pub scopes: Vec<String>,
    pub extra_authorize_params: BTreeMap<String, String>,
    /// `Some` when the user signs in with SAML 2.0 instead of OpenID Connect.
    pub saml: Option<SamlSettings>,
    keys: Arc<RwLock<KeySet>>,
}

#[derive(Debug)]
struct KeySet {
    jwks: CoreJsonWebKeySet,
    /// When the set was last fetched again for an unknown key id (engine clock), if ever.
    refetched_at: Option<u64>,
}

/// The least time between two fetches of the IdP's keys for an unknown key id.
pub const JWKS_REFETCH_MIN_SECS: u64 = 60;

/// How far the IdP's clock (read from the `Date` header of the answer carrying an ID token) may
/// be from this computer's and still be what the ID token is checked against.
pub const MAX_CLOCK_CORRECTION_SECS: i64 = 30 * 60;

/// Leeway on an ID token's `exp`, on top of the clock correction.
pub const ID_TOKEN_LEEWAY_SECS: i64 = 60;

/// What a validated ID token says about the user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdTokenInfo {
    pub subject: String,
    pub email: Option<String>,
    pub issued_at: u64,
    pub expires_at: u64,
    pub auth_time: Option<u64>,
}

/// The tokens of a signed-in session.
#[derive(Debug, Clone)]
pub struct IdpTokens {
    /// `None` right after a SAML sign-in: the session then has only its refresh token.
    pub id_token: Option<Secret>,
    pub info: IdTokenInfo,
    /// `None` when the IdP rotated nothing (refresh) or issued none.
    pub refresh_token: Option<Secret>,
}

/// Extra demands of a step-up sign-in (`insufficient_user_authentication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepUp {
    pub max_age: Option<u64>,
}

/// A sign-in started and not yet completed: what to check on the way back.
#[derive(Debug)]
pub struct PendingAuthorization {
    pub url: Url,
    pub state: String,
    nonce: Nonce,
    verifier: Secret,
    redirect_uri: String,
}

impl IdpClient {
    /// Fetches the IdP's metadata (issuer checked byte for byte) and its signing keys.
    pub async fn discover(
        http: &HttpExecutor,
        issuer: &str,
        client: Client,
        scopes: Vec<String>,
        extra_authorize_params: BTreeMap<String, String>,
    ) -> Result<Self, SignInError> {
        let metadata = fetch_authorization_server_metadata(http, issuer).await?;
        let jwks = fetch_keys(http, &metadata).await?;
        Ok(Self::with_keys(
            metadata,
            client,
            scopes,
            extra_authorize_params,
            jwks,
        ))
    }

    /// The client for an IdP whose metadata is known, with its key set read from `jwks` (the body
    /// of its `jwks_uri`). No I/O: [`IdpClient::discover`] fetches both.
    pub fn from_parts(
        metadata: AuthorizationServerMetadata,
        client: Client,
        scopes: Vec<String>,
        extra_authorize_params: BTreeMap<String, String>,
        jwks: &HttpResponse,
    ) -> Result<Self, WireError> {
        let key_set = parse_keys(jwks)?;
        Ok(Self::with_keys(
            metadata,
            client,
            scopes,
            extra_authorize_params,
            key_set,
        ))
    }

    fn with_keys(
        metadata: AuthorizationServerMetadata,
        client: Client,
        scopes: Vec<String>,
        extra_authorize_params: BTreeMap<String, String>,
        jwks: CoreJsonWebKeySet,
    ) -> Self {
        Self {
            metadata,
            client,
            scopes,
            extra_authorize_params,
            saml: None,
            keys: Arc::new(RwLock::new(KeySet {
                jwks,
                refetched_at: None,
            })),
        }
    }

    fn current_keys(&self) -> CoreJsonWebKeySet {
        match self.keys.read() {
            Ok(keys) => keys.jwks.clone(),
            Err(poisoned) => poisoned.into_inner().jwks.clone(),
        }
    }

    /// Fetches the key set again for an unknown key id, unless that was done less than
    /// [`JWKS_REFETCH_MIN_SECS`] ago. Returns whether a new set was fetched.
    async fn refetch_keys(&self, http: &HttpExecutor, now: u64) -> Result<bool, SignInError> {
        {
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            if keys
                .refetched_at
                .is_some_and(|at| now < at + JWKS_REFETCH_MIN_SECS)
            {
                return Ok(false);
            }
            // Claimed before the fetch, so concurrent validations do not fetch twice.
            keys.refetched_at = Some(now);
        }
        tracing::info!("an ID token names an unknown key id; fetching the IdP's keys again");
        let jwks = fetch_keys(http, &self.metadata).await?;
        self.keys.write().unwrap_or_else(|p| p.into_inner()).jwks = jwks;
        Ok(true)
    }

    pub fn issuer(&self) -> &str {
        &self.metadata.issuer
    }

    /// This client, signing in with SAML 2.0 when `saml` is `Some`.
    pub fn with_saml(mut self, saml: Option<SamlSettings>) -> Self {
        self.saml = saml;
        self
    }

    /// The RFC 8693 type of the session's subject token: the ID token, or after a SAML sign-in the
    /// IdP refresh token.
    pub fn subject_token_type(&self) -> &'static str {
        if self.saml.is_some() {
            token::TOKEN_TYPE_REFRESH_TOKEN
        } else {
            token::TOKEN_TYPE_ID_TOKEN
        }
    }

    pub fn token_endpoint(&self) -> TokenEndpoint {
        TokenEndpoint {
            url: self.metadata.token_endpoint.clone(),
            issuer: self.metadata.issuer.clone(),
        }
    }

    /// Builds the authorization URL for one sign-in (fresh state, nonce and PKCE verifier).
    pub fn begin(
        &self,
        redirect_uri: &str,
        step_up: Option<StepUp>,
    ) -> Result<PendingAuthorization, SignInError> {
        let endpoint = self
            .metadata
            .authorization_endpoint
            .clone()
            .ok_or(SignInError::Unsupported("an authorization endpoint"))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = openidconnect::CsrfToken::new_random().secret().clone();
        let nonce = Nonce::new_random();
        let mut url = endpoint;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &self.scopes.join(" "))
                .append_pair("state", &state)
                .append_pair("nonce", nonce.secret())
                .append_pair("code_challenge", challenge.as_str())
                .append_pair("code_challenge_method", "S256");
            if let Some(step_up) = step_up {
                q.append_pair("prompt", "login");
                if let Some(max_age) = step_up.max_age {
                    q.append_pair("max_age", &max_age.to_string());
                }
            }
            for (k, v) in &self.extra_authorize_params {
                q.append_pair(k, v);
            }
        }
        Ok(PendingAuthorization {
            url,
            state,
            nonce,
            verifier: Secret::new(verifier.secret().clone()),
            redirect_uri: redirect_uri.to_owned(),
        })
    }

    /// The RFC 9207 check the redirect needs.
    pub fn expected_redirect(&self, pending: &PendingAuthorization) -> ExpectedRedirect {
        ExpectedRedirect {
            state: pending.state.clone(),
            issuer: self
                .metadata
                .authorization_response_iss_parameter_supported
                .then(|| self.metadata.issuer.clone()),
            known_issuer: None,
        }
    }

    /// Redeems the code and validates the ID token against the sign-in's nonce.
    pub async fn finish(
        &self,
        http: &HttpExecutor,
        clock: &dyn Clock,
        pending: PendingAuthorization,
        code: &Secret,
    ) -> Result<IdpTokens, SignInError> {
        let request = token::authorization_code(
            &self.token_endpoint(),
            &self.client,
            &self.assertion_inputs(clock),
            code,
            &pending.redirect_uri,
            &pending.verifier,
        )?;
        let answer = http.execute(&request).await?;
        let offset = answer.clock_offset(clock.unix_now());
        let response = token::parse_token_response(&answer)?;
        self.tokens_from(http, response, clock, offset, Some(&pending.nonce))
            .await
    }

    /// [`IdpClient::refresh`], reading the IdP's metadata again when its token endpoint has gone
    /// (moved): the new client comes back when it differs, for the caller to keep.
    pub async fn refresh_rediscovering(
        &self,
        http: &HttpExecutor,
        clock: &dyn Clock,
        refresh_token: &Secret,
    ) -> (Option<Arc<IdpClient>>, Result<IdpTokens, SignInError>) {
        let result = self.refresh(http, clock, refresh_token).await;
        if !matches!(&result, Err(SignInError::Wire(w)) if w.is_endpoint_gone()) {
            return (None, result);
        }
        let fresh = match IdpClient::discover(
            http,
            self.issuer(),
            self.client.clone(),
            self.scopes.clone(),
            self.extra_authorize_params.clone(),
        )
        .await
        {
            Ok(fresh) if fresh.metadata.token_endpoint != self.metadata.token_endpoint => {
                fresh.with_saml(self.saml.clone())
            }
            _ => return (None, result),
        };
        tracing::info!("the identity provider's metadata changed; renewing against the new one");
        let result = fresh.refresh(http, clock, refresh_token).await;
        (Some(Arc::new(fresh)), result)
    }

    /// Refreshes the session. A rotated refresh token comes back in `refresh_token`.
    pub async fn refresh(
        &self,
        http: &HttpExecutor,
        clock: &dyn Clock,
        refresh_token: &Secret,
    ) -> Result<IdpTokens, SignInError> {
        let request = token::refresh(
            &self.token_endpoint(),
            &self.client,
            &self.assertion_inputs(clock),
            refresh_token,
            &[],
        )?;
        let answer = http.execute(&request).await?;
        let offset = answer.clock_offset(clock.unix_now());
        let response = token::parse_token_response(&answer)?;
        self.tokens_from(http, response, clock, offset, None).await
    }

    /// Best-effort RFC 7009 revocation of a refresh token.
    pub async fn revoke(
        &self,
        http: &HttpExecutor,
        clock: &dyn Clock,
        refresh_token: &Secret,
    ) -> Result<(), SignInError> {
        let Some(url) = self.metadata.revocation_endpoint.clone() else {
            return Err(SignInError::Unsupported("token revocation"));
        };
        let request = token::revoke(
            &url,
            &self.metadata.issuer,
            &self.client,
            &self.assertion_inputs(clock),
            refresh_token,
            "refresh_token",
        )?;
        token::parse_revocation_response(&http.execute(&request).await?)?;
        Ok(())
    }

    /// Fresh inputs for a client assertion at the IdP.
    pub fn assertion_inputs(&self, clock: &dyn Clock) -> AssertionInputs {
        AssertionInputs {
            audience: self.metadata.issuer.clone(),
            now: clock.unix_now(),
            jti: random_id(),
        }
    }

    /// Validates the ID token of `response`; an unknown key id fetches the IdP's keys once more.
    async fn tokens_from(
        &self,
        http: &HttpExecutor,
        response: TokenResponse,
        clock: &dyn Clock,
        idp_offset: Option<i64>,
        nonce: Option<&Nonce>,
    ) -> Result<IdpTokens, SignInError> {
        let id_token = response.id_token.ok_or(SignInError::NoIdToken)?;
        let info = match self.validate_id_token(&id_token, clock, idp_offset, nonce) {
            Err(SignInError::UnknownSigningKey) => {
                if !self.refetch_keys(http, clock.unix_now()).await? {
                    return Err(SignInError::UnknownSigningKey);
                }
                self.validate_id_token(&id_token, clock, idp_offset, nonce)?
            }
            other => other?,
        };
        Ok(IdpTokens {
            id_token: Some(id_token),
            info,
            refresh_token: response.refresh_token,
        })
    }

    /// Validates signature, issuer, audience, expiry and, on sign-in, the nonce.
    ///
    /// Expiry is checked against the IdP's own clock when its `Date` header gave it
    /// (`idp_offset`, seconds ahead of ours) within [`MAX_CLOCK_CORRECTION_SECS`], else against
    /// ours, with [`ID_TOKEN_LEEWAY_SECS`] either way. The times returned are on this computer's
    /// clock (the offset taken out), so an IdP whose clock is off neither shortens nor stretches
    /// the session as the engine schedules it.
    pub fn validate_id_token(
        &self,
        id_token: &Secret,
        clock: &dyn Clock,
        idp_offset: Option<i64>,
        nonce: Option<&Nonce>,
    ) -> Result<IdTokenInfo, SignInError> {
        let parsed: CoreIdToken = id_token
            .expose()
            .parse()
            .map_err(|_| SignInError::IdToken("not a signed JWT".into()))?;
        let issuer = IssuerUrl::new(self.metadata.issuer.clone())
            .map_err(|e| SignInError::IdToken(format!("issuer is not a URL: {e}")))?;
        let offset = idp_offset
            .filter(|o| o.abs() <= MAX_CLOCK_CORRECTION_SECS)
            .unwrap_or(0);
        let now = clock.unix_now() as i64;
        let idp_now = now + offset - ID_TOKEN_LEEWAY_SECS;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.client.client_id.clone()),
            issuer,
            self.current_keys(),
        )
        .set_time_fn(move || chrono::DateTime::from_timestamp(idp_now, 0).unwrap_or_default());
        let claims = match nonce {
            Some(nonce) => parsed.claims(&verifier, nonce),
            None => parsed.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        }
        .map_err(|e| match e {
            ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            ) => SignInError::UnknownSigningKey,
            ClaimsVerificationError::Expired(text) => match idp_offset {
                Some(o) if o.abs() > MAX_CLOCK_CORRECTION_SECS => SignInError::IdToken(format!(
                    "{text}; the identity provider's clock is {} min off this computer's \
                     (more than Lanyard corrects for): check this computer's date and time",
                    o / 60
                )),
                _ => SignInError::IdToken(text),
            },
            other => SignInError::IdToken(other.to_string()),
        })?;
        let local = |t: i64| (t - offset).max(0) as u64;
        Ok(IdTokenInfo {
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            issued_at: local(claims.issue_time().timestamp()),
            expires_at: local(claims.expiration().timestamp()),
            auth_time: claims.auth_time().map(|t| local(t.timestamp())),
        })
    }

    /// Device authorization (RFC 8628): returns what to show the user.
    pub async fn start_device_sign_in(
        &self,
        http: &HttpExecutor,
        clock: &dyn Clock,
    ) -> Result<token::DeviceAuthorization, SignInError> {
        let url = self
            .metadata
            .device_authorization_endpoint
            .clone()
            .ok_or(SignInError::Unsupported("device sign-in"))?;
        let request = token::device_authorization(
            &url,
            &self.metadata.issuer,
            &self.client,
            &self.assertion_inputs(clock),
            &self.scopes,
        )?;
        Ok(token::parse_device_authorization(
            &http.execute(&request).await?,
        )?)
    }

    /// Polls until the user completes (or refuses) device sign-in.
    pub async fn poll_device_sign_in(
        &self,
        http: &HttpExecutor,
        clock: &dyn Clock,
        device: &token::DeviceAuthorization,
    ) -> Result<IdpTokens, SignInError> {
        let mut interval = Duration::from_secs(device.interval.unwrap_or(5).clamp(1, 60));
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(device.expires_in.unwrap_or(600).min(1800));
        loop {
            tokio::time::sleep(interval).await;
            if tokio::time::Instant::now() > deadline {
                return Err(SignInError::TimedOut);
            }
            let request = token::device_code(
                &self.token_endpoint(),
                &self.client,
                &self.assertion_inputs(clock),
                &device.device_code,
            )?;
            let answer = http.execute(&request).await?;
            let offset = answer.clock_offset(clock.unix_now());
            match token::parse_token_response(&answer) {
                Ok(response) => return self.tokens_from(http, response, clock, offset, None).await,
                Err(WireError::OAuth(body)) if body.error == "authorization_pending" => {}
                Err(WireError::OAuth(body)) if body.error == "slow_down" => {
                    interval += Duration::from_secs(5)
                }
                Err(WireError::OAuth(body)) if body.error == "expired_token" => {
                    return Err(SignInError::TimedOut)
                }
                Err(WireError::OAuth(body)) if body.error == "access_denied" => {
                    return Err(SignInError::AuthorizationDenied {
                        error: body.error,
                        description: body.description,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The IdP's signing keys from its `jwks_uri`.
async fn fetch_keys(
    http: &HttpExecutor,
    metadata: &AuthorizationServerMetadata,
) -> Result<CoreJsonWebKeySet, SignInError> {
    let jwks_uri = metadata.jwks_uri.clone().ok_or_else(|| {
        WireError::Discovery(format!("the IdP {} publishes no jwks_uri", metadata.issuer))
    })?;
    let response = http.execute(&HttpRequest::get(jwks_uri)).await?;
    if response.status != 200 {
        return Err(token::parse_error(&response).into());
    }
    Ok(parse_keys(&response)?)
}

/// The IdP's key set from the body of its `jwks_uri`.
fn parse_keys(response: &HttpResponse) -> Result<CoreJsonWebKeySet, WireError> {
    serde_json::from_slice(&response.body).map_err(|e| WireError::Malformed {
        url: crate::oauth::http::redacted_url(&response.url),
        what: "key set",
        detail: capped_message(e),
    })
}

/// One sign-in through the browser, the way the identity provider speaks: SAML 2.0 where the
/// policy configures it, OpenID Connect otherwise. [`InteractiveSignIn::run`] does it.
pub struct InteractiveSignIn<'a> {
    pub idp: &'a IdpClient,
    pub http: &'a HttpExecutor,
    pub clock: &'a dyn Clock,
    pub browser: &'a dyn Browser,
    /// Set when a server asked for a stronger sign-in than the session has.
    pub step_up: Option<StepUp>,
    /// How long the employee has to finish in the browser.
    pub timeout: Duration,
}

impl InteractiveSignIn<'_> {
    /// Opens the browser, waits for the IdP's answer on the loopback listener, and turns it
    /// into the session's tokens.
    pub async fn run(self) -> Result<IdpTokens, SignInError> {
        if self.idp.saml.is_some() {
            self.with_saml().await
        } else {
            self.with_openid_connect().await
        }
    }

    /// OpenID Connect: listen, open, wait, redeem, validate.
    async fn with_openid_connect(self) -> Result<IdpTokens, SignInError> {
        let mut listener = LoopbackListener::bind().await?;
        let pending = self.idp.begin(listener.redirect_uri(), self.step_up)?;
        let expected = self.idp.expected_redirect(&pending);
        let opened = if self.browser.open_via_loopback() {
            listener.start_page(&pending.url)?
        } else {
            pending.url.clone()
        };
        self.browser.open(&opened).map_err(SignInError::Browser)?;
        let code = listener.wait_for_code(&expected, self.timeout).await?;
        self.idp.finish(self.http, self.clock, pending, &code).await
    }

    /// Signs in through the browser with SAML 2.0: listen, send an `AuthnRequest` (HTTP-Redirect),
    /// wait for the IdP's `Response` posted to the loopback (HTTP-POST), take out its assertion, and
    /// exchange that at the IdP's token endpoint for an IdP refresh token (RFC 8693,
    /// `subject_token_type` saml2, `requested_token_type` refresh_token, the policy's scopes —
    /// `openid offline_access` as the draft asks).
    ///
    /// The session this returns has no ID token: who signed in is read from the assertion for display
    /// (unverified here; the IdP verified it at the exchange), and it lasts the refresh token's
    /// `expires_in` (or [`SAML_SESSION_DEFAULT_SECS`]). Renewing it afterwards is the ordinary
    /// refresh-token grant ([`IdpClient::refresh`]); the refresh token stays the ID-JAG subject.
    async fn with_saml(self) -> Result<IdpTokens, SignInError> {
        let Self {
            idp,
            http,
            clock,
            browser,
            step_up,
            timeout,
        } = self;
        let settings = idp
            .saml
            .as_ref()
            .ok_or(SignInError::Unsupported("SAML sign-in"))?;
        let mut listener = LoopbackListener::bind().await?;
        let request_id = saml::new_request_id();
        let relay_state = random_id();
        let now = clock.unix_now();
        let instant = chrono::DateTime::from_timestamp(now as i64, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let acs_url = listener.redirect_uri().to_owned();
        let url = saml::authn_request_url(
            settings,
            &request_id,
            &instant,
            &acs_url,
            &relay_state,
            step_up.is_some(),
        );
        let opened = if browser.open_via_loopback() {
            listener.start_page(&url)?
        } else {
            url
        };
        browser.open(&opened).map_err(SignInError::Browser)?;
        let posted = listener
            .wait_for_saml_response(&relay_state, timeout)
            .await?;
        let assertion = saml::read_response(
            posted.expose(),
            &saml::ExpectedResponse {
                request_id: &request_id,
                acs_url: &acs_url,
                now: clock.unix_now(),
            },
        )?;
        let request = token::token_exchange_for_refresh_token(
            &idp.token_endpoint(),
            &idp.client,
            &idp.assertion_inputs(clock),
            &assertion.xml,
            &idp.scopes,
        )?;
        let response =
            token::parse_refresh_token_exchange_response(&http.execute(&request).await?)?;
        let now = clock.unix_now();
        Ok(IdpTokens {
            id_token: None,
            info: IdTokenInfo {
                subject: assertion.subject,
                email: assertion.email,
                issued_at: now,
                expires_at: now.saturating_add(token::clamp_lifetime(
                    response.expires_in.unwrap_or(SAML_SESSION_DEFAULT_SECS),
                )),
                auth_time: Some(now),
            },
            refresh_token: response.refresh_token,
        })
    }
}

/// The session's lifetime assumed when the IdP's answer to the SAML exchange omits `expires_in`:
/// the session is renewed (refresh-token grant) after about this long.
pub const SAML_SESSION_DEFAULT_SECS: u64 = 3600;

/// A random URL-safe identifier (state, jti).
pub fn random_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
