//! The single-instance channel on Unix: `tray.sock` in the agent's socket directory (private to
//! the user), accepted on a thread of its own that sleeps in `accept`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use tracing::warn;

use super::{Claim, OPEN};

/// Becomes the first tray for `endpoint`'s directory, or tells the running one to open its window.
pub fn claim(
    endpoint: &Path,
    _runtime: &tokio::runtime::Handle,
    on_second: impl Fn() + Send + 'static,
) -> std::io::Result<Claim> {
    // The agent's directory, created private (0700) when the tray comes first.
    let dir = lanyard_core::ipc::endpoint::prepare_directory(endpoint)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let path = dir.join("tray.sock");
    if let Ok(mut running) = UnixStream::connect(&path) {
        running.write_all(OPEN)?;
        return Ok(Claim::Second);
    }
    // Nobody answers: a file left by a tray that died is stale.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::thread::Builder::new()
        .name("tray-instance".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(mut stream) => {
                        let mut word = [0u8; 8];
                        let n = stream.read(&mut word).unwrap_or(0);
                        if word[..n] == *OPEN {
                            on_second();
                        }
                    }
                    Err(e) => warn!("the tray's single-instance socket failed: {e}"),
                }
            }
        })?;
    Ok(Claim::First)
}
