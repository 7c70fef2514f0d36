//! Operating-system calls that std does not offer, behind small safe functions.
//!
//! [`windows`] is the only module of the workspace allowed to use `unsafe` (FFI through
//! `windows-sys`; every block says why it is sound). The pure parts that shape what goes into those
//! calls (the pipe's security descriptor, the pipe name) live here so every OS tests them. This
//! module holds no state and makes no decisions: callers decide what to allow, log or refuse.

pub mod tcp_peer;
#[cfg(windows)]
#[allow(unsafe_code)]
pub mod windows;

/// The security descriptor (SDDL) of the broker's pipe: a protected DACL (`P`: nothing inherited)
/// with one entry granting full access to `user_sid` and nothing to anyone else.
///
/// SYSTEM is left out on purpose: no service talks to the agent, and a process running as SYSTEM
/// can take ownership of any object anyway, so an entry for it would add a door and no function.
/// Administrators are left out for the same reason. With no mandatory label the pipe is
/// medium-integrity, so low-integrity processes (sandboxed browser tabs) of the same user cannot
/// write to it either.
pub fn pipe_sddl(user_sid: &str) -> Result<String, String> {
    if !is_sid_string(user_sid) {
        return Err(format!("{user_sid:?} is not a SID"));
    }
    Ok(format!("D:P(A;;GA;;;{user_sid})"))
}

/// Whether `s` looks like a string SID (`S-1-…` with decimal parts), so nothing else can be spliced
/// into a security descriptor.
pub fn is_sid_string(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("S-1-") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 10 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sddl_grants_only_the_user() {
        let sddl = pipe_sddl("S-1-5-21-1004336348-1177238915-682003330-512").expect("a SID");
        assert_eq!(
            sddl,
            "D:P(A;;GA;;;S-1-5-21-1004336348-1177238915-682003330-512)"
        );
        assert!(!sddl.contains("SY") && !sddl.contains("BA") && !sddl.contains("WD"));
    }

    #[test]
    fn sddl_refuses_what_is_not_a_sid() {
        for bad in [
            "",
            "S-1-",
            "S-1-5",
            "S-1-5-21-1)(A;;GA;;;WD",
            "WD",
            "S-1-5-x",
            "s-1-5-21",
        ] {
            assert!(pipe_sddl(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(is_sid_string("S-1-5-18"));
    }
}
