//! The key `ip_hash` hashes for a request: the client IP, or a header or cookie value for
//! deployments where every request arrives from another load balancer's address.

use crate::config::HashKey;
use pingora::http::RequestHeader;
use std::net::IpAddr;

/// A request's hash key, borrowed from the request where possible.
pub(crate) enum RequestKey<'a> {
    /// Client IP octets (4 or 16 of them).
    Ip([u8; 16], usize),
    /// A header or cookie value.
    Value(&'a [u8]),
    /// No client address (not a TCP client): every such request hashes alike.
    Empty,
}

impl RequestKey<'_> {
    /// The bytes to hash.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Ip(octets, len) => &octets[..*len],
            Self::Value(value) => value,
            Self::Empty => b"",
        }
    }
}

/// The key for `req`. A request without the configured header or cookie falls back to its
/// client IP, so it still sticks to one server.
pub(crate) fn request_key<'a>(
    key: &HashKey,
    req: &'a RequestHeader,
    client: Option<IpAddr>,
) -> RequestKey<'a> {
    let value = match key {
        HashKey::ClientIp => None,
        HashKey::Header(name) => req.headers.get(name).map(|v| v.as_bytes()),
        HashKey::Cookie(name) => cookie(req, name),
    };
    if let Some(value) = value {
        return RequestKey::Value(value);
    }
    match client {
        Some(IpAddr::V4(ip)) => {
            let mut octets = [0; 16];
            octets[..4].copy_from_slice(&ip.octets());
            RequestKey::Ip(octets, 4)
        }
        Some(IpAddr::V6(ip)) => RequestKey::Ip(ip.octets(), 16),
        None => RequestKey::Empty,
    }
}

/// The value of cookie `name`, searched in every `Cookie` header.
fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a [u8]> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|h| h.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| &pair[eq + 1..])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    const CLIENT: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7)));

    #[test]
    fn client_ip_is_the_default_key() {
        let r = req(&[]);
        assert_eq!(
            request_key(&HashKey::ClientIp, &r, CLIENT).as_bytes(),
            [10, 0, 0, 7]
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            request_key(&HashKey::ClientIp, &r, Some(v6))
                .as_bytes()
                .len(),
            16
        );
        assert_eq!(request_key(&HashKey::ClientIp, &r, None).as_bytes(), b"");
    }

    #[test]
    fn header_key_with_fallback_to_ip() {
        let key = HashKey::Header(http::HeaderName::from_static("x-user-id"));
        let r = req(&[("X-User-Id", "alice")]);
        assert_eq!(request_key(&key, &r, CLIENT).as_bytes(), b"alice");
        assert_eq!(
            request_key(&key, &req(&[]), CLIENT).as_bytes(),
            [10, 0, 0, 7]
        );
    }

    #[test]
    fn cookie_key_is_found_among_others() {
        let key = HashKey::Cookie("session".into());
        let r = req(&[("Cookie", "theme=dark; session=abc123"), ("Cookie", "x=1")]);
        assert_eq!(request_key(&key, &r, CLIENT).as_bytes(), b"abc123");
        let r = req(&[("Cookie", "x=1"), ("Cookie", "session=zz")]);
        assert_eq!(request_key(&key, &r, CLIENT).as_bytes(), b"zz");
        let r = req(&[("Cookie", "sessionid=nope")]);
        assert_eq!(request_key(&key, &r, CLIENT).as_bytes(), [10, 0, 0, 7]);
    }
}
