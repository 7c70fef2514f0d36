//! Desktop notifications: deciding, from successive statuses, what deserves one — sign-in needed, a
//! server newly denied, a token about to lapse while its server cannot be reached, an `oauth`
//! server's connection ended by the server — once per event.
//!
//! [`NoticeTracker`] is pure (statuses in, notices out) so "never a storm" is testable; showing a
//! notice is the host's job. Notices name servers and states, never tokens.

use std::collections::{BTreeMap, BTreeSet};

use lanyard_core::engine::{IdpStatus, ServerState, Status};
use lanyard_core::policy::ServerMode;
use serde::Serialize;

/// How close to expiry a token of an unreachable server must be to warn about it.
pub const LAPSE_WARNING_SECS: u64 = 5 * 60;

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    SignInNeeded,
    Denied,
    AboutToLapse,
    ConnectionEnded,
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub kind: NoticeKind,
    pub title: String,
    pub body: String,
}

/// Remembers what was already said.
#[derive(Debug, Default)]
pub struct NoticeTracker {
    /// The session needed a sign-in at the last look (so it is said once per episode).
    sign_in_needed: bool,
    /// Servers denied at the last look.
    denied: BTreeSet<String>,
    /// The expiry of each server's last granted token.
    last_expiry: BTreeMap<String, u64>,
    /// (server, expiry) pairs already warned about.
    lapse_warned: BTreeSet<(String, u64)>,
    /// `oauth` servers connected at the last look.
    connected: BTreeSet<String>,
}

fn join(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [first @ .., last] => format!("{} and {last}", first.join(", ")),
    }
}

impl NoticeTracker {
    /// The notices `status` (seen at `now`) calls for; at most one per kind per call.
    pub fn observe(&mut self, status: &Status, now: u64) -> Vec<Notice> {
        let mut notices = Vec::new();

        let step_up: Vec<String> = status
            .servers
            .iter()
            .filter(|s| matches!(s.state, ServerState::StepUpRequired { .. }))
            .map(|s| s.display_name.clone())
            .collect();
        let needs = matches!(status.idp, IdpStatus::NeedsSignIn { .. }) || !step_up.is_empty();
        if needs && !self.sign_in_needed {
            let body = if step_up.is_empty() {
                "Your session has ended. Sign in again to keep your AI tools working.".to_owned()
            } else {
                format!("{} asks you to sign in again.", join(&step_up))
            };
            notices.push(Notice {
                kind: NoticeKind::SignInNeeded,
                title: "Lanyard: sign in needed".into(),
                body,
            });
        }
        self.sign_in_needed = needs;

        // A denial is remembered across re-tries (Granting, Failing), so "Refresh all" or an outage
        // does not announce the same denial again; it is forgotten once the server is granted.
        let mut newly = Vec::new();
        for server in &status.servers {
            match server.state {
                ServerState::Denied { .. } => {
                    if self.denied.insert(server.id.clone()) {
                        newly.push(server.display_name.clone());
                    }
                }
                ServerState::Granting | ServerState::Failing { .. } => {}
                _ => {
                    self.denied.remove(&server.id);
                }
            }
        }
        if !newly.is_empty() {
            let verb = if newly.len() == 1 { "was" } else { "were" };
            notices.push(Notice {
                kind: NoticeKind::Denied,
                title: "Lanyard: access blocked".into(),
                body: format!(
                    "{} {verb} blocked by your organization. Contact IT if you need it.",
                    join(&newly)
                ),
            });
        }

        let mut lapsing = Vec::new();
        for server in &status.servers {
            match &server.state {
                ServerState::Granted { expires_at, .. } => {
                    self.last_expiry.insert(server.id.clone(), *expires_at);
                }
                ServerState::Failing { .. } => {
                    let Some(&expires_at) = self.last_expiry.get(&server.id) else {
                        continue;
                    };
                    let soon = expires_at > now && expires_at - now <= LAPSE_WARNING_SECS;
                    if soon && self.lapse_warned.insert((server.id.clone(), expires_at)) {
                        lapsing.push(server.display_name.clone());
                    }
                }
                _ => {
                    self.last_expiry.remove(&server.id);
                }
            }
        }
        if !lapsing.is_empty() {
            notices.push(Notice {
                kind: NoticeKind::AboutToLapse,
                title: "Lanyard: access about to lapse".into(),
                body: format!(
                    "{} cannot be reached, and access runs out within {} minutes. Lanyard keeps retrying.",
                    join(&lapsing),
                    LAPSE_WARNING_SECS / 60
                ),
            });
        }
        // An `oauth` connection that ended without a sign-out (the server revoked or expired its
        // refresh token): the user must connect again, and no app says why. Sign-out ends them
        // all on purpose, so it is not announced.
        let signed_out = matches!(status.idp, IdpStatus::SignedOut);
        let mut ended = Vec::new();
        for server in status
            .servers
            .iter()
            .filter(|s| s.mode == ServerMode::Oauth)
        {
            match server.state {
                ServerState::Granted { .. } => {
                    self.connected.insert(server.id.clone());
                }
                ServerState::NeedsConnect => {
                    // Forgotten either way: a later connect starts a new episode.
                    let was_connected = self.connected.remove(&server.id);
                    if was_connected && !signed_out {
                        ended.push(server.display_name.clone());
                    }
                }
                _ => {}
            }
        }
        if !ended.is_empty() {
            let (verb, it) = if ended.len() == 1 {
                ("was", "it")
            } else {
                ("were", "them")
            };
            notices.push(Notice {
                kind: NoticeKind::ConnectionEnded,
                title: "Lanyard: connect again".into(),
                body: format!(
                    "{} {verb} disconnected. Connect {it} again from the Lanyard menu.",
                    join(&ended)
                ),
            });
        }
        notices
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanyard_core::engine::KeychainStatus;

    fn server(id: &str, state: ServerState) -> lanyard_core::engine::ServerStatus {
        serde_json::from_value(serde_json::json!({
            "id": id, "display_name": id.to_uppercase(), "url": "https://x.example",
            "mode": "enterprise-managed", "state": state, "last_refresh": null,
            "authorization_server": null,
        }))
        .expect("a server status")
    }

    fn status(idp: IdpStatus, servers: Vec<lanyard_core::engine::ServerStatus>) -> Status {
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
            subject: "a".into(),
            email: None,
            id_token_expires_at: 0,
            refresh_error: None,
            previous_subject: None,
        }
    }

    fn denied() -> ServerState {
        ServerState::Denied {
            code: "access_denied".into(),
            description: None,
        }
    }

    fn failing() -> ServerState {
        ServerState::Failing {
            error: "HTTP 503".into(),
            retry_at: 0,
            attempts: 3,
        }
    }

    #[test]
    fn a_denial_is_announced_once_and_again_only_after_it_cleared() {
        let mut t = NoticeTracker::default();
        let s = status(
            signed_in(),
            vec![server("p", denied()), server("q", denied())],
        );
        let first = t.observe(&s, 0);
        assert_eq!(first.len(), 1, "one notice for both: {first:?}");
        assert_eq!(first[0].kind, NoticeKind::Denied);
        assert_eq!(
            first[0].body,
            "P and Q were blocked by your organization. Contact IT if you need it."
        );
        for _ in 0..50 {
            assert!(t.observe(&s, 0).is_empty(), "no storm");
        }
        let retried = status(signed_in(), vec![server("p", ServerState::Granting)]);
        assert!(t.observe(&retried, 0).is_empty());
        assert!(
            t.observe(&s, 0).is_empty(),
            "denied again after a retry: same denial"
        );
        let granted = ServerState::Granted {
            expires_at: 10,
            scopes: vec![],
            refresh_at: 5,
        };
        let cleared = status(signed_in(), vec![server("p", granted)]);
        assert!(t.observe(&cleared, 0).is_empty());
        let again = status(signed_in(), vec![server("p", denied())]);
        assert_eq!(t.observe(&again, 0).len(), 1);
    }

    #[test]
    fn sign_in_needed_is_said_once_per_episode() {
        let mut t = NoticeTracker::default();
        let needs = status(
            IdpStatus::NeedsSignIn {
                reason: "expired".into(),
            },
            vec![],
        );
        assert_eq!(t.observe(&needs, 0)[0].kind, NoticeKind::SignInNeeded);
        assert!(t.observe(&needs, 0).is_empty());
        assert!(t.observe(&status(signed_in(), vec![]), 0).is_empty());
        let step_up = status(
            signed_in(),
            vec![server("d", ServerState::StepUpRequired { max_age: None })],
        );
        let n = t.observe(&step_up, 0);
        assert_eq!(n[0].body, "D asks you to sign in again.");
    }

    fn oauth(id: &str, state: ServerState) -> lanyard_core::engine::ServerStatus {
        let mut s = server(id, state);
        s.mode = ServerMode::Oauth;
        s
    }

    #[test]
    fn a_connection_the_server_ended_is_announced_once_and_a_sign_out_is_not() {
        let mut t = NoticeTracker::default();
        let granted = || ServerState::Granted {
            expires_at: 1_000,
            scopes: vec![],
            refresh_at: 750,
        };
        // Never connected: nothing to say.
        let unconnected = status(signed_in(), vec![oauth("w", ServerState::NeedsConnect)]);
        assert!(t.observe(&unconnected, 0).is_empty());
        assert!(t
            .observe(&status(signed_in(), vec![oauth("w", granted())]), 0)
            .is_empty());
        // A renewal in trouble is not an ended connection.
        assert!(t
            .observe(&status(signed_in(), vec![oauth("w", failing())]), 0)
            .is_empty());
        let n = t.observe(&unconnected, 0);
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(n[0].kind, NoticeKind::ConnectionEnded);
        assert_eq!(
            n[0].body,
            "W was disconnected. Connect it again from the Lanyard menu."
        );
        assert!(t.observe(&unconnected, 0).is_empty(), "once");
        // Connected again, then the user signs out: that ends it on purpose, quietly.
        assert!(t
            .observe(&status(signed_in(), vec![oauth("w", granted())]), 0)
            .is_empty());
        let signed_out = status(
            IdpStatus::SignedOut,
            vec![oauth("w", ServerState::NeedsConnect)],
        );
        assert!(t.observe(&signed_out, 0).is_empty());
        // An enterprise-managed server is never "connected": granted, then in a state that
        // would end an `oauth` connection, it says nothing.
        assert!(t
            .observe(&status(signed_in(), vec![server("d", granted())]), 0)
            .is_empty());
        assert!(t
            .observe(
                &status(signed_in(), vec![server("d", ServerState::NeedsConnect)]),
                0
            )
            .is_empty());
    }

    #[test]
    fn lapse_warning_only_when_failing_close_to_expiry_and_once_per_token() {
        let mut t = NoticeTracker::default();
        let granted = ServerState::Granted {
            expires_at: 1_000,
            scopes: vec![],
            refresh_at: 750,
        };
        assert!(t
            .observe(&status(signed_in(), vec![server("d", granted)]), 700)
            .is_empty());
        let down = status(signed_in(), vec![server("d", failing())]);
        assert!(t.observe(&down, 600).is_empty(), "10 minutes left: quiet");
        let n = t.observe(&down, 800);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].kind, NoticeKind::AboutToLapse);
        assert!(t.observe(&down, 900).is_empty(), "once per token");
        assert!(t.observe(&down, 1_100).is_empty(), "already lapsed");
    }
}
