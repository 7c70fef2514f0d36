//! Operating-system calls that std does not offer, behind small safe functions.
//!
//! [`windows`] is, with the OS key stores of `device_key` (CNG, the Keychain), the only module of
//! the workspace allowed to use `unsafe` (FFI through `windows-sys`; every block says why it is
//! sound). The pure parts that shape what goes into those
//! calls (the pipe's security descriptor, the pipe name) live here so every OS tests them. This
//! module holds no state and makes no decisions: callers decide what to allow, log or refuse.

pub mod memory_guard;
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

/// SYSTEM, Administrators and TrustedInstaller: the owners (and the only holders of a right to
/// change) that a file trusted as an administrator's may have on Windows.
pub const ADMIN_SIDS: [&str; 3] = [
    "S-1-5-18",
    "S-1-5-32-544",
    "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464",
];

/// Access rights that let the holder change a file or a folder's contents, or its security:
/// write data / add file (0x2), append / add subfolder (0x4), delete child (0x40), DELETE,
/// WRITE_DAC, WRITE_OWNER, GENERIC_ALL and GENERIC_WRITE.
pub const CHANGE_RIGHTS: u32 = 0x0000_0002
    | 0x0000_0004
    | 0x0000_0040
    | 0x0001_0000
    | 0x0004_0000
    | 0x0008_0000
    | 0x1000_0000
    | 0x4000_0000;

/// One entry of a DACL, as read from the OS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AceFacts {
    /// An allow entry (of any kind: plain, object, callback); deny entries take nothing away here.
    pub allows: bool,
    /// Inherit-only: it applies to children created later, not to this object.
    pub inherit_only: bool,
    pub mask: u32,
    /// The trustee, when the entry's layout is known (plain and callback entries).
    pub sid: Option<String>,
}

/// What a file's or folder's security descriptor says, read from an open handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityFacts {
    pub owner: String,
    /// `None`: a NULL DACL, which grants everyone everything.
    pub dacl: Option<Vec<AceFacts>>,
    /// A link or junction (opened as itself, not followed).
    pub reparse_point: bool,
}

/// A readable name for a well-known SID in messages (the SID itself otherwise).
pub fn sid_name(sid: &str) -> String {
    let name = match sid {
        "S-1-1-0" => "Everyone",
        "S-1-3-0" => "CREATOR OWNER",
        "S-1-5-11" => "Authenticated Users",
        "S-1-5-18" => "SYSTEM",
        "S-1-5-32-544" => "Administrators",
        "S-1-5-32-545" => "Users",
        "S-1-5-4" => "INTERACTIVE",
        _ if sid == ADMIN_SIDS[2] => "TrustedInstaller",
        _ => return sid.to_owned(),
    };
    format!("{name} ({sid})")
}

/// Whether a file or folder with these security facts can be changed only by administrators: the
/// owner is one of [`ADMIN_SIDS`], it is no link, and no allow entry that applies to it gives
/// anyone else one of [`CHANGE_RIGHTS`]. `Err` says who else could change it.
pub fn judge_admin_security(facts: &SecurityFacts) -> Result<(), String> {
    if facts.reparse_point {
        return Err("is a link or junction, not the file itself".into());
    }
    if !ADMIN_SIDS.contains(&facts.owner.as_str()) {
        return Err(format!(
            "is owned by {}, not by SYSTEM, Administrators or TrustedInstaller",
            sid_name(&facts.owner)
        ));
    }
    let Some(dacl) = &facts.dacl else {
        return Err("has no DACL, so everyone may change it".into());
    };
    for ace in dacl {
        if !ace.allows || ace.inherit_only || ace.mask & CHANGE_RIGHTS == 0 {
            continue;
        }
        match &ace.sid {
            Some(sid) if ADMIN_SIDS.contains(&sid.as_str()) => {}
            Some(sid) => {
                return Err(format!(
                    "lets {} change it (access mask 0x{:x})",
                    sid_name(sid),
                    ace.mask
                ))
            }
            None => {
                return Err(format!(
                    "has an allow entry of an unusual kind that may change it (access mask 0x{:x})",
                    ace.mask
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ace(sid: &str, mask: u32) -> AceFacts {
        AceFacts {
            allows: true,
            inherit_only: false,
            mask,
            sid: Some(sid.into()),
        }
    }

    /// An administrator's file: SYSTEM and Administrators full control, Users read and execute.
    fn admin_file() -> SecurityFacts {
        SecurityFacts {
            owner: "S-1-5-32-544".into(),
            dacl: Some(vec![
                ace("S-1-5-18", 0x1f01ff),
                ace("S-1-5-32-544", 0x1f01ff),
                ace("S-1-5-32-545", 0x1200a9),
            ]),
            reparse_point: false,
        }
    }

    #[test]
    fn an_administrators_file_is_trusted_and_each_way_out_is_named() {
        assert_eq!(judge_admin_security(&admin_file()), Ok(()));
        for owner in ["S-1-5-18", ADMIN_SIDS[2]] {
            let facts = SecurityFacts {
                owner: owner.into(),
                ..admin_file()
            };
            assert_eq!(judge_admin_security(&facts), Ok(()), "{owner}");
        }

        // Planted by a standard user: theirs.
        let planted = SecurityFacts {
            owner: "S-1-5-21-1-2-3-1001".into(),
            ..admin_file()
        };
        assert_eq!(
            judge_admin_security(&planted),
            Err("is owned by S-1-5-21-1-2-3-1001, not by SYSTEM, Administrators or TrustedInstaller".into())
        );

        // ProgramData's inherited "Users may add files" entry on a folder created without a
        // protected DACL.
        let mut folder = admin_file();
        if let Some(dacl) = folder.dacl.as_mut() {
            dacl.push(ace("S-1-5-32-545", 0x116));
        }
        assert_eq!(
            judge_admin_security(&folder),
            Err("lets Users (S-1-5-32-545) change it (access mask 0x116)".into())
        );

        // Each right that changes the object, alone, for Everyone.
        for right in [
            0x2,
            0x4,
            0x40,
            0x1_0000,
            0x4_0000,
            0x8_0000,
            0x1000_0000,
            0x4000_0000,
        ] {
            let mut facts = admin_file();
            if let Some(dacl) = facts.dacl.as_mut() {
                dacl.push(ace("S-1-1-0", right));
            }
            assert!(judge_admin_security(&facts).is_err(), "right 0x{right:x}");
        }

        // What does not change it: a deny entry, an inherit-only entry (CREATOR OWNER), read and
        // attribute rights.
        let mut harmless = admin_file();
        if let Some(dacl) = harmless.dacl.as_mut() {
            dacl.push(AceFacts {
                allows: false,
                ..ace("S-1-1-0", 0x1f01ff)
            });
            dacl.push(AceFacts {
                inherit_only: true,
                ..ace("S-1-3-0", 0x1000_0000)
            });
            dacl.push(ace("S-1-5-11", 0x1200a9 | 0x100 | 0x10));
        }
        assert_eq!(judge_admin_security(&harmless), Ok(()));

        let null_dacl = SecurityFacts {
            dacl: None,
            ..admin_file()
        };
        assert!(judge_admin_security(&null_dacl)
            .expect_err("refused")
            .contains("no DACL"));
        let link = SecurityFacts {
            reparse_point: true,
            ..admin_file()
        };
        assert!(judge_admin_security(&link)
            .expect_err("refused")
            .contains("link"));
        let mut odd = admin_file();
        if let Some(dacl) = odd.dacl.as_mut() {
            dacl.push(AceFacts {
                sid: None,
                ..ace("", 0x2)
            });
        }
        assert!(judge_admin_security(&odd)
            .expect_err("refused")
            .contains("unusual"));
    }

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
