//! The headers that tell a backend who the client is: `X-Real-IP`, `X-Forwarded-For`,
//! `X-Forwarded-Proto`, with nginx's meaning.

use pingora::http::RequestHeader;
use pingora::Result;
use std::net::IpAddr;

/// Sets the forwarding headers on a request about to go upstream. `X-Forwarded-For` gets the
/// client appended to what the request already carried, like nginx's
/// `$proxy_add_x_forwarded_for`.
pub fn apply(req: &mut RequestHeader, client: Option<IpAddr>, https: bool) -> Result<()> {
    req.insert_header("x-forwarded-proto", if https { "https" } else { "http" })?;
    let Some(client) = client else {
        return Ok(());
    };
    let client = client.to_canonical().to_string();
    let mut chain = String::new();
    for prior in req.headers.get_all("x-forwarded-for") {
        if let Ok(prior) = prior.to_str() {
            chain.push_str(prior);
            chain.push_str(", ");
        }
    }
    chain.push_str(&client);
    req.insert_header("x-forwarded-for", chain)?;
    req.insert_header("x-real-ip", client)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(req: &RequestHeader, name: &str) -> String {
        req.headers.get(name).unwrap().to_str().unwrap().to_string()
    }

    #[test]
    fn client_is_appended_to_the_chain() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Forwarded-For", "203.0.113.7").unwrap();
        req.append_header("X-Forwarded-For", "198.51.100.1")
            .unwrap();
        apply(&mut req, Some("127.0.0.1".parse().unwrap()), false).unwrap();
        assert_eq!(
            header(&req, "x-forwarded-for"),
            "203.0.113.7, 198.51.100.1, 127.0.0.1"
        );
        assert_eq!(req.headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(header(&req, "x-real-ip"), "127.0.0.1");
        assert_eq!(header(&req, "x-forwarded-proto"), "http");
    }

    #[test]
    fn ipv4_mapped_clients_are_shown_as_ipv4() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        apply(&mut req, Some("::ffff:10.1.2.3".parse().unwrap()), true).unwrap();
        assert_eq!(header(&req, "x-forwarded-for"), "10.1.2.3");
        assert_eq!(header(&req, "x-forwarded-proto"), "https");
    }
}
