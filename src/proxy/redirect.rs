//! `redirect_http_to_https`: where a plain-HTTP request is sent instead.

use http::uri::Authority;
use http::Method;
use pingora::http::RequestHeader;

/// The `https://` URL of the same resource on `port`, from the Host the client asked for;
/// None when the request names no usable host.
pub(super) fn https_location(req: &RequestHeader, port: u16) -> Option<String> {
    let host = match req.headers.get(http::header::HOST) {
        // Only host and port characters: the value goes into a Location header.
        Some(value) if value.as_bytes().iter().all(|&b| is_host_byte(b)) => {
            value.to_str().ok()?.parse::<Authority>().ok()?
        }
        Some(_) => return None,
        None => req.uri.authority()?.clone(),
    };
    let host = host.host();
    if host.is_empty() {
        return None;
    }
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    Some(if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    })
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._:[]".contains(&b)
}

/// 301 for GET and HEAD, as nginx answers; 308 for the rest, which tells the client to send
/// the same method and body again (a 301 lets it turn a POST into a GET).
pub(super) fn status(method: &Method) -> u16 {
    if method == Method::GET || method == Method::HEAD {
        301
    } else {
        308
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(host: Option<&str>, target: &str, port: u16) -> Option<String> {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.set_uri(target.parse().unwrap());
        if let Some(host) = host {
            req.insert_header("host", host).unwrap();
        }
        https_location(&req, port)
    }

    #[test]
    fn the_host_is_kept_and_the_port_replaced() {
        assert_eq!(
            location(Some("shop.example.com:8080"), "/a/b?c=d", 8443).as_deref(),
            Some("https://shop.example.com:8443/a/b?c=d")
        );
        assert_eq!(
            location(Some("shop.example.com"), "/", 443).as_deref(),
            Some("https://shop.example.com/")
        );
        assert_eq!(
            location(Some("[::1]:80"), "/x", 443).as_deref(),
            Some("https://[::1]/x")
        );
    }

    #[test]
    fn an_absolute_form_target_gives_the_host() {
        assert_eq!(
            location(None, "http://example.net/p?q", 443).as_deref(),
            Some("https://example.net/p?q")
        );
    }

    #[test]
    fn no_usable_host_gives_none() {
        assert_eq!(location(None, "/", 443), None);
        assert_eq!(location(Some("a b"), "/", 443), None);
        assert_eq!(location(Some("evil.com/path"), "/", 443), None);
        assert_eq!(location(Some("user@evil.com"), "/", 443), None);
    }

    #[test]
    fn methods_that_carry_a_body_keep_it() {
        assert_eq!(status(&Method::GET), 301);
        assert_eq!(status(&Method::HEAD), 301);
        assert_eq!(status(&Method::POST), 308);
        assert_eq!(status(&Method::PUT), 308);
    }
}
