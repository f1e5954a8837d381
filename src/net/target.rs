//! The request target as routing and the backend see it: origin form (`/path?query`) with
//! the path in [normal form](super::path).
//!
//! A client may send the absolute form (`GET http://host/path HTTP/1.1`). Pingora checks
//! that its authority agrees with `Host` and keeps the target verbatim for the wire; it is
//! rewritten here so that a backend, which expects the origin form from a proxy, never sees
//! it.

use super::path::{self, PathError};
use http::header::HOST;
use http::uri::{PathAndQuery, Uri};
use pingora::http::RequestHeader;
use std::borrow::Cow;
use std::fmt;

/// Why a target cannot be put in normal form; the client gets 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadTarget {
    /// The path has no normal form.
    Path(PathError),
    /// Bytes that are not UTF-8, which a backend could decode in more than one way.
    NotUtf8,
    /// A target that cannot be rebuilt as a URI in origin form.
    Unrepresentable,
}

impl fmt::Display for BadTarget {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Path(e) => e.fmt(f),
            Self::NotUtf8 => f.write_str("the request target is not UTF-8; percent-encode it"),
            Self::Unrepresentable => f.write_str("the request target is not a valid URI"),
        }
    }
}

/// Rewrites `req`'s target into origin form with a normal path; leaves it untouched (no
/// allocation) when it already is. HTTP/2 targets keep their scheme and authority, which
/// Pingora turns into `Host` for an HTTP/1 backend.
pub(crate) fn normalize(req: &mut RequestHeader) -> Result<(), BadTarget> {
    if !req.raw_path_is_utf8() {
        return Err(BadTarget::NotUtf8);
    }
    let uri = &req.uri;
    // `OPTIONS *` has no path to normalise; no route matches it.
    if uri.path() == "*" {
        return Ok(());
    }
    let absolute_form = !req.raw_path().starts_with(b"/");
    let normal = path::normalize(uri.path()).map_err(BadTarget::Path)?;
    if !absolute_form && matches!(normal, Cow::Borrowed(_)) {
        return Ok(());
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{normal}?{query}"),
        None => normal.into_owned(),
    };
    let path_and_query =
        PathAndQuery::try_from(path_and_query).map_err(|_| BadTarget::Unrepresentable)?;
    if absolute_form && !req.headers.contains_key(HOST) {
        // HTTP/1.0 may send an absolute target without Host; keep the name it asked for.
        let authority = Uri::try_from(req.raw_path())
            .ok()
            .and_then(|u| u.authority().cloned());
        if let Some(authority) = authority {
            req.insert_header(HOST, authority.as_str())
                .map_err(|_| BadTarget::Unrepresentable)?;
        }
    }
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    let uri = Uri::from_parts(parts).map_err(|_| BadTarget::Unrepresentable)?;
    req.set_uri(uri);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Version;

    fn target(raw: &str, version: Version) -> (Result<(), BadTarget>, RequestHeader) {
        let mut req = RequestHeader::build("GET", raw.as_bytes(), None).unwrap();
        req.set_version(version);
        (normalize(&mut req), req)
    }

    fn wire(req: &RequestHeader) -> &str {
        std::str::from_utf8(req.raw_path()).unwrap()
    }

    #[test]
    fn origin_form_paths_are_normalised_and_the_query_kept() {
        let (result, req) = target("/static/../admin?a=../b", Version::HTTP_11);
        assert_eq!(result, Ok(()));
        assert_eq!(wire(&req), "/admin?a=../b");
        let (_, req) = target("/plain?x=1", Version::HTTP_11);
        assert_eq!(wire(&req), "/plain?x=1");
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        let (result, req) = target("http://example.com/a/./b?q", Version::HTTP_11);
        assert_eq!(result, Ok(()));
        assert_eq!(wire(&req), "/a/b?q");
        let (_, req) = target("http://example.com:8080", Version::HTTP_10);
        assert_eq!(wire(&req), "/");
        assert_eq!(req.headers.get(HOST).unwrap(), "example.com:8080");
    }

    #[test]
    fn bad_targets_are_errors() {
        let above = BadTarget::Path(PathError::AboveRoot);
        assert_eq!(target("/../x", Version::HTTP_11).0, Err(above));
        assert_eq!(target("http://a/../x", Version::HTTP_11).0, Err(above));
        let mut req = RequestHeader::build("GET", b"/caf\xe9", None).unwrap();
        assert_eq!(normalize(&mut req), Err(BadTarget::NotUtf8));
        assert_eq!(target("*", Version::HTTP_11).0, Ok(()));
    }
}
