//! Request paths in one normal form, so that routing, caching and the backend all see the
//! same path: `/static/../admin` is `/admin`, whichever way it was spelled.
//!
//! The rules are nginx's: percent-encoded unreserved characters are decoded (so `%2e%2e` is a
//! dot-segment like `..`), `.` and `..` segments are resolved, repeated slashes merge into one,
//! and a `..` above the root is an error. Encoded slashes (`%2F`) and other reserved
//! characters stay encoded, with upper-case hex digits, because decoding them would change
//! what the path means. An invalid escape or an encoded NUL is an error.

use std::borrow::Cow;
use std::fmt;

/// Why a path has no normal form; the client gets 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not starting with `/`.
    NotAbsolute,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%00`.
    EncodedNul,
    /// A `..` segment above the root.
    AboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Self::NotAbsolute => "the path does not start with /",
            Self::BadEscape => "a % in the path is not followed by two hex digits",
            Self::EncodedNul => "the path contains an encoded NUL (%00)",
            Self::AboveRoot => "a .. segment goes above the root",
        })
    }
}

/// The normal form of `path` (without the query). Borrows when the path is already normal,
/// which is the common case and costs one scan.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = decoded.split('/').skip(1).peekable();
    // A path ending in a dot-segment names a directory: `/a/b/..` is `/a/`.
    let mut trailing_slash = false;
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            "" | "." => trailing_slash = last,
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
                trailing_slash = last;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// True when nothing in `path` needs rewriting: no `%`, no `//`, no `/.` segment.
fn is_normal(path: &[u8]) -> bool {
    let mut previous = 0u8;
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'%' => return false,
            b'/' if previous == b'/' => return false,
            b'.' if previous == b'/' => {
                // `/.x` is an ordinary name; `/.`, `/./`, `/..`, `/../` are not.
                let rest = &path[i + 1..];
                let dot_segment = matches!(rest, [] | [b'/', ..] | [b'.'] | [b'.', b'/', ..]);
                if dot_segment {
                    return false;
                }
            }
            _ => {}
        }
        previous = b;
    }
    true
}

/// Decodes `%XX` of unreserved characters, upper-cases the hex of the others.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // The input is a str and only ASCII is touched, so char boundaries hold.
            let next = bytes[i + 1..]
                .iter()
                .position(|&b| b == b'%')
                .map_or(bytes.len(), |p| i + 1 + p);
            out.push_str(&path[i..next]);
            i = next;
            continue;
        }
        let hex = |b: u8| (b as char).to_digit(16);
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        let byte = (hi * 16 + lo) as u8;
        if byte == 0 {
            return Err(PathError::EncodedNul);
        }
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push_str(&format!("{byte:02X}"));
        }
        i += 3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, PathError> {
        normalize(path).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for path in [
            "/",
            "/a",
            "/a/b/",
            "/.well-known/x",
            "/a/.hidden",
            "/a..b/c.d",
            "/a/b..",
            "/a/...",
        ] {
            assert!(
                matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path),
                "{path}"
            );
        }
    }

    #[test]
    fn dot_segments_and_slashes_resolve() {
        for (input, expected) in [
            ("/static/../admin", "/admin"),
            ("/static/./app.js", "/static/app.js"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/..a/../b", "/b"),
            ("//admin", "/admin"),
            ("/static//x///y", "/static/x/y"),
            ("/a/./../b/./c/", "/b/c/"),
            ("/.", "/"),
        ] {
            assert_eq!(norm(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn encoded_dots_are_dot_segments() {
        assert_eq!(norm("/static/%2e%2e/admin").as_deref(), Ok("/admin"));
        assert_eq!(norm("/static/.%2E/admin").as_deref(), Ok("/admin"));
        assert_eq!(norm("/%7Euser/%61").as_deref(), Ok("/~user/a"));
    }

    #[test]
    fn reserved_escapes_stay_encoded_in_upper_case() {
        assert_eq!(norm("/a%2fb").as_deref(), Ok("/a%2Fb"));
        assert_eq!(
            norm("/static/..%2fadmin").as_deref(),
            Ok("/static/..%2Fadmin")
        );
        assert_eq!(norm("/a%20b%3F").as_deref(), Ok("/a%20b%3F"));
        assert_eq!(norm("/%C3%A9").as_deref(), Ok("/%C3%A9"));
    }

    proptest::proptest! {
        /// Whatever a client sends, the normal form is a fixed point with no dot-segment,
        /// no empty segment and no escape of an unreserved character left in it.
        #[test]
        fn the_normal_form_is_normal(path in "/[a-z./%2eEfF0-9~_-]{0,40}") {
            if let Ok(normal) = normalize(&path) {
                proptest::prop_assert_eq!(normalize(&normal), Ok(Cow::Borrowed(normal.as_ref())));
                proptest::prop_assert!(normal.starts_with('/'));
                proptest::prop_assert!(!normal.contains("//"));
                for segment in normal.split('/') {
                    proptest::prop_assert!(segment != "." && segment != "..", "{}", normal);
                }
                let lower = normal.to_ascii_lowercase();
                proptest::prop_assert!(!lower.contains("%2e") && !lower.contains("%7e"), "{}", normal);
            }
        }
    }

    #[test]
    fn bad_paths_are_errors() {
        assert_eq!(norm("/../etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/../../b"), Err(PathError::AboveRoot));
        assert_eq!(norm("/%2e%2e/x"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%4"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%00b"), Err(PathError::EncodedNul));
        assert_eq!(norm("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(norm("*"), Err(PathError::NotAbsolute));
    }
}
