//! Starting and stopping the whole fake world: binds one 127.0.0.1 listener per component (IdP,
//! each authorization server, each MCP server) on ephemeral ports, wires issuers, audiences and
//! resources between them, and hands out the runtime handles. Dropping the [`Testbed`] stops
//! every server task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::auth_server::{AsHandle, AsState};
use crate::clock::TestClock;
use crate::config::TestbedConfig;
use crate::faults::{apply_faults, Endpoint, FaultLayer, Faults, Latency};
use crate::idp::{IdpHandle, IdpState};
use crate::keys::SigningKey;
use crate::mcp::{McpHandle, McpState};
use crate::net::{spawn_front, Gate, TlsCertificate};
use crate::traffic::Traffic;

/// How many different signing keys one testbed makes at most.
const DISTINCT_KEYS: usize = 24;

/// The pool slot of component `index`'s key (0 is the IdP, which alone has key 0). Worlds of
/// hundreds of authorization servers (the fleet benchmarks) share the other slots: each RSA key
/// takes 0.1-0.3 s to make, and an authorization server's tokens are bound to it by issuer and
/// audience, not by key material alone.
fn key_slot(index: usize) -> usize {
    if index == 0 {
        0
    } else {
        1 + (index - 1) % (DISTINCT_KEYS - 1)
    }
}

/// A running testbed. Dropping it stops all its servers.
#[derive(Debug)]
pub struct Testbed {
    idp: IdpHandle,
    auth_servers: Vec<AsHandle>,
    mcp_servers: Vec<McpHandle>,
    latency: Latency,
    clock: TestClock,
    traffic: Traffic,
    gates: Vec<Gate>,
    tasks: Vec<JoinHandle<()>>,
}

/// HTTPS for every component: the certificate they present and the CA the testbed's own client
/// (an authorization server fetching the IdP's keys) trusts.
#[derive(Clone, Debug)]
pub struct HttpsSetup {
    pub certificate: TlsCertificate,
    pub ca_pem: String,
}

/// How the components face the network.
#[derive(Clone, Debug, Default)]
pub struct FrontOptions {
    /// Serve HTTPS instead of HTTP.
    pub https: Option<HttpsSetup>,
    /// Put a [`Gate`] in front of every component (implied by `https`).
    pub gated: bool,
}

/// Binds a component's listener: plain HTTP, or a plain listener behind a front (TLS and/or a
/// [`Gate`]) whose origin is the component's public one.
async fn bind(
    front: &FrontOptions,
    tasks: &mut Vec<JoinHandle<()>>,
    gates: &mut Vec<Gate>,
) -> anyhow::Result<(TcpListener, String)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding 127.0.0.1:0")?;
    if front.https.is_none() && !front.gated {
        let origin = format!("http://{}", listener.local_addr()?);
        return Ok((listener, origin));
    }
    let public = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding 127.0.0.1:0")?;
    let (gate, task) = spawn_front(
        public,
        listener.local_addr()?,
        front.https.as_ref().map(|h| h.certificate.clone()),
    )?;
    let origin = gate.origin().to_owned();
    tasks.push(task);
    gates.push(gate);
    Ok((listener, origin))
}

fn serve(
    listener: TcpListener,
    router: Router,
    routes: HashMap<String, Endpoint>,
    faults: Faults,
    latency: Latency,
    clock: TestClock,
    traffic: (&Traffic, &str),
) -> JoinHandle<()> {
    let layer = FaultLayer {
        faults,
        clock,
        latency,
        routes: Arc::new(routes),
        component: Arc::from(traffic.1),
        traffic: traffic.0.clone(),
    };
    let app = router.layer(axum::middleware::from_fn_with_state(layer, apply_faults));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("testbed server stopped: {e}");
        }
    })
}

impl Testbed {
    /// Starts every configured component on 127.0.0.1.
    pub async fn start(config: TestbedConfig) -> anyhow::Result<Testbed> {
        Self::start_with(config, FrontOptions::default()).await
    }

    /// Starts every component behind HTTPS (`https://127.0.0.1:PORT` origins) and a [`Gate`].
    pub async fn start_https(config: TestbedConfig, https: HttpsSetup) -> anyhow::Result<Testbed> {
        Self::start_with(
            config,
            FrontOptions {
                https: Some(https),
                gated: true,
            },
        )
        .await
    }

    /// Starts every component behind the given fronts.
    pub async fn start_with(config: TestbedConfig, front: FrontOptions) -> anyhow::Result<Testbed> {
        let TestbedConfig {
            idp: idp_config,
            auth_servers,
            mcp_servers,
            latency: initial_latency,
            clock,
            record_traffic,
        } = config;
        let traffic = if record_traffic {
            Traffic::recording()
        } else {
            Traffic::default()
        };
        for mcp in &mcp_servers {
            if !auth_servers.iter().any(|a| a.name == mcp.auth_server) {
                bail!(
                    "MCP server {} names unknown authorization server {}",
                    mcp.name,
                    mcp.auth_server
                );
            }
        }
        let key_count = 1 + auth_servers.len();
        let keys = tokio::task::spawn_blocking(move || {
            (0..key_count)
                .map(|i| SigningKey::pooled(key_slot(i)))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await
        .context("key generation task")??;

        let latency = Latency::default();
        latency.set(initial_latency);
        let mut http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10));
        if let Some(https) = &front.https {
            http = http.add_root_certificate(
                reqwest::Certificate::from_pem(https.ca_pem.as_bytes())
                    .context("the testbed's CA")?,
            );
        }
        let http = http.build().context("building the testbed's HTTP client")?;

        let mut tasks = Vec::new();
        let mut gates = Vec::new();
        let (idp_listener, idp_origin) = bind(&front, &mut tasks, &mut gates).await?;
        let mut as_listeners = Vec::new();
        for _ in &auth_servers {
            as_listeners.push(bind(&front, &mut tasks, &mut gates).await?);
        }
        let mut mcp_listeners = Vec::new();
        for _ in &mcp_servers {
            mcp_listeners.push(bind(&front, &mut tasks, &mut gates).await?);
        }

        let idp_issuer = idp_config.issuer_path.issuer(&idp_origin);
        let idp_jwks = format!("{idp_origin}{}/jwks", idp_config.issuer_path.path);
        let mut audiences = HashMap::new();
        let mut as_issuers = HashMap::new();
        for (config, (_, origin)) in auth_servers.iter().zip(&as_listeners) {
            let issuer = config.issuer_path.issuer(origin);
            if let Some(client_id) = config.jag_client_id() {
                audiences.insert(issuer.clone(), client_id);
            }
            as_issuers.insert(config.name.clone(), issuer);
        }
        for (aud, client_id) in &idp_config.audience_client_ids {
            audiences.insert(aud.clone(), client_id.clone());
        }

        let mut key_iter = keys.into_iter();
        let idp_key = key_iter.next().context("no IdP key")?;
        let idp_clock = clock.with_own_skew();
        let idp_state = Arc::new(IdpState::new(
            idp_config,
            &idp_origin,
            idp_key,
            idp_clock.clone(),
            audiences,
        ));
        let idp = IdpHandle {
            state: Arc::clone(&idp_state),
            faults: Faults::default(),
        };
        let (router, routes) = crate::idp::router(idp_state);
        tasks.push(serve(
            idp_listener,
            router,
            routes,
            idp.faults.clone(),
            latency.clone(),
            idp_clock,
            (&traffic, "idp"),
        ));

        let mut as_handles = Vec::new();
        for ((config, (listener, origin)), key) in
            auth_servers.into_iter().zip(as_listeners).zip(key_iter)
        {
            let resources = mcp_servers
                .iter()
                .zip(&mcp_listeners)
                .filter(|(m, _)| m.auth_server == config.name)
                .map(|(m, (_, o))| format!("{o}{}", m.path))
                .collect();
            let trusted = config
                .trusted_idp
                .clone()
                .unwrap_or_else(|| (idp_issuer.clone(), idp_jwks.clone()));
            let as_clock = clock.with_own_skew();
            let component = config.name.clone();
            let state = Arc::new(AsState::new(
                config,
                &origin,
                key,
                as_clock.clone(),
                trusted,
                resources,
                http.clone(),
            ));
            let handle = AsHandle {
                state: Arc::clone(&state),
                faults: Faults::default(),
            };
            let (router, routes) = crate::auth_server::router(state);
            tasks.push(serve(
                listener,
                router,
                routes,
                handle.faults.clone(),
                latency.clone(),
                as_clock,
                (&traffic, &component),
            ));
            as_handles.push(handle);
        }

        let mut mcp_handles = Vec::new();
        for (config, (listener, origin)) in mcp_servers.into_iter().zip(mcp_listeners) {
            let protector = as_handles
                .iter()
                .find(|a| a.name() == config.auth_server)
                .context("MCP server without authorization server")?;
            let state = Arc::new(McpState {
                resource: format!("{origin}{}", config.path),
                prm_url: crate::mcp::prm_url(&origin, &config),
                as_issuer: protector.issuer().to_string(),
                as_key: Arc::clone(&protector.state.key),
                // A resource server keeps the time of the authorization server it trusts.
                clock: protector.state.clock.clone(),
                counters: Default::default(),
                runtime: Default::default(),
                proofs: crate::dpop::ProofChecker::new(config.dpop_require_nonce),
                config,
            });
            let handle = McpHandle {
                state: Arc::clone(&state),
                faults: Faults::default(),
            };
            let mcp_clock = state.clock.clone();
            let mcp_name = format!("mcp:{}", state.config.name);
            let (router, routes) = crate::mcp::router(state);
            tasks.push(serve(
                listener,
                router,
                routes,
                handle.faults.clone(),
                latency.clone(),
                mcp_clock,
                (&traffic, &mcp_name),
            ));
            mcp_handles.push(handle);
        }

        Ok(Testbed {
            idp,
            auth_servers: as_handles,
            mcp_servers: mcp_handles,
            latency,
            clock,
            traffic,
            gates,
            tasks,
        })
    }

    /// The IdP.
    pub fn idp(&self) -> &IdpHandle {
        &self.idp
    }

    /// All authorization servers, in configuration order.
    pub fn auth_servers(&self) -> &[AsHandle] {
        &self.auth_servers
    }

    /// The authorization server with this name.
    pub fn auth_server(&self, name: &str) -> Option<&AsHandle> {
        self.auth_servers.iter().find(|a| a.name() == name)
    }

    /// All MCP servers, in configuration order.
    pub fn mcp_servers(&self) -> &[McpHandle] {
        &self.mcp_servers
    }

    /// The MCP server with this name.
    pub fn mcp_server(&self, name: &str) -> Option<&McpHandle> {
        self.mcp_servers.iter().find(|m| m.name() == name)
    }

    /// The authorization server protecting the named MCP server.
    pub fn auth_server_for(&self, mcp_name: &str) -> Option<&AsHandle> {
        let mcp = self.mcp_server(mcp_name)?;
        self.auth_servers
            .iter()
            .find(|a| a.issuer() == mcp.auth_server_issuer())
    }

    /// The gate in front of the component serving `url` (when started with fronts).
    pub fn gate_of(&self, url: &str) -> Option<&Gate> {
        self.gates.iter().find(|g| {
            url.strip_prefix(g.origin())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// Token-endpoint load as the servers saw it: peaks in flight, totals, and the request log
    /// when [`TestbedConfig::with_traffic_log`] asked for one.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The shared clock.
    pub fn clock(&self) -> &TestClock {
        &self.clock
    }

    /// Sets the latency added to every request of every component.
    pub fn set_latency(&self, latency: Duration) {
        self.latency.set(latency);
    }

    /// Removes every injected fault of every component.
    pub fn clear_faults(&self) {
        self.idp.faults().clear();
        for a in &self.auth_servers {
            a.faults().clear();
        }
        for m in &self.mcp_servers {
            m.faults().clear();
        }
    }

    /// Stops all servers now (dropping does the same).
    pub fn shutdown(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.shutdown();
    }
}
