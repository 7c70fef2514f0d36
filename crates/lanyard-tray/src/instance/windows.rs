//! The single-instance channel on Windows: a named pipe per user (`\\.\pipe\lanyard-tray-<user>`),
//! created with "first instance" so a second tray cannot also own it, served on the tray's async
//! runtime.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::windows::named_pipe::{ClientOptions, ServerOptions};
use tracing::warn;

use super::{Claim, OPEN};

fn pipe_name() -> String {
    let user = std::env::var("USERNAME").unwrap_or_default();
    format!(r"\\.\pipe\lanyard-tray-{user}")
}

/// Becomes the first tray for this user, or tells the running one to open its window.
pub fn claim(
    _endpoint: &Path,
    runtime: &tokio::runtime::Handle,
    ask_open: bool,
    on_second: impl Fn() + Send + 'static,
) -> std::io::Result<Claim> {
    let name = pipe_name();
    let _inside = runtime.enter();
    match ServerOptions::new().first_pipe_instance(true).create(&name) {
        Ok(first) => {
            runtime.spawn(async move {
                let mut server = first;
                loop {
                    if let Err(e) = server.connect().await {
                        warn!("the tray's single-instance pipe failed: {e}");
                        return;
                    }
                    let mut word = [0u8; 8];
                    let n = server.read(&mut word).await.unwrap_or(0);
                    if word[..n] == *OPEN {
                        on_second();
                    }
                    server = match ServerOptions::new().create(&name) {
                        Ok(next) => next,
                        Err(e) => {
                            warn!("the tray's single-instance pipe failed: {e}");
                            return;
                        }
                    };
                }
            });
            Ok(Claim::First)
        }
        Err(_) => {
            let mut running = ClientOptions::new().open(&name)?;
            if ask_open {
                runtime.block_on(running.write_all(OPEN))?;
            }
            Ok(Claim::Second)
        }
    }
}
