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
    ask_open: bool,
    on_second: impl Fn() + Send + 'static,
) -> std::io::Result<Claim> {
    // The agent's directory, created private (0700) when the tray comes first.
    let dir = lanyard_core::ipc::endpoint::prepare_directory(endpoint)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let path = dir.join("tray.sock");
    if let Ok(mut running) = UnixStream::connect(&path) {
        if ask_open {
            running.write_all(OPEN)?;
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;

    /// A second tray started at login (`ask_open = false`) leaves the first alone; one started by
    /// hand asks it to open the status window. Real socket in a private directory.
    #[test]
    fn a_second_tray_at_login_does_not_open_the_window() {
        let dir = std::env::temp_dir().join(format!("lanyard-tray-claim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let endpoint = dir.join("lanyard").join("agent.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let opened = Arc::new(AtomicUsize::new(0));
        let counter = opened.clone();
        let first = claim(&endpoint, runtime.handle(), true, move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .expect("first claim");
        assert_eq!(first, Claim::First);

        let at_login = claim(&endpoint, runtime.handle(), false, || {}).expect("at-login claim");
        assert_eq!(at_login, Claim::Second);
        let by_hand = claim(&endpoint, runtime.handle(), true, || {}).expect("second claim");
        assert_eq!(by_hand, Claim::Second);
        // The hand-started one's request arrives. Connections are served in order, so by then the
        // at-login one (connected first) has been read: it sent nothing.
        let deadline = Instant::now() + Duration::from_secs(5);
        while opened.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            opened.load(Ordering::SeqCst),
            1,
            "only the hand-started launch asks"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
