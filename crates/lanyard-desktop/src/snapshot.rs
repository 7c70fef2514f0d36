//! What the tray and the status window show: the agent's [`Status`] plus what only the tray knows
//! (whether the agent is reachable, autostart), as one serializable [`Snapshot`].
//!
//! "Calm by default": a server the organization's policy denies is a standing fact, so it does not
//! turn the tray health amber or red ([`tray_health`]); only what the user can fix or must know now
//! does.
//!
//! Pure: builds values from values. It performs no I/O and holds no secrets (a `Status` has none).

use lanyard_core::engine::{Health, IdpStatus, PolicyStatus, ServerState, Status};
use lanyard_core::policy::PolicyError;
use serde::Serialize;

/// Overall health as the tray shows it: the engine's [`Health`] (calmed, see [`tray_health`]) plus
/// "the agent cannot be reached" and "the policy is unusable".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrayHealth {
    /// The tray is (re)connecting to the agent: nothing is known, nothing is alarming yet.
    Reconnecting,
    SignedOut,
    AllGood,
    Degraded,
    ActionNeeded,
}

impl From<Health> for TrayHealth {
    fn from(health: Health) -> Self {
        match health {
            Health::SignedOut => TrayHealth::SignedOut,
            Health::AllGood => TrayHealth::AllGood,
            Health::Degraded => TrayHealth::Degraded,
            Health::ActionNeeded => TrayHealth::ActionNeeded,
        }
    }
}

/// One problem of the policy, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyProblem {
    pub key_path: String,
    pub message: String,
}

/// The managed policy as the window needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyView {
    /// Where the policy came from (a file path).
    pub source: String,
    /// Where "contact IT" points, when the organization set it.
    pub support_url: Option<String>,
    /// Empty when the policy is usable.
    pub problems: Vec<PolicyProblem>,
}

impl PolicyView {
    pub fn from_errors(source: &str, errors: &[PolicyError]) -> Self {
        Self {
            source: source.to_owned(),
            support_url: None,
            problems: errors
                .iter()
                .map(|e| PolicyProblem {
                    key_path: e.key_path.clone(),
                    message: e.message.clone(),
                })
                .collect(),
        }
    }
}

/// The tray's link to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentView {
    /// Not reached yet (the tray may be starting it).
    Connecting,
    Connected {
        pid: u32,
        version: String,
    },
    /// The agent went away; the tray tries again by itself.
    Reconnecting {
        reason: String,
    },
}

/// The tray's health for a status: the engine's, except that a denied server is a standing fact
/// (said once by a notice and in the window), not an alarm, while every other server is fine.
pub fn tray_health(status: &Status) -> TrayHealth {
    let health = status.health();
    if health != Health::ActionNeeded || matches!(status.policy, PolicyStatus::Misconfigured { .. })
    {
        return health.into();
    }
    if matches!(status.idp, IdpStatus::NeedsSignIn { .. }) {
        return TrayHealth::ActionNeeded;
    }
    let mut calm = TrayHealth::AllGood;
    for server in &status.servers {
        let h = match server.state {
            ServerState::StepUpRequired { .. } => TrayHealth::ActionNeeded,
            ServerState::Granting | ServerState::Failing { .. } => TrayHealth::Degraded,
            _ => TrayHealth::AllGood,
        };
        calm = calm.max(h);
    }
    calm
}

/// Start at login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AutostartView {
    pub enabled: bool,
    /// Set by the organization: the window shows the switch but cannot change it.
    pub locked: bool,
}

/// Everything the window renders, in one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub health: TrayHealth,
    /// The state in a few words (also the tray tooltip).
    pub headline: String,
    /// The host's wall-clock seconds when this was made (the window's countdowns start from it).
    pub now: u64,
    /// `None` when the policy is unusable and no engine runs.
    pub status: Option<Status>,
    pub policy: PolicyView,
    pub autostart: AutostartView,
    /// Whether the tray reaches the agent.
    pub agent: AgentView,
}

impl Snapshot {
    pub fn new(
        status: Option<Status>,
        policy: PolicyView,
        autostart: AutostartView,
        agent: AgentView,
        now: u64,
    ) -> Self {
        let (health, headline) = match (&status, &agent) {
            (Some(status), _) => (tray_health(status), headline(status)),
            // Connected but no status yet (the agent's first status is on its way): still waiting.
            (None, AgentView::Connecting | AgentView::Connected { .. }) => (
                TrayHealth::Reconnecting,
                "Connecting to the Lanyard agent…".to_owned(),
            ),
            (None, AgentView::Reconnecting { .. }) => {
                (TrayHealth::Reconnecting, RECONNECTING.to_owned())
            }
        };
        Self {
            health,
            headline,
            now,
            status,
            policy,
            autostart,
            agent,
        }
    }

    /// The signed-in user's email (or subject), when someone is signed in.
    pub fn user(&self) -> Option<&str> {
        match self.status.as_ref().map(|s| &s.idp) {
            Some(IdpStatus::SignedIn { email, subject, .. }) => {
                Some(email.as_deref().unwrap_or(subject))
            }
            _ => None,
        }
    }
}

/// The headline while the agent is away.
pub const RECONNECTING: &str = "Reconnecting to the Lanyard agent…";

fn names(status: &Status, pred: impl Fn(&ServerState) -> bool) -> Vec<&str> {
    status
        .servers
        .iter()
        .filter(|s| pred(&s.state))
        .map(|s| s.display_name.as_str())
        .collect()
}

fn list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [first @ .., last] => format!("{} and {last}", first.join(", ")),
    }
}

/// The worst thing going on, in words a person would use.
pub fn headline(status: &Status) -> String {
    if let PolicyStatus::Misconfigured { .. } = status.policy {
        return "Settings from your organization are not usable".into();
    }
    match &status.idp {
        IdpStatus::Restoring => return "Resuming your session…".into(),
        IdpStatus::SigningIn { .. } => return "Waiting for you to sign in in your browser".into(),
        IdpStatus::NeedsSignIn { .. } => {
            return "Sign in again to keep your servers working".into()
        }
        IdpStatus::SignedOut if status.health() == Health::SignedOut => return "Signed out".into(),
        _ => {}
    }
    let step_up = names(status, |s| matches!(s, ServerState::StepUpRequired { .. }));
    if !step_up.is_empty() {
        return format!("{} needs you to sign in again", list(&step_up));
    }
    let denied = names(status, |s| matches!(s, ServerState::Denied { .. }));
    let failing = names(status, |s| matches!(s, ServerState::Failing { .. }));
    let granting = names(status, |s| matches!(s, ServerState::Granting));
    let unconnected = names(status, |s| matches!(s, ServerState::NeedsConnect));
    // A server ready on first use is as ready as a granted one: nothing is wrong with it.
    let granted = names(status, |s| {
        matches!(
            s,
            ServerState::Granted { .. } | ServerState::ReadyOnFirstUse { .. }
        )
    });
    let mut parts = Vec::new();
    if !failing.is_empty() {
        parts.push(format!("retrying {}", list(&failing)));
    }
    if !granting.is_empty() && failing.is_empty() {
        parts.push(format!("getting access to {}", list(&granting)));
    }
    if !denied.is_empty() {
        parts.push(format!("{} blocked by your organization", list(&denied)));
    }
    if !unconnected.is_empty() {
        parts.push(format!("{} not connected yet", list(&unconnected)));
    }
    if parts.is_empty() {
        return match granted.len() {
            0 if status.servers.is_empty() => "Signed in; no servers are configured".into(),
            0 => "Signed in".into(),
            1 => "1 server ready".into(),
            n => format!("All {n} servers ready"),
        };
    }
    let mut text = parts.join("; ");
    if let Some(first) = text.get(..1) {
        text = first.to_uppercase() + &text[1..];
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_core::engine::{KeychainStatus, ServerStatus};

    fn server(id: &str, state: ServerState) -> ServerStatus {
        serde_json::from_value(serde_json::json!({
            "id": id, "display_name": id.to_uppercase(), "url": format!("https://{id}.example"),
            "mode": "enterprise-managed", "state": state, "last_refresh": null,
            "authorization_server": null,
        }))
        .expect("a server status")
    }

    fn status(idp: IdpStatus, servers: Vec<ServerStatus>) -> Status {
        Status {
            idp,
            servers,
            keychain: KeychainStatus::Available,
            policy: Default::default(),
            organization: Default::default(),
            idp_client_key: None,
            dpop_key: None,
            updated_at: 0,
        }
    }

    fn signed_in() -> IdpStatus {
        IdpStatus::SignedIn {
            subject: "alice".into(),
            email: Some("alice@example.com".into()),
            id_token_expires_at: 100,
            refresh_error: None,
            previous_subject: None,
        }
    }

    fn granted() -> ServerState {
        ServerState::Granted {
            expires_at: 10,
            scopes: vec![],
            refresh_at: 5,
        }
    }

    #[test]
    fn headline_names_the_worst_thing_in_words() {
        let s = status(
            IdpStatus::SignedOut,
            vec![server("a", ServerState::NotSignedIn)],
        );
        assert_eq!(headline(&s), "Signed out");
        let s = status(
            signed_in(),
            vec![server("a", granted()), server("b", granted())],
        );
        assert_eq!(headline(&s), "All 2 servers ready");
        let denied = ServerState::Denied {
            code: "access_denied".into(),
            description: None,
        };
        let failing = ServerState::Failing {
            error: "HTTP 503".into(),
            retry_at: 9,
            attempts: 1,
        };
        let s = status(
            signed_in(),
            vec![
                server("a", failing),
                server("p", denied),
                server("b", granted()),
            ],
        );
        assert_eq!(headline(&s), "Retrying A; P blocked by your organization");
        let s = status(
            signed_in(),
            vec![
                server("w", ServerState::NeedsConnect),
                server("b", granted()),
            ],
        );
        assert_eq!(headline(&s), "W not connected yet");
        // Signed out: that is the headline, whatever an `oauth` server's state.
        let mut wiki = server("w", ServerState::NeedsConnect);
        wiki.mode = lanyard_core::policy::ServerMode::Oauth;
        let s = status(
            IdpStatus::SignedOut,
            vec![server("d", ServerState::NotSignedIn), wiki.clone()],
        );
        assert_eq!(s.health(), Health::SignedOut);
        assert_eq!(headline(&s), "Signed out");
        // Only `oauth` servers: nothing waits for the sign-in.
        let s = status(IdpStatus::SignedOut, vec![wiki]);
        assert_eq!(s.health(), Health::AllGood);
        assert_eq!(headline(&s), "W not connected yet");
        let s = status(
            IdpStatus::NeedsSignIn {
                reason: "expired".into(),
            },
            vec![],
        );
        assert_eq!(headline(&s), "Sign in again to keep your servers working");
    }

    #[test]
    fn unusable_policy_reported_by_the_agent_is_action_needed() {
        let errors = vec![PolicyError {
            source_name: "p.json".into(),
            key_path: "servers[0].url".into(),
            message: "must use https".into(),
        }];
        let mut agent_status = status(IdpStatus::SignedOut, vec![]);
        agent_status.policy = PolicyStatus::Misconfigured {
            errors: vec!["servers[0].url: must use https".into()],
        };
        let snap = Snapshot::new(
            Some(agent_status),
            PolicyView::from_errors("p.json", &errors),
            AutostartView {
                enabled: true,
                locked: false,
            },
            AgentView::Connected {
                pid: 1,
                version: "0".into(),
            },
            1,
        );
        assert_eq!(snap.health, TrayHealth::ActionNeeded);
        assert_eq!(snap.policy.problems[0].key_path, "servers[0].url");
        assert_eq!(snap.user(), None);
        let json = serde_json::to_value(&snap).expect("serializes");
        assert_eq!(json["health"], "action_needed");
        assert_eq!(json["status"]["policy"]["state"], "misconfigured");
    }

    #[test]
    fn user_is_the_email_or_the_subject() {
        let view = PolicyView::from_errors("p", &[]);
        let auto = AutostartView {
            enabled: false,
            locked: false,
        };
        let snap = Snapshot::new(
            Some(status(signed_in(), vec![])),
            view.clone(),
            auto,
            AgentView::Connecting,
            0,
        );
        assert_eq!(snap.user(), Some("alice@example.com"));
        let no_email = IdpStatus::SignedIn {
            subject: "bob".into(),
            email: None,
            id_token_expires_at: 1,
            refresh_error: None,
            previous_subject: None,
        };
        let snap = Snapshot::new(
            Some(status(no_email, vec![])),
            view,
            auto,
            AgentView::Connecting,
            0,
        );
        assert_eq!(snap.user(), Some("bob"));
    }

    #[test]
    fn while_the_agent_is_away_the_tray_says_so_calmly() {
        let auto = AutostartView {
            enabled: false,
            locked: false,
        };
        let away = AgentView::Reconnecting {
            reason: "the agent closed the connection".into(),
        };
        let snap = Snapshot::new(None, PolicyView::from_errors("p", &[]), auto, away, 0);
        assert_eq!(snap.headline, RECONNECTING);
        assert_eq!(snap.health, TrayHealth::Reconnecting);
        let json = serde_json::to_value(&snap).expect("serializes");
        assert_eq!(json["agent"]["state"], "reconnecting");
        assert_eq!(json["health"], "reconnecting");
    }

    #[test]
    fn a_server_ready_on_first_use_is_all_good_and_counts_as_ready() {
        use lanyard_core::engine::IdleReason;
        for reason in [IdleReason::Unused, IdleReason::NearBudget] {
            let s = status(
                signed_in(),
                vec![
                    server("a", granted()),
                    server("b", ServerState::ReadyOnFirstUse { reason }),
                ],
            );
            assert_eq!(s.health(), Health::AllGood);
            assert_eq!(tray_health(&s), TrayHealth::AllGood);
            assert_eq!(headline(&s), "All 2 servers ready");
        }
    }

    #[test]
    fn a_denied_server_is_calm_a_failing_or_step_up_one_is_not() {
        let denied = || ServerState::Denied {
            code: "access_denied".into(),
            description: None,
        };
        let s = status(
            signed_in(),
            vec![server("a", granted()), server("p", denied())],
        );
        assert_eq!(s.health(), Health::ActionNeeded, "the engine calls it red");
        assert_eq!(tray_health(&s), TrayHealth::AllGood, "the tray stays calm");
        let failing = ServerState::Failing {
            error: "HTTP 503".into(),
            retry_at: 9,
            attempts: 1,
        };
        let s = status(
            signed_in(),
            vec![server("a", failing), server("p", denied())],
        );
        assert_eq!(tray_health(&s), TrayHealth::Degraded);
        let step_up = ServerState::StepUpRequired { max_age: Some(60) };
        let s = status(
            signed_in(),
            vec![server("a", step_up), server("p", denied())],
        );
        assert_eq!(tray_health(&s), TrayHealth::ActionNeeded);
        let s = status(
            IdpStatus::NeedsSignIn {
                reason: "expired".into(),
            },
            vec![server("p", denied())],
        );
        assert_eq!(tray_health(&s), TrayHealth::ActionNeeded);
    }
}
