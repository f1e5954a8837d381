//! The headers that tell a backend who the client is: `X-Real-IP`, `X-Forwarded-For`,
//! `X-Forwarded-Proto`; and the removal of those only the proxy may set.

use crate::net::client::Client;
use crate::net::header_names::{
    X_FORWARDED_FOR, X_FORWARDED_PROTO, X_INSTANCE_ID, X_REAL_IP, X_SERVED_BY,
};
use http::header::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::Result;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// Response headers the proxy sets; a client sending them could make a backend, or a log
/// that records request headers, believe another instance was involved.
const PROXY_ONLY: [HeaderName; 2] = [X_SERVED_BY, X_INSTANCE_ID];
const HTTP: HeaderValue = HeaderValue::from_static("http");
const HTTPS: HeaderValue = HeaderValue::from_static("https");

/// Sets the forwarding headers on a request about to go upstream. `X-Forwarded-For` gets the
/// peer appended to the chain when the peer is a trusted proxy (HAProxy's `option
/// forwardfor`), and is the peer alone otherwise, so that a client cannot forge the chain.
pub(super) fn apply(req: &mut RequestHeader, client: Option<Client>, https: bool) -> Result<()> {
    // Nearly no request carries them: a pass over its few names spares two lookups.
    if req.headers.keys().any(|name| PROXY_ONLY.contains(name)) {
        for name in &PROXY_ONLY {
            req.remove_header(name);
        }
    }
    req.insert_header(X_FORWARDED_PROTO, if https { HTTPS } else { HTTP })?;
    let Some(client) = client else {
        req.remove_header(&X_FORWARDED_FOR);
        req.remove_header(&X_REAL_IP);
        return Ok(());
    };
    let real_ip = ip_value(client.ip);
    if client.via_trusted_proxy {
        let mut chain = String::new();
        for prior in req.headers.get_all(&X_FORWARDED_FOR) {
            if let Ok(prior) = prior.to_str() {
                chain.push_str(prior);
                chain.push_str(", ");
            }
        }
        // Writing to a String cannot fail.
        let _ = write!(chain, "{}", client.peer);
        req.insert_header(X_FORWARDED_FOR, chain)?;
    } else if client.peer == client.ip {
        req.insert_header(X_FORWARDED_FOR, real_ip.clone())?;
    } else {
        req.insert_header(X_FORWARDED_FOR, ip_value(client.peer))?;
    }
    req.insert_header(X_REAL_IP, real_ip)?;
    Ok(())
}

/// The longest text of an address, an IPv6 one with an embedded IPv4 part.
const MAX_IP_TEXT: usize = 45;

/// An address as a header value, written straight into its bytes. An IPv4 address, which
/// nearly every client has, is written digit by digit: `Display` goes through the formatting
/// machinery, about a thousand instructions per address on every request.
fn ip_value(ip: IpAddr) -> HeaderValue {
    let mut text = [0u8; MAX_IP_TEXT];
    let len = match ip {
        IpAddr::V4(v4) => ipv4_text(v4, &mut text),
        IpAddr::V6(v6) => {
            let mut cursor = std::io::Cursor::new(&mut text[..]);
            match write!(cursor, "{v6}") {
                Ok(()) => cursor.position() as usize,
                Err(_) => 0,
            }
        }
    };
    HeaderValue::from_bytes(&text[..len]).unwrap_or(HeaderValue::from_static(""))
}

/// Writes `ip` in dotted decimal into `out`; returns the length.
fn ipv4_text(ip: Ipv4Addr, out: &mut [u8; MAX_IP_TEXT]) -> usize {
    let mut len = 0;
    let mut push = |byte: u8| {
        out[len] = byte;
        len += 1;
    };
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            push(b'.');
        }
        if octet >= 100 {
            push(b'0' + octet / 100);
        }
        if octet >= 10 {
            push(b'0' + octet / 10 % 10);
        }
        push(b'0' + octet % 10);
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Cidr;

    fn header(req: &RequestHeader, name: &str) -> String {
        req.headers.get(name).unwrap().to_str().unwrap().to_string()
    }

    fn spoofed() -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Forwarded-For", "203.0.113.7").unwrap();
        req.append_header("X-Forwarded-For", "198.51.100.1")
            .unwrap();
        req.append_header("X-Real-IP", "203.0.113.7").unwrap();
        req.append_header("X-Served-By", "app9:80").unwrap();
        req.append_header("X-Instance-ID", "9").unwrap();
        req
    }

    fn client(peer: &str, req: &RequestHeader, trusted: &[&str]) -> Client {
        let trusted: Vec<Cidr> = trusted.iter().map(|c| Cidr::parse(c).unwrap()).collect();
        let xff = req.headers.get_all("x-forwarded-for");
        Client::identify(peer.parse().unwrap(), xff.iter(), &trusted)
    }

    #[test]
    fn an_untrusted_client_cannot_forge_who_it_is() {
        let mut req = spoofed();
        let from = client("127.0.0.1", &req, &[]);
        apply(&mut req, Some(from), false).unwrap();
        assert_eq!(header(&req, "x-forwarded-for"), "127.0.0.1");
        assert_eq!(req.headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(header(&req, "x-real-ip"), "127.0.0.1");
        assert_eq!(header(&req, "x-forwarded-proto"), "http");
        assert!(req.headers.get("x-served-by").is_none());
        assert!(req.headers.get("x-instance-id").is_none());
    }

    #[test]
    fn a_trusted_proxy_has_the_chain_extended() {
        let mut req = spoofed();
        let from = client("10.0.0.2", &req, &["10.0.0.0/8"]);
        apply(&mut req, Some(from), true).unwrap();
        assert_eq!(
            header(&req, "x-forwarded-for"),
            "203.0.113.7, 198.51.100.1, 10.0.0.2"
        );
        assert_eq!(header(&req, "x-real-ip"), "198.51.100.1");
        assert_eq!(header(&req, "x-forwarded-proto"), "https");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let mut seen = 0;
        for a in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            for b in [0u8, 7, 42, 255] {
                let ip = IpAddr::from([a, b, 255 - a, a / 3]);
                assert_eq!(ip_value(ip), ip.to_string().as_str(), "{ip}");
                seen += 1;
            }
        }
        assert_eq!(seen, 36);
        for ip in ["::1", "2001:db8::8a2e:370:7334", "::ffff:192.0.2.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip), ip.to_string().as_str());
        }
    }

    #[test]
    fn ipv4_mapped_clients_are_shown_as_ipv4() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let from = client("::ffff:10.1.2.3", &req, &[]);
        apply(&mut req, Some(from), true).unwrap();
        assert_eq!(header(&req, "x-forwarded-for"), "10.1.2.3");
        assert_eq!(header(&req, "x-real-ip"), "10.1.2.3");
    }
}
