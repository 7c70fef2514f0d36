//! The broker server: accepts local connections on the user's endpoint, checks each peer (same
//! user, else refused and logged), reads newline-delimited requests with a size cap and answers them
//! from an [`EngineHandle`]. Hosts (`lanyard agent`, the tray app) call [`serve`]; this module owns
//! the socket file while serving and removes it on shutdown. It must not hold engine state, open a
//! browser, or write a token anywhere but into the reply to the process that asked.
//!
//! Two limits keep one client from taking the broker or the identity provider for itself:
//!
//! - Idle connections are closed. A request/response connection must send its hello within
//!   [`HELLO_TIMEOUT`] of being accepted and each later request line within [`IDLE_TIMEOUT`] of the
//!   previous reply (the time the agent spends answering does not count). A subscription is
//!   exempt: there the agent writes and the client only listens, until it hangs up. Clients
//!   reconnect when they find their connection closed (the proxy does, on its next token).
//! - Forced refreshes are rate-limited per server: a `refresh` of a server, a `refresh_all`, or a
//!   `token` with `force_refresh` reaches the engine at most once per
//!   [`FORCED_REFRESH_INTERVAL`] for that server (or for "all"). Within it a `refresh` is answered
//!   `done` with nothing started and a forced `token` is answered like an ordinary one (the current
//!   token while it is valid): coalesced, not refused, so a burst of callers gets no error storm.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::engine::{EngineHandle, Requester, TokenRequest};
use crate::secret::Secret;

use super::endpoint::EndpointError;
use super::protocol::{
    decode_request_line, ErrorCode, ErrorReply, ProofRequest, Request, RequestLine, Response,
    ServerInfo, LINE_READ_LIMIT, MAX_REQUEST_BYTES, PROTOCOL_VERSION,
};

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;

/// How long a new connection may take to send its first request line (the hello).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a greeted connection may wait before its next request line.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A forced refresh of one server (or of all) reaches the engine at most this often.
pub const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// What a forced refresh refreshes, for [`ForcedRefreshes`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RefreshTarget {
    All,
    Server(String),
}

/// When each server (and "all") was last force-refreshed by a client, shared by every connection.
/// Only configured servers are recorded, so a client naming made-up servers cannot grow it.
#[derive(Debug, Default)]
struct ForcedRefreshes {
    last: std::sync::Mutex<HashMap<RefreshTarget, Instant>>,
}

impl ForcedRefreshes {
    /// Whether a forced refresh of `target` may go to the engine now; records it when it may.
    fn admit(&self, target: RefreshTarget) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get(&target) {
            Some(at) if now.duration_since(*at) < FORCED_REFRESH_INTERVAL => false,
            _ => {
                last.insert(target, now);
                true
            }
        }
    }

    /// [`Self::admit`] for one server; a server the engine does not know is always admitted (and
    /// not recorded): the engine answers it with `unknown_server`.
    fn admit_server(&self, engine: &EngineHandle, server: &str) -> bool {
        if engine.status().server(server).is_none() {
            return true;
        }
        self.admit(RefreshTarget::Server(server.to_owned()))
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("another Lanyard agent already answers at {0}")]
    AlreadyServing(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Serves the broker on `endpoint` until `shutdown` completes, then removes the socket.
///
/// Creates the endpoint's private directory (0700) if needed, refuses to start when another agent
/// answers there, replaces a stale socket file, and makes the socket 0600. Every connection's peer
/// must run as this user (`SO_PEERCRED` / `getpeereid`); others get one `refused` reply and a log
/// line. The host should hold an [`super::AgentLock`] for `endpoint` first, so a second host can be
/// told which pid runs.
#[cfg(unix)]
pub async fn serve(
    engine: EngineHandle,
    endpoint: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    use std::os::unix::fs::PermissionsExt;

    super::endpoint::prepare_directory(endpoint)?;
    if endpoint.exists() {
        if std::os::unix::net::UnixStream::connect(endpoint).is_ok() {
            return Err(ServeError::AlreadyServing(endpoint.display().to_string()));
        }
        std::fs::remove_file(endpoint).map_err(|source| ServeError::Io {
            context: format!("removing the stale socket {}", endpoint.display()),
            source,
        })?;
    }
    let listener = tokio::net::UnixListener::bind(endpoint).map_err(|source| ServeError::Io {
        context: format!("listening on {}", endpoint.display()),
        source,
    })?;
    // The directory is already private; the socket mode is the second lock on the door.
    std::fs::set_permissions(endpoint, std::fs::Permissions::from_mode(0o600)).map_err(
        |source| ServeError::Io {
            context: format!("restricting {}", endpoint.display()),
            source,
        },
    )?;
    info!(endpoint = %endpoint.display(), "broker listening");
    let my_uid = rustix::process::geteuid().as_raw();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let forced = Arc::new(ForcedRefreshes::default());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break; // the semaphore is never closed
        };
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        warn!(error = %e, "accepting a connection failed");
                        continue;
                    }
                };
                let engine = engine.clone();
                let forced = forced.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    let (peer_uid, pid) = match stream.peer_cred() {
                        Ok(cred) => (Some(cred.uid()), cred.pid().and_then(|p| u32::try_from(p).ok())),
                        Err(e) => {
                            warn!(error = %e, "no peer credentials; refusing the connection");
                            (None, None)
                        }
                    };
                    if peer_uid != Some(my_uid) {
                        refuse_other_user(stream, &peer_uid, pid).await;
                        return;
                    }
                    let requester = Requester {
                        pid,
                        executable: pid.and_then(executable_of),
                    };
                    serve_connection(engine, stream, requester, &forced).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
    drop(listener);
    if let Err(e) = std::fs::remove_file(endpoint) {
        warn!(error = %e, "removing the socket failed");
    }
    info!("broker stopped");
    Ok(())
}

/// Windows: serves on a named pipe whose DACL admits only this user's SID (see
/// [`crate::os::pipe_sddl`]), rejecting remote clients; the first instance is created with
/// `first_pipe_instance`, so a pipe that already exists (another agent, or a squatter) is
/// [`ServeError::AlreadyServing`]. Each client's pid comes from `GetNamedPipeClientProcessId`, its
/// executable from `QueryFullProcessImageNameW`; its process must run as this user (SID compared),
/// else it gets one `refused` reply and a log line, as on Unix. A pipe has no file to remove.
#[cfg(windows)]
pub async fn serve(
    engine: EngineHandle,
    endpoint: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    use crate::os::windows::{pipe_client_pid, process_image, process_user_sid, PipeSecurity};
    use tokio::net::windows::named_pipe::ServerOptions;

    const ERROR_ACCESS_DENIED: i32 = 5;
    let io = |context: &str| {
        let context = context.to_owned();
        move |source| ServeError::Io { context, source }
    };
    let name = endpoint.as_os_str().to_owned();
    let my_sid = crate::os::windows::current_user_sid().map_err(io("reading this user's SID"))?;
    let sddl = crate::os::pipe_sddl(&my_sid)
        .map_err(|e| io("building the pipe's access list")(std::io::Error::other(e)))?;
    let security =
        PipeSecurity::from_sddl(&sddl).map_err(io("building the pipe's security descriptor"))?;
    let mut options = ServerOptions::new();
    options.reject_remote_clients(true);
    let mut first = options.clone();
    first.first_pipe_instance(true);
    let mut server = security.create(&first, &name).map_err(|e| {
        if e.raw_os_error() == Some(ERROR_ACCESS_DENIED) {
            ServeError::AlreadyServing(endpoint.display().to_string())
        } else {
            io(&format!("creating the pipe {}", endpoint.display()))(e)
        }
    })?;
    info!(endpoint = %endpoint.display(), "broker listening");
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let forced = Arc::new(ForcedRefreshes::default());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break; // the semaphore is never closed
        };
        tokio::select! {
            _ = &mut shutdown => break,
            connected = server.connect() => {
                // Whatever happened to this instance, the next client needs a fresh one.
                let next = security
                    .create(&options, &name)
                    .map_err(io("creating the next pipe instance"))?;
                let stream = std::mem::replace(&mut server, next);
                if let Err(e) = connected {
                    warn!(error = %e, "accepting a connection failed");
                    continue;
                }
                let engine = engine.clone();
                let forced = forced.clone();
                let my_sid = my_sid.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    let pid = match pipe_client_pid(&stream) {
                        Ok(pid) => Some(pid),
                        Err(e) => {
                            warn!(error = %e, "no client process id; refusing the connection");
                            None
                        }
                    };
                    let peer_sid = pid.and_then(|pid| match process_user_sid(pid) {
                        Ok(sid) => Some(sid),
                        Err(e) => {
                            warn!(peer_pid = pid, error = %e, "cannot read the client's user");
                            None
                        }
                    });
                    if peer_sid.as_deref() != Some(my_sid.as_str()) {
                        refuse_other_user(stream, &peer_sid, pid).await;
                        return;
                    }
                    let requester = Requester {
                        pid,
                        executable: pid.and_then(|pid| process_image(pid).ok()),
                    };
                    serve_connection(engine, stream, requester, &forced).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
    info!("broker stopped");
    Ok(())
}

/// The executable behind a pid, when the OS tells (Linux).
#[cfg(unix)]
fn executable_of(pid: u32) -> Option<String> {
    if cfg!(target_os = "linux") {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.display().to_string())
    } else {
        None
    }
}

/// A peer running as another user (`peer_user`: its uid or SID, when known) gets one `refused`
/// reply and a warning in the log, then the connection ends.
async fn refuse_other_user<S: AsyncWrite + Unpin>(
    mut stream: S,
    peer_user: &(dyn std::fmt::Debug + Sync),
    pid: Option<u32>,
) {
    warn!(
        peer_user = ?peer_user,
        peer_pid = ?pid,
        "refused a broker connection from another user"
    );
    let reply = Response::Error(ErrorReply::new(
        ErrorCode::Refused,
        "this Lanyard agent serves only the user who runs it",
    ));
    let _ = write_reply(&mut stream, &reply).await;
}

async fn write_reply<W: AsyncWrite + Unpin>(
    writer: &mut W,
    reply: &Response,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    writer.write_all(&bytes).await?;
    writer.flush().await
}

/// Reads requests from one peer and answers each in turn until the peer hangs up or stays idle
/// too long (see the module doc).
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    engine: EngineHandle,
    stream: S,
    requester: Requester,
    forced: &ForcedRefreshes,
) {
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(1024);
    let mut greeted = false;
    loop {
        line.clear();
        let allowance = if greeted { IDLE_TIMEOUT } else { HELLO_TIMEOUT };
        let mut capped = (&mut reader).take(LINE_READ_LIMIT as u64);
        let read = capped.read_until(b'\n', &mut line);
        match tokio::time::timeout(allowance, read).await {
            Ok(Ok(0)) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "reading a request failed");
                return;
            }
            Err(_) => {
                debug!(pid = ?requester.pid, greeted, "closing an idle broker connection");
                return;
            }
        }
        let complete = line.last() == Some(&b'\n');
        let reply = match decode_request_line(&line, complete) {
            RequestLine::TooLarge(reply) => {
                warn!(pid = ?requester.pid, "request over {MAX_REQUEST_BYTES} bytes; closing the connection");
                let _ = write_reply(&mut write, &Response::Error(reply)).await;
                return;
            }
            RequestLine::Blank => continue,
            RequestLine::Malformed(reply) => {
                warn!(pid = ?requester.pid, "malformed request");
                Response::Error(reply)
            }
            RequestLine::Request(Request::Hello { protocol, client }) => {
                if protocol != PROTOCOL_VERSION {
                    info!(client = %client, protocol, "client speaks another protocol version");
                    let mut reply = ErrorReply::new(
                        ErrorCode::VersionMismatch,
                        format!(
                            "this agent speaks protocol {PROTOCOL_VERSION}, the client {protocol}"
                        ),
                    );
                    reply.agent_protocol = Some(PROTOCOL_VERSION);
                    let _ = write_reply(&mut write, &Response::Error(reply)).await;
                    return;
                }
                greeted = true;
                Response::Hello {
                    protocol: PROTOCOL_VERSION,
                    agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                    agent_pid: std::process::id(),
                }
            }
            RequestLine::Request(_) if !greeted => Response::Error(ErrorReply::new(
                ErrorCode::HelloRequired,
                format!(
                    "say hello first: {{\"op\":\"hello\",\"protocol\":{PROTOCOL_VERSION},\"client\":\"…\"}}"
                ),
            )),
            RequestLine::Request(Request::Subscribe) => {
                debug!(pid = ?requester.pid, "status subscriber");
                stream_status(&engine, reader, &mut write).await;
                return;
            }
            RequestLine::Request(request) => answer(&engine, request, &requester, forced).await,
        };
        if write_reply(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

/// A subscription: the current status, then the latest one after each change, until the peer hangs
/// up or the engine stops. The `watch` channel holds one status, so a slow reader (its socket
/// buffer full, `write` waiting) skips to the newest status instead of queueing lines; only this
/// connection's task waits for it, never the engine.
async fn stream_status<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    engine: &EngineHandle,
    mut reader: R,
    write: &mut W,
) {
    let mut updates = engine.subscribe();
    let mut ignored = [0u8; 512];
    loop {
        let status = Box::new(updates.borrow_and_update().clone());
        if write_reply(write, &Response::Status { status })
            .await
            .is_err()
        {
            return;
        }
        loop {
            tokio::select! {
                changed = updates.changed() => match changed {
                    Ok(()) => break,
                    Err(_) => return, // the engine stopped
                },
                read = reader.read(&mut ignored) => match read {
                    Ok(0) | Err(_) => return, // the subscriber hung up
                    Ok(_) => {}               // nothing to answer on a subscription
                },
            }
        }
    }
}

async fn answer(
    engine: &EngineHandle,
    request: Request,
    requester: &Requester,
    forced: &ForcedRefreshes,
) -> Response {
    let done = |result: Result<(), crate::engine::EngineError>| match result {
        Ok(()) => Response::Done,
        Err(e) => Response::Error(ErrorReply::from(&e)),
    };
    match request {
        Request::Hello { .. } => Response::Error(ErrorReply::new(
            ErrorCode::BadRequest,
            "hello was already said",
        )),
        // Handled by `serve_connection`, which hands the connection over to `stream_status`.
        Request::Subscribe => Response::Error(ErrorReply::new(
            ErrorCode::BadRequest,
            "subscribe is answered by the connection loop",
        )),
        Request::Status => Response::Status {
            status: Box::new(engine.status()),
        },
        Request::Servers => Response::Servers {
            servers: engine
                .status()
                .servers
                .into_iter()
                .map(|s| ServerInfo {
                    id: s.id,
                    display_name: s.display_name,
                    url: s.url,
                    mode: s.mode,
                })
                .collect(),
        },
        Request::SignIn { device } => {
            info!(pid = ?requester.pid, device, "sign-in requested");
            done(if device {
                engine.sign_in_with_device_code().await
            } else {
                engine.sign_in().await
            })
        }
        Request::SignOut => done(engine.sign_out().await),
        Request::RefreshAll => {
            if !forced.admit(RefreshTarget::All) {
                debug!(pid = ?requester.pid, "refresh_all coalesced with a recent one");
                return Response::Done;
            }
            done(engine.refresh_all().await)
        }
        Request::Refresh { server } => {
            if !forced.admit_server(engine, &server) {
                debug!(server = %server, pid = ?requester.pid, "refresh coalesced with a recent one");
                return Response::Done;
            }
            done(engine.refresh(&server).await)
        }
        Request::Connect { server } => done(engine.connect(&server).await),
        Request::Token {
            server,
            min_ttl_secs,
            force_refresh,
            extra_scopes,
            dpop,
        } => {
            // A forced refresh too soon after the last one is served like an ordinary request.
            let force_refresh = force_refresh && forced.admit_server(engine, &server);
            let request = TokenRequest {
                min_ttl: std::time::Duration::from_secs(min_ttl_secs),
                force_refresh,
                extra_scopes,
                requester: Some(requester.clone()),
            };
            match engine.token_with(&server, request).await {
                Ok(token) => {
                    let dpop_proof = match (&token.dpop_jkt, dpop) {
                        (None, _) => None,
                        (Some(jkt), Some(wanted)) => {
                            match proof_for(engine, &server, jkt, &token.access_token, &wanted)
                                .await
                            {
                                Ok(proof) => Some(proof),
                                Err(reply) => return Response::Error(reply),
                            }
                        }
                        (Some(_), None) => {
                            debug!(server = %server, pid = ?requester.pid, "a bound token was asked for without a proof request: refused");
                            return Response::Error(ErrorReply::new(
                                ErrorCode::DpopBound,
                                format!(
                                    "the tokens of {server} are bound to this device's key \
                                     (DPoP): a client that sends a fixed Authorization header \
                                     cannot use them. Connect the client through `lanyard proxy \
                                     {server}` (what `lanyard clients install` writes for such \
                                     servers), or for one request run `lanyard token {server} \
                                     --dpop METHOD URL`"
                                ),
                            ));
                        }
                    };
                    info!(
                        server = %server,
                        pid = ?requester.pid,
                        executable = requester.executable.as_deref().unwrap_or("?"),
                        force_refresh,
                        dpop = dpop_proof.is_some(),
                        "token handed out"
                    );
                    Response::Token {
                        access_token: token.access_token,
                        expires_at: token.expires_at,
                        scopes: token.scopes,
                        dpop_jkt: token.dpop_jkt,
                        dpop_proof,
                    }
                }
                Err(e) => {
                    debug!(server = %server, pid = ?requester.pid, error = %e, "token refused");
                    Response::Error(ErrorReply::from(&e))
                }
            }
        }
    }
}

/// Signs the DPoP proof for the one request a caller named, with the device key the token
/// `jkt` is bound to. Only a request to `server`'s own origin (the policy's URL), over https (or
/// plain http to this machine), with an ordinary method is signed for: the device key also signs
/// at the token endpoints, so a proof for any other URL a local caller named would be a proof the
/// token was never for. The caller's nonce is used only when it is a valid one.
async fn proof_for(
    engine: &EngineHandle,
    server: &str,
    jkt: &str,
    token: &Secret,
    wanted: &ProofRequest,
) -> Result<Secret, ErrorReply> {
    let bad = |m: String| ErrorReply::new(ErrorCode::BadRequest, m);
    let url = url::Url::parse(&wanted.url).map_err(|e| bad(format!("the proof's URL: {e}")))?;
    crate::mcp::bridge::check_server_url(&url).map_err(bad)?;
    let own = engine
        .status()
        .server(server)
        .and_then(|s| url::Url::parse(&s.url).ok())
        .map(|u| u.origin());
    if own.as_ref() != Some(&url.origin()) {
        return Err(bad(format!(
            "a proof for {server}'s token is signed only for requests to {server}'s own server,              not to {}",
            url.origin().ascii_serialization()
        )));
    }
    const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let method = METHODS
        .into_iter()
        .find(|m| *m == wanted.method)
        .ok_or_else(|| {
            bad(format!(
                "{:?} is not a method a proof is signed for",
                wanted.method
            ))
        })?;
    let nonce = match &wanted.nonce {
        Some(n) if !crate::oauth::dpop::valid_nonce(n) => {
            return Err(bad("the proof's nonce is not a valid DPoP nonce".into()))
        }
        other => other.clone(),
    };
    let key = engine.dpop_key();
    if key.thumbprint() != jkt {
        // The key changed since the token was minted (the OS-held key replaced the one made at
        // start): the token is useless; a fresh one follows on the next request.
        return Err(ErrorReply::new(
            ErrorCode::Unavailable,
            "the token was bound to an earlier DPoP key of this agent: ask again with force_refresh",
        ));
    }
    crate::engine::grant::sign_proof(
        &key,
        method,
        &url,
        engine.unix_now(),
        Some(token.clone()),
        nonce,
    )
    .await
    .map_err(|e| ErrorReply::new(ErrorCode::Unavailable, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

    /// An engine with an empty policy: enough to say hello, answer `status` and subscribe.
    fn engine() -> EngineHandle {
        let policy: crate::policy::Policy = serde_json::from_str("{}").expect("an empty policy");
        crate::engine::start(crate::engine::EngineConfig::new(
            policy,
            Arc::new(crate::store::MemoryStore::new()),
            Arc::new(crate::wake::SystemClock),
            Arc::new(crate::signin::browser::SystemBrowser),
        ))
        .expect("the engine starts")
    }

    type Peer = (BufReader<ReadHalf<DuplexStream>>, WriteHalf<DuplexStream>);

    /// One connection to `serve_connection`, as a client sees it.
    fn connect(engine: &EngineHandle) -> Peer {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let engine = engine.clone();
        tokio::spawn(async move {
            let requester = Requester {
                pid: None,
                executable: None,
            };
            serve_connection(engine, theirs, requester, &ForcedRefreshes::default()).await;
        });
        let (read, write) = tokio::io::split(ours);
        (BufReader::new(read), write)
    }

    /// The next line from the agent; empty once it hung up.
    async fn next_line(peer: &mut Peer) -> String {
        let mut line = String::new();
        peer.0.read_line(&mut line).await.expect("read");
        line
    }

    async fn send(peer: &mut Peer, line: &str) {
        peer.1.write_all(line.as_bytes()).await.expect("write");
        peer.1.write_all(b"\n").await.expect("write");
    }

    async fn hello(peer: &mut Peer) {
        send(peer, r#"{"op":"hello","protocol":2,"client":"test"}"#).await;
        assert!(next_line(peer).await.contains(r#""type":"hello""#));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_says_nothing_is_closed_after_the_hello_allowance() {
        let engine = engine();
        let mut silent = connect(&engine);
        let started = Instant::now();
        assert_eq!(next_line(&mut silent).await, "", "the agent hangs up");
        let waited = started.elapsed();
        assert!(
            waited >= HELLO_TIMEOUT && waited < HELLO_TIMEOUT + Duration::from_secs(1),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_greeted_connection_may_rest_up_to_the_idle_allowance_between_requests() {
        let engine = engine();
        let mut peer = connect(&engine);
        hello(&mut peer).await;
        // Just under the allowance, twice over: the connection still answers.
        for _ in 0..2 {
            tokio::time::sleep(IDLE_TIMEOUT - Duration::from_secs(1)).await;
            send(&mut peer, r#"{"op":"status"}"#).await;
            assert!(next_line(&mut peer).await.contains(r#""type":"status""#));
        }
        let replied = Instant::now();
        assert_eq!(next_line(&mut peer).await, "", "the agent hangs up");
        let waited = replied.elapsed();
        assert!(
            waited >= IDLE_TIMEOUT && waited < IDLE_TIMEOUT + Duration::from_secs(1),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscription_stays_open_however_long_it_is_quiet() {
        let engine = engine();
        let mut peer = connect(&engine);
        hello(&mut peer).await;
        send(&mut peer, r#"{"op":"subscribe"}"#).await;
        assert!(next_line(&mut peer).await.contains(r#""type":"status""#));
        // Status lines may come; the end of the stream (an empty read) must not.
        let until_hung_up = async { while !next_line(&mut peer).await.is_empty() {} };
        let ended = tokio::time::timeout(IDLE_TIMEOUT * 10, until_hung_up).await;
        assert!(ended.is_err(), "the agent ended a quiet subscription");
    }

    #[tokio::test(start_paused = true)]
    async fn forced_refreshes_are_admitted_once_per_interval_per_target() {
        let forced = ForcedRefreshes::default();
        let docs = || RefreshTarget::Server("docs".into());
        assert!(forced.admit(docs()));
        assert!(!forced.admit(docs()), "the second within the interval");
        assert!(
            forced.admit(RefreshTarget::All),
            "another target is counted apart"
        );
        assert!(forced.admit(RefreshTarget::Server("tickets".into())));
        tokio::time::advance(FORCED_REFRESH_INTERVAL - Duration::from_millis(1)).await;
        assert!(!forced.admit(docs()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            forced.admit(docs()),
            "admitted again once the interval passed"
        );
        assert!(!forced.admit(docs()));
    }
}
