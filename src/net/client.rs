//! Who the client is: the peer of the connection, or, when that peer is a proxy the config
//! trusts (an AWS ALB, a CDN), the address that proxy put in `X-Forwarded-For`.
//!
//! This is nginx's realip module with `real_ip_recursive on`: the chain is read from the
//! right, skipping trusted addresses, and the first one that is not trusted is the client.
//! A peer that is not trusted cannot vouch for anything, so its `X-Forwarded-For` is ignored.

use crate::net::Cidr;
use http::HeaderValue;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use std::net::IpAddr;

/// The client of a request, as far as the proxy can tell. Both addresses are in canonical
/// form (an IPv4-mapped IPv6 address is its IPv4 address), as [`Client::identify`] makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Client {
    /// The address of the connection's other end.
    pub peer: IpAddr,
    /// The address requests are attributed to: logs, `X-Real-IP`, `ip_hash`, rate limits.
    pub ip: IpAddr,
    /// Whether the connection came from a trusted proxy, whose `X-Forwarded-For` is kept.
    pub via_trusted_proxy: bool,
}

impl Client {
    /// The client of a connection from `peer` carrying these `X-Forwarded-For` values.
    pub(crate) fn identify<'a>(
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a HeaderValue>,
        trusted: &[Cidr],
    ) -> Self {
        let peer = peer.to_canonical();
        let is_trusted = |ip: IpAddr| Cidr::any_contains(trusted, ip);
        if !is_trusted(peer) {
            return Self {
                peer,
                ip: peer,
                via_trusted_proxy: false,
            };
        }
        let mut client = peer;
        let hops = forwarded_for
            .rev()
            .flat_map(|value| value.as_bytes().rsplit(|&b| b == b','));
        for hop in hops {
            // An entry that is not an address ends what can be believed.
            let Some(ip) = std::str::from_utf8(hop)
                .ok()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
            else {
                break;
            };
            client = ip.to_canonical();
            if !is_trusted(client) {
                break;
            }
        }
        Self {
            peer,
            ip: client,
            via_trusted_proxy: true,
        }
    }
}

/// The IP address of a connection's peer; `None` for a Unix socket or an unknown peer.
pub(crate) fn peer_ip(addr: Option<&PeerAddr>) -> Option<IpAddr> {
    addr.and_then(PeerAddr::as_inet)
        .map(std::net::SocketAddr::ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identify(peer: &str, xff: &[&str], trusted: &[&str]) -> Client {
        let values: Vec<HeaderValue> = xff
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .collect();
        let trusted: Vec<Cidr> = trusted.iter().map(|c| Cidr::parse(c).unwrap()).collect();
        Client::identify(peer.parse().unwrap(), values.iter(), &trusted)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let client = identify("198.51.100.4", &["203.0.113.9"], &["10.0.0.0/8"]);
        assert_eq!(client.ip, ip("198.51.100.4"));
        assert!(!client.via_trusted_proxy);
        assert_eq!(identify("::ffff:10.0.0.1", &[], &[]).ip, ip("10.0.0.1"));
    }

    #[test]
    fn a_trusted_peer_names_the_rightmost_untrusted_hop() {
        let trusted = ["10.0.0.0/8"];
        let client = identify("10.0.0.5", &["1.1.1.1, 203.0.113.9, 10.1.1.1"], &trusted);
        assert_eq!(client.ip, ip("203.0.113.9"));
        assert!(client.via_trusted_proxy);
        let split = identify(
            "10.0.0.5",
            &["1.1.1.1", "203.0.113.9", "10.1.1.1"],
            &trusted,
        );
        assert_eq!(split.ip, ip("203.0.113.9"));
    }

    #[test]
    fn a_chain_of_trusted_hops_or_garbage_stops_where_belief_ends() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(
            identify("10.0.0.5", &["10.0.0.7"], &trusted).ip,
            ip("10.0.0.7")
        );
        assert_eq!(identify("10.0.0.5", &[], &trusted).ip, ip("10.0.0.5"));
        let garbage = identify("10.0.0.5", &["203.0.113.9, unknown, 10.0.0.6"], &trusted);
        assert_eq!(garbage.ip, ip("10.0.0.6"));
    }
}
