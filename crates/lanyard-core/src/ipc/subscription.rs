//! A status subscription as a std-only reader: one connection that says hello, asks
//! `{"op":"subscribe"}` and then yields the agent's status each time it changes (the first reply
//! is the current status). For programs that show the agent's state (the tray app): it blocks in
//! `read` between changes, so an idle subscriber costs no wake-ups.
//!
//! It owns only its connection. It never asks for a token, never retries and never starts an
//! agent: reconnecting is the caller's policy.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::engine::Status;

use super::client::{AgentInfo, ClientError};
use super::protocol::{ErrorCode, Request, Response, PROTOCOL_VERSION};

#[cfg(unix)]
type Stream = std::os::unix::net::UnixStream;
#[cfg(windows)]
type Stream = std::fs::File;

/// The subscribe request as it goes on the wire (a request without fields).
const SUBSCRIBE_LINE: &[u8] = b"{\"op\":\"subscribe\"}\n";

/// An open subscription.
pub struct StatusSubscription {
    reader: BufReader<Stream>,
    agent: AgentInfo,
    line: String,
}

impl StatusSubscription {
    /// Connects to the agent at `endpoint`, greets it as `client` and subscribes.
    pub fn open(endpoint: &Path, client: &str) -> Result<Self, ClientError> {
        let stream = open(endpoint).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning {
                    endpoint: endpoint.to_path_buf(),
                }
            }
            _ => ClientError::Io(e),
        })?;
        let mut writer = stream.try_clone()?;
        let mut sub = Self {
            reader: BufReader::new(stream),
            agent: AgentInfo {
                protocol: 0,
                version: String::new(),
                pid: 0,
            },
            line: String::with_capacity(1024),
        };
        let hello = Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: client.to_owned(),
        };
        let mut bytes = serde_json::to_vec(&hello)
            .map_err(|e| ClientError::Protocol(format!("encoding hello: {e}")))?;
        bytes.push(b'\n');
        writer.write_all(&bytes)?;
        match sub.read()? {
            Response::Hello {
                protocol,
                agent_version,
                agent_pid,
            } => {
                sub.agent = AgentInfo {
                    protocol,
                    version: agent_version,
                    pid: agent_pid,
                };
            }
            Response::Error(reply) if reply.code == ErrorCode::VersionMismatch => {
                return Err(ClientError::VersionMismatch {
                    agent: reply.agent_protocol.unwrap_or(0),
                    ours: PROTOCOL_VERSION,
                })
            }
            Response::Error(reply) => return Err(ClientError::Agent(reply)),
            _ => return Err(ClientError::Protocol("no hello from the agent".into())),
        }
        writer.write_all(SUBSCRIBE_LINE)?;
        Ok(sub)
    }

    /// The agent's hello.
    pub fn agent(&self) -> &AgentInfo {
        &self.agent
    }

    /// Waits for the next status (the first call returns the current one). An agent that
    /// stopped is an error (`the agent closed the connection`).
    pub fn next_status(&mut self) -> Result<Status, ClientError> {
        match self.read()? {
            Response::Status { status } => Ok(*status),
            Response::Error(reply) => Err(ClientError::Agent(reply)),
            _ => Err(ClientError::Protocol(
                "a reply that is not a status on a subscription".into(),
            )),
        }
    }

    fn read(&mut self) -> Result<Response, ClientError> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(ClientError::Protocol(
                "the agent closed the connection".into(),
            ));
        }
        let response = serde_json::from_str(self.line.trim_end())
            .map_err(|e| ClientError::Protocol(format!("unreadable reply ({e})")));
        self.line.clear();
        response
    }
}

#[cfg(unix)]
fn open(endpoint: &Path) -> std::io::Result<Stream> {
    Stream::connect(endpoint)
}

#[cfg(windows)]
fn open(endpoint: &Path) -> std::io::Result<Stream> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(endpoint)
}
