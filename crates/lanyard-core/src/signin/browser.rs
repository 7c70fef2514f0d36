//! Opening a URL in the user's browser: the [`Browser`] port and the system implementation.
//!
//! [`SystemBrowser`] honours `$BROWSER` (a list of commands separated by `:`, or by `;` on Windows,
//! whose paths hold colons; `%s` is replaced by the URL, otherwise the URL is appended as the last
//! argument), so tests and the demo can plug in a scripted browser, and otherwise uses the platform
//! opener: `open` on macOS, the shell's URL handler (`ShellExecuteW`, no command line to mangle `&`)
//! on Windows, `xdg-open` elsewhere. Only the engine's sign-in opens a
//! browser; token helpers never do.

use std::process::{Command, Stdio};

use url::Url;

/// Something that shows the user a URL.
pub trait Browser: Send + Sync + 'static {
    fn open(&self, url: &Url) -> Result<(), String>;
}

/// The user's browser as the OS (or `$BROWSER`) says.
#[derive(Debug, Default, Clone)]
pub struct SystemBrowser;

impl Browser for SystemBrowser {
    fn open(&self, url: &Url) -> Result<(), String> {
        let mut failures = Vec::new();
        if let Ok(list) = std::env::var("BROWSER") {
            let separator = if cfg!(windows) { ';' } else { ':' };
            for entry in list.split(separator).filter(|e| !e.trim().is_empty()) {
                match spawn_command(entry, url.as_str()) {
                    Ok(()) => return Ok(()),
                    Err(e) => failures.push(e),
                }
            }
        }
        #[cfg(windows)]
        match crate::os::windows::shell_open(url.as_str()) {
            Ok(()) => return Ok(()),
            Err(e) => failures.push(format!("the default browser: {e}")),
        }
        for opener in platform_openers() {
            match spawn_command(opener, url.as_str()) {
                Ok(()) => return Ok(()),
                Err(e) => failures.push(e),
            }
        }
        Err(format!(
            "no browser could be started ({})",
            failures.join("; ")
        ))
    }
}

fn platform_openers() -> &'static [&'static str] {
    if cfg!(target_os = "macos") {
        &["open"]
    } else if cfg!(windows) {
        &[] // ShellExecuteW above
    } else {
        &["xdg-open", "sensible-browser"]
    }
}

/// Splits `command_line` on whitespace, puts the URL in place of `%s` or at the end, and starts it
/// without waiting (a reaper thread collects its exit status).
fn spawn_command(command_line: &str, url: &str) -> Result<(), String> {
    let mut words: Vec<String> = command_line.split_whitespace().map(str::to_owned).collect();
    if words.is_empty() {
        return Err("empty command".into());
    }
    if words.iter().any(|w| w.contains("%s")) {
        for w in &mut words {
            *w = w.replace("%s", url);
        }
    } else {
        words.push(url.to_owned());
    }
    let program = words.remove(0);
    let mut child = Command::new(&program)
        .args(&words)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}
