//! SEAM(broker): the tray app hosts the local broker (`lanyard token`/`proxy` talk to it) the same
//! way `lanyard agent` does, one host per user.
//!
//! The broker IPC (`lanyard_core::ipc::serve(engine, endpoint, shutdown)`) is being built in
//! parallel and has not landed in this tree yet. Until it does, [`serve`] reports that no broker is
//! hosted, and the CLI keeps hosting its own in-process engine. Replace the body when it lands.

use lanyard_core::engine::EngineHandle;

/// Whether a broker is being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerState {
    Serving { endpoint: String },
    NotAvailable { reason: String },
}

/// Starts serving the broker for `engine` (see the module doc).
pub fn serve(_engine: &EngineHandle) -> BrokerState {
    BrokerState::NotAvailable {
        reason: "this build has no broker IPC yet".into(),
    }
}
