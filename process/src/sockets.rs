//! Who listens where: the listening TCP sockets of this machine (netlink `sock_diag`, or
//! `/proc/net/tcp{,6}`), the connections established to a port, and which process holds a
//! socket (`/proc/PID/fd`). The platform checks that the app listens publicly, and a
//! loopback-only socket still accepts our own connections, so a successful connect to
//! 127.0.0.1 proves nothing.
//!
//! A parser of our own rather than the `procfs` crate: these few fields are all we read, the
//! parser is some sixty lines with tests, and `procfs` would bring a dozen crates to every tool.

use crate::tree::{command_line, processes};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    /// The socket's inode, to find the process that holds it (0 when unknown).
    pub inode: u64,
}

impl Listener {
    pub fn is_public(&self) -> bool {
        !self.addr.is_loopback()
    }
}

/// The listening sockets of this machine (network namespace); `None` without `/proc`.
///
/// Asked of the kernel through netlink (`sock_diag`, listening sockets only) when it can:
/// reading `/proc/net/tcp` makes the kernel walk every socket's bucket, some 8 ms on a machine
/// with much memory, whatever the table holds, and a health check asks several times.
pub fn listeners() -> Option<Vec<Listener>> {
    listeners_by_netlink().or_else(listeners_by_proc)
}

/// `/proc/net/tcp` and `/proc/net/tcp6`, parsed.
pub fn listeners_by_proc() -> Option<Vec<Listener>> {
    let v4 = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let v6 = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let mut all = parse_proc_net_tcp(&v4, false);
    all.extend(parse_proc_net_tcp(&v6, true));
    Some(all)
}

/// The listening TCP sockets, IPv4 and IPv6, from the kernel's `sock_diag` netlink interface
/// (`inet_diag_req_v2` asking for the LISTEN state alone); `None` when it cannot be asked.
pub fn listeners_by_netlink() -> Option<Vec<Listener>> {
    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
        SockType,
    };
    use std::os::fd::AsRawFd;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const TCP_LISTEN: u32 = 10;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    let mut all = Vec::new();
    for (family, v6) in [
        (nix::libc::AF_INET as u8, false),
        (nix::libc::AF_INET6 as u8, true),
    ] {
        // nlmsghdr (16 bytes), then inet_diag_req_v2 (56 bytes), in host byte order.
        let mut request = Vec::with_capacity(72);
        request.extend_from_slice(&72u32.to_ne_bytes());
        request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        request.extend_from_slice(&1u32.to_ne_bytes());
        request.extend_from_slice(&0u32.to_ne_bytes());
        request.extend_from_slice(&[family, nix::libc::IPPROTO_TCP as u8, 0, 0]);
        request.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        request.extend_from_slice(&[0u8; 48]);
        sendto(
            fd.as_raw_fd(),
            &request,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .ok()?;
        let mut buffer = vec![0u8; 32 * 1024];
        'replies: loop {
            let n = recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty()).ok()?;
            if n == 0 {
                return None;
            }
            let mut at = 0;
            while at + 16 <= n {
                let word = |o: usize| u32::from_ne_bytes(buffer[o..o + 4].try_into().unwrap());
                let len = word(at) as usize;
                let kind = u16::from_ne_bytes(buffer[at + 4..at + 6].try_into().unwrap());
                if len < 16 || at + len > n {
                    return None;
                }
                match kind {
                    NLMSG_DONE => break 'replies,
                    NLMSG_ERROR => return None,
                    SOCK_DIAG_BY_FAMILY if len >= 16 + 72 => {
                        let msg = &buffer[at + 16..at + len];
                        // inet_diag_msg: family, state, timer, retrans, then the socket's id
                        // (ports big-endian, addresses in network order), ..., its inode.
                        let port = u16::from_be_bytes([msg[4], msg[5]]);
                        let addr = if v6 {
                            let octets: [u8; 16] = msg[8..24].try_into().unwrap();
                            IpAddr::V6(Ipv6Addr::from(octets))
                        } else {
                            IpAddr::V4(Ipv4Addr::new(msg[8], msg[9], msg[10], msg[11]))
                        };
                        let inode = u32::from_ne_bytes(msg[68..72].try_into().unwrap());
                        all.push(Listener {
                            addr,
                            port,
                            inode: u64::from(inode),
                        });
                    }
                    _ => {}
                }
                // Messages are aligned to 4 bytes.
                at += (len + 3) & !3;
            }
        }
    }
    Some(all)
}

/// Parses the kernel's table: `sl local_address rem_address st ...`, addresses as hex
/// `ADDR:PORT` in host byte order per 32-bit word, state `0A` is LISTEN.
pub fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<Listener> {
    sockets_in_state(text, v6, "0A")
}

/// How many TCP connections are established to one of `ports` here (the local end on it):
/// requests under way, or connections kept open, to a server on those ports.
pub fn connections_to(ports: &[u16]) -> usize {
    [("/proc/net/tcp", false), ("/proc/net/tcp6", true)]
        .into_iter()
        .filter_map(|(path, v6)| {
            Some(sockets_in_state(
                &std::fs::read_to_string(path).ok()?,
                v6,
                "01",
            ))
        })
        .flatten()
        .filter(|socket| ports.contains(&socket.port))
        .count()
}

/// The sockets of a `/proc/net/tcp` table in `state` (`0A` LISTEN, `01` ESTABLISHED), by
/// their local address.
fn sockets_in_state(text: &str, v6: bool, wanted: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != wanted {
                return None;
            }
            let inode = fields.nth(5).and_then(|i| i.parse().ok()).unwrap_or(0);
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let addr = if v6 {
                parse_v6(addr)?
            } else {
                IpAddr::V4(parse_v4(addr)?)
            };
            Some(Listener { addr, port, inode })
        })
        .collect()
}

/// The inodes of the sockets `pid` holds open.
fn socket_inodes(pid: i32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        let target = target.to_str()?;
        target
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    })
    .collect()
}

/// The sockets that the processes `pids` listen on.
pub fn listening_sockets_of(pids: &[i32], table: &[Listener]) -> Vec<Listener> {
    let inodes: Vec<u64> = pids.iter().flat_map(|&pid| socket_inodes(pid)).collect();
    table
        .iter()
        .filter(|l| l.inode != 0 && inodes.contains(&l.inode))
        .copied()
        .collect()
}

/// A process that listens on `port`, as (pid, command line), when this user may see it.
pub fn holder_of(port: u16, table: &[Listener]) -> Option<(i32, String)> {
    let inodes: Vec<u64> = table
        .iter()
        .filter(|l| l.port == port && l.inode != 0)
        .map(|l| l.inode)
        .collect();
    holder_of_sockets(&inodes)
}

/// A process that holds one of the sockets `inodes`, as (pid, command line), when this user
/// may see it.
pub fn holder_of_sockets(inodes: &[u64]) -> Option<(i32, String)> {
    if inodes.is_empty() {
        return None;
    }
    processes().into_iter().find_map(|(pid, _, _)| {
        socket_inodes(pid)
            .iter()
            .any(|i| inodes.contains(i))
            .then(|| (pid, command_line(pid)))
    })
}

fn parse_v4(hex: &str) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(
        u32::from_str_radix(hex, 16).ok()?.to_le_bytes(),
    ))
}

fn parse_v6(hex: &str) -> Option<IpAddr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for word in 0..4 {
        let value = u32::from_str_radix(&hex[word * 8..word * 8 + 8], 16).ok()?;
        bytes[word * 4..word * 4 + 4].copy_from_slice(&value.to_le_bytes());
    }
    let v6 = Ipv6Addr::from(bytes);
    // A v4-mapped address (::ffff:127.0.0.1) is the v4 address it maps.
    Some(match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Netlink and `/proc` say the same of listening sockets, IPv4 and IPv6 alike.
    #[test]
    fn netlink_and_proc_agree_on_who_listens() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let by_netlink = listeners_by_netlink().expect("sock_diag answers here");
        let by_proc = listeners_by_proc().unwrap();
        for listener in [Some(&v4), v6.as_ref()].into_iter().flatten() {
            let local = listener.local_addr().unwrap();
            let find = |table: &[Listener]| {
                table
                    .iter()
                    .find(|l| l.port == local.port() && l.addr == local.ip())
                    .copied()
            };
            let (a, b) = (find(&by_netlink), find(&by_proc));
            assert!(a.is_some(), "{local} not found by netlink");
            assert_eq!(a, b, "{local}");
        }
        // A connected socket is not listening: neither lists it.
        let client = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let port = client.local_addr().unwrap().port();
        assert!(!listeners_by_netlink()
            .unwrap()
            .iter()
            .any(|l| l.port == port));
    }

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:2328 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str =
        "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 0
   1: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A 0
";

    #[test]
    fn reads_listening_sockets_only() {
        assert_eq!(
            parse_proc_net_tcp(TCP, false),
            [
                Listener {
                    addr: Ipv4Addr::UNSPECIFIED.into(),
                    port: 8080,
                    inode: 1
                },
                Listener {
                    addr: Ipv4Addr::LOCALHOST.into(),
                    port: 9000,
                    inode: 2
                },
            ]
        );
        let v6 = parse_proc_net_tcp(TCP6, true);
        assert_eq!(
            v6[0],
            Listener {
                addr: Ipv6Addr::UNSPECIFIED.into(),
                port: 8081,
                inode: 0
            }
        );
        assert_eq!(
            v6[1],
            Listener {
                addr: Ipv6Addr::LOCALHOST.into(),
                port: 8082,
                inode: 0
            }
        );
        assert!(v6[0].is_public() && !v6[1].is_public());
    }

    #[test]
    fn this_machine_has_a_readable_table() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let all = listeners().expect("/proc/net/tcp");
        let ours = all
            .iter()
            .find(|l| l.port == port && l.addr == IpAddr::from(Ipv4Addr::LOCALHOST))
            .expect("our listener");
        let me = std::process::id() as i32;
        assert_eq!(listening_sockets_of(&[me], &all), [*ours]);
        assert_eq!(holder_of(port, &all).map(|h| h.0), Some(me));
        drop(listener);
    }
}
