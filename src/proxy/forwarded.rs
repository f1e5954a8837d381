//! The headers that tell a backend who the client is: `X-Real-IP`, `X-Forwarded-For`,
//! `X-Forwarded-Proto`; and the removal of those only the proxy may set.

use crate::request::client::Client;
use pingora::http::RequestHeader;
use pingora::Result;

/// Response headers the proxy sets; a client sending them could make a backend, or a log
/// that records request headers, believe another instance was involved.
const PROXY_ONLY: [&str; 2] = ["x-served-by", "x-instance-id"];

/// Sets the forwarding headers on a request about to go upstream. `X-Forwarded-For` gets the
/// peer appended to the chain when the peer is a trusted proxy (HAProxy's `option
/// forwardfor`), and is the peer alone otherwise, so that a client cannot forge the chain.
pub fn apply(req: &mut RequestHeader, client: Option<Client>, https: bool) -> Result<()> {
    for name in PROXY_ONLY {
        req.remove_header(name);
    }
    req.insert_header("x-forwarded-proto", if https { "https" } else { "http" })?;
    let Some(client) = client else {
        req.remove_header("x-forwarded-for");
        req.remove_header("x-real-ip");
        return Ok(());
    };
    let peer = client.peer.to_canonical().to_string();
    let chain = if client.via_trusted_proxy {
        let mut chain = String::new();
        for prior in req.headers.get_all("x-forwarded-for") {
            if let Ok(prior) = prior.to_str() {
                chain.push_str(prior);
                chain.push_str(", ");
            }
        }
        chain.push_str(&peer);
        chain
    } else {
        peer
    };
    req.insert_header("x-forwarded-for", chain)?;
    req.insert_header("x-real-ip", client.ip.to_canonical().to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::Cidr;

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
    fn ipv4_mapped_clients_are_shown_as_ipv4() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        let from = client("::ffff:10.1.2.3", &req, &[]);
        apply(&mut req, Some(from), true).unwrap();
        assert_eq!(header(&req, "x-forwarded-for"), "10.1.2.3");
        assert_eq!(header(&req, "x-real-ip"), "10.1.2.3");
    }
}
