//! The IdP session: OpenID Connect sign-in from a native app, ID-token validation, refresh with
//! rotation, step-up and device-code sign-in.
//!
//! Interactive sign-in is authorization code + PKCE (S256) through the system browser and a
//! loopback redirect ([`loopback`]); the ID token is validated with `openidconnect` against the
//! IdP's JWKS, with time taken from the caller's [`Clock`]. This module does not store anything and
//! does not decide *when* to refresh: the engine does.

pub mod browser;
pub mod loopback;

use std::collections::BTreeMap;
use std::time::Duration;

use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
use openidconnect::{ClientId, IssuerUrl, Nonce, PkceCodeChallenge};
use url::Url;

pub use browser::{Browser, SystemBrowser};
pub use loopback::{ExpectedRedirect, LoopbackListener};

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
    #[error("the identity provider sent no ID token")]
    NoIdToken,
    #[error("the identity provider does not offer {0}")]
    Unsupported(&'static str),
}

impl SignInError {
    /// Worth retrying by itself later (network, 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, SignInError::Wire(w) if w.is_transient())
    }
}

/// The IdP as Lanyard talks to it: metadata, keys and our registration there.
#[derive(Debug, Clone)]
pub struct IdpClient {
    pub metadata: AuthorizationServerMetadata,
    pub client: Client,
    pub scopes: Vec<String>,
    pub extra_authorize_params: BTreeMap<String, String>,
    jwks: CoreJsonWebKeySet,
}

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
    pub id_token: Secret,
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
        let jwks_uri = metadata.jwks_uri.clone().ok_or_else(|| {
            WireError::Discovery(format!("the IdP {issuer} publishes no jwks_uri"))
        })?;
        let response = http.execute(&HttpRequest::get(jwks_uri)).await?;
        if response.status != 200 {
            return Err(token::parse_error(&response).into());
        }
        Ok(Self::from_parts(
            metadata,
            client,
            scopes,
            extra_authorize_params,
            &response,
        )?)
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
        let key_set: CoreJsonWebKeySet =
            serde_json::from_slice(&jwks.body).map_err(|e| WireError::Malformed {
                url: crate::oauth::http::redacted_url(&jwks.url),
                what: "key set",
                detail: capped_message(e),
            })?;
        Ok(Self {
            metadata,
            client,
            scopes,
            extra_authorize_params,
            jwks: key_set,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.metadata.issuer
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
        let response = token::parse_token_response(&http.execute(&request).await?)?;
        self.tokens_from(response, clock, Some(&pending.nonce))
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
        let response = token::parse_token_response(&http.execute(&request).await?)?;
        self.tokens_from(response, clock, None)
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

    fn tokens_from(
        &self,
        response: TokenResponse,
        clock: &dyn Clock,
        nonce: Option<&Nonce>,
    ) -> Result<IdpTokens, SignInError> {
        let id_token = response.id_token.ok_or(SignInError::NoIdToken)?;
        let info = self.validate_id_token(&id_token, clock, nonce)?;
        Ok(IdpTokens {
            id_token,
            info,
            refresh_token: response.refresh_token,
        })
    }

    /// Validates signature, issuer, audience, expiry (against `clock`) and, on sign-in, the nonce.
    pub fn validate_id_token(
        &self,
        id_token: &Secret,
        clock: &dyn Clock,
        nonce: Option<&Nonce>,
    ) -> Result<IdTokenInfo, SignInError> {
        let parsed: CoreIdToken = id_token
            .expose()
            .parse()
            .map_err(|_| SignInError::IdToken("not a signed JWT".into()))?;
        let issuer = IssuerUrl::new(self.metadata.issuer.clone())
            .map_err(|e| SignInError::IdToken(format!("issuer is not a URL: {e}")))?;
        let now = clock.unix_now() as i64;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.client.client_id.clone()),
            issuer,
            self.jwks.clone(),
        )
        .set_time_fn(move || chrono::DateTime::from_timestamp(now, 0).unwrap_or_default());
        let claims = match nonce {
            Some(nonce) => parsed.claims(&verifier, nonce),
            None => parsed.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        }
        .map_err(|e| SignInError::IdToken(e.to_string()))?;
        Ok(IdTokenInfo {
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            issued_at: claims.issue_time().timestamp().max(0) as u64,
            expires_at: claims.expiration().timestamp().max(0) as u64,
            auth_time: claims.auth_time().map(|t| t.timestamp().max(0) as u64),
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
            match token::parse_token_response(&http.execute(&request).await?) {
                Ok(response) => return self.tokens_from(response, clock, None),
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

/// Signs in through the browser: listen, open, wait, redeem, validate.
pub async fn sign_in_with_browser(
    idp: &IdpClient,
    http: &HttpExecutor,
    clock: &dyn Clock,
    browser: &dyn Browser,
    step_up: Option<StepUp>,
    timeout: Duration,
) -> Result<IdpTokens, SignInError> {
    let listener = LoopbackListener::bind().await?;
    let pending = idp.begin(listener.redirect_uri(), step_up)?;
    let expected = idp.expected_redirect(&pending);
    browser.open(&pending.url).map_err(SignInError::Browser)?;
    let code = listener.wait_for_code(&expected, timeout).await?;
    idp.finish(http, clock, pending, &code).await
}

/// A random URL-safe identifier (state, jti).
pub fn random_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
