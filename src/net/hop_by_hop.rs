//! Headers that describe one connection, not the message: a backend's must not reach the
//! client. (Pingora already drops the client's before the request goes upstream.)

use http::header::{HeaderName, CONNECTION, UPGRADE};
use http::StatusCode;
use pingora::http::ResponseHeader;

/// Hop-by-hop headers that are not named in `Connection` but are never end-to-end. Parsed
/// names, so that removing them does not parse them again on every response.
const ALWAYS: [HeaderName; 2] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Removes from a backend's response the headers its `Connection` names, and the standing
/// hop-by-hop ones. A `101 Switching Protocols` keeps `Connection` and `Upgrade`, which are
/// what it means; Pingora frames the body and writes the client's `Connection` itself.
pub(crate) fn strip(resp: &mut ResponseHeader) {
    // One pass over the few names present, where a standard name compares as its one-byte
    // tag, costs less than hashing and looking up each of the four names that most responses
    // do not carry (or carry only `Connection` of).
    let (mut always, mut connection, mut upgrade) = (false, false, false);
    for name in resp.headers.keys() {
        always |= ALWAYS.contains(name);
        connection |= name == CONNECTION;
        upgrade |= name == UPGRADE;
    }
    if always {
        for name in &ALWAYS {
            resp.remove_header(name);
        }
    }
    if resp.status == StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    if upgrade {
        resp.remove_header(&UPGRADE);
    }
    if !connection {
        return;
    }
    // Nearly every backend sends `Connection: keep-alive` (or `close`) alone, which names no
    // field to remove: told without splitting the value into a list.
    let mut values = resp.headers.get_all(CONNECTION).iter();
    let only_option = values.next().is_some_and(|v| is_option(v.as_bytes()));
    if only_option && values.next().is_none() {
        resp.remove_header(&CONNECTION);
        return;
    }
    let listed: Vec<String> = resp
        .headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // Checked before lowercasing: nearly every response names only these, and then
        // nothing is allocated.
        .filter(|name| !name.is_empty() && !is_option(name.as_bytes()))
        .map(str::to_ascii_lowercase)
        .collect();
    for name in &listed {
        resp.remove_header(name.as_str());
    }
    resp.remove_header(&CONNECTION);
}

/// Whether a `Connection` token is one of the options that name no field. Backends write them
/// in lower case nearly always, which compares as a whole before byte by byte without case.
fn is_option(token: &[u8]) -> bool {
    matches!(token, b"keep-alive" | b"close")
        || token.eq_ignore_ascii_case(b"keep-alive")
        || token.eq_ignore_ascii_case(b"close")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut resp = ResponseHeader::build(status, None).unwrap();
        for (name, value) in headers {
            resp.append_header(name.to_string(), *value).unwrap();
        }
        strip(&mut resp);
        resp
    }

    #[test]
    fn connection_named_and_standing_hop_headers_go() {
        let resp = response(
            200,
            &[
                ("Connection", "X-A, close"),
                ("Connection", "x-b"),
                ("X-A", "1"),
                ("X-B", "2"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
                ("Upgrade", "h2c"),
                ("X-Kept", "3"),
            ],
        );
        let names: Vec<&str> = resp.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn each_standing_hop_header_goes_alone() {
        for name in ["Keep-Alive", "Proxy-Connection", "Connection", "Upgrade"] {
            let resp = response(200, &[("X-Kept", "3"), (name, "keep-alive")]);
            let names: Vec<&str> = resp.headers.keys().map(|k| k.as_str()).collect();
            assert_eq!(names, ["x-kept"], "{name} was kept");
        }
        let resp = response(204, &[("X-Kept", "3")]);
        assert_eq!(resp.headers["x-kept"], "3");
    }

    #[test]
    fn connection_goes_with_an_option_alone_or_listed() {
        let (both, kept) = (&["x-kept", "x-a"][..], &["x-kept"][..]);
        for (values, names) in [
            (&["Keep-Alive"][..], both),
            (&["close"], both),
            (&["keep-alive", "X-A"], kept),
            (&["keep-alive, x-a"], kept),
        ] {
            let mut headers = vec![("X-Kept", "3"), ("X-A", "1")];
            headers.extend(values.iter().map(|v| ("Connection", *v)));
            let resp = response(200, &headers);
            let left: Vec<&str> = resp.headers.keys().map(|k| k.as_str()).collect();
            assert_eq!(left, names, "Connection: {values:?}");
        }
    }

    #[test]
    fn a_protocol_switch_keeps_what_it_means() {
        let resp = response(101, &[("Connection", "Upgrade"), ("Upgrade", "websocket")]);
        assert_eq!(resp.headers["upgrade"], "websocket");
        assert_eq!(resp.headers["connection"], "Upgrade");
    }
}
