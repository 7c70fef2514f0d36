//! The host: what the tray app knows about the agent (its last status, whether it is reachable)
//! and turns into what the tray, the window and the notifications show.
//!
//! It runs no engine and no broker and never holds a token: statuses come from the agent's
//! subscription ([`crate::link`]), actions go to the agent as broker requests
//! ([`crate::actions`]). It owns only display state (the last tray look, the notices already
//! shown, autostart). Putting that state on screen (tray icon, notifications, window events) is
//! the tray's and the window's own code: nothing here needs a toolkit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use lanyard_core::clock::Clock;
use lanyard_core::engine::{PolicyStatus, Status};
use lanyard_core::ipc::AgentInfo;
use tracing::warn;

use crate::clients::AiClient;
use crate::link::LinkEvent;
use crate::look::{self, PanelTheme, TrayLook};
use crate::notices::{Notice, NoticeTracker};
use crate::snapshot::{AgentView, AutostartView, PolicyProblem, PolicyView, Snapshot};

/// `url` when the tray may open it as the support page: an `https:` page or a `mailto:` address.
/// The agent's policy validation demands the same, but the status arrives over the broker and the
/// system opener starts whatever handler a scheme names (`file:`, `smb:`, an app's own scheme), so
/// the tray checks again before it shows or opens the link.
pub fn openable_support_url(url: &str) -> Option<String> {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "https" | "mailto") => Some(url.to_owned()),
        Ok(parsed) => {
            warn!(
                scheme = parsed.scheme(),
                "ignoring a support URL that is not https or mailto"
            );
            None
        }
        Err(e) => {
            warn!(error = %e, "ignoring a support URL that does not parse");
            None
        }
    }
}

/// How the host is built.
pub struct HostOptions {
    /// The agent's endpoint (socket or pipe).
    pub endpoint: PathBuf,
    /// The managed policy file (passed to an agent the tray starts, shown in the window).
    pub policy_path: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
    pub theme: PanelTheme,
    /// The `lanyard` CLI, for "Connect AI clients" and to start the agent.
    pub cli: Option<PathBuf>,
}

/// The agent as the tray sees it.
pub struct Host {
    endpoint: PathBuf,
    policy_path: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    theme: PanelTheme,
    cli: Option<PathBuf>,
    agent: Mutex<AgentView>,
    status: Mutex<Option<Status>>,
    clients: Mutex<Vec<AiClient>>,
    autostart: Mutex<AutostartView>,
    tray_look: Mutex<Option<TrayLook>>,
    tracker: Mutex<NoticeTracker>,
    notices_sent: Mutex<Vec<Notice>>,
}

/// Locks a mutex, carrying on with the data when another thread panicked while holding it (the
/// values here are plain display state, valid at every point).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Host {
    /// A host that has not heard from the agent yet.
    pub fn new(options: HostOptions) -> Host {
        Host {
            endpoint: options.endpoint,
            policy_path: options.policy_path,
            clock: options.clock,
            theme: options.theme,
            cli: options.cli,
            agent: Mutex::new(AgentView::Connecting),
            status: Mutex::new(None),
            clients: Mutex::new(Vec::new()),
            autostart: Mutex::new(AutostartView {
                enabled: false,
                locked: false,
            }),
            tray_look: Mutex::new(None),
            tracker: Mutex::new(NoticeTracker::default()),
            notices_sent: Mutex::new(Vec::new()),
        }
    }

    /// Takes one event of the agent link. Returns whether anything shown changed.
    pub fn observe(&self, event: LinkEvent) -> bool {
        match event {
            LinkEvent::Connected(AgentInfo { pid, version, .. }) => {
                *lock(&self.agent) = AgentView::Connected { pid, version };
                true
            }
            LinkEvent::Status(status) => {
                *lock(&self.status) = Some(*status);
                true
            }
            LinkEvent::Lost { reason } => {
                let had_status = lock(&self.status).take().is_some();
                let mut agent = lock(&self.agent);
                let was_connected = matches!(*agent, AgentView::Connected { .. });
                // Before the first contact the state is "starting", after it "reconnecting".
                let next = match &*agent {
                    AgentView::Connecting => AgentView::Connecting,
                    _ => AgentView::Reconnecting { reason },
                };
                let changed = had_status || was_connected || *agent != next;
                *agent = next;
                changed
            }
        }
    }

    /// The agent's endpoint.
    pub fn endpoint(&self) -> &Path {
        &self.endpoint
    }

    pub fn policy_path(&self) -> Option<&Path> {
        self.policy_path.as_deref()
    }

    pub fn cli(&self) -> Option<&Path> {
        self.cli.as_deref()
    }

    /// The organization's start-at-login value. The first-run default is applied when the tray
    /// starts, before the agent has answered, so it is the built-in one (on), and the switch is
    /// offered unlocked: whether the organization locked it is not shared by the agent.
    pub fn autostart_policy(&self) -> AutostartView {
        AutostartView {
            enabled: true,
            locked: false,
        }
    }

    /// The organization's support page, as the agent's policy says, when it may be opened (see
    /// [`openable_support_url`]).
    pub fn support_url(&self) -> Option<String> {
        lock(&self.status).as_ref().and_then(|s| {
            s.organization
                .support_url
                .as_deref()
                .and_then(openable_support_url)
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        let status = lock(&self.status).clone();
        let support_url = status.as_ref().and_then(|s| {
            s.organization
                .support_url
                .as_deref()
                .and_then(openable_support_url)
        });
        let source = self.policy_path.as_ref().map_or_else(
            || "the managed policy".to_owned(),
            |p| p.display().to_string(),
        );
        let problems = match status.as_ref().map(|s| &s.policy) {
            Some(PolicyStatus::Misconfigured { errors }) => errors
                .iter()
                .map(|line| PolicyProblem {
                    key_path: String::new(),
                    message: line.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        Snapshot::new(
            status,
            PolicyView {
                source,
                support_url,
                problems,
            },
            *lock(&self.autostart),
            lock(&self.agent).clone(),
            self.clock.unix_now(),
        )
    }

    pub fn set_clients(&self, clients: Vec<AiClient>) {
        *lock(&self.clients) = clients;
    }

    pub fn set_autostart(&self, view: AutostartView) {
        *lock(&self.autostart) = view;
    }

    pub fn autostart(&self) -> AutostartView {
        *lock(&self.autostart)
    }

    /// The look the tray shows now.
    pub fn tray_look(&self) -> Option<TrayLook> {
        lock(&self.tray_look).clone()
    }

    /// Every notice shown since start.
    pub fn notices_sent(&self) -> Vec<Notice> {
        lock(&self.notices_sent).clone()
    }

    /// The look `snapshot` calls for.
    pub fn look_for(&self, snapshot: &Snapshot) -> TrayLook {
        look::look(snapshot, self.theme, &lock(&self.clients))
    }

    /// Records `look` as the one the tray shows; returns whether it differs from the last one.
    pub fn set_tray_look(&self, look: TrayLook) -> bool {
        let mut shown = lock(&self.tray_look);
        let changed = shown.as_ref() != Some(&look);
        *shown = Some(look);
        changed
    }

    /// Decides which notices a snapshot calls for and records them as sent.
    pub fn take_notices(&self, snapshot: &Snapshot) -> Vec<Notice> {
        let Some(status) = &snapshot.status else {
            return Vec::new();
        };
        let notices = lock(&self.tracker).observe(status, snapshot.now);
        // The organization turned notifications off: the tracker still learns what was seen.
        if !status.organization.notifications {
            return Vec::new();
        }
        lock(&self.notices_sent).extend(notices.iter().cloned());
        notices
    }
}

/// `LANYARD_TRAY_REPORT=FILE`: the tray process writes what it shows (the look applied to the tray
/// icon, every notice sent) to FILE as JSON each time that changes, replacing it whole. The
/// end-to-end tests read it; the status window is another process and cannot see the tray.
pub fn report(host: &Host) {
    let Some(path) = std::env::var_os("LANYARD_TRAY_REPORT") else {
        return;
    };
    let shown = serde_json::json!({
        "look": host.tray_look(),
        "notices": host.notices_sent(),
    });
    let path = PathBuf::from(path);
    let partial = path.with_extension("partial");
    let written =
        std::fs::write(&partial, shown.to_string()).and_then(|()| std::fs::rename(&partial, &path));
    if let Err(e) = written {
        warn!("cannot write the tray report {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_core::wake::SystemClock;

    fn host_told(support_url: &str) -> Host {
        let host = Host::new(HostOptions {
            endpoint: PathBuf::from("/nonexistent/agent.sock"),
            policy_path: None,
            clock: Arc::new(SystemClock),
            theme: PanelTheme::Dark,
            cli: None,
        });
        let status: Status = serde_json::from_value(serde_json::json!({
            "idp": {"state": "signed_out"}, "servers": [], "keychain": {"state": "available"},
            "policy": {"state": "applied"}, "updated_at": 1,
            "organization": {"support_url": support_url, "autostart": true, "notifications": true},
        }))
        .expect("a status");
        host.observe(LinkEvent::Status(Box::new(status)));
        host
    }

    #[test]
    fn only_https_and_mailto_support_links_are_shown_or_opened() {
        for good in ["https://it.example/help", "mailto:it@example.com"] {
            let host = host_told(good);
            assert_eq!(host.support_url().as_deref(), Some(good));
            assert_eq!(host.snapshot().policy.support_url.as_deref(), Some(good));
        }
        for bad in [
            "http://it.example/help",
            "file:///etc/passwd",
            "smb://evil.example/share",
            "javascript:alert(1)",
            "vscode://evil.extension/run",
            "not a url",
        ] {
            let host = host_told(bad);
            assert_eq!(host.support_url(), None, "{bad} was offered");
            assert_eq!(host.snapshot().policy.support_url, None, "{bad} was shown");
        }
    }
}
