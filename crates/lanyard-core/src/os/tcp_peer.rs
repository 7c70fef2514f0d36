//! Who owns the other end of a loopback TCP connection: the check that lets the sign-in listener
//! take a redirect only from a process of the user it runs for.
//!
//! A loopback connection has both ends on this computer, so the OS knows the client socket and
//! its owner. Linux lists every socket of the network namespace in `/proc/net/tcp` and
//! `/proc/net/tcp6` with its owner's uid and its inode (no privilege needed); the client's entry is
//! the one whose local address is our peer and whose remote address is our listener. Windows gives
//! the owning process id of each connection (`GetExtendedTcpTable`), whose token names its user
//! (the FFI is in [`super::windows`]). macOS has no such table without libproc's private
//! interfaces: there the answer is [`PeerOwner::Unchecked`] and callers document it.
//!
//! This module decides nothing: callers accept or refuse. The parsing of the Linux table is a pure
//! function so every OS tests it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What the OS says about the owner of a loopback client socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOwner {
    /// The socket belongs to the user this process runs as.
    SameUser,
    /// The socket belongs to someone else (named as the OS names them: uid, SID).
    OtherUser(String),
    /// The OS could not say (no entry, an orphaned socket, an unreadable table).
    Unknown(String),
    /// This OS offers no cheap way to tell (macOS): nothing was checked.
    Unchecked,
}

/// The owner of the client socket of a connection accepted on `listener` from `peer`.
pub fn loopback_peer_owner(listener: SocketAddr, peer: SocketAddr) -> PeerOwner {
    platform_peer_owner(listener, peer)
}

#[cfg(target_os = "linux")]
fn platform_peer_owner(listener: SocketAddr, peer: SocketAddr) -> PeerOwner {
    let me = rustix::process::geteuid().as_raw();
    let mut unreadable = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(table) {
            Ok(text) => {
                if let Some(entry) = find_socket(&text, peer, listener) {
                    return judge_linux_entry(entry, me);
                }
            }
            Err(e) => unreadable.push(format!("{table}: {e}")),
        }
    }
    if unreadable.is_empty() {
        PeerOwner::Unknown("the client socket is not in /proc/net/tcp{,6}".into())
    } else {
        PeerOwner::Unknown(format!("cannot read {}", unreadable.join("; ")))
    }
}

#[cfg(windows)]
fn platform_peer_owner(listener: SocketAddr, peer: SocketAddr) -> PeerOwner {
    let pid = match super::windows::tcp_connection_owner_pid(peer, listener) {
        Ok(Some(pid)) => pid,
        Ok(None) => return PeerOwner::Unknown("the client socket is not in the TCP table".into()),
        Err(e) => return PeerOwner::Unknown(format!("cannot read the TCP table: {e}")),
    };
    let me = match super::windows::current_user_sid() {
        Ok(sid) => sid,
        Err(e) => return PeerOwner::Unknown(format!("cannot read our own SID: {e}")),
    };
    match super::windows::process_user_sid(pid) {
        Ok(sid) if sid == me => PeerOwner::SameUser,
        Ok(sid) => PeerOwner::OtherUser(format!("process {pid} of {sid}")),
        // Another user's process does not let us open its token: that is an answer too.
        Err(e) => PeerOwner::OtherUser(format!("process {pid}, whose owner cannot be read ({e})")),
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
fn platform_peer_owner(_listener: SocketAddr, _peer: SocketAddr) -> PeerOwner {
    PeerOwner::Unchecked
}

/// One socket of `/proc/net/tcp{,6}`: its owner's uid and its inode (0 once no process holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcNetEntry {
    pub uid: u32,
    pub inode: u64,
}

/// An entry owned by `me` and still held by a process is ours. An orphaned socket (inode 0: closed
/// by its process, or in TIME_WAIT, where the kernel reports uid 0) cannot be attributed.
pub fn judge_linux_entry(entry: ProcNetEntry, me: u32) -> PeerOwner {
    if entry.inode == 0 {
        return PeerOwner::Unknown("the client socket is no longer held by any process".into());
    }
    if entry.uid == me {
        PeerOwner::SameUser
    } else {
        PeerOwner::OtherUser(format!("uid {}", entry.uid))
    }
}

/// The entry of `table` (the text of `/proc/net/tcp` or `/proc/net/tcp6`) whose local address is
/// `local` and remote address `remote`. IPv4-mapped IPv6 addresses match their IPv4 form.
pub fn find_socket(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<ProcNetEntry> {
    let (local, remote) = (canonical(local), canonical(remote));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode …
        if fields.len() < 10 {
            return None;
        }
        if parse_address(fields[1])? != local || parse_address(fields[2])? != remote {
            return None;
        }
        Some(ProcNetEntry {
            uid: fields[7].parse().ok()?,
            inode: fields[9].parse().ok()?,
        })
    })
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints each 32-bit word
/// of the address as the host-order integer its bytes make; the port is plain hex.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(canonical(SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the kernel prints an IPv4 address word on this machine.
    fn v4_word(ip: Ipv4Addr) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip.octets()))
    }

    fn v6_words(ip: Ipv6Addr) -> String {
        ip.octets()
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect()
    }

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    #[test]
    fn the_client_entry_is_found_by_both_addresses() {
        let lo = Ipv4Addr::LOCALHOST;
        let w = v4_word(lo);
        let table = format!(
            "{HEADER}\n   0: {w}:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0\n   1: {w}:1F90 {w}:D431 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0 20 4 30 10 -1\n   2: {w}:D431 {w}:1F90 01 00000000:00000000 00:00000000 00000000  1001        0 333 1 0 20 4 30 10 -1\n"
        );
        let listener = SocketAddr::from((lo, 0x1F90));
        let peer = SocketAddr::from((lo, 0xD431));
        // The client's socket, not our accepted one (same ports, swapped).
        assert_eq!(
            find_socket(&table, peer, listener),
            Some(ProcNetEntry {
                uid: 1001,
                inode: 333
            })
        );
        assert_eq!(
            find_socket(&table, listener, peer),
            Some(ProcNetEntry {
                uid: 1000,
                inode: 222
            })
        );
        assert_eq!(
            find_socket(&table, SocketAddr::from((lo, 1)), listener),
            None
        );
        assert_eq!(find_socket("garbage\nmore garbage", peer, listener), None);
    }

    #[test]
    fn a_v4_mapped_client_in_the_tcp6_table_is_found() {
        let mapped = Ipv4Addr::LOCALHOST.to_ipv6_mapped();
        let w = v6_words(mapped);
        let table = format!(
            "{HEADER}\n   0: {w}:D431 {w}:1F90 01 00000000:00000000 00:00000000 00000000  1002        0 444 1 0 20 4 30 10 -1\n"
        );
        let listener = SocketAddr::from((Ipv4Addr::LOCALHOST, 0x1F90));
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 0xD431));
        assert_eq!(
            find_socket(&table, peer, listener),
            Some(ProcNetEntry {
                uid: 1002,
                inode: 444
            })
        );
    }

    #[test]
    fn only_a_live_socket_of_ours_is_ours() {
        assert_eq!(
            judge_linux_entry(ProcNetEntry { uid: 7, inode: 9 }, 7),
            PeerOwner::SameUser
        );
        assert_eq!(
            judge_linux_entry(ProcNetEntry { uid: 8, inode: 9 }, 7),
            PeerOwner::OtherUser("uid 8".into())
        );
        // TIME_WAIT reports uid 0: never taken for root's own socket.
        assert!(matches!(
            judge_linux_entry(ProcNetEntry { uid: 0, inode: 0 }, 0),
            PeerOwner::Unknown(_)
        ));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_connection_of_this_process_is_the_same_user() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (_server, peer) = listener.accept().expect("accept");
        assert_eq!(peer, client.local_addr().expect("client addr"));
        assert_eq!(
            loopback_peer_owner(listener.local_addr().expect("addr"), peer),
            PeerOwner::SameUser
        );
    }
}
