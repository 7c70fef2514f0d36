//! The broker, hosted by the tray app exactly as `lanyard agent` hosts it: the user's agent lock
//! first (one host per user), then `lanyard_core::ipc::serve` on the user's endpoint, so
//! `lanyard token` / `lanyard proxy` talk to the tray app's engine.
//!
//! This module only claims the endpoint and starts or stops serving; the protocol, peer checks and
//! the socket file belong to `lanyard_core::ipc`. It never sees a token.

use std::path::PathBuf;
use std::sync::Mutex;

use lanyard_core::engine::EngineHandle;
use lanyard_core::ipc::{self, AgentLock, EndpointError};
use serde::Serialize;
use tokio::sync::oneshot;
use tracing::{info, warn};

/// Whether this app serves the broker, for the window and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BrokerState {
    Serving {
        endpoint: String,
    },
    /// Another host (a `lanyard agent`, another tray app) already serves this user.
    OtherHost {
        pid: Option<u32>,
        endpoint: String,
    },
    Unavailable {
        reason: String,
    },
}

/// The claimed endpoint, held for the app's lifetime.
pub struct Claim {
    _lock: AgentLock,
    endpoint: PathBuf,
}

/// Takes this user's agent lock, or says who holds it.
pub fn claim() -> Result<Claim, BrokerState> {
    let endpoint = ipc::default_endpoint().map_err(|e| BrokerState::Unavailable {
        reason: e.to_string(),
    })?;
    match AgentLock::acquire(&endpoint) {
        Ok(lock) => Ok(Claim {
            _lock: lock,
            endpoint,
        }),
        Err(EndpointError::AlreadyRunning { pid }) => Err(BrokerState::OtherHost {
            pid,
            endpoint: endpoint.display().to_string(),
        }),
        Err(e) => Err(BrokerState::Unavailable {
            reason: e.to_string(),
        }),
    }
}

/// A running broker; [`Serving::stop`] removes the socket.
pub struct Serving {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<tauri::async_runtime::JoinHandle<()>>>,
    _claim: Claim,
}

/// Serves the broker for `engine` on the claimed endpoint (on the tauri async runtime).
pub fn serve(engine: EngineHandle, claim: Claim) -> (Serving, BrokerState) {
    let endpoint = claim.endpoint.clone();
    let state = BrokerState::Serving {
        endpoint: endpoint.display().to_string(),
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tauri::async_runtime::spawn(async move {
        info!(endpoint = %endpoint.display(), "serving the broker");
        let stopped = async {
            let _ = stop_rx.await;
        };
        if let Err(e) = ipc::serve(engine, &endpoint, stopped).await {
            warn!("the broker stopped: {e}");
        }
    });
    (
        Serving {
            stop: Mutex::new(Some(stop_tx)),
            task: Mutex::new(Some(task)),
            _claim: claim,
        },
        state,
    )
}

impl Serving {
    /// Stops serving and waits (bounded) until the socket is removed.
    pub fn stop(&self) {
        let stop = self.stop.lock().ok().and_then(|mut s| s.take());
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = tauri::async_runtime::block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(2), task).await
            });
        }
    }
}
