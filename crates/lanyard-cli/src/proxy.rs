//! `lanyard proxy <server>`: the stdio MCP server an AI client launches (Claude Desktop, VS Code,
//! Cursor entries) in place of a remote server it cannot authorize itself. It asks the running
//! agent which URL the server has, then runs [`lanyard_core::mcp::bridge`] on stdin/stdout with a token
//! source that asks the agent over the broker for every request, over the policy's proxy and CAs
//! (never `HTTPS_PROXY` from the AI client's environment).
//!
//! It must keep stdout for protocol messages only (diagnostics go to stderr through `tracing`,
//! `LANYARD_LOG` filters them) and never print, log or pass on a token. It never opens a browser:
//! when a sign-in is needed the client's requests get a JSON-RPC error saying so, and the proxy
//! keeps running so the next request works once the user has signed in.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lanyard_core::engine::credentials::http_config_for;
use lanyard_core::ipc::{BlockingClient, ClientError, ProofRequest, TokenRequestOptions};
use lanyard_core::mcp::bridge::{
    self, BridgeConfig, IssuedToken, TokenRequest, TokenSource, TokenUnavailable,
};
use lanyard_core::oauth::HttpConfig;
use lanyard_core::policy::sources::platform::PolicySources;
use lanyard_core::policy::FileChecks;
use url::Url;

use crate::{exit, over_agent};

/// The validity a proxied request needs: it is used at once, but a slow tool call should not see
/// its token expire half-way.
const MIN_TTL: Duration = Duration::from_secs(60);

/// Runs the proxy until the client closes stdin. Exit codes as documented for the CLI; an error
/// before the bridge starts (no agent, unknown server) is one line on stderr.
pub fn run(endpoint: &Path, server: &str, policy_sources: &PolicySources) -> u8 {
    let mut client = match BlockingClient::connect(endpoint) {
        Ok(client) => client,
        Err(e) => return over_agent::fail(&e),
    };
    let servers = match client.servers() {
        Ok(servers) => servers,
        Err(e) => return over_agent::fail(&e),
    };
    let Some(info) = servers.iter().find(|s| s.id == server) else {
        let known: Vec<&str> = servers.iter().map(|s| s.id.as_str()).collect();
        eprintln!(
            "lanyard proxy: no server {server:?} is configured (configured: {})",
            known.join(", ")
        );
        return exit::UNKNOWN_SERVER;
    };
    let url = match Url::parse(&info.url) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("lanyard proxy: the policy's URL for {server:?} is unusable: {e}");
            return exit::MISCONFIGURED;
        }
    };
    if let Err(why) = bridge::check_server_url(&url) {
        eprintln!("lanyard proxy: {server:?}: {why}");
        return exit::MISCONFIGURED;
    }
    let tokens = BrokerTokens {
        shared: Arc::new(Shared {
            endpoint: endpoint.to_path_buf(),
            server: server.to_owned(),
            idle: Mutex::new(vec![client]),
        }),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lanyard proxy: cannot start: {e}");
            return exit::FAILURE;
        }
    };
    tracing::info!(server, url = %info.url, "proxying stdio to the MCP server");
    let mut config = BridgeConfig::new(url);
    match network_settings(policy_sources, config.http.clone()) {
        Ok(http) => config.http = http,
        Err(e) => {
            eprintln!("lanyard proxy: {e}");
            return exit::MISCONFIGURED;
        }
    }
    let result = runtime.block_on(bridge::run(
        config,
        tokens,
        tokio::io::stdin(),
        tokio::io::stdout(),
    ));
    // stdin's reader thread may still be parked in a read: do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lanyard proxy: {e}");
            exit::FAILURE
        }
    }
}

/// The policy's proxy and extra CAs on top of `base`, as the agent uses them: the bridge talks to
/// the same servers over the same network. No usable policy here (the agent may hold one this
/// process cannot read): `base`, which goes direct, as `*_PROXY` variables are never followed.
fn network_settings(
    policy_sources: &PolicySources,
    base: HttpConfig,
) -> Result<HttpConfig, String> {
    match policy_sources.load_with(FileChecks::Skip) {
        Ok(snapshot) => http_config_for(&snapshot.policy.settings, base),
        Err(errors) => {
            tracing::warn!(
                problems = errors.len(),
                "the policy is not usable here; connecting without its proxy and CA settings"
            );
            Ok(base)
        }
    }
}

/// Tokens from the agent. Broker connections are blocking and answer one request at a time, so
/// each request borrows an idle connection (or opens one) on a blocking thread and gives it back.
struct BrokerTokens {
    shared: Arc<Shared>,
}

struct Shared {
    endpoint: PathBuf,
    server: String,
    idle: Mutex<Vec<BlockingClient>>,
}

impl Shared {
    fn take(&self) -> Result<BlockingClient, ClientError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(client) => Ok(client),
            None => BlockingClient::connect(&self.endpoint),
        }
    }

    fn give_back(&self, client: BlockingClient) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(client);
    }

    fn token(&self, options: &TokenRequestOptions) -> Result<IssuedToken, ClientError> {
        // One retry on a fresh connection: an idle one may belong to an agent that restarted, or
        // the agent closed it after its idle timeout. The other idle ones are then just as old,
        // so they go too.
        let mut fresh_tried = false;
        loop {
            let mut client = if fresh_tried {
                BlockingClient::connect(&self.endpoint)?
            } else {
                self.take()?
            };
            match client.token(&self.server, options.clone()) {
                Ok(token) => {
                    self.give_back(client);
                    return Ok(IssuedToken {
                        access_token: token.access_token,
                        dpop_proof: token.dpop_proof,
                    });
                }
                Err(e @ ClientError::Agent(_)) => {
                    self.give_back(client);
                    return Err(e);
                }
                Err(e) if fresh_tried => return Err(e),
                Err(_) => {
                    fresh_tried = true;
                    self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
            }
        }
    }
}

impl TokenSource for BrokerTokens {
    fn token(
        &self,
        request: &TokenRequest,
    ) -> impl std::future::Future<Output = Result<IssuedToken, TokenUnavailable>> + Send {
        let shared = Arc::clone(&self.shared);
        let options = TokenRequestOptions {
            min_ttl: MIN_TTL,
            force_refresh: request.force_refresh,
            extra_scopes: request.extra_scopes.clone(),
            // Asked for every request: the agent signs a proof only when the token is bound.
            dpop: request.proof_for.as_ref().map(|target| ProofRequest {
                method: target.method.clone(),
                url: target.url.to_string(),
                nonce: target.nonce.clone(),
            }),
        };
        async move {
            tokio::task::spawn_blocking(move || shared.token(&options))
                .await
                .map_err(|e| TokenUnavailable::new(format!("the token request was lost: {e}")))?
                .map_err(|e| TokenUnavailable::new(e.to_string()))
        }
    }
}
