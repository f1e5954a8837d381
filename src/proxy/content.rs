//! Decisions that depend on a response's content type.

use pingora::http::ResponseHeader;
use pingora::modules::http::compression::ResponseCompression;
use pingora::proxy::Session;

/// gzip/brotli/zstd level used for `compress: true` routes: a good ratio for little CPU.
pub(super) const COMPRESSION_LEVEL: u32 = 6;

fn content_type(resp: &ResponseHeader) -> &[u8] {
    resp.headers
        .get(http::header::CONTENT_TYPE)
        .map_or(&[][..], |v| v.as_bytes())
}

/// An event stream: never held back, never compressed, whatever the route says.
pub(super) fn is_event_stream(resp: &ResponseHeader) -> bool {
    content_type(resp).starts_with(b"text/event-stream")
}

/// Text that compresses well; images, video and archives are compressed already.
pub(super) fn is_compressible(resp: &ResponseHeader) -> bool {
    let ct = content_type(resp);
    let essence = ct
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.starts_with(b"text/")
        || [
            &b"application/json"[..],
            b"application/javascript",
            b"application/xml",
            b"application/xhtml+xml",
            b"image/svg+xml",
        ]
        .contains(&essence)
        || essence.ends_with(b"+json")
}

/// Sets the response compression level for this request; 0 turns it off.
pub(super) fn set_compression(session: &mut Session, level: u32) {
    if let Some(compression) = session
        .downstream_modules_ctx
        .get_mut::<ResponseCompression>()
    {
        compression.adjust_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(ct: &str) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("content-type", ct).unwrap();
        r
    }

    #[test]
    fn text_types_compress_and_others_do_not() {
        for ct in [
            "text/html; charset=utf-8",
            "text/css",
            "application/json",
            "application/problem+json",
            "image/svg+xml",
        ] {
            assert!(is_compressible(&resp(ct)), "{ct}");
        }
        for ct in [
            "image/png",
            "application/octet-stream",
            "video/mp4",
            "application/zip",
        ] {
            assert!(!is_compressible(&resp(ct)), "{ct}");
        }
    }

    #[test]
    fn event_streams_are_recognised() {
        assert!(is_event_stream(&resp("text/event-stream")));
        assert!(is_event_stream(&resp("text/event-stream; charset=utf-8")));
        assert!(!is_event_stream(&resp("text/plain")));
        assert!(!is_event_stream(&ResponseHeader::build(200, None).unwrap()));
    }
}
