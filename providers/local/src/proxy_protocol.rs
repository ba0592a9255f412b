//! PROXY protocol v2 header (haproxy's `proxy-protocol.txt`, section 2.2), sent to a backend
//! before any client byte when `local.cloudlb.io/proxy-protocol: "v2"` is set, so the backend
//! learns the client's address although the connection comes from the load balancer
//! (`ipMode: Proxy`).
//!
//! The header is built on the stack: no allocation per connection.

use std::net::{IpAddr, SocketAddr};

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Version 2, command PROXY.
const VERSION_COMMAND: u8 = 0x21;
const TCP_OVER_IPV4: u8 = 0x11;
const TCP_OVER_IPV6: u8 = 0x21;

/// An encoded header: at most 16 + 36 bytes.
pub struct Header {
    buf: [u8; 52],
    len: usize,
}

impl Header {
    /// The header for a TCP connection from `src` (the client) to `dst` (the load balancer's
    /// listener). Mixed families (an IPv4-mapped IPv6 peer) are sent as IPv6.
    pub fn v2(src: SocketAddr, dst: SocketAddr) -> Self {
        let mut buf = [0u8; 52];
        buf[..12].copy_from_slice(&SIGNATURE);
        buf[12] = VERSION_COMMAND;
        let (src_ip, dst_ip) = (src.ip().to_canonical(), dst.ip().to_canonical());
        let len = match (src_ip, dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                buf[13] = TCP_OVER_IPV4;
                buf[14..16].copy_from_slice(&12u16.to_be_bytes());
                buf[16..20].copy_from_slice(&s.octets());
                buf[20..24].copy_from_slice(&d.octets());
                buf[24..26].copy_from_slice(&src.port().to_be_bytes());
                buf[26..28].copy_from_slice(&dst.port().to_be_bytes());
                28
            }
            (s, d) => {
                let v6 = |ip: IpAddr| match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                buf[13] = TCP_OVER_IPV6;
                buf[14..16].copy_from_slice(&36u16.to_be_bytes());
                buf[16..32].copy_from_slice(&v6(s).octets());
                buf[32..48].copy_from_slice(&v6(d).octets());
                buf[48..50].copy_from_slice(&src.port().to_be_bytes());
                buf[50..52].copy_from_slice(&dst.port().to_be_bytes());
                52
            }
        };
        Self { buf, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Decode a v2 header at the start of `bytes` (for tests and tools): the source and destination
/// addresses and the header's length, or `None` if `bytes` does not start with a complete
/// PROXY v2 TCP header.
pub fn parse_v2(bytes: &[u8]) -> Option<(SocketAddr, SocketAddr, usize)> {
    if bytes.len() < 16 || bytes[..12] != SIGNATURE || bytes[12] != VERSION_COMMAND {
        return None;
    }
    let len = u16::from_be_bytes([bytes[14], bytes[15]]) as usize;
    let body = bytes.get(16..16 + len)?;
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    match bytes[13] {
        TCP_OVER_IPV4 if len >= 12 => {
            let s: [u8; 4] = body[0..4].try_into().ok()?;
            let d: [u8; 4] = body[4..8].try_into().ok()?;
            Some((SocketAddr::from((s, port(8))), SocketAddr::from((d, port(10))), 16 + len))
        }
        TCP_OVER_IPV6 if len >= 36 => {
            let s: [u8; 16] = body[0..16].try_into().ok()?;
            let d: [u8; 16] = body[16..32].try_into().ok()?;
            Some((SocketAddr::from((s, port(32))), SocketAddr::from((d, port(34))), 16 + len))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_round_trip_matches_spec_layout() {
        let src: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let dst: SocketAddr = "127.240.0.1:80".parse().unwrap();
        let h = Header::v2(src, dst);
        let b = h.as_bytes();
        assert_eq!(b.len(), 28);
        assert_eq!(&b[..12], &SIGNATURE);
        assert_eq!(b[12], 0x21);
        assert_eq!(b[13], 0x11);
        assert_eq!(&b[14..16], &[0, 12]);
        assert_eq!(&b[16..20], &[10, 1, 2, 3]);
        assert_eq!(parse_v2(b), Some((src, dst, 28)));
    }

    #[test]
    fn ipv6_and_mixed_families() {
        let src: SocketAddr = "[2001:db8::1]:1234".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::2]:443".parse().unwrap();
        let h = Header::v2(src, dst);
        assert_eq!(h.as_bytes().len(), 52);
        assert_eq!(parse_v2(h.as_bytes()), Some((src, dst, 52)));
        let mixed = Header::v2("10.0.0.1:5".parse().unwrap(), dst);
        assert_eq!(mixed.as_bytes()[13], 0x21);
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert_eq!(parse_v2(b"GET / HTTP/1.1\r\n\r\n"), None);
        let h = Header::v2("10.0.0.1:5".parse().unwrap(), "10.0.0.2:6".parse().unwrap());
        assert_eq!(parse_v2(&h.as_bytes()[..20]), None);
    }
}
