//! Opening a URL in the user's browser: the [`Browser`] port and the system implementation.
//!
//! [`SystemBrowser`] honours `$BROWSER` (a list of commands separated by `:`, or by `;` on Windows,
//! whose paths hold colons; `%s` is replaced by the URL, otherwise the URL is appended as the last
//! argument), so tests and the demo can plug in a scripted browser, and otherwise uses the platform
//! opener: `open` on macOS, the shell's URL handler (`ShellExecuteW`, no command line to mangle `&`)
//! on Windows, `xdg-open` elsewhere. Only the engine's sign-in opens a
//! browser; token helpers never do.
//!
//! The commands started here do not inherit the agent's environment: they get only what a
//! browser needs to find the desktop session and the user's settings ([`browser_environment`]),
//! so a client secret the policy takes from an environment variable (`env:NAME`), or anything else
//! the agent was started with, never reaches the browser or its helpers. On Windows the default
//! browser is started by the shell (`ShellExecuteW`), which passes the agent's environment on;
//! there an `env:` secret does reach it (prefer `keychain:` or `file:` secrets there).
//!
//! The URL a sign-in hands the system browser is the loopback listener's start page, not the
//! authorization URL ([`Browser::open_via_loopback`]): command lines are readable by every local
//! user on Linux (`/proc/<pid>/cmdline`).

use std::process::{Command, Stdio};

use url::Url;

/// Something that shows the user a URL.
pub trait Browser: Send + Sync + 'static {
    fn open(&self, url: &Url) -> Result<(), String>;

    /// Whether a sign-in gives this browser an opaque loopback address that redirects to the
    /// sign-in page ([`super::LoopbackListener::start_page`]) rather than the page's own URL, so
    /// the authorization URL never sits on a command line. The system browser does; scripted
    /// browsers that read the sign-in URL itself keep the default (no).
    fn open_via_loopback(&self) -> bool {
        false
    }
}

/// The user's browser as the OS (or `$BROWSER`) says.
#[derive(Debug, Default, Clone)]
pub struct SystemBrowser;

impl Browser for SystemBrowser {
    fn open_via_loopback(&self) -> bool {
        true
    }

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
        .env_clear()
        .envs(browser_environment(std::env::vars_os()))
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

/// Variables a browser (and `xdg-open`, `open`, a `$BROWSER` wrapper) needs: the desktop session,
/// the user's locale, home, paths and temporary directories. Names ending in `*` are prefixes.
const BROWSER_VARIABLES: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_*",
    "DESKTOP_SESSION",
    "GNOME_SETUP_DISPLAY",
    "KDE_FULL_SESSION",
    "KDE_SESSION_VERSION",
    "BROWSER",
    "MOZ_ENABLE_WAYLAND",
    "SystemRoot",
    "windir",
    "SystemDrive",
    "USERPROFILE",
    "USERNAME",
    "USERDOMAIN",
    "APPDATA",
    "LOCALAPPDATA",
    "HOMEDRIVE",
    "HOMEPATH",
    "TEMP",
    "TMP",
    "ProgramFiles",
    "ProgramFiles(x86)",
    "ProgramW6432",
    "ProgramData",
    "CommonProgramFiles",
    "CommonProgramFiles(x86)",
    "CommonProgramW6432",
    "ComSpec",
    "PATHEXT",
    "PUBLIC",
    "OS",
    "NUMBER_OF_PROCESSORS",
    "PROCESSOR_ARCHITECTURE",
];

/// Words that mark a variable as a secret even when its name is otherwise allowed (`XDG_…`).
const SECRET_MARKERS: &[&str] = &[
    "SECRET",
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "LANYARD",
];

/// What of `vars` (the agent's environment) a started browser gets: the names on the allow-list
/// ([`BROWSER_VARIABLES`], case-insensitively, since Windows' names are), minus any whose name
/// says it holds a secret or belongs to Lanyard.
pub fn browser_environment(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    vars.into_iter()
        .filter(|(name, _)| {
            let Some(name) = name.to_str() else {
                return false;
            };
            let upper = name.to_ascii_uppercase();
            let allowed = BROWSER_VARIABLES.iter().any(|entry| {
                let entry = entry.to_ascii_uppercase();
                match entry.strip_suffix('*') {
                    Some(prefix) => upper.starts_with(prefix),
                    None => upper == entry,
                }
            });
            allowed && !SECRET_MARKERS.iter().any(|m| upper.contains(m))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn the_browser_gets_the_desktop_session_and_no_secrets() {
        let kept = browser_environment(env(&[
            ("PATH", "/usr/bin"),
            ("DISPLAY", ":0"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("LC_ALL", "C.UTF-8"),
            ("SystemRoot", "C:\\Windows"),
            ("SYSTEMROOT", "C:\\Windows"),
            ("ACME_CLIENT_SECRET", "s3cr3t"),
            ("LANYARD_POLICY", "/tmp/p.json"),
            ("XDG_SECRET_THING", "s3cr3t"),
            ("AWS_SESSION_TOKEN", "t0k3n"),
            ("RANDOM_VALUE", "x"),
        ]));
        let names: Vec<_> = kept
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "PATH",
                "DISPLAY",
                "XDG_RUNTIME_DIR",
                "LC_ALL",
                "SystemRoot",
                "SYSTEMROOT"
            ]
        );
    }

    /// A `$BROWSER` script that writes its environment to a file: started the real way, it sees
    /// none of the agent's secrets.
    #[cfg(unix)]
    #[test]
    fn a_started_browser_does_not_see_the_agents_secrets() {
        use std::os::unix::fs::PermissionsExt as _;
        if let Some(dir) = std::env::var_os("LANYARD_BROWSER_ENV_CHILD") {
            // The child: the agent opening a sign-in URL.
            let dump = std::path::PathBuf::from(dir).join("env.txt");
            let url = Url::parse("https://idp.example/authorize?state=x").expect("url");
            SystemBrowser.open(&url).expect("opened");
            for _ in 0..500 {
                if dump.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("the browser script did not run");
        }
        let dir = std::env::temp_dir().join(format!(
            "lanyard-browser-env-{}",
            crate::signin::random_id()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let dump = dir.join("env.txt");
        let script = dir.join("browser.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nenv > {0}.tmp && mv {0}.tmp {0}\n",
                dump.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // What a policy's `env:` client secret looks like in the agent's environment. The test
        // binary runs itself as the "agent" with it (no set_var in a multi-threaded test binary).
        let secret = format!("s3cr3t-{}", crate::signin::random_id());
        let status = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "signin::browser::tests::a_started_browser_does_not_see_the_agents_secrets",
                "--nocapture",
            ])
            .env("LANYARD_BROWSER_ENV_CHILD", &dir)
            .env("ACME_IDP_CLIENT_SECRET", &secret)
            .env("BROWSER", script.as_os_str())
            .env("DISPLAY", ":42")
            .status()
            .expect("child");
        assert!(status.success(), "the child test failed");
        let seen =
            std::fs::read_to_string(&dump).expect("the browser ran and wrote its environment");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(seen.contains("DISPLAY=:42"), "{seen}");
        assert!(
            !seen.contains(&secret),
            "the secret reached the browser:\n{seen}"
        );
        assert!(!seen.contains("ACME_IDP_CLIENT_SECRET"), "{seen}");
        assert!(!seen.contains("LANYARD_BROWSER_ENV_CHILD"), "{seen}");
    }
}
