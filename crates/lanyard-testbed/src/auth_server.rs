//! A fake MCP authorization server: RFC 8414 / OIDC metadata, JWKS, and a token endpoint that
//! accepts the RFC 7523 JWT bearer grant with an ID-JAG (validated fully, including `jti` replay)
//! and the client credentials grant, both minting RS256 JWT access tokens for its MCP servers. It
//! trusts one IdP, whose JWKS it fetches over HTTP and caches; it never talks to MCP servers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{json, Value};

use crate::client_auth::ClientVerifier;
use crate::clock::TestClock;
use crate::config::{AsConfig, ClientAuth, MetadataStyle, RegisteredClient};
use crate::faults::{Endpoint, Faults};
use crate::idp::RevocationRecord;
use crate::keys::{audience_is_exactly, verify_signature, SigningKey};
use crate::oauth::{
    parse_form, random_token, scopes, token_response, OAuthError, GRANT_JWT_BEARER,
    GRANT_PROFILE_ID_JAG, JWT_TYPE_ID_JAG,
};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another handler panicked mid-update; the fake keeps serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default, Debug)]
pub(crate) struct AsCounters {
    jwt_bearer_mints: AtomicU64,
    dpop_bound_mints: AtomicU64,
    workload_mints: AtomicU64,
    refresh_mints: AtomicU64,
    client_credentials_mints: AtomicU64,
    rejected_grants: AtomicU64,
    rejected_replays: AtomicU64,
    jwks_fetches: AtomicU64,
    pub(crate) code_mints: AtomicU64,
    pub(crate) registrations: AtomicU64,
    revocations: Mutex<Vec<RevocationRecord>>,
    /// Secrets that crossed the token endpoint: ID-JAGs, client assertions, client secrets
    /// (form or Basic) and the access tokens issued. What a leak test looks for.
    wire_secrets: Mutex<Vec<String>>,
}

impl AsCounters {
    fn record_wire(
        &self,
        headers: &HeaderMap,
        form: &HashMap<String, String>,
        issued: Option<&Value>,
    ) {
        let mut seen: Vec<String> = [
            "assertion",
            "client_assertion",
            "client_secret",
            "refresh_token",
        ]
        .iter()
        .filter_map(|k| form.get(*k).cloned())
        .collect();
        seen.extend(
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .map(str::to_owned),
        );
        for field in ["access_token", "refresh_token"] {
            seen.extend(
                issued
                    .and_then(|b| b.get(field))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
        }
        let mut wire = lock(&self.wire_secrets);
        for value in seen.into_iter().filter(|v| !v.is_empty()) {
            if !wire.contains(&value) {
                wire.push(value);
            }
        }
    }
}

/// A snapshot of an authorization server's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AsStats {
    /// Access tokens minted from ID-JAGs.
    pub jwt_bearer_mints: u64,
    /// Access tokens bound to a DPoP key (any grant).
    pub dpop_bound_mints: u64,
    /// DPoP proofs refused at the token endpoint because their `jti` was used before.
    pub dpop_replays: u64,
    /// Access tokens minted from workload tokens (see [`AsConfig::trusted_workload`]).
    pub workload_mints: u64,
    /// Access tokens minted from refresh tokens (see [`AsConfig::refresh_token_lifetime`]).
    pub refresh_mints: u64,
    /// Access tokens minted by client credentials.
    pub client_credentials_mints: u64,
    /// Token requests refused (any reason, including replays).
    pub rejected_grants: u64,
    /// ID-JAGs refused because their `jti` was already used.
    pub rejected_replays: u64,
    /// Times the IdP's JWKS was fetched.
    pub jwks_fetches: u64,
    /// Revocation requests received.
    pub revocations: Vec<RevocationRecord>,
    /// Access tokens minted from authorization codes (the standard MCP authorization).
    pub code_mints: u64,
    /// Clients registered dynamically (RFC 7591).
    pub registrations: u64,
}

pub(crate) struct AsState {
    pub config: AsConfig,
    pub issuer: String,
    pub base_url: String,
    pub base_path: String,
    pub key: Arc<SigningKey>,
    pub clock: TestClock,
    pub trusted_issuer: String,
    pub trusted_jwks_uri: String,
    pub resources: Vec<String>,
    pub http: reqwest::Client,
    pub idp_keys: Mutex<HashMap<String, DecodingKey>>,
    pub used_jtis: Mutex<HashSet<String>>,
    pub client_jtis: Mutex<HashSet<String>>,
    pub assertion_audiences: Vec<String>,
    pub wrong_issuer: AtomicBool,
    /// The token endpoint has moved to `{base}/v2/token`; the old path answers 404.
    pub token_moved: AtomicBool,
    pub counters: AsCounters,
    /// Refresh tokens issued and not yet used: what each may mint again.
    pub refresh_tokens: Mutex<HashMap<String, RefreshGrant>>,
    /// Checks DPoP proofs at the token endpoint, when this server binds tokens.
    pub proofs: Option<crate::dpop::ProofChecker>,
    /// Authorization codes not yet redeemed (the code flow).
    pub(crate) codes: Mutex<HashMap<String, crate::code_flow::CodeGrant>>,
    /// Clients registered dynamically.
    pub(crate) registered: Mutex<Vec<RegisteredClient>>,
    /// How the authorization endpoint misbehaves now (a test's switch).
    pub(crate) redirect_fault: Mutex<Option<crate::code_flow::RedirectFault>>,
    /// Resources accepted on top of its own MCP servers' (a server that moved here).
    pub(crate) extra_resources: Mutex<Vec<String>>,
}

/// What a refresh token stands for.
#[derive(Clone, Debug)]
pub(crate) struct RefreshGrant {
    pub(crate) sub: String,
    pub(crate) client_id: String,
    pub(crate) resource: Option<String>,
    pub(crate) scope: Vec<String>,
    pub(crate) email: Option<String>,
    pub(crate) expires_at: u64,
    /// The DPoP key the tokens of this grant are bound to; a refresh must prove it again.
    pub(crate) jkt: Option<String>,
}

impl AsState {
    pub(crate) fn new(
        config: AsConfig,
        origin: &str,
        key: Arc<SigningKey>,
        clock: TestClock,
        trusted: (String, String),
        resources: Vec<String>,
        http: reqwest::Client,
    ) -> Self {
        let issuer = config.issuer_path.issuer(origin);
        let base_path = config.issuer_path.path.clone();
        let base_url = format!("{origin}{base_path}");
        Self {
            assertion_audiences: vec![issuer.clone(), format!("{base_url}/token")],
            wrong_issuer: AtomicBool::new(config.wrong_issuer_in_metadata),
            token_moved: AtomicBool::new(false),
            issuer,
            base_url,
            base_path,
            key,
            clock,
            trusted_issuer: trusted.0,
            trusted_jwks_uri: trusted.1,
            resources,
            http,
            idp_keys: Mutex::new(HashMap::new()),
            used_jtis: Mutex::new(HashSet::new()),
            client_jtis: Mutex::new(HashSet::new()),
            counters: AsCounters::default(),
            refresh_tokens: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            registered: Mutex::new(Vec::new()),
            redirect_fault: Mutex::new(None),
            extra_resources: Mutex::new(Vec::new()),
            proofs: config
                .dpop
                .map(|d| crate::dpop::ProofChecker::new(d.require_nonce)),
            config,
        }
    }

    fn token_endpoint(&self) -> String {
        if self.token_moved.load(Ordering::SeqCst) {
            format!("{}/v2/token", self.base_url)
        } else {
            format!("{}/token", self.base_url)
        }
    }

    /// The configured clients and the ones registered dynamically.
    pub(crate) fn all_clients(&self) -> Vec<RegisteredClient> {
        let mut clients = self.config.clients.clone();
        clients.extend(lock(&self.registered).iter().cloned());
        clients
    }

    fn verifier<'a>(&'a self, clients: &'a [RegisteredClient]) -> ClientVerifier<'a> {
        ClientVerifier {
            clients,
            audiences: &self.assertion_audiences,
            clock: &self.clock,
            seen_jtis: &self.client_jtis,
        }
    }

    fn metadata(&self) -> Value {
        let b = &self.base_url;
        let issuer = if self.wrong_issuer.load(Ordering::SeqCst) {
            let origin = b.strip_suffix(&self.base_path).unwrap_or(b);
            format!("{origin}/impostor{}", self.base_path)
        } else {
            self.issuer.clone()
        };
        let mut auth_methods: Vec<&str> = self
            .config
            .clients
            .iter()
            .map(|c| c.auth.method_name())
            .collect();
        auth_methods.sort_unstable();
        auth_methods.dedup();
        let mut metadata = json!({
            "issuer": issuer,
            "token_endpoint": self.token_endpoint(),
            "jwks_uri": format!("{b}/jwks"),
            "revocation_endpoint": format!("{b}/revoke"),
            "grant_types_supported": if self.config.refresh_token_lifetime.is_some() {
                json!([GRANT_JWT_BEARER, "client_credentials", "refresh_token"])
            } else {
                json!([GRANT_JWT_BEARER, "client_credentials"])
            },
            "authorization_grant_profiles_supported": [GRANT_PROFILE_ID_JAG],
            "token_endpoint_auth_methods_supported": auth_methods,
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
            "scopes_supported": self.config.allowed_scopes,
            "response_types_supported": [],
        });
        if self.proofs.is_some() {
            metadata["dpop_signing_alg_values_supported"] = json!(["ES256", "RS256"]);
        }
        if let Some(flow) = &self.config.code_flow {
            metadata["authorization_endpoint"] = json!(format!("{b}/authorize"));
            metadata["response_types_supported"] = json!(["code"]);
            metadata["code_challenge_methods_supported"] = json!(["S256"]);
            metadata["authorization_response_iss_parameter_supported"] = json!(flow.iss_parameter);
            if flow.dynamic_registration {
                metadata["registration_endpoint"] = json!(format!("{b}/register"));
            }
            if let Some(grants) = metadata["grant_types_supported"].as_array_mut() {
                grants.push(json!("authorization_code"));
            }
            if self.config.refresh_token_lifetime.is_some() {
                let mut scopes = self.config.allowed_scopes.clone();
                scopes.push("offline_access".into());
                metadata["scopes_supported"] = json!(scopes);
            }
        }
        metadata
    }

    /// The IdP's key for `kid`, fetching (and caching) its JWKS when unknown.
    async fn idp_key(&self, kid: Option<&str>) -> Result<DecodingKey, OAuthError> {
        let pick = |keys: &HashMap<String, DecodingKey>| match kid {
            Some(k) => keys.get(k).cloned(),
            None if keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        };
        if let Some(key) = pick(&lock(&self.idp_keys)) {
            return Ok(key);
        }
        self.counters.jwks_fetches.fetch_add(1, Ordering::SeqCst);
        let jwks: Value = self
            .http
            .get(&self.trusted_jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| OAuthError::server_error(format!("IdP JWKS unreachable: {e}")))?
            .json()
            .await
            .map_err(|e| OAuthError::server_error(format!("IdP JWKS unreadable: {e}")))?;
        let mut keys = lock(&self.idp_keys);
        for jwk in jwks["keys"].as_array().into_iter().flatten() {
            let (Some(kid), Some(n), Some(e)) =
                (jwk["kid"].as_str(), jwk["n"].as_str(), jwk["e"].as_str())
            else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_rsa_components(n, e) {
                keys.insert(kid.to_string(), key);
            }
        }
        pick(&keys).ok_or_else(|| OAuthError::invalid_grant("ID-JAG signed by an unknown key"))
    }

    /// The resource a token is for: the request's, the grant's, or this AS's only resource.
    pub(crate) fn resource(
        &self,
        requested: Option<&String>,
        granted: Option<&str>,
    ) -> Result<Option<String>, OAuthError> {
        if let (Some(r), Some(g)) = (requested, granted) {
            if r != g {
                return Err(OAuthError::new(
                    "invalid_target",
                    format!("resource {r} differs from the ID-JAG's resource {g}"),
                ));
            }
        }
        let resource = requested
            .map(String::as_str)
            .or(granted)
            .map(str::to_string)
            .or_else(|| self.resources.first().cloned());
        if let Some(r) = &resource {
            if !self.resources.iter().any(|known| known == r)
                && !lock(&self.extra_resources).iter().any(|known| known == r)
            {
                return Err(OAuthError::new(
                    "invalid_target",
                    format!("{r} is not a resource of this authorization server"),
                ));
            }
        }
        Ok(resource)
    }

    /// Scopes to grant: requested (or the ID-JAG's), limited by the ID-JAG and the allowed list.
    fn grant_scopes(
        &self,
        requested: Option<&String>,
        jag_scope: Option<&str>,
    ) -> Result<Vec<String>, OAuthError> {
        let jag: Option<Vec<String>> =
            jag_scope.map(|s| s.split_whitespace().map(str::to_string).collect());
        let requested = match requested {
            Some(_) => scopes(requested),
            None => jag.clone().unwrap_or_default(),
        };
        let granted: Vec<String> = requested
            .iter()
            .filter(|s| jag.as_ref().is_none_or(|j| j.contains(s)))
            .filter(|s| {
                self.config.allowed_scopes.is_empty() || self.config.allowed_scopes.contains(s)
            })
            .cloned()
            .collect();
        if granted.is_empty() && !requested.is_empty() {
            return Err(OAuthError::new(
                "invalid_scope",
                format!("none of the requested scopes {requested:?} can be granted"),
            ));
        }
        Ok(granted)
    }

    pub(crate) fn mint(
        &self,
        sub: &str,
        client_id: &str,
        resource: Option<String>,
        scope: &[String],
        email: Option<&str>,
        jkt: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let now = self.clock.unix();
        let lifetime = self.config.access_token_lifetime.as_secs();
        let scope = scope.join(" ");
        let mut claims = json!({
            "iss": self.issuer,
            "sub": sub,
            "client_id": client_id,
            "scope": scope,
            "iat": now,
            "exp": now + lifetime,
            "jti": random_token(16),
        });
        if let Some(r) = resource {
            claims["aud"] = json!(r);
        }
        if let Some(e) = email {
            claims["email"] = json!(e);
        }
        if let Some(jkt) = jkt {
            claims["cnf"] = json!({ "jkt": jkt });
            self.counters
                .dpop_bound_mints
                .fetch_add(1, Ordering::SeqCst);
        }
        let token = self
            .key
            .sign("at+jwt", &claims)
            .map_err(|e| OAuthError::server_error(format!("signing failed: {e}")))?;
        Ok(json!({
            "access_token": token,
            "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" },
            "expires_in": lifetime,
            "scope": scope,
        }))
    }

    async fn jwt_bearer(
        &self,
        client: &RegisteredClient,
        form: &HashMap<String, String>,
        jkt: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let assertion = form
            .get("assertion")
            .ok_or_else(|| OAuthError::invalid_request("assertion is required"))?;
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|e| OAuthError::invalid_grant(format!("assertion is not a JWT: {e}")))?;
        if header.typ.as_deref() != Some(JWT_TYPE_ID_JAG) {
            if let Some(workload) = &self.config.trusted_workload {
                return self.workload_grant(workload, client, assertion, form, jkt);
            }
            return Err(OAuthError::invalid_grant(format!(
                "assertion typ must be {JWT_TYPE_ID_JAG}, got {:?}",
                header.typ
            )));
        }
        let key = self.idp_key(header.kid.as_deref()).await?;
        let claims = verify_signature(assertion, &key, &[Algorithm::RS256])
            .map_err(|e| OAuthError::invalid_grant(format!("ID-JAG signature invalid: {e}")))?;
        let claim = |name: &str| claims.get(name).and_then(Value::as_str);
        if claim("iss") != Some(self.trusted_issuer.as_str()) {
            return Err(OAuthError::invalid_grant(format!(
                "ID-JAG issuer {:?} is not trusted (expected {})",
                claim("iss"),
                self.trusted_issuer
            )));
        }
        if !audience_is_exactly(claims.get("aud"), &self.issuer) {
            return Err(OAuthError::invalid_grant(format!(
                "ID-JAG audience {} is not this issuer {}",
                claims.get("aud").unwrap_or(&Value::Null),
                self.issuer
            )));
        }
        if claim("client_id") != Some(client.client_id.as_str()) {
            return Err(OAuthError::invalid_grant(format!(
                "ID-JAG client_id {:?} is not the authenticated client {}",
                claim("client_id"),
                client.client_id
            )));
        }
        let now = self.clock.unix();
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        if exp <= now {
            return Err(OAuthError::invalid_grant("ID-JAG expired"));
        }
        let iat = claims.get("iat").and_then(Value::as_u64).unwrap_or(0);
        if iat > now + 60 {
            return Err(OAuthError::invalid_grant("ID-JAG issued in the future"));
        }
        let sub = claim("sub")
            .ok_or_else(|| OAuthError::invalid_grant("ID-JAG has no sub"))?
            .to_string();
        let resource = self.resource(form.get("resource"), claim("resource"))?;
        let granted = self.grant_scopes(form.get("scope"), claim("scope"))?;
        // An ID-JAG the IdP bound to a key is redeemed only by a proof of that key.
        let bound_to = claims
            .get("cnf")
            .and_then(|c| c.get("jkt"))
            .and_then(Value::as_str);
        if let Some(bound_to) = bound_to {
            if jkt != Some(bound_to) {
                return Err(OAuthError::invalid_grant(if jkt.is_none() {
                    "the ID-JAG is bound to a key (cnf.jkt): a DPoP proof of that key is required"
                } else {
                    "the ID-JAG is bound to another key than this DPoP proof's"
                }));
            }
        }
        let jti = claim("jti").ok_or_else(|| OAuthError::invalid_grant("ID-JAG has no jti"))?;
        if !lock(&self.used_jtis).insert(jti.to_string()) {
            self.counters
                .rejected_replays
                .fetch_add(1, Ordering::SeqCst);
            return Err(OAuthError::invalid_grant("jti already used"));
        }
        let mut body = self.mint(
            &sub,
            &client.client_id,
            resource.clone(),
            &granted,
            claim("email"),
            jkt,
        )?;
        self.issue_refresh_token(
            &mut body,
            RefreshGrant {
                sub,
                client_id: client.client_id.clone(),
                resource,
                scope: granted,
                email: claim("email").map(str::to_owned),
                expires_at: 0,
                jkt: jkt.map(str::to_owned),
            },
        );
        self.counters
            .jwt_bearer_mints
            .fetch_add(1, Ordering::SeqCst);
        Ok(body)
    }

    /// A workload's platform JWT as the jwt-bearer assertion (SEP-1933): signed by the trusted
    /// workload issuer, for this issuer as audience, unexpired, its `jti` once. The token's
    /// subject is the workload.
    fn workload_grant(
        &self,
        workload: &crate::config::TrustedWorkload,
        client: &RegisteredClient,
        assertion: &str,
        form: &HashMap<String, String>,
        jkt: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let (key, algorithms) = crate::client_auth::public_key(&workload.public_key_pem)?;
        let claims = verify_signature(assertion, &key, &algorithms).map_err(|e| {
            OAuthError::invalid_grant(format!("workload token signature invalid: {e}"))
        })?;
        let claim = |name: &str| claims.get(name).and_then(Value::as_str);
        if claim("iss") != Some(workload.issuer.as_str()) {
            return Err(OAuthError::invalid_grant(format!(
                "workload token issuer {:?} is not trusted",
                claim("iss")
            )));
        }
        if !audience_is_exactly(claims.get("aud"), &self.issuer) {
            return Err(OAuthError::invalid_grant(format!(
                "workload token audience {} is not this issuer {}",
                claims.get("aud").unwrap_or(&Value::Null),
                self.issuer
            )));
        }
        if claims.get("exp").and_then(Value::as_u64).unwrap_or(0) <= self.clock.unix() {
            return Err(OAuthError::invalid_grant("workload token expired"));
        }
        if let Some(jti) = claim("jti") {
            if !lock(&self.used_jtis).insert(jti.to_string()) {
                self.counters
                    .rejected_replays
                    .fetch_add(1, Ordering::SeqCst);
                return Err(OAuthError::invalid_grant("jti already used"));
            }
        }
        let sub = claim("sub")
            .ok_or_else(|| OAuthError::invalid_grant("workload token has no sub"))?
            .to_string();
        let resource = self.resource(form.get("resource"), None)?;
        let granted = self.grant_scopes(form.get("scope"), None)?;
        let body = self.mint(&sub, &client.client_id, resource, &granted, None, jkt)?;
        self.counters.workload_mints.fetch_add(1, Ordering::SeqCst);
        Ok(body)
    }

    /// Adds a refresh token to `body` when this server issues them.
    pub(crate) fn issue_refresh_token(&self, body: &mut Value, mut grant: RefreshGrant) {
        let Some(lifetime) = self.config.refresh_token_lifetime else {
            return;
        };
        grant.expires_at = self.clock.unix() + lifetime.as_secs();
        let token = random_token(24);
        body["refresh_token"] = json!(token);
        lock(&self.refresh_tokens).insert(token, grant);
    }

    /// A refresh token → a new access token and a new refresh token (the old one is spent).
    fn refresh(
        &self,
        client: &RegisteredClient,
        form: &HashMap<String, String>,
        jkt: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let presented = form
            .get("refresh_token")
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
        let grant = lock(&self.refresh_tokens)
            .remove(presented)
            .ok_or_else(|| OAuthError::invalid_grant("unknown or used refresh token"))?;
        if grant.client_id != client.client_id {
            return Err(OAuthError::invalid_grant(
                "the refresh token belongs to another client",
            ));
        }
        if grant.expires_at <= self.clock.unix() {
            return Err(OAuthError::invalid_grant("refresh token expired"));
        }
        if grant.jkt.is_some() && grant.jkt.as_deref() != jkt {
            return Err(OAuthError::invalid_grant(
                "the refresh token is bound to a DPoP key this request does not prove",
            ));
        }
        let mut body = self.mint(
            &grant.sub,
            &client.client_id,
            grant.resource.clone(),
            &grant.scope,
            grant.email.as_deref(),
            jkt,
        )?;
        self.issue_refresh_token(&mut body, grant);
        self.counters.refresh_mints.fetch_add(1, Ordering::SeqCst);
        Ok(body)
    }

    fn client_credentials(
        &self,
        client: &RegisteredClient,
        form: &HashMap<String, String>,
        jkt: Option<&str>,
    ) -> Result<Value, OAuthError> {
        if client.auth == ClientAuth::None {
            return Err(OAuthError::new(
                "unauthorized_client",
                "public clients cannot use client_credentials",
            ));
        }
        let resource = self.resource(form.get("resource"), None)?;
        let granted = self.grant_scopes(form.get("scope"), None)?;
        let body = self.mint(
            &client.client_id,
            &client.client_id,
            resource,
            &granted,
            None,
            jkt,
        )?;
        self.counters
            .client_credentials_mints
            .fetch_add(1, Ordering::SeqCst);
        Ok(body)
    }
}

/// The AS's routes and the endpoint each path belongs to.
pub(crate) fn router(state: Arc<AsState>) -> (Router, HashMap<String, Endpoint>) {
    let bp = state.base_path.clone();
    let slash = state.config.issuer_path.trailing_slash && !bp.is_empty();
    let mut metadata_paths = Vec::new();
    let style = state.config.metadata_style;
    if matches!(style, MetadataStyle::Rfc8414 | MetadataStyle::Both) {
        metadata_paths.push(format!("/.well-known/oauth-authorization-server{bp}"));
        if slash {
            metadata_paths.push(format!("/.well-known/oauth-authorization-server{bp}/"));
        }
    }
    if matches!(style, MetadataStyle::OidcOnly | MetadataStyle::Both) {
        metadata_paths.push(format!("/.well-known/openid-configuration{bp}"));
        metadata_paths.push(format!("{bp}/.well-known/openid-configuration"));
        if slash {
            metadata_paths.push(format!("/.well-known/openid-configuration{bp}/"));
        }
    }
    metadata_paths.sort();
    metadata_paths.dedup();
    let mut routes = HashMap::new();
    let mut router = Router::new();
    for path in metadata_paths {
        router = router.route(&path, get(metadata));
        routes.insert(path, Endpoint::Metadata);
    }
    routes.insert(format!("{bp}/jwks"), Endpoint::Jwks);
    routes.insert(format!("{bp}/token"), Endpoint::Token);
    routes.insert(format!("{bp}/v2/token"), Endpoint::Token);
    routes.insert(format!("{bp}/revoke"), Endpoint::Revoke);
    routes.insert(format!("{bp}/authorize"), Endpoint::Authorize);
    let router = router
        .route(&format!("{bp}/authorize"), get(crate::code_flow::authorize))
        .route(&format!("{bp}/register"), post(crate::code_flow::register))
        .route(&format!("{bp}/jwks"), get(jwks))
        .route(&format!("{bp}/token"), post(old_token))
        .route(&format!("{bp}/v2/token"), post(moved_token))
        .route(&format!("{bp}/revoke"), post(revoke))
        .with_state(state);
    (router, routes)
}

async fn metadata(State(state): State<Arc<AsState>>) -> Json<Value> {
    Json(state.metadata())
}

async fn jwks(State(state): State<Arc<AsState>>) -> Json<Value> {
    Json(state.key.jwks())
}

/// The token endpoint at its first path: 404 once it has moved.
async fn old_token(state: State<Arc<AsState>>, headers: HeaderMap, body: Bytes) -> Response {
    if state.token_moved.load(Ordering::SeqCst) {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    token(state, headers, body).await
}

/// The token endpoint at its new path: 404 until it has moved.
async fn moved_token(state: State<Arc<AsState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !state.token_moved.load(Ordering::SeqCst) {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    token(state, headers, body).await
}

async fn token(State(state): State<Arc<AsState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    // A proof is read only where this server binds tokens; elsewhere the header is ignored, as
    // a server that does not know DPoP would.
    let jkt = match &state.proofs {
        Some(proofs) => {
            match crate::dpop::at_token_endpoint(
                proofs,
                &headers,
                &state.token_endpoint(),
                &state.clock,
            ) {
                Ok(jkt) => jkt,
                Err(refusal) => {
                    state
                        .counters
                        .rejected_grants
                        .fetch_add(1, Ordering::SeqCst);
                    return *refusal;
                }
            }
        }
        None => None,
    };
    let jkt = jkt.as_deref();
    let clients = state.all_clients();
    let result = match state.verifier(&clients).authenticate(&headers, &form) {
        Err(e) => Err(e),
        Ok(client) => match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => state.authorization_code(&client, &form, jkt),
            Some(GRANT_JWT_BEARER) => state.jwt_bearer(&client, &form, jkt).await,
            Some("client_credentials") => state.client_credentials(&client, &form, jkt),
            Some("refresh_token") if state.config.refresh_token_lifetime.is_some() => {
                state.refresh(&client, &form, jkt)
            }
            Some(other) => Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant_type {other} is not supported"),
            )),
            None => Err(OAuthError::invalid_request("grant_type is required")),
        },
    };
    state
        .counters
        .record_wire(&headers, &form, result.as_ref().ok());
    match result {
        Ok(body) => token_response(body),
        Err(e) => {
            state
                .counters
                .rejected_grants
                .fetch_add(1, Ordering::SeqCst);
            e.into_response()
        }
    }
}

async fn revoke(State(state): State<Arc<AsState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    let clients = state.all_clients();
    let client = match state.verifier(&clients).authenticate(&headers, &form) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    // RFC 7009: a refresh token of this client is dead from now on; anything else (an access
    // token, a token of another client, nonsense) is answered 200 all the same.
    let revoked = {
        let mut refresh_tokens = lock(&state.refresh_tokens);
        let presented = form.get("token").map(String::as_str).unwrap_or_default();
        let owned = refresh_tokens
            .get(presented)
            .is_some_and(|grant| grant.client_id == client.client_id);
        if owned {
            refresh_tokens.remove(presented);
            "refresh_token"
        } else {
            "unknown"
        }
    };
    lock(&state.counters.revocations).push(RevocationRecord {
        client_id: client.client_id,
        token_type_hint: form.get("token_type_hint").cloned(),
        revoked: revoked.into(),
    });
    StatusCode::OK.into_response()
}

/// Runtime control of one authorization server. Cheap to clone.
#[derive(Clone)]
pub struct AsHandle {
    pub(crate) state: Arc<AsState>,
    pub(crate) faults: Faults,
}

impl std::fmt::Debug for AsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsHandle")
            .field("name", &self.state.config.name)
            .field("issuer", &self.state.issuer)
            .finish()
    }
}

impl AsHandle {
    /// The configured name.
    pub fn name(&self) -> &str {
        &self.state.config.name
    }

    /// The issuer identifier (what ID-JAGs must name as `aud`).
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The token endpoint (where the metadata says it is now).
    pub fn token_endpoint(&self) -> String {
        self.state.token_endpoint()
    }

    /// Moves the token endpoint to `{base}/v2/token`: the metadata names the new URL and the old
    /// path answers 404 (an authorization server reorganised between two grants).
    pub fn move_token_endpoint(&self) {
        self.state.token_moved.store(true, Ordering::SeqCst);
    }

    /// Sets how far this server's clock is off (negative = behind); its tokens, its checks of
    /// ID-JAGs and its `Date` header follow it.
    pub fn set_clock_skew(&self, skew_secs: i64) {
        self.state.clock.set_skew_secs(skew_secs);
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.state.base_url)
    }

    /// The RFC 8414 (path-inserted) metadata URL, whether or not it is served.
    pub fn metadata_url(&self) -> String {
        let origin = self
            .state
            .base_url
            .strip_suffix(&self.state.base_path)
            .unwrap_or(&self.state.base_url);
        format!(
            "{origin}/.well-known/oauth-authorization-server{}",
            self.state.base_path
        )
    }

    /// The resources (MCP server URLs) this AS mints tokens for.
    pub fn resources(&self) -> &[String] {
        &self.state.resources
    }

    /// The registered clients.
    pub fn clients(&self) -> &[RegisteredClient] {
        &self.state.config.clients
    }

    /// It runs the authorization-code flow (see [`AsConfig::with_code_flow`]).
    pub fn runs_code_flow(&self) -> bool {
        self.state.config.code_flow.is_some()
    }

    /// The fault switchboard of this AS.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Makes the metadata name a different issuer (or stops doing so).
    pub fn set_wrong_issuer_in_metadata(&self, wrong: bool) {
        self.state.wrong_issuer.store(wrong, Ordering::SeqCst);
    }

    /// Forgets the cached IdP keys (the next ID-JAG refetches the JWKS).
    pub fn forget_idp_keys(&self) {
        lock(&self.state.idp_keys).clear();
    }

    /// Every secret that crossed this server's token endpoint (see `AsCounters::wire_secrets`).
    pub fn wire_secrets(&self) -> Vec<String> {
        lock(&self.state.counters.wire_secrets).clone()
    }

    /// From now on the authorization endpoint redirects with `fault` (`None`: correctly).
    pub fn set_redirect_fault(&self, fault: Option<crate::code_flow::RedirectFault>) {
        *lock(&self.state.redirect_fault) = fault;
    }

    /// Revokes every refresh token this server issued (an administrator ending the sessions).
    pub fn revoke_refresh_tokens(&self) {
        lock(&self.state.refresh_tokens).clear();
    }

    /// Also issues tokens for `resource` (an MCP server that moved here from another server).
    pub fn accept_resource(&self, resource: &str) {
        lock(&self.state.extra_resources).push(resource.to_owned());
    }

    /// A snapshot of the counters.
    /// Rotates the nonce DPoP proofs must carry (when this server wants one); the new nonce.
    pub fn rotate_dpop_nonce(&self) -> Option<String> {
        self.state
            .proofs
            .as_ref()
            .and_then(crate::dpop::ProofChecker::rotate_nonce)
    }

    pub fn stats(&self) -> AsStats {
        let c = &self.state.counters;
        let n = |a: &AtomicU64| a.load(Ordering::SeqCst);
        AsStats {
            jwt_bearer_mints: n(&c.jwt_bearer_mints),
            dpop_bound_mints: n(&c.dpop_bound_mints),
            dpop_replays: self
                .state
                .proofs
                .as_ref()
                .map_or(0, crate::dpop::ProofChecker::replays),
            workload_mints: n(&c.workload_mints),
            refresh_mints: n(&c.refresh_mints),
            client_credentials_mints: n(&c.client_credentials_mints),
            rejected_grants: n(&c.rejected_grants),
            rejected_replays: n(&c.rejected_replays),
            jwks_fetches: n(&c.jwks_fetches),
            revocations: lock(&c.revocations).clone(),
            code_mints: n(&c.code_mints),
            registrations: n(&c.registrations),
        }
    }
}
