//! Who listens where, from `/proc/net/tcp` and `/proc/net/tcp6`: the platform checks that the
//! app listens publicly, and a loopback-only socket still accepts our own connections, so a
//! successful connect to 127.0.0.1 proves nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
}

impl Listener {
    pub fn is_public(&self) -> bool {
        !self.addr.is_loopback()
    }
}

/// The listening sockets of this machine (network namespace); `None` without `/proc`.
pub fn listeners() -> Option<Vec<Listener>> {
    let v4 = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let v6 = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let mut all = parse_proc_net_tcp(&v4, false);
    all.extend(parse_proc_net_tcp(&v6, true));
    Some(all)
}

/// Parses the kernel's table: `sl local_address rem_address st ...`, addresses as hex
/// `ADDR:PORT` in host byte order per 32-bit word, state `0A` is LISTEN.
pub fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != "0A" {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let addr = if v6 {
                parse_v6(addr)?
            } else {
                IpAddr::V4(parse_v4(addr)?)
            };
            Some(Listener { addr, port })
        })
        .collect()
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
                    port: 8080
                },
                Listener {
                    addr: Ipv4Addr::LOCALHOST.into(),
                    port: 9000
                },
            ]
        );
        let v6 = parse_proc_net_tcp(TCP6, true);
        assert_eq!(
            v6[0],
            Listener {
                addr: Ipv6Addr::UNSPECIFIED.into(),
                port: 8081
            }
        );
        assert_eq!(
            v6[1],
            Listener {
                addr: Ipv6Addr::LOCALHOST.into(),
                port: 8082
            }
        );
        assert!(v6[0].is_public() && !v6[1].is_public());
    }

    #[test]
    fn this_machine_has_a_readable_table() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let all = listeners().expect("/proc/net/tcp");
        assert!(all.contains(&Listener {
            addr: Ipv4Addr::LOCALHOST.into(),
            port
        }));
    }
}
