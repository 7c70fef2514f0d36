//! The network between the client and the testbed, made real enough to fail like a corporate one:
//! a front per component that can serve it over HTTPS with a certificate the test chose (and can
//! swap while running: expired, untrusted, renewed), close its port (refused) or swallow its
//! connections (a black hole), and an HTTP `CONNECT` proxy — a plain tunnel, or a
//! TLS-inspecting one that re-signs every site with its own CA. Both count what they carried, so a
//! test can prove the traffic went through them. They only ever connect to 127.0.0.1 and hold no
//! OAuth logic; the certificates come from the caller.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A certificate chain and its private key, both PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity([key redacted])")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server configuration for `identity`.
pub fn server_config(identity: &TlsIdentity) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(identity.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading the certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .context("reading the private key")?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// A rustls client configuration trusting exactly the CA certificates in `ca_pem`.
pub fn client_config(ca_pem: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("reading a CA certificate")?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificate every TLS front presents; swapping it reaches the next handshake of all.
#[derive(Clone)]
pub struct TlsCertificate {
    config: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for TlsCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsCertificate")
    }
}

impl TlsCertificate {
    pub fn new(identity: &TlsIdentity) -> anyhow::Result<Self> {
        Ok(Self {
            config: Arc::new(RwLock::new(server_config(identity)?)),
        })
    }

    /// Presents `identity` from the next handshake on (a renewed or replaced certificate).
    pub fn replace(&self, identity: &TlsIdentity) -> anyhow::Result<()> {
        let config = server_config(identity)?;
        *self
            .config
            .write()
            .map_err(|_| anyhow::anyhow!("certificate lock poisoned"))? = config;
        Ok(())
    }

    fn current(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.config.read().ok().map(|c| Arc::clone(&c))
    }
}

/// What a component's front does with connections: a server that is up, one whose port is
/// closed (connections refused), or one that accepts and never answers (a black hole).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateMode {
    Open,
    Refuse,
    BlackHole,
}

/// Runtime control of one component's front. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gate {
    origin: String,
    mode: Arc<watch::Sender<GateMode>>,
}

impl Gate {
    /// The component's public origin (`http://` or `https://127.0.0.1:PORT`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Switches the front; open connections are cut whenever it leaves [`GateMode::Open`].
    pub fn set(&self, mode: GateMode) {
        self.mode.send_replace(mode);
    }
}

/// Listens on `public` and relays each connection to the plain listener `backend`, decrypting
/// TLS first when a certificate is given, as the [`Gate`] it returns allows.
pub(crate) fn spawn_front(
    public: TcpListener,
    backend: SocketAddr,
    tls: Option<TlsCertificate>,
) -> anyhow::Result<(Gate, JoinHandle<()>)> {
    let addr = public.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (tx, mut rx) = watch::channel(GateMode::Open);
    let gate = Gate {
        origin: format!("{scheme}://{addr}"),
        mode: Arc::new(tx),
    };
    let task = tokio::spawn(async move {
        let mut listener = Some(public);
        let mut relays: Vec<AbortHandle> = Vec::new();
        let mut held: Vec<TcpStream> = Vec::new();
        loop {
            let mode = *rx.borrow_and_update();
            if mode == GateMode::Refuse {
                listener = None; // closed: the kernel refuses connections now
                if rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
            if listener.is_none() {
                listener = TcpListener::bind(addr).await.ok();
            }
            let Some(open) = listener.as_ref() else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *rx.borrow() != GateMode::Open {
                        for relay in relays.drain(..) {
                            relay.abort();
                        }
                    }
                    if *rx.borrow() != GateMode::BlackHole {
                        held.clear();
                    }
                }
                accepted = open.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    if mode == GateMode::BlackHole {
                        held.push(stream);
                        continue;
                    }
                    relays.retain(|r| !r.is_finished());
                    let config = match &tls {
                        Some(certificate) => match certificate.current() {
                            Some(config) => Some(config),
                            None => continue, // never plain HTTP on an HTTPS port
                        },
                        None => None,
                    };
                    relays.push(tokio::spawn(relay_to(stream, backend, config)).abort_handle());
                }
            }
        }
    });
    Ok((gate, task))
}

async fn relay_to(stream: TcpStream, backend: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) {
    let Ok(mut plain) = TcpStream::connect(backend).await else {
        return;
    };
    match tls {
        None => {
            let mut stream = stream;
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut plain).await;
        }
        Some(config) => {
            // A failed handshake (the client distrusts the certificate) just ends here.
            if let Ok(mut tls) = TlsAcceptor::from(config).accept(stream).await {
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            }
        }
    }
}

/// What the proxy does with a tunnel.
#[derive(Clone, Debug)]
pub enum ProxyMode {
    /// Relays the bytes untouched (the client's TLS reaches the server).
    Tunnel,
    /// Terminates the client's TLS with `identity` (a certificate for the sites, signed by the
    /// corporate CA) and opens its own TLS to the server, trusting `upstream_ca_pem`.
    Inspect {
        identity: TlsIdentity,
        upstream_ca_pem: String,
    },
}

#[derive(Default)]
struct ProxyShared {
    tunnels: AtomicU64,
    log: Mutex<Vec<String>>,
    connections: Mutex<Vec<AbortHandle>>,
}

/// An HTTP `CONNECT` proxy on 127.0.0.1. Dropping or [`ConnectProxy::stop`]ping it closes its
/// listener and every tunnel; [`ConnectProxy::restart`] listens again on the same port.
pub struct ConnectProxy {
    addr: SocketAddr,
    mode: ProxyMode,
    shared: Arc<ProxyShared>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ConnectProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectProxy")
            .field("addr", &self.addr)
            .finish()
    }
}

impl ConnectProxy {
    /// Starts a proxy on an ephemeral port.
    pub async fn start(mode: ProxyMode) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut proxy = Self {
            addr,
            mode,
            shared: Arc::default(),
            task: None,
        };
        proxy.serve(listener)?;
        Ok(proxy)
    }

    /// `http://127.0.0.1:PORT`, the value for a proxy setting.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Tunnels opened so far.
    pub fn tunnels(&self) -> u64 {
        self.shared.tunnels.load(Ordering::SeqCst)
    }

    /// One line per request: `CONNECT host:port` and the answer given.
    pub fn log(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Closes the listener and every open tunnel (the proxy went away).
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Ok(mut connections) = self.shared.connections.lock() {
            for c in connections.drain(..) {
                c.abort();
            }
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener)
    }

    fn serve(&mut self, listener: TcpListener) -> anyhow::Result<()> {
        let inspect = match &self.mode {
            ProxyMode::Tunnel => None,
            ProxyMode::Inspect {
                identity,
                upstream_ca_pem,
            } => Some((server_config(identity)?, client_config(upstream_ca_pem)?)),
        };
        let shared = Arc::clone(&self.shared);
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared_for_task = Arc::clone(&shared);
                let inspect = inspect.clone();
                let handle = tokio::spawn(async move {
                    if let Err(e) = relay(stream, &shared_for_task, inspect).await {
                        tracing::debug!("proxy connection ended: {e:#}");
                    }
                });
                if let Ok(mut connections) = shared.connections.lock() {
                    connections.retain(|c| !c.is_finished());
                    connections.push(handle.abort_handle());
                }
            }
        }));
        Ok(())
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

type Inspection = (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>);

async fn relay(
    mut client: TcpStream,
    shared: &ProxyShared,
    inspect: Option<Inspection>,
) -> anyhow::Result<()> {
    let head = read_head(&mut client).await?;
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let note = |answer: &str| {
        if let Ok(mut log) = shared.log.lock() {
            log.push(format!("{method} {target} -> {answer}"));
        }
    };
    if method != "CONNECT" {
        note("405");
        client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await?;
        bail!("not a CONNECT request");
    }
    let (host, port) = target
        .rsplit_once(':')
        .context("CONNECT target without a port")?;
    // Only this machine: the proxy must never become a way out.
    if host != "127.0.0.1" && host != "localhost" {
        note("403");
        client
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            .await?;
        bail!("refused a tunnel to {host}");
    }
    let port: u16 = port.parse().context("CONNECT port")?;
    let upstream = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(s) => s,
        Err(e) => {
            note("502");
            client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await?;
            bail!("upstream: {e}");
        }
    };
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    shared.tunnels.fetch_add(1, Ordering::SeqCst);
    note("200");
    match inspect {
        None => {
            let (mut client, mut upstream) = (client, upstream);
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        }
        Some((server, connector)) => {
            let mut inner = TlsAcceptor::from(server).accept(client).await?;
            let name = ServerName::try_from(host.to_owned())?;
            let mut outer = TlsConnector::from(connector)
                .connect(name, upstream)
                .await?;
            tokio::io::copy_bidirectional(&mut inner, &mut outer).await?;
        }
    }
    Ok(())
}

/// Reads the request head up to the blank line (8 KiB at most).
async fn read_head(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            bail!("request head too long");
        }
        if stream.read(&mut byte).await? == 0 {
            bail!("closed before the request head ended");
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
