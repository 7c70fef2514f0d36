//! The blocking broker client: std only (no tokio, no policy), so `lanyard token` and `lanyard
//! proxy` reach the agent in about a millisecond. Owns one connection and the hello handshake; it
//! never opens a browser, starts an agent or retries on its own.
//!
//! It also makes sure the agent is genuine before it says anything: on Unix the endpoint's
//! directory must be this user's and private (0700) and the socket this user's (the checks the
//! agent made when it created them), and on Linux the process listening must run as this user
//! (`SO_PEERCRED`); on Windows the pipe's server process must run as this user's SID
//! (`GetNamedPipeServerProcessId`, then its token). Another user's endpoint is
//! [`ClientError::ForeignAgent`]: no hello, no request, nothing is read from it.
//!
//! ```no_run
//! use lanyard_core::ipc::{BlockingClient, TokenRequestOptions};
//! use std::time::Duration;
//!
//! let endpoint = lanyard_core::ipc::default_endpoint()?;
//! let token = BlockingClient::connect(&endpoint)?.token(
//!     "docs",
//!     TokenRequestOptions { min_ttl: Duration::from_secs(60), ..Default::default() },
//! )?;
//! println!("expires at {}", token.expires_at); // token.access_token is a Secret
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::{AccessToken, Status};

use super::endpoint::Distrust;
use super::protocol::{ErrorCode, ErrorReply, Request, Response, ServerInfo, PROTOCOL_VERSION};

#[cfg(unix)]
type Stream = std::os::unix::net::UnixStream;
#[cfg(windows)]
type Stream = std::fs::File;

/// How long a reply may take: token requests may wait for a mint, sign-in for the user.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(660);

/// What the caller wants of a token (see [`crate::engine::TokenRequest`]).
#[derive(Debug, Clone)]
pub struct TokenRequestOptions {
    /// The token must stay valid at least this long. Default: 60 s.
    pub min_ttl: Duration,
    /// Mint anew even though the current token looks valid (the server answered 401).
    pub force_refresh: bool,
    /// Scopes wanted on top of the server's (the server answered 403 `insufficient_scope`).
    pub extra_scopes: Vec<String>,
    /// The request a DPoP proof is wanted for (needed for a bound token).
    pub dpop: Option<super::protocol::ProofRequest>,
}

impl Default for TokenRequestOptions {
    fn default() -> Self {
        Self {
            min_ttl: Duration::from_secs(60),
            force_refresh: false,
            extra_scopes: Vec::new(),
            dpop: None,
        }
    }
}

/// The agent at the other end, from its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub protocol: u32,
    pub version: String,
    pub pid: u32,
}

/// Why a broker call failed. `Display` is one line for a person; nothing secret is in it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the Lanyard agent is not running (no agent at {}); start it with `lanyard agent`", endpoint.display())]
    NotRunning { endpoint: PathBuf },
    /// What answers at the endpoint belongs to another user: an impostor, or a squatted name.
    #[error("the agent at {} is owned by {owner}, not you: refusing", endpoint.display())]
    ForeignAgent { endpoint: PathBuf, owner: String },
    /// The endpoint is this user's but not private, so another user may have replaced it.
    #[error("the agent at {} cannot be trusted ({} {reason}): refusing", endpoint.display(), path.display())]
    UntrustedEndpoint {
        endpoint: PathBuf,
        path: PathBuf,
        reason: String,
    },
    #[error("the Lanyard agent speaks protocol {agent}, this program {ours}: {}", if agent < ours { "the running agent is older; stop it (it was started before an update) and start `lanyard agent` again" } else { "this program is older than the running agent; update it" })]
    VersionMismatch { agent: u32, ours: u32 },
    /// The agent answered with an error (not signed in, denied, unknown server…).
    #[error("{}", .0.message)]
    Agent(ErrorReply),
    #[error("talking to the Lanyard agent failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the Lanyard agent sent something unexpected: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The agent's error code, when the agent answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Agent(reply) => Some(reply.code),
            _ => None,
        }
    }
}

/// One connection to the agent, greeted. Requests go one at a time; open several clients for
/// parallel requests.
pub struct BlockingClient {
    reader: BufReader<Stream>,
    writer: Stream,
    agent: AgentInfo,
    line: String,
}

impl BlockingClient {
    /// Connects to the agent at `endpoint` and says hello. A missing endpoint or a refused
    /// connection is [`ClientError::NotRunning`]; another protocol version is
    /// [`ClientError::VersionMismatch`].
    pub fn connect(endpoint: &Path) -> Result<Self, ClientError> {
        let distrusted = |distrust: Distrust| match distrust {
            Distrust::Missing => ClientError::NotRunning {
                endpoint: endpoint.to_path_buf(),
            },
            Distrust::Foreign { owner } => ClientError::ForeignAgent {
                endpoint: endpoint.to_path_buf(),
                owner,
            },
            Distrust::Insecure { path, reason } => ClientError::UntrustedEndpoint {
                endpoint: endpoint.to_path_buf(),
                path,
                reason,
            },
        };
        #[cfg(unix)]
        super::endpoint::check_before_connect(endpoint).map_err(distrusted)?;
        let stream = open(endpoint).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning {
                    endpoint: endpoint.to_path_buf(),
                }
            }
            _ => ClientError::Io(e),
        })?;
        check_peer(&stream).map_err(distrusted)?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut client = Self {
            reader,
            writer: stream,
            agent: AgentInfo {
                protocol: 0,
                version: String::new(),
                pid: 0,
            },
            line: String::with_capacity(512),
        };
        let hello = Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: concat!("lanyard-core ", env!("CARGO_PKG_VERSION")).to_owned(),
        };
        match client.call(&hello, REPLY_TIMEOUT) {
            Ok(Response::Hello {
                protocol,
                agent_version,
                agent_pid,
            }) => {
                client.agent = AgentInfo {
                    protocol,
                    version: agent_version,
                    pid: agent_pid,
                };
                Ok(client)
            }
            Ok(other) => Err(unexpected(&other)),
            Err(ClientError::Agent(reply)) if reply.code == ErrorCode::VersionMismatch => {
                Err(ClientError::VersionMismatch {
                    agent: reply.agent_protocol.unwrap_or(0),
                    ours: PROTOCOL_VERSION,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Connects to this user's default endpoint (see [`super::default_endpoint`]).
    pub fn connect_default() -> Result<Self, ClientError> {
        let endpoint = super::default_endpoint()
            .map_err(|e| ClientError::Io(std::io::Error::other(e.to_string())))?;
        Self::connect(&endpoint)
    }

    /// The agent's hello.
    pub fn agent(&self) -> &AgentInfo {
        &self.agent
    }

    /// A token for `server`. Never opens a browser: when sign-in is needed this is
    /// `Agent(ErrorReply { code: NotSignedIn | StepUpRequired, .. })`.
    pub fn token(
        &mut self,
        server: &str,
        options: TokenRequestOptions,
    ) -> Result<AccessToken, ClientError> {
        let request = Request::Token {
            server: server.to_owned(),
            min_ttl_secs: options.min_ttl.as_secs(),
            force_refresh: options.force_refresh,
            extra_scopes: options.extra_scopes,
            dpop: options.dpop,
        };
        match self.call(&request, REPLY_TIMEOUT)? {
            Response::Token {
                access_token,
                expires_at,
                scopes,
                dpop_jkt,
                dpop_proof,
            } => Ok(AccessToken {
                access_token,
                expires_at,
                scopes,
                dpop_jkt,
                dpop_proof,
            }),
            other => Err(unexpected(&other)),
        }
    }

    pub fn status(&mut self) -> Result<Status, ClientError> {
        match self.call(&Request::Status, REPLY_TIMEOUT)? {
            Response::Status { status } => Ok(*status),
            other => Err(unexpected(&other)),
        }
    }

    pub fn servers(&mut self) -> Result<Vec<ServerInfo>, ClientError> {
        match self.call(&Request::Servers, REPLY_TIMEOUT)? {
            Response::Servers { servers } => Ok(servers),
            other => Err(unexpected(&other)),
        }
    }

    /// Subscribes to the agent's status: the iterator yields the current status first, then the
    /// latest status after each change (intermediate states may be skipped when the reader is
    /// slower than the changes). It blocks between changes with no timeout and ends (`None`) when
    /// the agent hangs up, e.g. on shutdown; a caller that must notice a dead agent sooner should
    /// keep its own watchdog. Drop it to unsubscribe. The connection carries nothing else from
    /// then on, so open another [`BlockingClient`] for requests.
    ///
    /// ```no_run
    /// use lanyard_core::ipc::BlockingClient;
    ///
    /// for status in BlockingClient::connect_default()?.subscribe()? {
    ///     let status = status?;
    ///     println!("{} servers", status.servers.len());
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe(mut self) -> Result<StatusUpdates, ClientError> {
        let first = match self.call(&Request::Subscribe, REPLY_TIMEOUT)? {
            Response::Status { status } => *status,
            other => return Err(unexpected(&other)),
        };
        #[cfg(unix)]
        self.writer.set_read_timeout(None)?;
        Ok(StatusUpdates {
            client: self,
            first: Some(first),
        })
    }

    /// Asks the agent to sign in (it opens the browser, or starts a device-code sign-in whose
    /// code appears in its status); returns when the sign-in finished.
    pub fn sign_in(&mut self, device: bool) -> Result<(), ClientError> {
        self.expect_done(&Request::SignIn { device }, SIGN_IN_TIMEOUT)
    }

    pub fn sign_out(&mut self) -> Result<(), ClientError> {
        self.expect_done(&Request::SignOut, REPLY_TIMEOUT)
    }

    pub fn refresh_all(&mut self) -> Result<(), ClientError> {
        self.expect_done(&Request::RefreshAll, REPLY_TIMEOUT)
    }

    /// Connects the `oauth` server `server`: the agent opens the browser; answered when done
    /// (as long as a browser sign-in may take).
    pub fn connect_server(&mut self, server: &str) -> Result<(), ClientError> {
        let request = Request::Connect {
            server: server.to_owned(),
        };
        self.expect_done(&request, SIGN_IN_TIMEOUT)
    }

    pub fn refresh(&mut self, server: &str) -> Result<(), ClientError> {
        let request = Request::Refresh {
            server: server.to_owned(),
        };
        self.expect_done(&request, REPLY_TIMEOUT)
    }

    fn expect_done(&mut self, request: &Request, timeout: Duration) -> Result<(), ClientError> {
        match self.call(request, timeout)? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends one request and reads its reply; an error reply becomes [`ClientError::Agent`].
    pub fn call(&mut self, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
        let mut bytes = serde_json::to_vec(request)
            .map_err(|e| ClientError::Protocol(format!("encoding the request: {e}")))?;
        bytes.push(b'\n');
        #[cfg(unix)]
        self.writer.set_read_timeout(Some(timeout))?;
        #[cfg(not(unix))]
        let _ = timeout;
        let written = self.writer.write_all(&bytes);
        self.line.clear();
        let read = self.reader.read_line(&mut self.line);
        // An agent that refuses a peer answers and hangs up before reading: its answer, when
        // there is one, explains a failed write better than "broken pipe".
        let n = match (written, read) {
            (Ok(()), read) => read?,
            (Err(_), Ok(n)) if n > 0 => n,
            (Err(e), _) => return Err(ClientError::Io(e)),
        };
        if n == 0 {
            return Err(ClientError::Protocol(
                "the agent closed the connection".into(),
            ));
        }
        let response: Response = serde_json::from_str(self.line.trim_end())
            .map_err(|e| ClientError::Protocol(format!("unreadable reply ({e})")))?;
        // The reply line may hold a token: do not keep it around.
        self.line.clear();
        match response {
            Response::Error(reply) => Err(ClientError::Agent(reply)),
            other => Ok(other),
        }
    }
}

/// The status stream of [`BlockingClient::subscribe`]: `Ok(status)` per change, an `Err` for a line
/// that makes no sense, `None` once the agent hung up.
pub struct StatusUpdates {
    client: BlockingClient,
    first: Option<Status>,
}

impl StatusUpdates {
    /// The agent at the other end.
    pub fn agent(&self) -> &AgentInfo {
        &self.client.agent
    }
}

impl Iterator for StatusUpdates {
    type Item = Result<Status, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        let line = &mut self.client.line;
        line.clear();
        match self.client.reader.read_line(line) {
            Ok(0) => None,
            Err(e) => Some(Err(ClientError::Io(e))),
            Ok(_) => Some(match serde_json::from_str::<Response>(line.trim_end()) {
                Ok(Response::Status { status }) => Ok(*status),
                Ok(other) => Err(unexpected(&other)),
                Err(e) => Err(ClientError::Protocol(format!("unreadable status ({e})"))),
            }),
        }
    }
}

fn unexpected(response: &Response) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {response:?}"))
}

#[cfg(unix)]
fn open(endpoint: &Path) -> std::io::Result<Stream> {
    Stream::connect(endpoint)
}

/// Linux: the process listening on the socket must run as this user (its credentials as the
/// kernel recorded them when it called `listen`, so a socket file handed over or re-owned later
/// does not change them).
#[cfg(target_os = "linux")]
fn check_peer(stream: &Stream) -> Result<(), Distrust> {
    let me = rustix::process::geteuid().as_raw();
    match rustix::net::sockopt::socket_peercred(stream) {
        Ok(cred) if cred.uid.as_raw() == me => Ok(()),
        Ok(cred) => Err(Distrust::Foreign {
            owner: format!("uid {}", cred.uid.as_raw()),
        }),
        Err(e) => Err(Distrust::Insecure {
            path: PathBuf::from("the socket's peer"),
            reason: format!("cannot be identified: {e}"),
        }),
    }
}

/// Other Unix systems (macOS): the directory and socket checks of
/// [`super::endpoint::check_before_connect`] stand alone. The endpoint sits in a 0700 directory
/// of this user, so only this user (or root) can have bound it.
#[cfg(all(unix, not(target_os = "linux")))]
fn check_peer(_stream: &Stream) -> Result<(), Distrust> {
    Ok(())
}

#[cfg(windows)]
fn open(endpoint: &Path) -> std::io::Result<Stream> {
    use std::os::windows::fs::OpenOptionsExt;
    // Identification only: the server may learn who we are, never act as us (a pipe server may
    // impersonate its clients unless they say otherwise).
    const SECURITY_IDENTIFICATION: u32 = 1 << 16;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .security_qos_flags(SECURITY_IDENTIFICATION)
        .open(endpoint)
}

/// Windows: the process that created the pipe must run as this user's SID. Pipe names are global
/// to the machine, so another user can create `lanyard-agent-<our SID>` before the agent does.
#[cfg(windows)]
fn check_peer(stream: &Stream) -> Result<(), Distrust> {
    use crate::os::windows::{current_user_sid, pipe_server_pid, process_user_sid};
    let unidentified = |e: std::io::Error| Distrust::Insecure {
        path: PathBuf::from("the pipe's server"),
        reason: format!("cannot be identified: {e}"),
    };
    let me = current_user_sid().map_err(unidentified)?;
    let pid = pipe_server_pid(stream).map_err(unidentified)?;
    // Opening another user's process is normally denied: that, too, is not our agent.
    let owner = process_user_sid(pid).map_err(|e| Distrust::Foreign {
        owner: format!("process {pid}, whose user cannot be read ({e})"),
    })?;
    if owner == me {
        Ok(())
    } else {
        Err(Distrust::Foreign { owner })
    }
}
